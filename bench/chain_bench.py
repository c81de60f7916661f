"""A CNI chain, kanal vs the Go reference plugins, side by side in one run.

The chain is the one a podman or Kubernetes node runs: bridge (+ host-local,
ipMasq) → portmap (one published TCP port) → firewall → tuning. Each plugin is
executed as a runtime executes it (fork+exec, ``CNI_*`` env, its config with the
previous plugin's result on stdin), ADD in list order and DEL in reverse, so
the number is what a runtime pays for the plugins themselves. The Go plugins use
their defaults (iptables for portmap and firewall); kanal its defaults (nftables),
its installed executables talking to ``kanald`` in the host namespace, and the
same executables standalone (no daemon answers).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import create_netns, delete_netns, unique  # noqa: E402

from bench.cni_bench import (  # noqa: E402
    GO_DIR,
    INTERLEAVE_UP_TO,
    _rss_mb,
    install,
    kanald,
    p50,
    standalone_env,
)

CHAIN = ("bridge", "portmap", "firewall", "tuning")


@dataclass
class ChainImpl:
    name: str
    plugin_dir: str
    bridge: str
    subnet: str
    data_dir: str
    port_base: int
    types: tuple[str, ...] = CHAIN
    env: dict[str, str] = field(default_factory=dict)

    def plugins(self) -> list[dict[str, Any]]:
        every: list[dict[str, Any]] = [
            {
                "type": "bridge",
                "bridge": self.bridge,
                "isGateway": True,
                "ipMasq": True,
                "ipam": {
                    "type": "host-local",
                    "subnet": self.subnet,
                    "dataDir": self.data_dir,
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "firewall"},
            {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.arp_notify": "1"}},
        ]
        return [p for p in every if p["type"] in self.types]


def _conf(netname: str, plugin: dict[str, Any], prev: dict[str, Any] | None, port: int) -> bytes:
    c: dict[str, Any] = {**plugin, "cniVersion": "1.0.0", "name": netname}
    if prev is not None:
        c["prevResult"] = prev
    if plugin.get("capabilities", {}).get("portMappings"):
        c["runtimeConfig"] = {
            "portMappings": [{"hostPort": port, "containerPort": 80, "protocol": "tcp"}]
        }
    return json.dumps(c).encode()


def _exec(impl: ChainImpl, ptype: str, cmd: str, cid: str, netns: str, conf: bytes) -> bytes:
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "CNI_COMMAND": cmd,
        "CNI_CONTAINERID": cid,
        "CNI_NETNS": netns,
        "CNI_IFNAME": "eth0",
        "CNI_PATH": impl.plugin_dir,
        **impl.env,
    }
    p = subprocess.run(
        [os.path.join(impl.plugin_dir, ptype)], input=conf, env=env, capture_output=True
    )
    if p.returncode != 0:
        raise RuntimeError(f"{impl.name} {ptype} {cmd} failed: {p.stdout!r} {p.stderr!r}")
    return p.stdout


def chain_add(
    impl: ChainImpl, net: str, cid: str, netns: str, port: int
) -> tuple[float, dict[str, Any]]:
    """ADD through the chain; (seconds, the final result) — libcni caches the result
    and hands it to DEL as prevResult, so the DEL below does too."""
    prev: dict[str, Any] = {}
    t = time.perf_counter()
    for i, plugin in enumerate(impl.plugins()):
        conf = _conf(net, plugin, prev if i else None, port)
        prev = json.loads(_exec(impl, plugin["type"], "ADD", cid, netns, conf))
    return time.perf_counter() - t, prev


def chain_del(
    impl: ChainImpl, net: str, cid: str, netns: str, port: int, prev: dict[str, Any]
) -> float:
    t = time.perf_counter()
    for plugin in reversed(impl.plugins()):
        _exec(impl, plugin["type"], "DEL", cid, netns, _conf(net, plugin, prev, port))
    return time.perf_counter() - t


def run(
    attached: list[int],
    samples: int,
    report: Callable[[str], None],
    settle: float = 5.0,
    types: tuple[str, ...] = CHAIN,
) -> dict[str, object]:
    """Runs in the host namespace. Returns the measured numbers."""
    out: dict[str, object] = {}
    tmp = Path(tempfile.mkdtemp(prefix="kanal-chain-"))
    kdir, sock = install(tmp)
    missing = [p for p in types if not (kdir / p).exists()]
    if missing:
        raise RuntimeError(f"kanal has no {', '.join(missing)} plugin")
    impls = [
        ChainImpl(
            "kanal", str(kdir), unique("kck", 15), "10.203.0.0/16", str(tmp / "k"), 20000, types
        ),
        ChainImpl(
            "kanal-standalone",
            str(kdir),
            unique("kcs", 15),
            "10.206.0.0/16",
            str(tmp / "s"),
            40000,
            types,
            standalone_env(tmp),
        ),
        ChainImpl(
            "go-ref", GO_DIR, unique("kcg", 15), "10.204.0.0/16", str(tmp / "g"), 30000, types
        ),
    ]
    made: list[str] = []
    adds: dict[tuple[str, int], list[float]] = {}
    dels: dict[tuple[str, int], list[float]] = {}
    rss: dict[int, float] = {}
    Held = list[tuple[str, str, int, dict[str, Any]]]

    def attach(impl: ChainImpl, mine: Held, count: int) -> None:
        while len(mine) < count:
            ns = create_netns(unique("kcc", 30))
            made.append(ns)
            cid = f"keep-{impl.name}-{len(mine)}"
            port = impl.port_base + 5000 + len(mine)
            _, res = chain_add(impl, net, cid, f"/run/netns/{ns}", port)
            mine.append((ns, cid, port, res))

    def sample(impl: ChainImpl, target: int, k: int) -> None:
        ns = create_netns(unique("kcs", 30))
        try:
            cid = f"s-{impl.name}-{target}-{k}"
            port = impl.port_base + k
            dt, res = chain_add(impl, net, cid, f"/run/netns/{ns}", port)
            adds.setdefault((impl.name, target), []).append(dt)
            dels.setdefault((impl.name, target), []).append(
                chain_del(impl, net, cid, f"/run/netns/{ns}", port, res)
            )
        finally:
            delete_netns(ns)

    def detach(impl: ChainImpl, mine: Held) -> None:
        for ns, cid, port, res in mine:
            chain_del(impl, net, cid, f"/run/netns/{ns}", port, res)
            delete_netns(ns)
            made.remove(ns)
        mine.clear()

    def done(impl: ChainImpl, target: int, daemon: subprocess.Popen[bytes]) -> None:
        if impl.name == "kanal":
            rss[target] = _rss_mb(daemon.pid)
        a, d = adds[(impl.name, target)], dels[(impl.name, target)]
        report(
            f"  {impl.name:16s} attached={target:4d}: chain ADD p50 "
            f"{p50(a):6.1f} ms, DEL p50 {p50(d):6.1f} ms"
        )

    try:
        with kanald(sock) as daemon:
            net = unique("chain", 20)
            # A few attached: samples interleave across implementations (see cni_bench).
            for target in [t for t in attached if t <= INTERLEAVE_UP_TO]:
                held: dict[str, Held] = {impl.name: [] for impl in impls}
                for impl in impls:
                    attach(impl, held[impl.name], target)
                time.sleep(settle)
                for k in range(samples):
                    for impl in impls:
                        sample(impl, target, k)
                for impl in impls:
                    done(impl, target, daemon)
                    detach(impl, held[impl.name])
            # Many: one implementation at a time (see cni_bench: a new container's
            # floods would bill the other side).
            for impl in impls:
                mine: Held = []
                for target in [t for t in attached if t > INTERLEAVE_UP_TO]:
                    attach(impl, mine, target)
                    time.sleep(settle)
                    for k in range(samples):
                        sample(impl, target, k)
                    done(impl, target, daemon)
                detach(impl, mine)
            for target in attached:
                ka, ra = p50(adds[("kanal", target)]), p50(adds[("go-ref", target)])
                kd, rd = p50(dels[("kanal", target)]), p50(dels[("go-ref", target)])
                sa = p50(adds[("kanal-standalone", target)])
                sd = p50(dels[("kanal-standalone", target)])
                row = {
                    "attached": target,
                    "kanal_add_p50_ms": ka,
                    "ref_add_p50_ms": ra,
                    "kanal_del_p50_ms": kd,
                    "ref_del_p50_ms": rd,
                    "add_ratio": ka / ra,
                    "del_ratio": kd / rd,
                    "add_del_ratio": (ka + kd) / (ra + rd),
                    "kanald_rss_mb": rss[target],
                    "standalone_add_p50_ms": sa,
                    "standalone_del_p50_ms": sd,
                    "standalone_add_del_ratio": (sa + sd) / (ra + rd),
                }
                out[f"attached_{target}"] = row
                report(
                    f"attached={target:4d}  Go ADD {ra:6.1f} DEL {rd:6.1f} ms | kanald ADD "
                    f"{ka:6.1f} DEL {kd:6.1f} ms, ADD+DEL ratio {(ka + kd) / (ra + rd):.2f} | "
                    f"standalone ADD {sa:6.1f} DEL {sd:6.1f} ms, ADD+DEL ratio "
                    f"{(sa + sd) / (ra + rd):.2f} | kanald RSS {rss[target]:.0f} MB"
                )
    finally:
        for ns in made:
            delete_netns(ns)
        shutil.rmtree(tmp, ignore_errors=True)
    return out
