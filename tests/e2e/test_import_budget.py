"""The import budget of a plugin exec without kanald (issue 12: standalone speed).

A standalone exec runs the installed shim with ``python -I -S``: every module it
imports costs start-up time on every ADD and DEL a runtime makes. These tests run
real standalone execs (a bridge + host-local + ipMasq ADD and DEL, and the other
plugins of a podman chain) under ``python -X importtime`` and fail when a module
outside the budget comes in: pyroute2, the engine or the daemon, the standard
library's heavy modules (typing, dataclasses, json, re, socket, threading,
subprocess, ctypes, logging...), or any module not listed below. A new module on
the path is a decision: add it here, with its cost in mind.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from kanal.fastpath.install import install_plugins
from tests.helpers import nsexec

# What the standard library may add to a bare `python -I -S` for a bridge ADD/DEL.
STDLIB = frozenset(
    {
        "__future__",  # `from __future__ import annotations`: a few attributes
        "_collections",
        "_collections_abc",
        "_ctypes",  # setns(2) and libnftables, through kanal._ffi
        "_functools",
        "_json",  # the C half of json, driven by kanal._json
        "_operator",
        "_sha256",
        "_sha512",
        "_sha2",
        "_socket",
        "_stat",
        "_struct",
        "binascii",  # crc32 of host-local's index file (a builtin module)
        "collections",
        "collections.abc",
        "contextlib",
        "errno",
        "fcntl",
        "functools",
        "genericpath",
        "ipaddress",  # the result model's address types (with functools, collections)
        "itertools",
        "keyword",
        "operator",
        "os",
        "posixpath",
        "reprlib",
        "stat",
        "struct",
        "types",
    }
)

KANAL = frozenset(
    {
        "shim",
        "kanal",
        "kanal._dataclass",
        "kanal._ffi",
        "kanal._hash",
        "kanal._json",
        "kanal.errors",
        "kanal.fastpath",
        "kanal.fastpath.standalone",
        "kanal.firewall",
        "kanal.firewall.intents",
        "kanal.firewall.iptables",  # DEL: the Go plugin's iptables leftovers
        "kanal.firewall.nftables",
        "kanal.firewall.nftables.gotable",  # DEL: the Go plugin's nftables leftovers
        "kanal.firewall.nftables.libnft",
        "kanal.firewall.nftables.nfnl",
        "kanal.ipam",
        "kanal.ipam.allocator",
        "kanal.ipam.disk",
        "kanal.ipam.diskfiles",
        "kanal.ipam.hostlocal",
        "kanal.ipam.ranges",
        "kanal.ipam.store",
        "kanal.netlink",
        "kanal.netlink.batch",
        "kanal.netlink.bridgeport",
        "kanal.netlink.handle",
        "kanal.netlink.ns",
        "kanal.netlink.reaper",
        "kanal.netlink.steps",
        "kanal.netlink.sysctl",
        "kanal.netlink.wire",
        "kanal.plugins",
        "kanal.plugins._conf",
        "kanal.plugins._iface",
        "kanal.plugins.bridge",
        "kanal.plugins.host_local",
        "kanal.plugins.registry",
        "kanal.skel",
        "kanal.skel.cmdargs",
        "kanal.skel.delegate",
        "kanal.skel.dispatcher",
        "kanal.spec",
        "kanal.spec.gotext",
        "kanal.spec.wirefields",
        "kanal.spec.args",
        "kanal.spec.convert",
        "kanal.spec.env",
        "kanal.spec.gojson",  # Go's encoding/json rules: every config object is read by them
        "kanal.spec.gotypes",  # the CNI library's Go types (NetConf, IPAM, Route, results)
        "kanal.spec.result_020",
        "kanal.spec.result_040",
        "kanal.spec.result_100",
        "kanal.spec.types",
        "kanal.spec.versions",
    }
)

# Never on a standalone exec path (the chain's plugins included), whatever else changes.
FORBIDDEN = (
    "pyroute2",
    "kanal.engine",
    "kanal.daemon",
    "kanal.runtime",
    "kanal.cli",
    "typing",
    "dataclasses",
    "json",
    "re",
    "socket",
    "threading",
    "subprocess",
    "ctypes",
    "logging",
    "asyncio",
    "inspect",
    "hashlib",
    "secrets",
    "traceback",
    "enum",
    "shutil",
    "tempfile",
    "importlib.util",
)

MAX_MODULES = 81  # ADD imports 80 beyond a bare interpreter today (binascii: the host-local index)


def _imported(stderr: str) -> list[str]:
    """Module names from `python -X importtime` output."""
    out = []
    for line in stderr.splitlines():
        if line.startswith("import time:") and "self [us]" not in line:
            out.append(line.split("|")[2].strip())
    return out


def _forbidden(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]


class Standalone:
    """Installed plugins run without kanald, one exec at a time, with -X importtime."""

    def __init__(self, tmp: Path, host: str) -> None:
        self.host = host
        self.bindir = tmp / "bin"
        install_plugins(str(self.bindir), socket_path=str(tmp / "no-kanald.sock"))
        shebang = (self.bindir / "bridge").read_text().splitlines()[0]
        self.python = shebang[2:].split()[0]
        bare = nsexec(host, self.python, "-X", "importtime", "-I", "-S", "-c", "pass")
        self.baseline = set(_imported(bare.stderr.decode()))

    def run(
        self, plugin: str, cmd: str, conf: dict[str, Any], netns: str, cid: str = "ib1"
    ) -> tuple[dict[str, Any] | None, list[str]]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "CNI_COMMAND": cmd,
            "CNI_CONTAINERID": cid,
            "CNI_NETNS": netns,
            "CNI_IFNAME": "eth0",
            "CNI_PATH": str(self.bindir),
        }
        p = nsexec(
            self.host,
            self.python,
            "-X",
            "importtime",
            "-I",
            "-S",
            str(self.bindir / plugin),
            input=json.dumps(conf).encode(),
            env=env,
            check=False,
        )
        assert p.returncode == 0, (plugin, cmd, p.stdout, p.stderr[-3000:])
        modules = [m for m in _imported(p.stderr.decode()) if m not in self.baseline]
        return (json.loads(p.stdout) if p.stdout.strip() else None), modules


def _bridge_conf(tmp: Path) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": "budget",
        "type": "bridge",
        "bridge": "kib0",
        "isGateway": True,
        "ipMasq": True,
        "ipam": {
            "type": "host-local",
            "subnet": "10.77.0.0/24",
            "dataDir": str(tmp / "ipam"),
            "routes": [{"dst": "0.0.0.0/0"}],
        },
    }


def test_bridge_add_and_del_stay_in_budget(tmp_path: Path, host_ns: str, make_netns) -> None:
    ct = make_netns("kic")
    sa = Standalone(tmp_path, host_ns)
    conf = _bridge_conf(tmp_path)
    result, add = sa.run("bridge", "ADD", conf, f"/run/netns/{ct}")
    assert result is not None and result["ips"][0]["address"].startswith("10.77.0.")
    _, dele = sa.run("bridge", "DEL", conf, f"/run/netns/{ct}")
    for cmd, modules in (("ADD", add), ("DEL", dele)):
        assert _forbidden(modules) == [], cmd
        outside = sorted(set(modules) - STDLIB - KANAL)
        assert outside == [], f"{cmd} imports modules outside the budget: {outside}"
        assert len(set(modules)) <= MAX_MODULES, (cmd, len(set(modules)))
    # The heavy parts really are absent, not just renamed: no pyroute2 module at all.
    assert not any("pyroute2" in m for m in add + dele)


def test_chain_plugins_stay_lean(tmp_path: Path, host_ns: str, make_netns) -> None:
    """The rest of a podman chain (portmap, firewall, tuning) and loopback: none of
    the heavy modules either."""
    ct = make_netns("kic")
    sa = Standalone(tmp_path, host_ns)
    netns = f"/run/netns/{ct}"
    bridge = _bridge_conf(tmp_path)
    prev, _ = sa.run("bridge", "ADD", bridge, netns)
    chain: list[dict[str, Any]] = [
        {
            "type": "portmap",
            "capabilities": {"portMappings": True},
            "runtimeConfig": {
                "portMappings": [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]
            },
        },
        {"type": "firewall"},
        {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.arp_notify": "1"}},
    ]
    seen: dict[str, list[str]] = {}
    for plugin in chain:
        conf = {**plugin, "cniVersion": "1.0.0", "name": "budget", "prevResult": prev}
        prev, seen[f"{plugin['type']} ADD"] = sa.run(plugin["type"], "ADD", conf, netns)
    for plugin in reversed(chain):
        conf = {**plugin, "cniVersion": "1.0.0", "name": "budget", "prevResult": prev}
        _, seen[f"{plugin['type']} DEL"] = sa.run(plugin["type"], "DEL", conf, netns)
    lo = {"cniVersion": "1.0.0", "name": "lo", "type": "loopback"}
    _, seen["loopback ADD"] = sa.run("loopback", "ADD", lo, netns, cid="ib2")
    _, seen["loopback DEL"] = sa.run("loopback", "DEL", lo, netns, cid="ib2")
    sa.run("bridge", "DEL", {**bridge, "prevResult": prev}, netns)
    for what, modules in seen.items():
        assert _forbidden(modules) == [], what
        assert len(set(modules)) <= MAX_MODULES, (what, len(set(modules)))


@pytest.mark.parametrize("extra", ["import json", "import typing", "import pyroute2"])
def test_the_budget_check_catches_a_heavy_import(extra: str) -> None:
    """The checks above can fail: the same parsing flags a module brought in by one
    more import (run here without a namespace: the interpreter's own output)."""
    import subprocess
    import sys

    code = f"{extra}"
    p = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True
    )
    assert _forbidden(_imported(p.stderr)) != []


