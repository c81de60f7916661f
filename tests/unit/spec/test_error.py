"""The CNI error object: plugin side (to wire) and runtime side (from wire)."""

from __future__ import annotations

import json

import pytest

from kanal.errors import (
    Conflict,
    DecodeError,
    Degraded,
    IncompatibleVersion,
    Internal,
    InvalidConfig,
    InvalidEnv,
    IOFailure,
    KanalError,
    NotFound,
    TryAgain,
    Unavailable,
    UnsupportedField,
)
from kanal.spec.convert import dumps
from kanal.spec.error import error_from_wire, error_to_wire
from kanal.spec.versions import ALL_VERSIONS

CLASSES = [
    IncompatibleVersion,
    UnsupportedField,
    NotFound,
    InvalidEnv,
    IOFailure,
    DecodeError,
    InvalidConfig,
    TryAgain,
    Unavailable,
    Degraded,
    Internal,
]


@pytest.mark.parametrize("version", ALL_VERSIONS, ids=ALL_VERSIONS)
def test_to_wire_shape(version: str) -> None:
    wire = error_to_wire(InvalidConfig("bad", "very bad"), version)
    assert list(wire.items()) == [
        ("cniVersion", version),
        ("code", 7),
        ("msg", "bad"),
        ("details", "very bad"),
    ]


def test_to_wire_omits_empty_details() -> None:
    assert error_to_wire(TryAgain("busy"), "1.1.0") == {
        "cniVersion": "1.1.0",
        "code": 11,
        "msg": "busy",
    }


def test_to_wire_keeps_explicit_code() -> None:
    assert error_to_wire(KanalError("plugin specific", code=123), "1.0.0")["code"] == 123


@pytest.mark.parametrize("cls", CLASSES, ids=[c.__name__ for c in CLASSES])
@pytest.mark.parametrize("details", ["", "some details"], ids=["plain", "details"])
def test_round_trip_keeps_class_code_msg_details(cls: type[KanalError], details: str) -> None:
    err = cls("message", details)
    back = error_from_wire(dumps(error_to_wire(err, "1.1.0")))
    assert type(back) is cls
    assert (back.code, back.msg, back.details) == (err.code, "message", details)


def test_conflict_comes_back_as_internal_999() -> None:
    back = error_from_wire(dumps(error_to_wire(Conflict("taken"), "1.0.0")))
    assert (type(back), back.code) == (Internal, 999)


@pytest.mark.parametrize("code", [0, 8, 100, 1234], ids=str)
def test_other_codes_are_kept(code: int) -> None:
    back = error_from_wire(json.dumps({"code": code, "msg": "m"}).encode())
    assert type(back) is KanalError
    assert back.code == code


def test_go_error_without_cni_version_parses() -> None:
    go = b'{\n    "code": 4,\n    "msg": "required env variables [CNI_NETNS] missing"\n}'
    err = error_from_wire(go)
    assert isinstance(err, InvalidEnv)
    assert err.msg == "required env variables [CNI_NETNS] missing"


def test_mapping_input() -> None:
    err = error_from_wire({"code": 3, "msg": "gone"})
    assert isinstance(err, NotFound)


def test_empty_stdout_with_stderr() -> None:
    err = error_from_wire(b"", b"panic: boom\n")
    assert (err.code, err.msg) == (0, 'netplugin failed: "panic: boom\\n"')
    err = error_from_wire(b"", b"boom", exit_code=2)
    assert err.msg == 'netplugin failed: "boom": exit status 2'


def test_empty_stdout_without_stderr() -> None:
    assert error_from_wire(b"").msg == "netplugin failed with no error message"
    assert (
        error_from_wire("", exit_code=1).msg
        == "netplugin failed with no error message: exit status 1"
    )


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[1]",
        b'{"code": "7"}',
        b'{"code": -1}',
        b'{"code": true}',
        b'{"msg": 5}',
        b'{"code": 1.5}',
        b'{"details": []}',
    ],
    ids=repr,
)
def test_unparsable_stdout(data: bytes) -> None:
    err = error_from_wire(data, b"ignored")
    assert err.code == 0
    assert err.msg.startswith(
        f"netplugin failed but error parsing its diagnostic message {json.dumps(data.decode())}: "
    )


def test_null_is_the_zero_error() -> None:
    err = error_from_wire(b"null")
    assert (type(err), err.code, err.msg) == (KanalError, 0, "")
