"""CNI_* environment parsing per command (Go skel rules)."""

from __future__ import annotations

import pytest

from kanal.errors import InvalidEnv
from kanal.spec.env import COMMANDS, CmdEnv, parse_env, required_vars

FULL = {
    "CNI_CONTAINERID": "ctr1",
    "CNI_NETNS": "/run/netns/x",
    "CNI_IFNAME": "eth0",
    "CNI_ARGS": "IgnoreUnknown=1",
    "CNI_PATH": "/opt/cni/bin:/usr/lib/cni",
}

REQUIRED = {
    "ADD": ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"],
    "CHECK": ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"],
    "DEL": ["CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"],
    "GC": ["CNI_PATH"],
    "STATUS": ["CNI_PATH"],
    "VERSION": [],
}


def test_commands() -> None:
    assert set(COMMANDS) == set(REQUIRED)


@pytest.mark.parametrize("command", COMMANDS, ids=COMMANDS)
def test_full_env_parses(command: str) -> None:
    env = parse_env({"CNI_COMMAND": command, **FULL})
    assert env == CmdEnv(
        command=command,
        container_id="ctr1",
        netns="/run/netns/x",
        ifname="eth0",
        args="IgnoreUnknown=1",
        path=("/opt/cni/bin", "/usr/lib/cni"),
        netns_override=False,
    )


@pytest.mark.parametrize("command", COMMANDS, ids=COMMANDS)
def test_required_vars(command: str) -> None:
    assert required_vars(command) == ("CNI_COMMAND", *REQUIRED[command])


@pytest.mark.parametrize("command", COMMANDS, ids=COMMANDS)
def test_all_missing_are_named_in_go_order(command: str) -> None:
    if not REQUIRED[command]:
        assert parse_env({"CNI_COMMAND": command}).command == command
        return
    with pytest.raises(InvalidEnv) as ei:
        parse_env({"CNI_COMMAND": command})
    assert ei.value.code == 4
    assert ei.value.msg == f"required env variables [{','.join(REQUIRED[command])}] missing"


@pytest.mark.parametrize("command", COMMANDS, ids=COMMANDS)
@pytest.mark.parametrize("var", sorted(FULL), ids=sorted(FULL))
def test_each_var_alone_missing(command: str, var: str) -> None:
    env = {"CNI_COMMAND": command, **FULL}
    env[var] = ""  # empty counts as missing
    if var in REQUIRED[command]:
        with pytest.raises(InvalidEnv, match=rf"^required env variables \[{var}\] missing$"):
            parse_env(env)
    else:
        parsed = parse_env(env)
        assert parsed.command == command


def test_netns_is_optional_on_del() -> None:
    env = parse_env(
        {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c", "CNI_IFNAME": "eth0", "CNI_PATH": "/x"}
    )
    assert env.netns == ""


def test_missing_command() -> None:
    with pytest.raises(InvalidEnv, match=r"^required env variables \[CNI_COMMAND\] missing$"):
        parse_env(FULL)


@pytest.mark.parametrize("command", ["FOO", "add", "Add", "VERSIONS"], ids=str)
def test_unknown_command(command: str) -> None:
    with pytest.raises(InvalidEnv) as ei:
        parse_env({"CNI_COMMAND": command, **FULL})
    assert (ei.value.code, ei.value.msg) == (4, f"unknown CNI_COMMAND: {command}")


@pytest.mark.parametrize("command", ["ADD", "CHECK", "DEL"], ids=str)
@pytest.mark.parametrize(
    ("var", "value", "code", "msg"),
    [
        ("CNI_CONTAINERID", "../etc", 4, "invalid characters in containerID"),
        ("CNI_CONTAINERID", "a/b", 4, "invalid characters in containerID"),
        ("CNI_CONTAINERID", "..", 4, "invalid characters in containerID"),
        ("CNI_IFNAME", "x" * 16, 4, "interface name is too long"),
        ("CNI_IFNAME", "..", 4, "interface name is . or .."),
        ("CNI_IFNAME", "a/b", 4, "interface name contains / or : or whitespace characters"),
        ("CNI_IFNAME", "eth 0", 4, "interface name contains / or : or whitespace characters"),
    ],
    ids=repr,
)
def test_validation_of_required_vars(
    command: str, var: str, value: str, code: int, msg: str
) -> None:
    with pytest.raises(InvalidEnv) as ei:
        parse_env({"CNI_COMMAND": command, **FULL, var: value})
    assert (ei.value.code, ei.value.msg) == (code, msg)


@pytest.mark.parametrize("command", ["GC", "STATUS", "VERSION"], ids=str)
def test_vars_not_required_are_not_validated(command: str) -> None:
    env = parse_env(
        {"CNI_COMMAND": command, **FULL, "CNI_CONTAINERID": "a/b", "CNI_IFNAME": "x" * 20}
    )
    assert env.container_id == "a/b"


def test_invalid_var_fails_before_missing_ones_are_reported() -> None:
    """Go HEAD validates inside the loop: a bad container ID wins over a missing CNI_PATH."""
    with pytest.raises(InvalidEnv, match="invalid characters in containerID"):
        parse_env({"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "a/b"})


def test_missing_before_invalid_later_var_are_reported_by_the_invalid_one() -> None:
    with pytest.raises(InvalidEnv, match="interface name is too long"):
        parse_env({"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c", "CNI_IFNAME": "x" * 16})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", True),
        ("true", True),
        ("TRUE", True),
        ("True", True),
        ("", False),
        ("0", False),
        ("yes", False),
        ("false", False),
    ],
    ids=repr,
)
def test_netns_override(value: str, expected: bool) -> None:
    env = parse_env({"CNI_COMMAND": "ADD", **FULL, "CNI_NETNS_OVERRIDE": value})
    assert env.netns_override is expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/a", ("/a",)), ("/a:/b", ("/a", "/b")), ("/a::/b:", ("/a", "/b"))],
    ids=repr,
)
def test_path_split(path: str, expected: tuple[str, ...]) -> None:
    assert parse_env({"CNI_COMMAND": "GC", "CNI_PATH": path}).path == expected


def test_version_needs_nothing_and_path_is_empty() -> None:
    env = parse_env({"CNI_COMMAND": "VERSION"})
    assert env == CmdEnv("VERSION", "", "", "", "", (), False)