# A plain loopback request: nothing of kanal's general exec path (kanal.fastpath.lean_loopback).
LEAN_LOOPBACK = frozenset(
    {"shim", "kanal", "kanal.fastpath", "kanal.fastpath.lean_loopback", "kanal._ffi"}
    | {"_ctypes", "_socket"}
)


def test_a_plain_loopback_request_takes_the_lean_path(
    tmp_path: Path, host_ns: str, make_netns
) -> None:
    ct = make_netns("kic")
    sa = Standalone(tmp_path, host_ns)
    netns = f"/run/netns/{ct}"
    lo = {"cniVersion": "0.4.0", "name": "cni-loopback", "type": "loopback"}
    result, add = sa.run("loopback", "ADD", lo, netns)
    assert result is not None and result["interfaces"][0]["sandbox"] == netns
    _, dele = sa.run("loopback", "DEL", lo, netns)
    for cmd, modules in (("ADD", add), ("DEL", dele)):
        assert set(modules) <= LEAN_LOOPBACK, (cmd, sorted(set(modules) - LEAN_LOOPBACK))
    # Anything else goes the general way (here: a key the lean path does not take).
    _, full = sa.run("loopback", "ADD", {**lo, "dns": {}}, netns)
    assert "kanal.skel.dispatcher" in full


