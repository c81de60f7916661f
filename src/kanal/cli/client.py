"""The CLI's client of kanald's REST API (HTTP over the unix socket)."""

from __future__ import annotations

import http.client
import json
import os
import socket
from typing import Any
from urllib.parse import quote, urlencode

from kanal.errors import KanalError, Unavailable

__all__ = ["ApiClient", "default_socket"]


def default_socket() -> str:
    from kanal.daemon.main import DEFAULT_API_SOCKET

    return os.environ.get("KANAL_HOST", "").removeprefix("unix://") or DEFAULT_API_SOCKET


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self._path)
        except OSError as e:
            s.close()
            raise Unavailable(
                f"cannot connect to kanald at unix://{self._path}: is kanald running?",
                e.strerror or str(e),
            ) from None
        self.sock = s


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
        payload = json.loads(raw) if raw.strip() else None
        if resp.status >= 400:
            msg = payload.get("message") if isinstance(payload, dict) else raw.decode()
            err = KanalError(str(msg or f"HTTP {resp.status}"))
            err.http_status = resp.status
            raise err
        return payload

    def network(self, ref: str) -> Any:
        return self.request("GET", f"/networks/{quote(ref, safe='')}")
