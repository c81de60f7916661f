"""Remote plugin discovery as dockerd does it, and the client's error handling (no root)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from socketserver import UnixStreamServer
from typing import Any

import pytest

from kanal.engine.remoteplugins import NotImplementedByPlugin, PluginRegistry
from kanal.errors import InvalidConfig, KanalError, NotFound, Unavailable


def test_discovery_order_and_formats(tmp_path: Path) -> None:
    run, etc = tmp_path / "run", tmp_path / "etc"
    run.mkdir()
    etc.mkdir()
    reg = PluginRegistry([str(run), str(etc)])
    with pytest.raises(NotFound):
        reg.find("p1")
    (etc / "p1.spec").write_text("unix:///some/where.sock\n")
    assert reg.find("p1").addr == "unix:///some/where.sock"
    (etc / "p2").mkdir()
    (etc / "p2" / "p2.json").write_text(json.dumps({"Name": "p2", "Addr": "tcp://127.0.0.1:1"}))
    assert reg.find("p2").addr == "tcp://127.0.0.1:1"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(run / "p1.sock"))  # a socket wins over a spec file
    try:
        assert reg.find("p1").addr == f"unix://{run}/p1.sock"
    finally:
        s.close()
    (etc / "p3.spec").write_text("/no/scheme.sock")
    with pytest.raises(InvalidConfig, match="bad address"):
        reg.find("p3")
    (etc / "p4.json").write_text("{")
    with pytest.raises(InvalidConfig, match="bad JSON"):
        reg.find("p4")
    with pytest.raises(InvalidConfig):
        reg.find("../etc/p1")  # names never become paths outside the directories


class _Plugin(BaseHTTPRequestHandler):
    replies: dict[str, tuple[int, Any]] = {}

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, body = self.replies.get(self.path, (404, {"Err": "nope"}))
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[PluginRegistry]:
    _Plugin.replies = {
        "/Plugin.Activate": (200, {"Implements": ["IpamDriver"]}),
        "/IpamDriver.RequestPool": (200, {"Error": "no pool for you"}),
        "/IpamDriver.ReleasePool": (500, {"Err": "broken"}),
        "/IpamDriver.RequestAddress": (200, b"not json"),
    }
    srv = UnixStreamServer(str(tmp_path / "fake.sock"), _Plugin)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield PluginRegistry([str(tmp_path)], retry_for=0.2)
    srv.shutdown()
    srv.server_close()


def test_client_errors(served: PluginRegistry) -> None:
    p = served.get("fake", "IpamDriver")
    with pytest.raises(NotFound, match="does not implement NetworkDriver"):
        served.get("fake", "NetworkDriver")
    with pytest.raises(KanalError, match="no pool for you"):
        p.call("IpamDriver.RequestPool", {})
    with pytest.raises(KanalError, match="IpamDriver.ReleasePool: broken"):
        p.call("IpamDriver.ReleasePool", {})
    with pytest.raises(KanalError, match="no JSON object"):
        p.call("IpamDriver.RequestAddress", {})
    with pytest.raises(NotImplementedByPlugin):
        p.call("IpamDriver.GetCapabilities")


def test_a_dead_plugin_is_unavailable(tmp_path: Path) -> None:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(tmp_path / "dead.sock"))
    s.close()
    with pytest.raises(Unavailable, match="does not answer"):
        PluginRegistry([str(tmp_path)], retry_for=0.1).get("dead", "NetworkDriver")


def test_the_daemon_s_own_socket_is_never_a_remote_plugin(tmp_path: Path) -> None:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(tmp_path / "self.sock"))
    try:
        (tmp_path / "viaspec.spec").write_text(f"unix://{tmp_path}/self.sock\n")
        reg = PluginRegistry([str(tmp_path)], exclude=str(tmp_path / "self.sock"))
        for name in ("self", "viaspec"):
            with pytest.raises(NotFound):
                reg.find(name)
        assert PluginRegistry([str(tmp_path)]).find("self").addr.endswith("self.sock")
    finally:
        s.close()
