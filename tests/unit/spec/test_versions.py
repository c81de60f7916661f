"""Version parsing, comparison, the plugin-side check and the VERSION exchange."""

from __future__ import annotations

import json

import pytest

from kanal.errors import DecodeError, IncompatibleVersion, KanalError
from kanal.spec.convert import dumps
from kanal.spec.versions import (
    ALL_VERSIONS,
    CURRENT,
    check_supported,
    decode_version_reply,
    highest_version,
    legacy_supported_versions,
    parse_version,
    version_ge,
    version_gt,
    version_reply,
)


def test_constants() -> None:
    assert ALL_VERSIONS == ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
    assert CURRENT == "1.1.0"
    assert list(ALL_VERSIONS) == sorted(ALL_VERSIONS, key=parse_version)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", (0, 1, 0)),
        ("0.1.0", (0, 1, 0)),
        ("1.1.0", (1, 1, 0)),
        ("1", (1, 0, 0)),
        ("1.2", (1, 2, 0)),
        ("10.20.30", (10, 20, 30)),
        ("01.002.3", (1, 2, 3)),
        ("+1.0.0", (1, 0, 0)),
    ],
    ids=str,
)
def test_parse_version(text: str, expected: tuple[int, int, int]) -> None:
    assert parse_version(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1.0.0.0", 'invalid version "1.0.0.0": too many parts'),
        ("a.b.c", 'failed to convert major version part "a"'),
        ("1.x", 'failed to convert minor version part "x"'),
        ("1.0.y", 'failed to convert micro version part "y"'),
        ("1..0", 'failed to convert minor version part ""'),
        ("1.0.0 ", 'failed to convert micro version part "0 "'),
        ("1_0", 'failed to convert major version part "1_0"'),
        ("\u0661.0.0", "failed to convert major version part"),  # Arabic-Indic 1
        ("v1.0.0", 'failed to convert major version part "v1"'),
    ],
    ids=str,
)
def test_parse_version_garbage(text: str, message: str) -> None:
    with pytest.raises(DecodeError) as ei:
        parse_version(text)
    assert ei.value.code == 6
    assert message in ei.value.msg


@pytest.mark.parametrize(
    ("a", "b", "ge", "gt"),
    [
        ("1.1.0", "1.0.0", True, True),
        ("1.0.0", "1.0.0", True, False),
        ("0.4.0", "1.0.0", False, False),
        ("0.3.1", "0.3.0", True, True),
        ("", "0.1.0", True, False),
        ("0.10.0", "0.9.0", True, True),
        ("1", "1.0.0", True, False),
    ],
    ids=str,
)
def test_compare(a: str, b: str, ge: bool, gt: bool) -> None:
    assert version_ge(a, b) is ge
    assert version_gt(a, b) is gt


@pytest.mark.parametrize("version", ALL_VERSIONS, ids=ALL_VERSIONS)
def test_check_supported_accepts_members(version: str) -> None:
    check_supported(version, ALL_VERSIONS)


@pytest.mark.parametrize("version", ["1.0", "1.2.0", "", "0.4", " 1.0.0"], ids=repr)
def test_check_supported_is_exact_string_membership(version: str) -> None:
    with pytest.raises(IncompatibleVersion) as ei:
        check_supported(version, ALL_VERSIONS)
    assert ei.value.code == 1


def test_check_supported_message_is_gos() -> None:
    with pytest.raises(IncompatibleVersion) as ei:
        check_supported("9.0.0", ("0.1.0", "0.2.0"))
    assert ei.value.msg == "incompatible CNI versions"
    assert ei.value.details == 'config is "9.0.0", plugin supports ["0.1.0" "0.2.0"]'


def test_version_reply() -> None:
    reply = version_reply(("0.3.1", "1.0.0"))
    assert list(reply.items()) == [
        ("cniVersion", "1.1.0"),
        ("supportedVersions", ["0.3.1", "1.0.0"]),
    ]
    assert (
        dumps(reply, compact=True)
        == b'{"cniVersion":"1.1.0","supportedVersions":["0.3.1","1.0.0"]}'
    )


