"""Container ID / interface name validation and CNI_ARGS parsing."""

from __future__ import annotations

import pytest

from kanal.errors import InvalidEnv
from kanal.spec.args import (
    CONTAINER_ID_RE,
    MAX_IFNAME_LEN,
    load_args,
    parse_cni_args,
    validate_container_id,
    validate_ifname,
)

GOOD_IDS = [
    "a",
    "0",
    "abc123",
    "cnitool-77383ca0a0715733ca6f",
    "a.b-c_d",
    "a..b",
    "Z" * 234,
    "f" * 64,
]
BAD_IDS = [
    ".",
    "..",
    "../x",
    "a/b",
    "/abs",
    ".hidden",
    "-dash",
    "_under",
    "a b",
    "a\n",
    "abc\n",
    "a\x00b",
    "a:b",
    "é",
    "a*",
    " a",
    "a\\b",
]


@pytest.mark.parametrize("cid", GOOD_IDS, ids=repr)
def test_good_container_ids(cid: str) -> None:
    validate_container_id(cid)
    assert CONTAINER_ID_RE.match(cid)


@pytest.mark.parametrize("cid", BAD_IDS, ids=repr)
def test_bad_container_ids(cid: str) -> None:
    with pytest.raises(InvalidEnv) as ei:
        validate_container_id(cid)
    assert ei.value.code == 4
    assert ei.value.msg == "invalid characters in containerID"
    assert ei.value.details == cid
    assert not CONTAINER_ID_RE.match(cid)


def test_container_id_length_limit_is_checked_for_every_command() -> None:
    from kanal.spec.args import MAX_CONTAINER_ID_LEN
    from kanal.spec.env import parse_env

    validate_container_id("a" * MAX_CONTAINER_ID_LEN)
    # tuning's backup "<id>_<ifname>.json" is the longest name made from an ID
    assert len(f"{'a' * MAX_CONTAINER_ID_LEN}_{'i' * MAX_IFNAME_LEN}.json") == 255
    long_id = "a" * (MAX_CONTAINER_ID_LEN + 1)
    for command in ("ADD", "CHECK", "DEL"):
        env = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": long_id,
            "CNI_NETNS": "/run/netns/x",
            "CNI_IFNAME": "eth0",
            "CNI_PATH": "/opt/cni/bin",
        }
        with pytest.raises(InvalidEnv) as ei:
            parse_env(env)
        assert (ei.value.code, ei.value.msg) == (4, "containerID is too long")


def test_empty_container_id_is_code_3_as_go() -> None:
    with pytest.raises(InvalidEnv) as ei:
        validate_container_id("")
    assert (ei.value.code, ei.value.msg) == (3, "missing containerID")


GOOD_IFNAMES = ["eth0", "a", "x" * MAX_IFNAME_LEN, "net1.100", "veth-ab_c", "é" * 7, "..."]


@pytest.mark.parametrize("name", GOOD_IFNAMES, ids=repr)
def test_good_ifnames(name: str) -> None:
    validate_ifname(name)


@pytest.mark.parametrize(
    ("name", "msg"),
    [
        ("", "interface name is empty"),
        ("x" * 16, "interface name is too long"),
        ("é" * 8, "interface name is too long"),  # 16 bytes: Go counts bytes
        (".", "interface name is . or .."),
        ("..", "interface name is . or .."),
        ("a/b", "interface name contains / or : or whitespace characters"),
        ("/", "interface name contains / or : or whitespace characters"),
        ("eth0:1", "interface name contains / or : or whitespace characters"),
        ("eth 0", "interface name contains / or : or whitespace characters"),
        ("eth0\n", "interface name contains / or : or whitespace characters"),
        ("\teth0", "interface name contains / or : or whitespace characters"),
        ("a\x0bb", "interface name contains / or : or whitespace characters"),
        ("a\u00a0b", "interface name contains / or : or whitespace characters"),
        ("a\u2003b", "interface name contains / or : or whitespace characters"),
        ("a\u0085", "interface name contains / or : or whitespace characters"),
    ],
    ids=repr,
)
def test_bad_ifnames(name: str, msg: str) -> None:
    with pytest.raises(InvalidEnv) as ei:
        validate_ifname(name)
    assert ei.value.code == 4
    assert ei.value.msg == msg


def test_too_long_ifname_details_are_gos() -> None:
    with pytest.raises(InvalidEnv) as ei:
        validate_ifname("x" * 16)
    assert ei.value.details == "interface name should be less than 16 characters"


