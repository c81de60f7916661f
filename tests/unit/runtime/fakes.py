"""An in-memory Exec for pure-logic tests of the runtime (Go ``invoke/fakes``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kanal.errors import KanalError
from kanal.runtime.invoke import PluginNotFound
from kanal.spec.versions import ALL_VERSIONS, decode_version_reply


@dataclass
class Call:
    plugin: str
    command: str
    env: dict[str, str]
    stdin: bytes

    @property
    def conf(self) -> dict[str, Any]:
        out = json.loads(self.stdin)
        assert isinstance(out, dict)
        return out


Responder = Callable[[Call], bytes]


@dataclass
class FakeExec:
    """Plugins are names in ``plugins``; each call is recorded in ``calls``.

    ``responses[(plugin, command)]`` is bytes to print, a KanalError to raise, or a
    callable(call) -> bytes. ADD without a response echoes prevResult or a default
    result in the config's version; VERSION reports ``versions.get(plugin)`` or all.
    """

    plugins: set[str] = field(default_factory=lambda: {"p1", "p2", "p3"})
    responses: dict[tuple[str, str], bytes | KanalError | Responder] = field(default_factory=dict)
    versions: dict[str, list[str]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)

    def find_in_path(self, name: str, paths: Sequence[str]) -> str:
        if name not in self.plugins:
            raise PluginNotFound(f'failed to find plugin "{name}" in path [{" ".join(paths)}]')
        return f"/fake/{name}"

    def exec_plugin(self, path: str, stdin: bytes, env: Mapping[str, str]) -> bytes:
        plugin = path.rsplit("/", 1)[-1]
        call = Call(plugin, env["CNI_COMMAND"], dict(env), stdin)
        self.calls.append(call)
        resp = self.responses.get((plugin, call.command))
        if isinstance(resp, KanalError):
            raise resp
        if isinstance(resp, bytes):
            return resp
        if resp is not None:
            return resp(call)
        if call.command == "VERSION":
            versions = self.versions.get(plugin, list(ALL_VERSIONS))
            return json.dumps({"cniVersion": "1.1.0", "supportedVersions": versions}).encode()
        if call.command == "ADD":
            conf = call.conf
            if "prevResult" in conf:
                return json.dumps(conf["prevResult"]).encode()
            return json.dumps(default_result(conf["cniVersion"], plugin)).encode()
        return b""

    def decode_version(self, data: bytes) -> list[str]:
        return decode_version_reply(data)

    def by_command(self, command: str) -> list[Call]:
        return [c for c in self.calls if c.command == command]


def default_result(version: str, plugin: str = "p1") -> dict[str, Any]:
    if version in ("0.1.0", "0.2.0"):
        return {"cniVersion": version, "ip4": {"ip": "10.1.0.2/24", "gateway": "10.1.0.1"}}
    ip: dict[str, Any] = {"address": "10.1.0.2/24", "gateway": "10.1.0.1", "interface": 0}
    if not version.startswith("1."):
        ip["version"] = "4"
    return {
        "cniVersion": version,
        "interfaces": [{"name": f"if-{plugin}"}],
        "ips": [ip],
    }
