"""A small Engine API over a unix socket that serves fixed docker objects.

No docker daemon runs on the test machines, but the real docker CLI is there. To
learn what docker itself prints for a ``--format`` template, the tests point the
CLI (``DOCKER_HOST=unix://...``) at this server, which answers the few reads
``docker network ls/inspect`` and ``docker container inspect`` make with the
objects of ``tests/fixtures/docker_objects.py``. kanal's CLI reads the same
server (its paths are the unversioned ones), so both CLIs render the same bytes.
"""

from __future__ import annotations

import calendar
import json
import re
import socketserver
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

API_VERSION = "1.50"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def address_string(self) -> str:
        return "unix"

    def _head(self, code: int, length: int, ctype: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Api-Version", API_VERSION)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def _json(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self._head(code, len(data))
        self.wfile.write(data)

    def do_HEAD(self) -> None:
        self._head(200, 0, "text/plain")

    def do_GET(self) -> None:
        path = re.sub(r"^/v[0-9.]+/", "/", self.path.split("?", 1)[0])
        nets, ctrs = self.server.networks, self.server.containers
        if path == "/_ping":
            self._head(200, 2, "text/plain")
            self.wfile.write(b"OK")
        elif path == "/version":
            self._json(200, {"Version": "28.2.2", "ApiVersion": API_VERSION, "Os": "linux"})
        elif path == "/networks":
            self._json(200, [nets[k] for k in sorted(nets)])
        elif (m := re.fullmatch(r"/networks/([^/]+)", path)) and m[1] in nets:
            self._json(200, nets[m[1]])
        elif path == "/sandboxes":
            self._json(200, list(self.server.sandboxes))
        elif path == "/containers/json":  # newest first, as dockerd lists them
            sbs = sorted(self.server.sandboxes, key=lambda s: s["Created"], reverse=True)
            self._json(200, [container_summary(s) for s in sbs])
        elif (m := re.fullmatch(r"/(?:containers|sandboxes)/([^/]+)/json", path)) and m[1] in ctrs:
            # (kanal inspect reads a sandbox's container object at /sandboxes/{id}/json)
            self._json(200, ctrs[m[1]])
        else:
            self._json(404, {"message": f"No such object: {path}"})


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    networks: Mapping[str, Any]
    containers: Mapping[str, Any]
    sandboxes: Sequence[Mapping[str, Any]]


def container_summary(sb: Mapping[str, Any]) -> dict[str, Any]:
    """docker's ``GET /containers/json`` entry for one of kanald's sandboxes."""
    created = calendar.timegm(time.strptime(sb["Created"][:19], "%Y-%m-%dT%H:%M:%S"))
    ports = [
        {"IP": b["HostIp"], "PrivatePort": int(cp.split("/")[0]),
         "PublicPort": int(b["HostPort"]), "Type": cp.split("/")[1]}
        for cp, binds in sb["Ports"].items()
        for b in binds
    ]  # fmt: skip
    return {
        "Id": sb["Id"],
        "Names": ["/" + sb["Name"]],
        "Image": "busybox",
        "ImageID": "",
        "Command": " ".join(sb["Cmd"]),
        "Created": created,
        "Ports": ports,
        "Labels": {},
        "State": sb["State"],
        "Status": "Up 2 hours",
        "HostConfig": {"NetworkMode": sb["NetworkMode"]},
        "NetworkSettings": {
            "Networks": {k: {"IPAddress": v["IPAddress"]} for k, v in sb["Networks"].items()}
        },
        "Mounts": [],
    }


@contextmanager
def serve(
    sock: Path,
    networks: Mapping[str, Any],
    containers: Mapping[str, Any],
    sandboxes: Sequence[Mapping[str, Any]] = (),
) -> Iterator[Path]:
    """Serve the objects on ``sock`` (a new path) until the block ends."""
    srv = _Server(str(sock), _Handler)
    srv.networks, srv.containers, srv.sandboxes = networks, containers, sandboxes
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield sock
    finally:
        srv.shutdown()
        srv.server_close()
        sock.unlink(missing_ok=True)