# --- CNI_ARGS -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "pairs"),
    [
        ("", []),
        ("A=1", [("A", "1")]),
        ("A=1;B=2", [("A", "1"), ("B", "2")]),
        ("A=;=B", [("A", ""), ("", "B")]),
        ("A=1;A=2", [("A", "1"), ("A", "2")]),
        ("K8S_POD_NAME=x;IgnoreUnknown=1", [("K8S_POD_NAME", "x"), ("IgnoreUnknown", "1")]),
        ("A= spaced value ", [("A", " spaced value ")]),
    ],
    ids=repr,
)
def test_parse_cni_args(text: str, pairs: list[tuple[str, str]]) -> None:
    assert parse_cni_args(text) == pairs


@pytest.mark.parametrize("text", ["A", "A=1=2", "A=1;", ";", "A=1;;B=2", "A=1;B"], ids=repr)
def test_parse_cni_args_invalid_pair(text: str) -> None:
    with pytest.raises(InvalidEnv, match=r'^ARGS: invalid pair "') as ei:
        parse_cni_args(text)
    assert ei.value.code == 4


@pytest.mark.parametrize("text", ["A=", "=B", "A", "A=1=2", "A=1;", "A=1;=", ";"], ids=repr)
def test_parse_cni_args_strict_rejects(text: str) -> None:
    with pytest.raises(InvalidEnv, match=r'^invalid CNI_ARGS pair "'):
        parse_cni_args(text, strict=True)


def test_parse_cni_args_strict_accepts_well_formed() -> None:
    assert parse_cni_args("A=1;B=x y", strict=True) == [("A", "1"), ("B", "x y")]
    assert parse_cni_args("", strict=True) == []


def test_invalid_pair_message_quotes_like_go() -> None:
    with pytest.raises(InvalidEnv) as ei:
        parse_cni_args('a"b\n')
    assert ei.value.msg == 'ARGS: invalid pair "a\\"b\\n"'


KUBELET = "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=pod;K8S_POD_INFRA_CONTAINER_ID=c"


@pytest.mark.parametrize(
    ("text", "known", "expected"),
    [
        ("", ["IP"], {}),
        ("IP=10.0.0.5", ["IP"], {"IP": "10.0.0.5"}),
        ("IP=1;IP=2", ["IP"], {"IP": "2"}),
        (KUBELET, ["IP"], {}),
        (KUBELET + ";IP=10.0.0.5", ["IP"], {"IP": "10.0.0.5"}),
        ("K8S_POD_NAME=pod;IgnoreUnknown=true", [], {}),
        ("K8S_POD_NAME=pod;IgnoreUnknown=TRUE", [], {}),
        ("K8S_POD_NAME=pod", ["K8S_POD_NAME"], {"K8S_POD_NAME": "pod"}),
        ("IgnoreUnknown=0", [], {}),
        ("IgnoreUnknown=1", ["IgnoreUnknown"], {"IgnoreUnknown": "1"}),
        ("MAC=aa:bb:cc:dd:ee:ff;IgnoreUnknown=1;FOO=bar", ["MAC"], {"MAC": "aa:bb:cc:dd:ee:ff"}),
    ],
    ids=repr,
)
def test_load_args(text: str, known: list[str], expected: dict[str, str]) -> None:
    assert load_args(text, known) == expected


@pytest.mark.parametrize(
    ("text", "known", "msg"),
    [
        ("FOO=bar", ["IP"], 'ARGS: unknown args ["FOO=bar"]'),
        (
            "K8S_POD_NAME=pod;K8S_POD_UID=u",
            ["IP"],
            'ARGS: unknown args ["K8S_POD_NAME=pod" "K8S_POD_UID=u"]',
        ),
        ("IgnoreUnknown=0;FOO=bar", [], 'ARGS: unknown args ["FOO=bar"]'),
        ("IgnoreUnknown=false;FOO=bar", [], 'ARGS: unknown args ["FOO=bar"]'),
        ("IgnoreUnknown=1;FOO=bar;IgnoreUnknown=0", [], 'ARGS: unknown args ["FOO=bar"]'),
        ("ip=1", ["IP"], 'ARGS: unknown args ["ip=1"]'),
        (
            "IgnoreUnknown=yes",
            [],
            'ARGS: error parsing value of pair "IgnoreUnknown=yes": '
            "boolean unmarshal error: invalid input yes",
        ),
        ("IP", ["IP"], 'ARGS: invalid pair "IP"'),
        ("IP=1;", ["IP"], 'ARGS: invalid pair ""'),
    ],
    ids=repr,
)
def test_load_args_errors(text: str, known: list[str], msg: str) -> None:
    with pytest.raises(InvalidEnv) as ei:
        load_args(text, known)
    assert ei.value.msg == msg
    assert ei.value.code == 4
