"""A private kanald for adversarial tests: its own host namespace, state, sockets and
netns directory (so a snapshot sees only what this daemon made), and raw HTTP to it."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests import snapshot
from tests.e2e.test_cli_network import VENV, Daemon
from tests.helpers import netns, nsexec

__all__ = ["Kanald", "kanald", "populate"]


class Kanald(Daemon):
    """kanald with a private ``--netns-dir`` and, optionally, the Docker plugin socket."""

    def __init__(
        self, host: str, tmp: Path, *, plugin: bool = False, idle_timeout: float = 60.0
    ) -> None:
        super().__init__(host, tmp)
        self.idle_timeout = idle_timeout
        self.netns_dir = tmp / "netns"
        self.plugin_sock = tmp / "plugin.sock" if plugin else None
        self.extra = ("--api-idle-timeout", str(idle_timeout))

    def start(self) -> None:
        super().start()
        if self.plugin_sock is not None:
            import time

            for _ in range(500):
                if self.plugin_sock.exists():
                    break
                time.sleep(0.02)

    # --- talking to it -------------------------------------------------------------

    def call(
        self, method: str, path: str, body: Any = None, *, sock: Path | None = None
    ) -> tuple[int, Any]:
        """One request (body JSON-encoded unless bytes); (status, decoded JSON or None)."""
        conn = _Unix(str(sock or self.api))
        try:
            data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
            headers = {"Content-Type": "application/json"} if data is not None else {}
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        return resp.status, json.loads(raw) if raw.strip() else None

    def raw(self, data: bytes, *, sock: Path | None = None, shut: bool = True) -> bytes:
        """Send bytes as they are; everything the daemon answers until it closes."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(30)
        s.connect(str(sock or self.api))
        try:
            s.sendall(data)
            if shut:
                s.shutdown(socket.SHUT_WR)
            out = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return out
                out += chunk
        finally:
            s.close()

    def snap(self) -> snapshot.Snapshot:
        return snapshot.take([self.host], self.state, netns_dir=Path(self.netns_dir))

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``kanal ARGS`` against this daemon (``-H`` after the command group)."""
        argv = [str(VENV / "kanal"), *args]
        if args and args[0] in ("network", "run", "ps", "exec", "stop", "rm"):
            argv[2:2] = ["-H", str(self.api)]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


class _Unix(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=60)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


def parse_response(raw: bytes) -> tuple[int, dict[str, str], Any]:
    """(status, headers, JSON body) of the first HTTP response in ``raw``."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    n = int(headers.get("content-length", len(body)))
    return status, headers, json.loads(body[:n]) if body[:n].strip() else None


@contextmanager
def kanald(tmp: Path, *, plugin: bool = False, idle_timeout: float = 60.0) -> Iterator[Kanald]:
    """A started Kanald in a fresh host namespace; everything it made is removed after."""
    with netns("kbi") as host:
        # No IPv6 duplicate address detection in this test host: an address does not
        # change on its own a second after its link came up, between two snapshots.
        for conf in ("all", "default"):
            nsexec(host, "sysctl", "-qw", f"net.ipv6.conf.{conf}.accept_dad=0")
        d = Kanald(host, tmp, plugin=plugin, idle_timeout=idle_timeout)
        d.start()
        try:
            yield d
        finally:
            try:
                status, sbs = d.call("GET", "/sandboxes")
                for sb in sbs if status == 200 else []:
                    d.call("DELETE", f"/sandboxes/{sb['Id']}?force=1")
            except OSError:
                pass
            d.stop(kill=True)
            netns_dir = Path(d.netns_dir)
            for p in netns_dir.glob("*") if netns_dir.exists() else []:
                subprocess.run(["umount", str(p)], capture_output=True)
                p.unlink(missing_ok=True)


def populate(k: Kanald) -> None:
    """The fixture state the bad-input suites run against: networks net1 (10.90.1.0/24)
    and net2 (10.90.2.0/24), and sandbox sb1 running on net1 at 10.90.1.10 with
    127.0.0.1:18555 published; then waits until the kernel is still."""
    for name, subnet in (("net1", "10.90.1.0/24"), ("net2", "10.90.2.0/24")):
        st, out = k.call(
            "POST", "/networks/create", {"Name": name, "IPAM": {"Config": [{"Subnet": subnet}]}}
        )
        assert st == 201, out
    st, out = k.call(
        "POST",
        "/sandboxes/create",
        {
            "Name": "sb1",
            "Cmd": ["sleep", "3000"],
            "Networks": [{"Name": "net1", "IPv4Address": "10.90.1.10"}],
            "Publish": ["127.0.0.1:18555:80"],
            "Start": True,
        },
    )
    assert st == 201 and out["State"] == "running", out
    snapshot.settle(k.snap)
