"""kanald's API under load and under clients that misbehave, against a real daemon.

- the listen queue holds 1024 connections, and 300 clients at once all get answers;
- the CLI waits for a daemon that is busy (its queue full) instead of calling it
  stopped, and tells a missing socket and a refused permission apart;
- a request whose body arrived runs to its end even if the client leaves; one
  whose body did not arrive whole is never run;
- an idle connection is closed; a stale one does not hold the daemon;
- a state directory left with loose permissions is tightened at start.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kanal.daemon.client import ApiClient
from tests.e2e.kanald import Kanald, kanald, parse_response
from tests.e2e.test_cli_network import VENV
from tests.snapshot import assert_unchanged, settle

pytestmark = pytest.mark.xdist_group("api-robustness")
IDLE = 3.0  # kanald --api-idle-timeout here


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kanald]:
    with kanald(tmp_path_factory.mktemp("robust"), idle_timeout=IDLE) as k:
        yield k


def _wait(cond: object, what: str, tries: int = 600) -> None:
    for _ in range(tries):
        if cond():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"never: {what}")


def test_listen_queue_is_1024(d: Kanald) -> None:
    out = subprocess.run(
        ["nsenter", f"--net=/run/netns/{d.host}", "ss", "-xlnH"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    (line,) = [x for x in out.splitlines() if str(d.api) in x]
    # ss shows a listening socket's backlog as its Send-Q
    assert int(line.split()[3]) >= 1024, line


def test_300_clients_at_once(d: Kanald) -> None:
    results: list[Any] = []
    lock = threading.Lock()
    start = threading.Barrier(300)

    def one() -> None:
        start.wait()
        try:
            r: Any = ApiClient(str(d.api)).request("GET", "/networks")
        except Exception as e:
            r = e
        with lock:
            results.append(r)

    threads = [threading.Thread(target=one) for _ in range(300)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    errors = [r for r in results if not isinstance(r, list)]
    assert len(results) == 300 and not errors, errors[:3]
    assert all({n["Name"] for n in r} >= {"bridge", "host", "none"} for r in results)


def test_cli_waits_for_a_busy_daemon(d: Kanald) -> None:
    """A stopped (SIGSTOP) daemon accepts nothing: once its queue is full, connects fail
    with EAGAIN. The CLI keeps trying, and succeeds when the daemon goes on."""
    assert d.proc is not None
    pid = int(
        subprocess.run(["pgrep", "-P", str(d.proc.pid)], capture_output=True, text=True).stdout
        or d.proc.pid
    )  # nsenter execs kanald: the same pid unless it forked
    held: list[socket.socket] = []
    os.kill(pid, signal.SIGSTOP)
    try:
        while True:  # fill the queue
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(str(d.api))
            except BlockingIOError:
                s.close()
                break
            held.append(s)
            assert len(held) <= 5000
        assert len(held) >= 1024
        cli = subprocess.Popen(
            [str(VENV / "kanal"), "network", "-H", str(d.api), "ls", "-q"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(1.0)
        assert cli.poll() is None  # still waiting: not "is kanald running?"
    finally:
        for s in held:
            s.close()
        os.kill(pid, signal.SIGCONT)
    out, err = cli.communicate(timeout=60)
    assert cli.returncode == 0, err
    assert len(out.split()) == 3  # bridge, host, none


def test_busy_until_the_end_is_said_so(d: Kanald) -> None:
    assert d.proc is not None
    held: list[socket.socket] = []
    os.kill(d.proc.pid, signal.SIGSTOP)
    try:
        # Stopped for sure before the queue is filled: a daemon still running for a
        # moment after kill() (a loaded machine) accepts one more and frees a slot,
        # and the CLI's connect then waits for an answer that never comes.
        deadline = time.monotonic() + 30
        while not _stopped(d.proc.pid):
            assert time.monotonic() < deadline, "kanald did not stop"
            time.sleep(0.01)
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(str(d.api))
            except BlockingIOError:
                s.close()
                break
            held.append(s)
        p = subprocess.run(
            [str(VENV / "kanal"), "network", "-H", str(d.api), "ls"],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "KANAL_CONNECT_TIMEOUT": "0.5"},
        )  # fmt: skip
    finally:
        for s in held:
            s.close()
        os.kill(d.proc.pid, signal.SIGCONT)
    assert p.returncode == 1
    assert p.stderr.startswith("kanal: kanald at unix://") and "is busy" in p.stderr, p.stderr
    assert "running?" not in p.stderr


def test_no_socket_and_no_permission(d: Kanald, tmp_path: Path) -> None:
    p = subprocess.run(
        [str(VENV / "kanal"), "network", "-H", str(tmp_path / "nosuch.sock"), "ls"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert p.returncode == 1 and "no such socket (is kanald running?)" in p.stderr
    # a socket file nobody listens on (a killed daemon): refused, retried, then told
    stale = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(stale))
    s.close()
    p = subprocess.run(
        [str(VENV / "kanal"), "network", "-H", str(stale), "ls"],
        capture_output=True, text=True, env={**os.environ, "KANAL_CONNECT_TIMEOUT": "0.3"},
    )  # fmt: skip
    assert p.returncode == 1 and "is kanald running?" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    # not root: the socket is 0600
    code = (
        "import sys\n"
        "from kanal.cli.main import main\n"
        f"sys.exit(main(['network', '-H', {str(d.api)!r}, 'ls']))\n"
    )
    p = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(VENV / "python"),
         "-c", code],
        capture_output=True, text=True, cwd="/",
    )  # fmt: skip
    if "Permission denied" in p.stderr and "kanal:" not in p.stderr:
        pytest.skip("the test's venv is not readable by nobody")
    assert p.returncode == 1 and "permission denied" in p.stderr, p.stderr


def test_incomplete_body_is_never_run(d: Kanald) -> None:
    before = d.snap()
    body = json.dumps({"Name": "half"}).encode()
    # Content-Length promises more than is sent, and the client leaves
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(d.api))
    s.sendall(
        b"POST /networks/create HTTP/1.1\r\nHost: k\r\nContent-Length: %d\r\n\r\n%s"
        % (len(body) + 10, body)
    )
    s.close()
    # a later request on a fresh connection is served (the daemon is fine) ...
    assert d.raw(b"GET /_ping HTTP/1.1\r\nHost: k\r\n\r\n").startswith(b"HTTP/1.1 200")
    time.sleep(0.5)
    # ... and the half-sent one did nothing
    assert d.call("GET", "/networks/half")[0] == 404
    assert_unchanged(before, d.snap(), "incomplete body")


def test_received_body_runs_to_its_end(d: Kanald) -> None:
    body = json.dumps({"Name": "whole", "IPAM": {"Config": [{"Subnet": "10.93.0.0/24"}]}}).encode()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(d.api))
    s.sendall(
        b"POST /networks/create HTTP/1.1\r\nHost: k\r\nContent-Length: %d\r\n\r\n%s"
        % (len(body), body)
    )
    s.close()  # gone before the answer
    _wait(lambda: d.call("GET", "/networks/whole")[0] == 200, "the network made")
    st, net = d.call("GET", "/networks/whole")
    br = f"br-{net['Id'][:12]}"
    links = subprocess.run(
        ["ip", "-n", d.host, "-j", "addr", "show", "dev", br], capture_output=True, text=True
    )
    assert links.returncode == 0 and "10.93.0.1" in links.stdout  # its bridge, whole
    assert d.call("DELETE", "/networks/whole")[0] == 204


def test_negative_length_never_runs(d: Kanald) -> None:
    before = d.snap()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(d.api))
    s.sendall(
        b'POST /networks/create HTTP/1.1\r\nHost: k\r\nContent-Length: -1\r\n\r\n{"Name":"neg"}'
    )
    s.shutdown(socket.SHUT_WR)
    raw = b""
    while chunk := s.recv(65536):
        raw += chunk
    s.close()
    status, _, body = parse_response(raw)
    assert status == 400 and "Content-Length" in body["message"]
    assert d.call("GET", "/networks/neg")[0] == 404
    assert_unchanged(before, d.snap(), "negative length")


def test_keep_alive_then_idle_close(d: Kanald) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(IDLE * 10)
    s.connect(str(d.api))
    for _ in range(3):  # keep-alive: several requests on one connection
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: k\r\n\r\n")
        got = b""
        while not got.endswith(b"\r\n\r\nOK"):  # docker's body: OK, plain text
            got += s.recv(4096)
        assert got.startswith(b"HTTP/1.1 200")
    # then silence: the daemon closes the connection (recv sees EOF, not our timeout)
    assert s.recv(4096) == b""
    s.close()
    # a client that sends half a request line and stops is dropped too
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(IDLE * 10)
    s.connect(str(d.api))
    s.sendall(b"GET /_pi")
    assert s.recv(4096) == b""
    s.close()


def test_loose_state_is_tightened_at_start(d: Kanald) -> None:
    st, out = d.call(
        "POST", "/sandboxes/create",
        {"Name": "sec", "Cmd": ["sleep", "300"], "Networks": [], "NetworkMode": "none",
         "Env": {"TOKEN": "s3cret"}, "Start": True},
    )  # fmt: skip
    assert st == 201, out
    sdir = d.state / "sandboxes" / out["Id"]
    assert (sdir / "launch.json").stat().st_mode & 0o777 == 0o600
    assert (sdir / "log").stat().st_mode & 0o777 == 0o600
    # someone loosened it all while kanald was down
    d.stop(kill=True)
    for p in [d.state, *d.state.rglob("*")]:
        if p.is_dir():
            p.chmod(0o755)
        elif p.is_file():
            p.chmod(0o644)
    d.start()
    assert d.state.stat().st_mode & 0o777 == 0o700
    assert sdir.stat().st_mode & 0o777 == 0o700
    assert (sdir / "launch.json").stat().st_mode & 0o777 == 0o600
    assert (sdir / "log").stat().st_mode & 0o777 == 0o600
    assert (d.state / "state.db").stat().st_mode & 0o777 == 0o600
    assert (sdir / "resolv.conf").stat().st_mode & 0o777 == 0o644  # read inside the sandbox
    assert d.call("DELETE", "/sandboxes/sec?force=1")[0] == 204
    settle(d.snap)


def _stopped(pid: int) -> bool:
    """Whether every thread of the process is stopped (state T in /proc)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "T":
                    return False
        except OSError:
            continue  # a thread that just ended
    return True
