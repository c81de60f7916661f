"""The Docker plugin protocol over HTTP on a unix socket (``/run/docker/plugins/kanal.sock``).

Only transport here: every ``POST`` goes to the :class:`~kanal.dockerplugin.protocol.Dispatcher`;
anything else is 405 with a JSON body. The socket is created root-only (mode
0600 unless told otherwise) with no window where others could connect; a stale
socket of a killed plugin is replaced, a live one is an error. An optional
``.spec`` file (``unix:///path``) lets dockerd find the plugin elsewhere.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from typing import Any

from kanal.dockerplugin.protocol import CONTENT_TYPE, Dispatcher
from kanal.errors import KanalError
from kanal.unixsock import PrivateUnixServer, QuietHandler

__all__ = ["DEFAULT_SOCKET", "PluginServer", "serve_in_thread", "write_spec"]

log = logging.getLogger("kanal.dockerplugin")
DEFAULT_SOCKET = "/run/docker/plugins/kanal.sock"


class PluginServer(PrivateUnixServer):
    def __init__(self, path: str, dispatcher: Dispatcher, *, mode: int = 0o600) -> None:
        self.dispatcher = dispatcher
        super().__init__(path, _Handler, mode=mode, dir_mode=0o755)


def write_spec(spec_path: str, socket_path: str) -> None:
    """dockerd's ``.spec`` discovery file (one URL line), written atomically."""
    os.makedirs(os.path.dirname(os.path.abspath(spec_path)), exist_ok=True)
    tmp = f"{spec_path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(f"unix://{os.path.abspath(socket_path)}\n")
    os.replace(tmp, spec_path)


class _Handler(QuietHandler):
    server: PluginServer
    server_version = "kanal-plugin"
    log = log

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except OSError:
            self.close_connection = True  # the caller left; what was done stays done

    def error_body(self, message: str) -> dict[str, Any]:
        return {"Err": message}

    def do_POST(self) -> None:
        try:
            raw = self.read_body()
        except KanalError as e:
            self._send(e.http_status, {"Err": str(e)})
            return
        if raw is None:
            return  # the client left mid-body: nothing is done
        status, reply = self.server.dispatcher.handle(self.path.split("?")[0], raw)
        self._send(status, reply)

    def do_GET(self) -> None:
        self._send(405, {"Err": "the plugin protocol is POST only"})

    do_PUT = do_DELETE = do_GET


def serve_in_thread(server: PluginServer) -> threading.Thread:
    t = threading.Thread(target=server.serve_forever, name="kanal-docker-plugin", daemon=True)
    t.start()
    return t
