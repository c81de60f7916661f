"""Installed plugin shims, with and without kanald, as a runtime executes them."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kanal.fastpath.install import install_plugins
from tests.helpers import nsexec

VENV = Path(__file__).resolve().parents[2] / ".venv" / "bin"


def run_plugin(
    host: str,
    bindir: Path,
    name: str,
    env: dict[str, str],
    conf: dict[str, Any],
) -> subprocess.CompletedProcess[bytes]:
    full = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **env}
    return nsexec(host, str(bindir / name), input=json.dumps(conf).encode(), env=full, check=False)


@pytest.fixture
def kanald(tmp_path: Path, host_ns: str) -> Iterator[tuple[str, Path, Path]]:
    sock = tmp_path / "kanald.sock"
    log = tmp_path / "kanald.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                host_ns,
                str(VENV / "kanald"),
                "--no-engine",
                "--socket",
                str(sock),
                "--log-level",
                "info",
            ],
            stderr=f,
        )
    try:
        for _ in range(500):
            if sock.exists():
                break
            time.sleep(0.02)
        assert sock.exists(), log.read_text()
        yield host_ns, sock, log
    finally:
        proc.terminate()
        proc.wait(10)


def test_shim_uses_daemon_and_falls_back(tmp_path: Path, kanald, make_netns) -> None:
    host, sock, log = kanald
    ct = make_netns("ktc")
    bindir = tmp_path / "bin"
    install_plugins(str(bindir), socket_path=str(sock))
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    env = {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "fp1",
        "CNI_NETNS": f"/run/netns/{ct}",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": str(bindir),
    }
    conf = {"cniVersion": "1.0.0", "name": "lo", "type": "loopback"}
    via_daemon = run_plugin(host, bindir, "loopback", env, conf)
    assert via_daemon.returncode == 0, via_daemon
    assert "served loopback ADD" in log.read_text()
    # Another namespace than the daemon's: the daemon declines, the shim runs it itself.
    other = make_netns("kto")
    served_before = log.read_text().count("served")
    fallback = run_plugin(other, bindir, "loopback", env, conf)
    assert fallback.returncode == 0, fallback
    assert json.loads(fallback.stdout) == json.loads(via_daemon.stdout)
    assert log.read_text().count("served") == served_before
    # Errors come back the same way: JSON on stdout, exit 1.
    bad = run_plugin(host, bindir, "loopback", {**env, "CNI_NETNS": "/run/netns/nope-x"}, conf)
    assert bad.returncode == 1 and "failed to open netns" in json.loads(bad.stdout)["msg"]
    version = run_plugin(host, bindir, "loopback", {"CNI_COMMAND": "VERSION"}, {})
    assert "1.1.0" in json.loads(version.stdout)["supportedVersions"]


def test_no_daemon_runs_standalone(tmp_path: Path, host_ns: str, make_netns) -> None:
    ct = make_netns("ktc")
    bindir = tmp_path / "bin"
    install_plugins(str(bindir), socket_path=str(tmp_path / "absent.sock"))
    env = {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "fp2",
        "CNI_NETNS": f"/run/netns/{ct}",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": str(bindir),
    }
    res = run_plugin(
        host_ns, bindir, "loopback", env, {"cniVersion": "0.4.0", "name": "lo", "type": "loopback"}
    )
    assert res.returncode == 0, res
    assert json.loads(res.stdout)["cniVersion"] == "0.4.0"


def test_daemon_survives_garbage(kanald) -> None:
    host, sock, log = kanald
    for payload in (b"", b"KNL2" + b"\xff" * 60):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(sock))
        try:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            assert s.recv(10) == b""  # closed without an answer
        except ConnectionResetError:
            pass  # closed before reading all of it: also no answer
        s.close()
    # Another version's request (or garbage) is told to fall back, not left hanging.
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(sock))
    s.sendall(b"KNL1" + b"\0" * 60)
    assert s.recv(10) == b"F"
    s.close()
    # Still serving.
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(sock))
    s.close()
