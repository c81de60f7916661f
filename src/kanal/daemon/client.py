"""A client of kanald's REST API (HTTP over the unix socket).

The CLI, ``kanal lab`` and the tests use it.
"""

from __future__ import annotations

import errno
import http.client
import json
import os
import random
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

from kanal.errors import KanalError, Unavailable

__all__ = ["ApiClient", "connect_unix", "default_socket"]


def default_socket() -> str:
    # lazy: daemon.main is kanald's entry point; a client needs only its constant
    from kanal.daemon.main import DEFAULT_API_SOCKET

    return os.environ.get("KANAL_HOST", "").removeprefix("unix://") or DEFAULT_API_SOCKET


#: How long a connect is retried while kanald's queue is full (EAGAIN) or its socket
#: refuses (ECONNREFUSED: a daemon restarting), in seconds ($KANAL_CONNECT_TIMEOUT).
CONNECT_TIMEOUT = 30.0
_BUSY = (errno.EAGAIN, errno.ECONNREFUSED)


def connect_timeout() -> float:
    try:
        return max(0.0, float(os.environ.get("KANAL_CONNECT_TIMEOUT", CONNECT_TIMEOUT)))
    except ValueError:
        return CONNECT_TIMEOUT


def connect_unix(path: str, timeout: float, wait: float | None = None) -> socket.socket:
    """A connected socket to kanald's API at ``path``.

    A full listen queue (EAGAIN) or a refused connect (ECONNREFUSED: the socket
    file is there but nobody accepts yet) is retried with back-off for ``wait``
    seconds: a busy or restarting daemon is waited for, not reported as stopped.
    A missing socket file or a permission error is told at once, each in its words.

    Raises:
        Unavailable: no connection; the message says which of the cases it was.
    """
    deadline = time.monotonic() + (connect_timeout() if wait is None else wait)
    delay = 0.005
    where = f"kanald at unix://{path}"
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(path)
            return s
        except OSError as e:
            s.close()
            code = e.errno
            if code in _BUSY and time.monotonic() + delay < deadline:
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.5)
                continue
            if code == errno.EAGAIN:
                raise Unavailable(
                    f"{where} is busy: its connection queue stayed full", e.strerror or str(e)
                ) from None
            if code == errno.ENOENT:
                msg = f"cannot connect to {where}: no such socket (is kanald running?)"
            elif code in (errno.EACCES, errno.EPERM):
                msg = (
                    f"cannot connect to {where}: permission denied: its API socket is "
                    "root's only; run kanal as root (sudo kanal ...)"
                )
            else:
                msg = f"cannot connect to {where}: is kanald running?"
            raise Unavailable(msg, e.strerror or str(e)) from None


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = connect_unix(self._path, self.timeout or 300.0)


class ApiClient:
    def __init__(self, path: str | None = None, timeout: float = 300) -> None:
        self.path = path or default_socket()
        self.timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, str] | None = None,
    ) -> Any:
        """One call; the decoded JSON answer. Raises KanalError with kanald's message."""
        url = path + ("?" + urlencode(query) if query else "")
        conn = _UnixConnection(self.path, self.timeout)
        try:
            data = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if data is not None else {}
            conn.request(method, url, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException) as e:
            if isinstance(e, KanalError):
                raise
            raise Unavailable(f"kanald did not answer {method} {path}", str(e)) from None
        finally:
            conn.close()
        if resp.status < 400 and (resp.getheader("Content-Type") or "").startswith("text/plain"):
            return raw.decode("utf-8", "replace")  # /_ping's "OK", as docker's
        try:
            payload = json.loads(raw) if raw.strip() else None
        except ValueError:
            payload = None
            if resp.status < 400:
                raise Unavailable(f"kanald's answer to {method} {path} is not JSON") from None
        if resp.status >= 400:
            msg = (
                payload.get("message")
                if isinstance(payload, dict)
                else raw.decode("utf-8", "replace")
            )
            err = KanalError(str(msg or f"HTTP {resp.status}"))
            err.http_status = resp.status
            raise err
        return payload

    def stream(self, path: str, query: dict[str, str] | None = None) -> Iterator[bytes]:
        """``GET path``'s body as it comes, for as long as it takes (``logs -f``).

        Raises KanalError with kanald's message (before the first chunk)."""
        url = path + ("?" + urlencode(query) if query else "")
        conn = _UnixConnection(self.path, self.timeout)
        try:
            try:
                conn.request("GET", url)
                assert conn.sock is not None
                conn.sock.settimeout(None)  # a followed log may be quiet for hours
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as e:
                raise Unavailable(f"kanald did not answer GET {path}", str(e)) from None
            if resp.status >= 400:
                raw = resp.read()
                try:
                    msg = json.loads(raw).get("message")
                except (ValueError, AttributeError):
                    msg = raw.decode("utf-8", "replace")
                err = KanalError(str(msg or f"HTTP {resp.status}"))
                err.http_status = resp.status
                raise err
            while True:
                try:
                    chunk = resp.read1(65536)
                except (OSError, http.client.HTTPException) as e:
                    raise Unavailable(f"kanald stopped answering GET {path}", str(e)) from None
                if not chunk:
                    return
                yield chunk
        finally:
            conn.close()

    def stream_json(self, path: str, query: dict[str, str] | None = None) -> Iterator[Any]:
        """A streaming GET of JSON lines (``/events``): each object as it comes, until
        kanald ends the stream. Raises KanalError with kanald's message (a refused
        request), Unavailable (no daemon, or it went away mid-stream)."""
        pending = b""
        for chunk in self.stream(path, query):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.strip():
                    try:
                        yield json.loads(line)
                    except ValueError:
                        raise Unavailable(f"kanald's stream {path} is not JSON lines") from None

    def network(self, ref: str) -> Any:
        return self.request("GET", f"/networks/{quote(ref, safe='')}")
