"""Root-only unix socket servers: what kanald's API and the Docker plugin share."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import socketserver
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any

from kanal.errors import DecodeError, KanalError, TooLarge
from kanal.validate import MAX_BODY

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
    file is removed on close.

    The listen backlog is 1024 (the kernel caps it at net.core.somaxconn): a burst
    of clients waits in the queue instead of being refused with EAGAIN, and each
    accepted connection is served by a thread of its own.
    """

    daemon_threads = True
    request_queue_size = 1024

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

    def handle_error(self, request: Any, client_address: Any) -> None:
        """An exception out of a handler: a client that went away is normal use (a
        debug line), anything else a logged error — never socketserver's traceback
        on stderr."""
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):  # EPIPE, ECONNRESET, ...
            _log.debug("client went away: %s", exc)
            return
        _log.error("error serving a request on %s", self.path, exc_info=True)


_log = logging.getLogger("kanal.http")
_LENGTH = re.compile(r"[0-9]{1,18}")


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 on a unix socket: keep-alive, requests logged at debug level only.

    Framing is strict: a body needs one decimal ``Content-Length`` of at most
    ``max_body`` bytes (no chunked bodies), and a body that does not arrive whole
    is never handed on (:meth:`read_body` returns None). Errors of the HTTP layer
    itself (bad request line, unknown method) are JSON too (:meth:`error_body`).
    """

    protocol_version = "HTTP/1.1"
    log = logging.getLogger("kanal.http")
    max_body = MAX_BODY

    def log_message(self, format: str, *args: Any) -> None:
        self.log.debug("%s", format % args)

    def error_body(self, message: str) -> dict[str, Any]:
        """The JSON object an error is sent as (``{"message": ...}``, docker's)."""
        return {"message": message}

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's errors (400, 414, 431, 501...) as a JSON body; the connection closes."""
        short = self.responses.get(code, ("error", ""))[0]
        data = json.dumps(self.error_body(message or short)).encode() + b"\n"
        self.close_connection = True
        if self.request_version == "HTTP/0.9":
            # A request line too broken to tell its version: still answer with a
            # status line and headers, which every client of this API reads.
            self.request_version = "HTTP/1.0"
        try:
            self.send_response(code, short)
            self.send_header("Content-Type", "application/json")
            self.send_header("Connection", "close")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD" and code >= 200 and code not in (204, 304):
                self.wfile.write(data)
        except OSError:
            pass  # the client is gone; nothing to tell

    def read_body(self) -> bytes | None:
        """The request's body, or None when the client went away before sending all of it.

        Raises:
            DecodeError: a malformed or conflicting Content-Length, a Transfer-Encoding.
            TooLarge: a Content-Length over ``max_body``.
        Either way (and on None) the connection is closed after the reply: the
        unread rest of the body must not be taken for the next request.
        """
        te = (self.headers.get("Transfer-Encoding") or "identity").strip().lower()
        if te != "identity":
            self.close_connection = True
            raise DecodeError(f"Transfer-Encoding {te!r} is not supported: send Content-Length")
        values = {v.strip() for v in self.headers.get_all("Content-Length") or []}
        if len(values) > 1:
            self.close_connection = True
            raise DecodeError("conflicting Content-Length headers")
        text = values.pop() if values else "0"
        if not _LENGTH.fullmatch(text):
            self.close_connection = True
            raise DecodeError(f"invalid Content-Length {text[:40]!r}")
        n = int(text)
        if n > self.max_body:
            self.close_connection = True
            raise TooLarge(f"request body too large: {n} bytes (at most {self.max_body})")
        if not n:
            return b""
        try:
            raw = self.rfile.read(n)
        except OSError:  # timed out, reset
            raw = b""
        if len(raw) < n:
            self.close_connection = True
            self.log.info("%s %s: the client left before its body arrived", self.command, self.path)
            return None
        return raw

    def address_string(self) -> str:
        return "unix"
