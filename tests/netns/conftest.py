"""Fixtures shared by the netns tests."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import nsexec, unique
from tests.netns.cni import PluginRunner


@pytest.fixture
def net(make_netns: Any, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A host with a bridge conf and an outside namespace (198.51.100.0/24) for portmap."""
    host, out = make_netns("kth"), make_netns("kto")
    nsexec(
        host, "ip", "link", "add", "to-out", "type", "veth", "peer", "name", "eth0", "netns", out
    )
    nsexec(host, "ip", "addr", "add", "198.51.100.1/24", "dev", "to-out")
    nsexec(host, "ip", "link", "set", "to-out", "up")
    nsexec(out, "ip", "addr", "add", "198.51.100.2/24", "dev", "eth0")
    nsexec(out, "ip", "link", "set", "eth0", "up")
    cni = PluginRunner(host, tmp_path)
    br = unique("kpm", 15)
    bridge = {
        "cniVersion": "1.0.0",
        "name": "pmnet",
        "type": "bridge",
        "bridge": br,
        "isGateway": True,
        "isDefaultGateway": True,
        "ipMasq": True,
        "hairpinMode": True,
        "ipam": {"type": "host-local", "subnet": "10.72.0.0/24", "dataDir": str(cni.data_dir)},
    }
    servers: list[subprocess.Popen[bytes]] = []
    yield {"host": host, "out": out, "cni": cni, "bridge": bridge, "servers": servers}
    for s in servers:
        s.kill()
