"""Root-only unix socket servers: what kanald's API and the Docker plugin share."""

from __future__ import annotations

import logging
import os
import socket
import socketserver
from http.server import BaseHTTPRequestHandler
from typing import Any

from kanal.errors import KanalError

__all__ = ["PrivateUnixServer", "QuietHandler", "remove_stale"]


def remove_stale(path: str) -> None:
    """Unlink a socket file nobody listens on (left by a killed daemon).

    Raises:
        KanalError: a live server is listening there.
    """
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError:
        os.unlink(path)
        return
    finally:
        s.close()
    raise KanalError(f"another daemon is serving {path}")


class PrivateUnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """A threading HTTP-ready server on a unix socket that only ``mode`` may use:
    created with the umask closed (no moment where others could connect), a stale
    socket of a killed daemon replaced, the socket file removed on close."""

    daemon_threads = True

    def __init__(self, path: str, handler: Any, *, mode: int, dir_mode: int) -> None:
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), mode=dir_mode, exist_ok=True)
        if os.path.exists(path):
            remove_stale(path)
        old = os.umask(0o177)
        try:
            super().__init__(path, handler)
        finally:
            os.umask(old)
        os.chmod(path, mode)

    def server_close(self) -> None:
        super().server_close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 on a unix socket: keep-alive, requests logged at debug level only."""

    protocol_version = "HTTP/1.1"
    log = logging.getLogger("kanal.http")

    def log_message(self, format: str, *args: Any) -> None:
        self.log.debug("%s", format % args)

    def address_string(self) -> str:
        return "unix"
