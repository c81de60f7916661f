"""Finding and calling remote Docker plugins: discovery and the HTTP client.

Discovery is dockerd's (docs/cnm.md, "Discovery"): for a plugin ``NAME``, in
each plugin directory in order, ``NAME.sock`` / ``NAME/NAME.sock`` (a unix
socket), then ``NAME.spec`` (one URL line: ``unix:///path`` or
``tcp://host:port``) and ``NAME.json`` (``{"Name", "Addr"}``), also under
``NAME/``. Activation is lazy (the first network that names the plugin) and
remembered by the :class:`PluginRegistry`, which the daemon makes and hands to
the engine context — no module-level state. The engine drivers that use a plugin
are in :mod:`kanal.engine.drivers.remote`.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from kanal.engine.model import validate_name
from kanal.errors import InvalidConfig, KanalError, NotFound, Unavailable

__all__ = [
    "ACCEPT",
    "DEFAULT_PLUGIN_DIRS",
    "NotImplementedByPlugin",
    "Plugin",
    "PluginRegistry",
]

DEFAULT_PLUGIN_DIRS = ["/run/docker/plugins", "/etc/docker/plugins", "/usr/lib/docker/plugins"]
ACCEPT = "application/vnd.docker.plugins.v1.2+json"


class NotImplementedByPlugin(NotFound):
    """The plugin answered 404: it does not implement the method."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("plugin.moby.localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self.unix_path)
        except OSError:
            s.close()
            raise
        self.sock = s


@dataclass
class Plugin:
    """One discovered plugin: its name and address; ``implements`` once activated."""

    name: str
    addr: str  # unix:///path or tcp://host:port
    implements: list[str] = field(default_factory=list)
    timeout: float = 30.0
    retry_for: float = 10.0  # dockerd retries connection failures for 30 s

    def _connection(self) -> http.client.HTTPConnection:
        u = urlsplit(self.addr)
        if u.scheme == "unix":
            return _UnixConnection(u.path, self.timeout)
        if u.scheme in ("tcp", "http"):
            return http.client.HTTPConnection(u.hostname or "", u.port or 80, timeout=self.timeout)
        raise InvalidConfig(f"plugin {self.name}: unsupported address {self.addr!r}")

    def call(self, method: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """``POST /method``; the reply object. Connection failures are retried.

        Raises:
            NotImplementedByPlugin: 404. KanalError: the plugin's ``Err``/``Error``
            (or status and body). Unavailable: the plugin does not answer.
        """
        data = b"" if body is None else json.dumps(body).encode()
        deadline = time.monotonic() + self.retry_for
        delay = 0.05
        while True:
            conn = self._connection()
            try:
                conn.request(
                    "POST",
                    f"/{method}",
                    body=data,
                    headers={"Accept": ACCEPT, "Content-Type": ACCEPT},
                )
                resp = conn.getresponse()
                status, raw = resp.status, resp.read()
                break
            except OSError as e:
                if time.monotonic() >= deadline:
                    raise Unavailable(f"plugin {self.name} does not answer {method}: {e}") from None
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
            finally:
                conn.close()
        try:
            reply = json.loads(raw) if raw.strip() else {}
        except ValueError:
            reply = None
        if status == 404:
            raise NotImplementedByPlugin(f"{method}: not implemented by plugin {self.name}")
        err = ""
        if isinstance(reply, dict):
            err = str(reply.get("Err") or reply.get("Error") or "")
        if status != 200:
            raise KanalError(f"{method}: {err or raw.decode(errors='replace').strip()}")
        if not isinstance(reply, dict):
            raise KanalError(f"{method}: plugin {self.name} sent no JSON object")
        if err:
            raise KanalError(f"plugin {self.name}: {err}")
        return reply


class PluginRegistry:
    """Finds and activates plugins by name, once each (thread-safe)."""

    def __init__(
        self, dirs: list[str] | None = None, *, retry_for: float = 10.0, exclude: str = ""
    ) -> None:
        self.dirs = list(dirs or DEFAULT_PLUGIN_DIRS)
        self.retry_for = retry_for
        self.exclude = os.path.abspath(exclude) if exclude else ""
        self._lock = threading.Lock()
        self._active: dict[str, Plugin] = {}

    def find(self, name: str) -> Plugin:
        """Discovery as dockerd does it. Raises NotFound."""
        validate_name(name, "plugin")
        for d in self.dirs:
            for base in (os.path.join(d, name), os.path.join(d, name, name)):
                sock = base + ".sock"
                if os.path.exists(sock) and os.path.abspath(sock) != self.exclude:
                    return Plugin(name, f"unix://{sock}", retry_for=self.retry_for)
        for d in self.dirs:
            for base in (os.path.join(d, name), os.path.join(d, name, name)):
                if os.path.isfile(base + ".spec"):
                    with open(base + ".spec") as f:
                        addr = f.read().strip()
                    if self.exclude and addr == f"unix://{self.exclude}":
                        continue
                    return Plugin(name, _checked_addr(name, addr), retry_for=self.retry_for)
                if os.path.isfile(base + ".json"):
                    with open(base + ".json") as f:
                        try:
                            spec = json.load(f)
                        except ValueError:
                            raise InvalidConfig(f"plugin {name}: bad JSON in {f.name}") from None
                    addr = spec.get("Addr", "") if isinstance(spec, dict) else ""
                    return Plugin(name, _checked_addr(name, addr), retry_for=self.retry_for)
        raise NotFound(f"plugin {name!r} not found")

    def get(self, name: str, interface: str) -> Plugin:
        """The activated plugin implementing ``interface`` (``NetworkDriver``/``IpamDriver``).

        Raises NotFound (no such plugin, or it does not implement ``interface``).
        """
        with self._lock:
            plugin = self._active.get(name)
        if plugin is None:
            plugin = self.find(name)
            reply = plugin.call("Plugin.Activate")
            impl = reply.get("Implements")
            if not isinstance(impl, list):
                raise KanalError(f"plugin {name}: Activate gave no Implements list")
            plugin.implements = [str(x) for x in impl]
            with self._lock:
                self._active[name] = plugin
        if interface not in plugin.implements:
            raise NotFound(f"plugin {name!r} does not implement {interface}")
        return plugin

    def forget(self, name: str) -> None:
        """Drop an activation (the plugin restarted elsewhere, or went away)."""
        with self._lock:
            self._active.pop(name, None)

    def available(self, name: str) -> bool:
        try:
            self.find(name)
            return True
        except (NotFound, InvalidConfig):
            return False


def _checked_addr(name: str, addr: str) -> str:
    u = urlsplit(addr)
    if u.scheme not in ("unix", "tcp", "http") or not (u.path if u.scheme == "unix" else u.netloc):
        raise InvalidConfig(f"plugin {name}: bad address {addr!r} (want unix:///path or tcp://h:p)")
    return addr
