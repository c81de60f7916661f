"""docker's flag syntax in the ``kanal`` parsers (kanal.cli.flags) and the run flags
that become request fields (-P, --expose, --mac-address, --link)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest

from kanal.cli.flags import parse_go_bool
from kanal.cli.main import build_parser
from kanal.cli.run import _docker_run_flags, _expose, _ps_ports
from kanal.errors import InvalidConfig


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as e:
        parse(*argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("kanal: ")
    return err.strip()


def test_a_boolean_flag_never_takes_the_next_word() -> None:
    a = parse("network", "create", "--ipv6", "v6net")
    assert a.ipv6 is True and a.name == "v6net" and a.ipv4 is True
    a = parse("network", "create", "--ipv4=false", "--ipv6", "--internal", "six")
    assert (a.ipv4, a.ipv6, a.internal, a.name) == (False, True, True, "six")
    for text, want in (("true", True), ("1", True), ("T", True), ("False", False), ("0", False)):
        assert parse("network", "create", f"--ipv6={text}", "n").ipv6 is want


def test_flags_after_the_name() -> None:
    a = parse("network", "create", "v6net", "--ipv6", "--subnet", "fd00:5::/64", "-d", "bridge")
    assert (a.name, a.ipv6, a.subnet, a.driver) == ("v6net", True, ["fd00:5::/64"], "bridge")
    a = parse("network", "connect", "net", "box", "--alias", "w", "--link", "db:d")
    assert (a.network, a.container, a.alias, a.link) == ("net", "box", ["w"], ["db:d"])


def test_unknown_flags_are_reported_as_docker_does(capsys: pytest.CaptureFixture[str]) -> None:
    err = usage_error(capsys, "network", "create", "--foo", "x")
    assert err == "kanal: unknown flag: --foo (see 'kanal network create --help')"
    # the word after an unknown flag is not blamed with it
    err = usage_error(capsys, "network", "connect", "--nosuch", "u2", "net", "box")
    assert err.startswith("kanal: unknown flag: --nosuch ")
    assert usage_error(capsys, "run", "--foo=1", "--", "true").startswith(
        "kanal: unknown flag: --foo (see 'kanal run --help')"
    )
    assert "unknown shorthand flag: 'x' in -x" in usage_error(capsys, "run", "-x", "--", "true")
    # no abbreviations: --ipv is not --ipv6
    assert "unknown flag: --ipv " in usage_error(capsys, "network", "create", "--ipv", "n")
    assert "flag needs an argument: --name" in usage_error(capsys, "run", "--name")
    assert '"kanal network create" accepts no argument "b"' in usage_error(
        capsys, "network", "create", "a", "b"
    )
    err = usage_error(capsys, "network", "create", "--ipv6=maybe", "n")
    assert 'invalid argument "maybe" for "--ipv6" flag: strconv.ParseBool' in err


def test_the_command_of_run_keeps_its_own_flags() -> None:
    a = parse("run", "-d", "--link", "db:d", "echo", "--rm=false", "--foo", "-P")
    assert a.cmd == ["echo", "--rm=false", "--foo", "-P"]
    assert a.detach is True and a.link == ["db:d"] and a.publish_all is False and a.rm is False


def test_parse_go_bool() -> None:
    assert parse_go_bool("TRUE", "--x") is True and parse_go_bool("f", "--x") is False
    with pytest.raises(argparse.ArgumentTypeError, match='parsing "yes"'):
        parse_go_bool("yes", "--x")


def test_publish_all_publishes_the_exposed_ports_no_p_publishes() -> None:
    a = parse(
        "run", "-P", "--expose", "80", "--expose", "9000-9001/udp", "-p", "8080:80",
        "-p", "127.0.0.1::53/udp", "--mac-address", "02:42:ac:11:00:99", "--link", "db",
        "--", "true",
    )  # fmt: skip
    body = _docker_run_flags(a)
    assert body["Publish"] == ["8080:80", "127.0.0.1::53/udp", "9000/udp", "9001/udp"]
    assert body["ExposedPorts"] == ["80/tcp", "9000/udp", "9001/udp", "53/udp"]
    assert body["MacAddress"] == "02:42:ac:11:00:99" and body["Links"] == ["db"]
    # without -P an exposed port is only exposed
    b = _docker_run_flags(parse("run", "--expose", "80", "--", "true"))
    assert "Publish" not in b and b["ExposedPorts"] == ["80/tcp"]
    assert _docker_run_flags(parse("run", "--", "true")) == {}


@pytest.mark.parametrize("bad", ["", "x", "80/icmp", "0", "90-80", "70000", "80-x"])
def test_bad_expose_is_refused(bad: str) -> None:
    with pytest.raises(InvalidConfig, match="invalid range format for --expose"):
        _expose(bad)


def test_ps_shows_every_binding_of_a_port_and_exposed_ones() -> None:
    sb = {
        "Ports": {
            "80/tcp": [
                {"HostIp": "0.0.0.0", "HostPort": "8080"},
                {"HostIp": "127.0.0.1", "HostPort": "8081"},
            ],
            "443/tcp": None,
        }
    }
    assert _ps_ports(sb) == "0.0.0.0:8080->80/tcp, 127.0.0.1:8081->80/tcp, 443/tcp"


def test_output_into_a_closed_pipe_ends_quietly() -> None:
    # The reader is gone before anything is written: every write is EPIPE.
    r, w = os.pipe()
    os.close(r)
    code = (
        "import sys\n"
        "from kanal.cli import main as m\n"
        "import kanal.cli.network as n\n"
        "n.cmd_ls = lambda args: print('x' * 100000)\n"
        "sys.exit(m.main(['network', 'ls']))\n"
    )
    try:
        p = subprocess.run(
            [sys.executable, "-c", code], stdout=w, stderr=subprocess.PIPE, timeout=60
        )
    finally:
        os.close(w)
    assert p.stderr == b"" and p.returncode == 141
