"""The network manager's connect, against the kernel floor, and at 1000 sandboxes.

Floor: the least netlink work a bridge attachment needs, sent as kanal's own
pipelined batches with no logic around them — a veth pair with its peer made in
the sandbox namespace, attached and up, then the address, link up and default
route inside. Engine: ``Controller.connect`` of a sandbox to a bridge network
(addresses from the store, the chain bridge(+static IPAM) through libcni in this
process, result cached, store updated). Both run in the host namespace made by
bench/run.py. Then 1000 sandboxes are connected one after the other: total time
and the process's resident memory.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import create_netns, delete_netns, unique  # noqa: E402


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def floor_samples(samples: int) -> list[float]:
    from kanal.netlink.batch import Batch, raw_socket
    from kanal.netlink.handle import Netlink
    from kanal.netlink.ns import open_netns, run_in_netns

    br = unique("kfl", 15)
    with Netlink() as nl:
        link, _ = nl.ensure_bridge(br)
    with raw_socket() as s:
        b = Batch(s)
        b.add_addr(link.index, ipaddress.ip_interface("10.209.0.1/16"), exist_ok=True, nodad=True)
        b.commit()
    out = []
    try:
        for k in range(samples):
            ns = create_netns(unique("kfs", 30))
            fd = open_netns(f"/run/netns/{ns}")
            try:
                host = "veth" + secrets.token_hex(4)
                addr = ipaddress.IPv4Interface(f"10.209.{1 + k // 250}.{1 + k % 250}/16")
                t = time.perf_counter()
                with raw_socket() as s:
                    b = Batch(s)
                    b.add_veth(host, "eth0", fd, master=link.index)
                    b.set_link(name=host, no_ipv6_link_local=True)
                    b.set_link(name=host, up=True)
                    b.commit()

                def inside(addr: ipaddress.IPv4Interface = addr) -> None:
                    with raw_socket() as s2:
                        b2 = Batch(s2)
                        idx = socket.if_nametoindex("eth0")
                        b2.add_addr(idx, addr, nodad=True)
                        b2.set_link(index=idx, no_ipv6_link_local=True)
                        b2.set_link(index=idx, up=True)
                        b2.add_route(
                            ipaddress.ip_network("0.0.0.0/0"),
                            gateway=ipaddress.ip_address("10.209.0.1"),
                            oif=idx,
                        )
                        b2.commit()

                run_in_netns(fd, inside)
                out.append(time.perf_counter() - t)
            finally:
                os.close(fd)
                delete_netns(ns)
    finally:
        with Netlink() as nl:
            nl.del_link(br)
    return out


def run(samples: int, many: int, report: Callable[[str], None]) -> dict[str, object]:
    from kanal.daemon.cniruntime import inprocess_cni
    from kanal.engine.context import EngineContext
    from kanal.engine.controller import Controller, NetworkSpec, SandboxRef
    from kanal.engine.ipam import Pool
    from kanal.engine.model import new_id
    from kanal.netlink import reaper
    from kanal.store import open_store

    reaper.enable()  # as kanald does: a veth's unregister runs after the reply
    tmp = Path(tempfile.mkdtemp(prefix="kanal-engine-bench-"))
    made: list[str] = []
    try:
        floor = floor_samples(samples)
        ctrl = Controller(
            open_store(f"sqlite://{tmp}/state.db"),
            EngineContext(
                cni_runtime=inprocess_cni,
                state_dir=str(tmp / "state"),
                cni_conf_dir=str(tmp / "none"),
            ),
            pools=[Pool("10.210.0.0/16", 16)],
            default_bridge=unique("kbb", 15),
            default_subnet="10.211.0.0/24",
        )
        ctrl.ensure_builtin()
        ctrl.create_network(NetworkSpec("bench"))
        conn, disc = [], []
        for _ in range(samples):
            ns = create_netns(unique("kes", 30))
            try:
                sb = SandboxRef(new_id(), ns, f"/run/netns/{ns}")
                t = time.perf_counter()
                ctrl.connect("bench", sb)
                conn.append(time.perf_counter() - t)
                t = time.perf_counter()
                ctrl.disconnect("bench", sb.id)
                disc.append(time.perf_counter() - t)
            finally:
                delete_netns(ns)
        f50, c50, d50 = (statistics.median(x) * 1000 for x in (floor, conn, disc))
        report(
            f"connect p50 {c50:.1f} ms (goal <= 8 ms: 2 x the issue's 4 ms kernel floor); "
            f"kanal's batched floor {f50:.1f} ms (ratio {c50 / f50:.2f}); "
            f"disconnect p50 {d50:.1f} ms"
        )
        names = [unique("kem", 30) for _ in range(many)]
        for n in names:
            made.append(create_netns(n))
        rss0 = _rss_mb()
        t = time.perf_counter()
        for n in names:
            ctrl.connect("bench", SandboxRef(new_id(), n, f"/run/netns/{n}"))
        total = time.perf_counter() - t
        rss = _rss_mb()
        report(
            f"{many} sandboxes connected one after the other in {total:.1f} s (goal ≤ 15 s); "
            f"engine RSS {rss0:.0f} → {rss:.0f} MB (goal ≤ 80 MB)"
        )
        for ep in ctrl.endpoints():
            ctrl.disconnect(ep.network_id, ep.sandbox_id)
        ctrl.delete_network("bench")
        return {
            "floor_p50_ms": f50,
            "connect_p50_ms": c50,
            "disconnect_p50_ms": d50,
            "connect_floor_ratio": c50 / f50,
            "many": many,
            "many_total_s": total,
            "rss_mb": rss,
        }
    finally:
        for n in made:
            delete_netns(n)
        shutil.rmtree(tmp, ignore_errors=True)