def test_version_reply_needs_a_version() -> None:
    with pytest.raises(ValueError, match="at least one version"):
        version_reply(())


@pytest.mark.parametrize("versions", [ALL_VERSIONS, ("0.4.0",)], ids=["all", "one"])
def test_version_reply_round_trip(versions: tuple[str, ...]) -> None:
    assert decode_version_reply(dumps(version_reply(versions))) == list(versions)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ({"cniVersion": "0.2.0"}, ["0.1.0", "0.2.0"]),
        ({"cniVersion": "0.2.0", "supportedVersions": []}, ["0.1.0", "0.2.0"]),
        ({"cniVersion": "0.3.0", "supportedVersions": ["0.3.0"]}, ["0.3.0"]),
        (
            {"cniVersion": "1.0.0", "supportedVersions": ["0.1.0", "1.0.0"], "x": 1},
            ["0.1.0", "1.0.0"],
        ),
    ],
    ids=["legacy-020", "legacy-020-empty", "030", "extra-key"],
)
def test_decode_version_reply(reply: dict[str, object], expected: list[str]) -> None:
    assert decode_version_reply(json.dumps(reply).encode()) == expected


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{", "decoding version info"),
        (b"[]", "decoding version info"),
        (b"{}", "decoding version info: missing field cniVersion"),
        (b'{"cniVersion": ""}', "decoding version info: missing field cniVersion"),
        (b'{"cniVersion": "0.3.1"}', "decoding version info: missing field supportedVersions"),
        (b'{"cniVersion": 1}', "decoding version info"),
        (b'{"cniVersion": 0}', "decoding version info"),
        (b'{"cniVersion": "1.0.0", "supportedVersions": {}}', "decoding version info"),
        (b'{"cniVersion": "1.0.0", "supportedVersions": "1.0.0"}', "decoding version info"),
        (b'{"cniVersion": "1.0.0", "supportedVersions": [1]}', "decoding version info"),
    ],
    ids=[
        "bad-json",
        "array",
        "empty",
        "empty-version",
        "no-supported",
        "int-version",
        "zero-version",
        "object-list",
        "string-list",
        "int-entry",
    ],
)
def test_decode_version_reply_errors(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError) as ei:
        decode_version_reply(data)
    assert str(ei.value).startswith(message)


def test_legacy_supported_versions() -> None:
    assert legacy_supported_versions(KanalError("unknown CNI_COMMAND: VERSION", code=4)) == [
        "0.1.0"
    ]
    assert legacy_supported_versions(KanalError("unknown CNI_COMMAND: VERSION", "x")) is None
    assert legacy_supported_versions(KanalError("unknown CNI_COMMAND: GC")) is None


@pytest.mark.parametrize(
    ("versions", "limit", "expected"),
    [
        (ALL_VERSIONS, CURRENT, "1.1.0"),
        (["0.4.0", "1.0.0", "2.0.0"], CURRENT, "1.0.0"),
        (["0.3.1", "0.3.0"], CURRENT, "0.3.1"),
        (ALL_VERSIONS, "0.4.0", "0.4.0"),
        (["1.1.0", "1.0.0"], "1.0.5", "1.0.0"),
        ([""], CURRENT, ""),
    ],
    ids=str,
)
def test_highest_version(versions: list[str], limit: str, expected: str) -> None:
    assert highest_version(versions, limit) == expected


def test_highest_version_none_qualifies() -> None:
    with pytest.raises(IncompatibleVersion, match="no CNI version at or below 1.1.0"):
        highest_version(["2.0.0", "1.2.0"])
    with pytest.raises(IncompatibleVersion):
        highest_version([])


def test_highest_version_garbage() -> None:
    with pytest.raises(DecodeError):
        highest_version(["1.0.0", "x"])
