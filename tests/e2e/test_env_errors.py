"""Environment errors say what to do, in one line: kanald as a user, a second
kanald, the CLI without permission on the socket, a namespace another mount
namespace made, a sandbox namespace the CLI cannot see; kanald's logs (timestamps,
--log-file, --log-format json, no traceback for a client that went away)."""

from __future__ import annotations

import json
import os
import re
import select
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.kanald import Kanald
from tests.e2e.test_cli_network import VENV, Daemon
from tests.helpers import ip_json

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.fixture
def daemon(host_ns: str, tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon(host_ns, tmp_path)
    d.extra = ("--log-level", "debug")
    d.start()
    try:
        yield d
    finally:
        d.stop(kill=True)


def run(argv: list[str], host: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["nsenter", f"--net=/run/netns/{host}", *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_line(p: subprocess.CompletedProcess[str], prefix: str) -> str:
    assert p.returncode == 1, (p.returncode, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), p.stderr
    assert "Traceback" not in p.stderr
    return lines[0]


def kanald_argv(tmp: Path, name: str, **kw: str) -> list[str]:
    opts = {
        "socket": str(tmp / f"{name}-fp.sock"),
        "state-dir": str(tmp / f"{name}-state"),
        "api-socket": str(tmp / f"{name}-api.sock"),
        "docker-plugin-socket": "none",
        "cni-conf-dir": str(tmp / "net.d"),
        **kw,
    }
    return [str(VENV / "kanald"), *(x for k, v in opts.items() for x in (f"--{k}", v))]


def test_kanald_as_a_user_and_its_help(host_ns: str, tmp_path: Path) -> None:
    p = run([*NOBODY, *kanald_argv(tmp_path, "u")], host_ns)
    err = one_line(p, "kanald: must run as root")
    assert "sudo" in err
    assert not (tmp_path / "u-state").exists() and not (tmp_path / "u-fp.sock").exists()
    help_text = subprocess.run(
        [str(VENV / "kanald"), "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "debug, info, warning, error, critical" in " ".join(help_text.split())
    assert "--log-file" in help_text and "--log-format" in help_text


def test_a_second_kanald_names_the_running_one(daemon: Daemon) -> None:
    assert daemon.proc is not None
    pid = daemon.proc.pid  # nsenter execs kanald: the same process
    # the same state directory, other sockets
    argv = kanald_argv(daemon.tmp, "second", **{"state-dir": str(daemon.state)})
    err = one_line(run(argv, daemon.host), "kanald: another kanald")
    assert f"(pid {pid})" in err and f"kill {pid}" in err
    # its own state, but the first one's API socket
    argv = kanald_argv(daemon.tmp, "third", **{"api-socket": str(daemon.api)})
    err = one_line(run(argv, daemon.host), "kanald: another daemon is serving")
    assert str(daemon.api) in err
    # its own state, but the first one's fast-path socket
    argv = kanald_argv(daemon.tmp, "fourth", socket=str(daemon.tmp / "fp.sock"))
    one_line(run(argv, daemon.host), "kanald: another daemon is serving")
    # the first one is untouched: both sockets still there, still answering
    assert (daemon.tmp / "fp.sock").exists()
    assert daemon.kanal("ls", "-q").stdout.count("\n") == 3


def test_cli_without_permission_on_the_socket(daemon: Daemon) -> None:
    p = run([*NOBODY, str(VENV / "kanal"), "network", "-H", str(daemon.api), "ls"], daemon.host)
    err = one_line(p, "kanal: cannot connect to kanald")
    assert "permission denied" in err and "run kanal as root" in err
    assert "is kanald running" not in err


def test_kanald_logs_json_to_a_file_without_broken_pipe_tracebacks(
    host_ns: str, tmp_path: Path
) -> None:
    log = tmp_path / "k.log"
    d = Daemon(host_ns, tmp_path)
    d.extra = ("--log-file", str(log), "--log-format", "json", "--log-level", "debug")
    d.start()
    try:
        # clients that go away: with the answer unread (the daemon's next read on
        # the kept-alive connection fails with ECONNRESET), or before it comes (its
        # write fails with EPIPE)
        for unread in (True, False) * 10:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(str(d.api))
            s.sendall(b"GET /networks HTTP/1.1\r\nHost: x\r\n\r\n")
            if unread:
                assert select.select([s], [], [], 30)[0]  # the answer is there, unread
            s.close()
        assert d.kanal("ls", "-q").stdout.count("\n") == 3  # still serving
    finally:
        d.stop()
    assert log.stat().st_mode & 0o777 == 0o600
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert records and all(set(r) >= {"time", "level", "logger", "msg"} for r in records)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r["time"]) for r in records)
    assert {r["level"] for r in records} <= {"debug", "info", "warning"}
    assert "Traceback" not in log.read_text() and not any("exc" in r for r in records)
    # stderr has only what kanald prints itself, no traceback
    assert "Traceback" not in (tmp_path / "kanald.log").read_text()


def test_text_logs_have_timestamps(daemon: Daemon) -> None:
    daemon.kanal("create", "logged")
    daemon.stop()
    lines = [x for x in (daemon.tmp / "kanald.log").read_text().splitlines() if " kanald " in x]
    assert lines
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z kanald (DEBUG|INFO|WARNING) \S+: "
    assert all(re.match(stamp, x) for x in lines), lines[:3]
    assert any("created network logged" in x for x in lines)


@pytest.fixture
def kd(host_ns: str, tmp_path: Path) -> Iterator[Kanald]:
    d = Kanald(host_ns, tmp_path)
    Path(d.netns_dir).mkdir()
    d.start()
    try:
        yield d
    finally:
        d.stop(kill=True)


def test_a_namespace_not_visible_here_is_named_as_such(kd: Kanald) -> None:
    # what another mount namespace's `ip netns add` leaves in ours: the empty file
    (Path(kd.netns_dir) / "ghost").touch()
    kd.kanal("create", "--subnet", "10.84.0.0/24", "app")
    links = {x["ifname"] for x in ip_json(kd.host, "link")}
    p = kd.kanal("connect", "app", "ghost", check=False)
    err = one_line(p, "kanal: ")
    assert "is not a network namespace in this mount namespace" in err
    assert "nsenter --net" in err and "failed to create veth" not in err
    assert {x["ifname"] for x in ip_json(kd.host, "link")} == links
    status, eps = kd.call("GET", "/endpoints")
    assert status == 200 and eps == []


def test_run_from_another_mount_namespace_leaves_nothing(daemon: Daemon) -> None:
    # the CLI in a private mount namespace: kanald's new /run/netns mount is not seen
    argv = [
        "unshare", "--mount", "--propagation", "private",
        "nsenter", f"--net=/run/netns/{daemon.host}",
        str(VENV / "kanal"), "run", "-H", str(daemon.api), "--", "true",
    ]  # fmt: skip
    p = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    err = one_line(p, "kanal: the sandbox's network namespace ")
    ours = re.search(r"mount namespace (mnt:\[\d+\]), kanald in (mnt:\[\d+\])", err)
    assert ours is not None and ours.group(1) != ours.group(2), err
    assert os.readlink("/proc/self/ns/mnt") == ours.group(2)
    assert "nsenter --net" in err and "ip netns exec" in err
    ps = subprocess.run(
        [str(VENV / "kanal"), "ps", "-a", "-q", "-H", str(daemon.api)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert ps.stdout == ""  # the sandbox it made was removed again
