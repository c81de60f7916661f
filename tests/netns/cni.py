"""Running kanal plugins in-process (through the dispatcher) from a test's host namespace."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kanal.fastpath.install import install_plugins
from kanal.fastpath.standalone import plugin_runner
from kanal.plugins.registry import load_plugin
from kanal.skel.dispatcher import Dispatcher
from tests.netns.inns import in_ns


@dataclass
class Call:
    code: int
    out: dict[str, Any] | None
    err: str


class PluginRunner:
    """Calls plugin ``cmd_*`` through the dispatcher inside the host namespace.

    IPAM delegation finds kanal's installed host-local on CNI_PATH and runs it
    in-process, exactly as in kanald.
    """

    def __init__(self, host: str, tmp: Path) -> None:
        self.host = host
        self.bindir = tmp / "bin"
        self.data_dir = tmp / "ipam"
        install_plugins(str(self.bindir), socket_path=str(tmp / "no-daemon.sock"))

    def __call__(
        self,
        plugin: str,
        cmd: str,
        conf: dict[str, Any],
        *,
        cid: str = "c1",
        netns: str = "",
        ifname: str = "eth0",
        args: str = "",
    ) -> Call:
        env = {
            "CNI_COMMAND": cmd,
            "CNI_CONTAINERID": cid,
            "CNI_NETNS": netns,
            "CNI_IFNAME": ifname,
            "CNI_PATH": str(self.bindir),
        }
        if args:
            env["CNI_ARGS"] = args

        def go() -> Call:
            out, err = io.StringIO(), io.StringIO()
            code = Dispatcher(
                env, io.BytesIO(json.dumps(conf).encode()), out, err, runner=plugin_runner()
            ).run(load_plugin(plugin))
            text = out.getvalue()
            return Call(code, json.loads(text) if text else None, err.getvalue())

        return in_ns(self.host, go)
