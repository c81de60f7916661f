"""Root-only unix socket servers: what kanald's API and the Docker plugin share."""

from __future__ import annotations

import logging
import os
import socket
import socketserver
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any

from kanal.errors import KanalError

__all__ = ["PrivateUnixServer", "QuietHandler", "private_path", "remove_stale"]


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


@contextmanager
def private_path(path: str, *, dir_mode: int) -> Iterator[None]:
    """Around binding a unix socket at ``path``: its directory made, a stale socket
    of a killed daemon removed (a live one is an error), and the umask closed, so
    the socket is never reachable with looser permissions, not even before chmod."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=dir_mode, exist_ok=True)
    if os.path.exists(path):
        remove_stale(path)
    old = os.umask(0o177)
    try:
        yield
    finally:
        os.umask(old)


class PrivateUnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """A threading server on a unix socket that only ``mode`` may use; the socket
    file is removed on close."""

    daemon_threads = True
    request_queue_size = 1024  # bursts of CLI calls queue instead of being refused

    def __init__(self, path: str, handler: Any, *, mode: int, dir_mode: int) -> None:
        self.path = path
        with private_path(path, dir_mode=dir_mode):
            super().__init__(path, handler)
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
