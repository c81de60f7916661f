"""``kanal cni`` driving the Go reference plugins (bridge + host-local) for real.

The CLI runs inside a "host" namespace the test made (``ip netns exec HOST kanal
...``); the container is a second namespace the test made. Nothing touches the
machine's root namespace.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kanal.ipam.diskfiles import INDEX_NAME
from tests.helpers import go_plugin_dir, ip_json

pytestmark = [
    pytest.mark.oracle,
    pytest.mark.skipif(go_plugin_dir() is None, reason="Go reference plugins not installed"),
]

ROOT = Path(__file__).resolve().parents[2]
KANAL = ROOT / ".venv" / "bin" / "kanal"
SUBNET = "10.233.7.0/24"


def cnitool_id(netns: str) -> str:
    return "cnitool-" + hashlib.sha512(netns.encode()).hexdigest()[:20]


class World:
    def __init__(self, tmp: Path, host: str, version: str) -> None:
        self.tmp = tmp
        self.host = host
        self.conf_dir = tmp / "net.d"
        self.cache_dir = tmp / "cache"
        self.ipam_dir = tmp / "ipam"
        self.conf_dir.mkdir()
        self.net = "kanalora"
        doc = {
            "cniVersion": version,
            "name": self.net,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": "kbr0",
                    "isGateway": True,
                    "ipMasq": False,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": SUBNET}]],
                        "dataDir": str(self.ipam_dir),
                    },
                }
            ],
        }
        (self.conf_dir / "10-kanalora.conflist").write_text(json.dumps(doc))

    def kanal(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {
            k: v for k, v in os.environ.items() if k not in ("CAP_ARGS", "CNI_ARGS", "CNI_IFNAME")
        }
        env.update(NETCONFPATH=str(self.conf_dir), CNI_PATH=str(go_plugin_dir()))
        return subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                self.host,
                str(KANAL),
                "cni",
                *args,
                "--cache-dir",
                str(self.cache_dir),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )

    def cache_files(self) -> list[str]:
        d = self.cache_dir / "results"
        return sorted(os.listdir(d)) if d.exists() else []

    def reservations(self) -> list[str]:
        d = self.ipam_dir / self.net
        if not d.exists():
            return []
        return sorted(
            n
            for n in os.listdir(d)
            if n not in ("lock", INDEX_NAME) and not n.startswith("last_reserved_ip")
        )


def eth0_addrs(ns: str) -> list[str]:
    return [
        f"{a['local']}/{a['prefixlen']}"
        for link in ip_json(ns, "addr", "show")
        if link["ifname"] == "eth0"
        for a in link.get("addr_info", [])
        if a["family"] == "inet"
    ]


def links(ns: str) -> list[str]:
    return [link["ifname"] for link in ip_json(ns, "link", "show")]


# Debian 12's reference plugins stop at spec 1.0.0.
@pytest.mark.parametrize("version", ["0.3.1", "0.4.0", "1.0.0"])
def test_add_check_status_del_with_go_bridge(
    tmp_path: Path, make_netns: Callable[[str], str], version: str
) -> None:
    host = make_netns("koh")
    ct = make_netns("koc")
    netns = f"/run/netns/{ct}"
    w = World(tmp_path, host, version)

    add = w.kanal("add", w.net, netns)
    assert add.returncode == 0, add.stderr
    result: dict[str, Any] = json.loads(add.stdout)
    assert result["cniVersion"] == version
    address = result["ips"][0]["address"]
    assert ipaddress.ip_interface(address).ip in ipaddress.ip_network(SUBNET)
    sandboxed = [i for i in result["interfaces"] if i.get("sandbox")]
    assert [(i["name"], i["sandbox"]) for i in sandboxed] == [("eth0", netns)]

    assert eth0_addrs(ct) == [address]
    assert "kbr0" in links(host)
    cid = cnitool_id(netns)
    assert w.cache_files() == [f"{w.net}-{cid}-eth0"]
    assert w.reservations() == [address.split("/")[0]]

    check = w.kanal("check", w.net, netns)
    if version == "0.3.1":
        assert check.returncode == 1
        assert check.stderr == (
            'kanal: configuration version "0.3.1" does not support the CHECK command\n'
        )
    else:
        assert check.returncode == 0, check.stderr
    status = w.kanal("status", w.net, netns)
    assert status.returncode == 0, status.stderr

    deleted = w.kanal("del", w.net, netns)
    assert deleted.returncode == 0, deleted.stderr
    assert w.cache_files() == []
    assert "eth0" not in links(ct)
    assert w.reservations() == []
    assert [n for n in links(host) if n.startswith("veth")] == []

    again = w.kanal("del", w.net, netns)  # DEL is idempotent
    assert again.returncode == 0, again.stderr


def test_gc_deletes_cached_attachments_with_go_bridge(
    tmp_path: Path, make_netns: Callable[[str], str]
) -> None:
    host = make_netns("koh")
    cts = [make_netns("koc"), make_netns("koc")]
    w = World(tmp_path, host, "1.0.0")  # below 1.1.0: stale DELs only, no GC verb
    for ct in cts:
        add = w.kanal("add", w.net, f"/run/netns/{ct}")
        assert add.returncode == 0, add.stderr
    assert len(w.reservations()) == 2
    gc = w.kanal("gc", w.net, "--valid", f"{cnitool_id('/run/netns/' + cts[0])}:eth0")
    assert gc.returncode == 0, gc.stderr
    assert eth0_addrs(cts[0]) != []
    assert "eth0" not in links(cts[1])
    assert len(w.reservations()) == 1
    gc_all = w.kanal("gc", w.net)
    assert gc_all.returncode == 0, gc_all.stderr
    assert "eth0" not in links(cts[0])
    assert w.reservations() == [] and w.cache_files() == []


def test_go_plugin_error_is_one_line(tmp_path: Path, make_netns: Callable[[str], str]) -> None:
    host = make_netns("koh")
    ct = make_netns("koc")
    w = World(tmp_path, host, "1.0.0")
    assert w.kanal("add", w.net, f"/run/netns/{ct}").returncode == 0
    # A second ADD of the same interface: the bridge plugin refuses (eth0 exists).
    again = w.kanal("add", w.net, f"/run/netns/{ct}", "-i", "eth0")
    assert again.returncode == 1
    lines = again.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith('kanal: plugin type="bridge" failed (add): ')
    assert w.kanal("del", w.net, f"/run/netns/{ct}").returncode == 0