def _loaders(stderr: str) -> dict[str, str]:
    """Module name -> how it was loaded, from `python -v` (``import 'x' # <loader>``)."""
    out = {}
    for line in stderr.splitlines():
        if line.startswith("import '") and "#" in line:
            name = line.split("'", 2)[1]
            out[name] = line.split("#", 1)[1].strip()
    return out


def test_a_standalone_exec_loads_kanal_from_the_exec_image(
    tmp_path: Path, host_ns: str, make_netns
) -> None:
    """The installer's exec image serves the path's modules (docs/fastpath.md); without
    it (removed here) the same exec reads each module's .pyc, as before."""
    ct = make_netns("kic")
    sa = Standalone(tmp_path, host_ns)
    netns = f"/run/netns/{ct}"
    conf = _bridge_conf(tmp_path)
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_CONTAINERID": "ib1",
        "CNI_NETNS": netns,
        "CNI_IFNAME": "eth0",
        "CNI_PATH": str(sa.bindir),
    }

    def run(cmd: str) -> dict[str, str]:
        p = nsexec(
            host_ns,
            sa.python,
            "-v",
            "-I",
            "-S",
            str(sa.bindir / "bridge"),
            input=json.dumps(conf).encode(),
            env={**env, "CNI_COMMAND": cmd},
            check=False,
        )
        assert p.returncode == 0, (cmd, p.stdout, p.stderr[-2000:])
        return _loaders(p.stderr.decode())

    with_image = run("ADD")
    run("DEL")
    kanal_mods = {n: how for n, how in with_image.items() if n.startswith("kanal")}
    assert "kanal.plugins.bridge" in kanal_mods
    assert {n for n, how in kanal_mods.items() if "ImageFinder" not in how} == set()
    assert "ImageFinder" in with_image["ipaddress"]

    (sa.bindir / ".kanal-exec-image").unlink()
    without = run("ADD")
    run("DEL")
    assert "SourceFileLoader" in without["kanal.plugins.bridge"]
    assert not any("ImageFinder" in how for how in without.values())
