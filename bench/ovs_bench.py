"""The ``ovs`` driver (Open vSwitch, userspace datapath) next to the Linux bridge driver.

Attach: p50 of ``Controller.connect`` (and ``disconnect``) of a fresh sandbox to
an ``ovs`` network and to a ``bridge`` network on the same host, in one run.
Throughput: iperf3 TCP between two sandboxes of the same network (median of
``--repeats`` runs of ``--seconds`` s), OVS vs Linux bridge, and OVS across two
hosts over its VXLAN ports. Every host is a namespace made here running its own
ovsdb-server and ovs-vswitchd (private directory), all removed afterwards.

    .venv/bin/python bench/ovs_bench.py [--samples 20] [--seconds 5] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import create_netns, delete_netns, nsexec, run, unique  # noqa: E402


def _inside(ns: str) -> list[str]:
    """Enter a namespace by name (/run/netns) or by path (a kanal lab's sandboxes)."""
    return ["nsenter", f"--net={ns}"] if ns.startswith("/") else ["ip", "netns", "exec", ns]


def iperf(client: str, server: str, ip: str, seconds: int) -> float:
    """Gbit/s received by an iperf3 server in ``server`` from a client in ``client``
    (namespace names or paths)."""
    srv = subprocess.Popen(
        [*_inside(server), "iperf3", "-s", "-1", "-B", ip],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):  # the server needs a moment to listen
            p = run(
                [*_inside(client), "iperf3", "-J", "-c", ip, "-t", str(seconds)],
                check=False,
                timeout=60,
            )
            doc = json.loads(p.stdout or b"{}")
            if p.returncode == 0 and "sum_received" in doc.get("end", {}):
                return float(doc["end"]["sum_received"]["bits_per_second"]) / 1e9
            time.sleep(0.05)
        raise RuntimeError(f"iperf3 to {ip} failed: {doc.get('error', p.stdout[-300:])!r}")
    finally:
        srv.kill()
        srv.wait()


def p50_ms(xs: list[float]) -> float:
    return statistics.median(xs) * 1000


def main() -> None:
    from tests.netns.test_engine import Engine
    from tests.netns.test_ovs import start_ovs, stop_ovs

    from kanal.engine.controller import NetworkSpec, SandboxRef
    from kanal.engine.model import IPAMConfig, new_id

    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=20, help="attach/detach samples per driver")
    ap.add_argument("--seconds", type=int, default=5, help="iperf3 run length")
    ap.add_argument("--repeats", type=int, default=3, help="iperf3 runs per setup (median)")
    args = ap.parse_args()
    from kanal.netlink import reaper

    reaper.enable()  # as kanald does: a veth's unregister runs after the reply

    made: list[str] = []
    daemons: list[tuple[str, list[subprocess.Popen[bytes]]]] = []
    tmp = Path(tempfile.mkdtemp(prefix="kanal-ovs-bench-"))

    def ns(prefix: str) -> str:
        made.append(create_netns(unique(prefix, 30)))
        return made[-1]

    try:
        h1, h2 = ns("kobh"), ns("kobh")
        for h in (h1, h2):
            daemons.append(start_ovs(h))
        db1, db2 = (f"unix:{d}/db.sock" for d, _ in daemons)
        # underlay for the VXLAN row: each end on an OVS bridge with the host's address
        nsexec(h1, "ip", "link", "add", "und", "type", "veth", "peer", "name", "und", "netns", h2)
        for i, (h, db) in enumerate(((h1, db1), (h2, db2)), start=1):
            vs = ["ovs-vsctl", f"--db={db}", "--timeout=10"]
            nsexec(h, *vs, "add-br", "kphy", "--", "set", "Bridge", "kphy", "datapath_type=netdev")
            nsexec(h, *vs, "add-port", "kphy", "und")
            nsexec(h, "ip", "link", "set", "und", "up")
            nsexec(h, "ip", "addr", "add", f"192.168.77.{i}/24", "dev", "kphy")
            nsexec(h, "ip", "link", "set", "kphy", "up")
        (tmp / "h1").mkdir()
        (tmp / "h2").mkdir()
        e1, e2 = Engine(h1, tmp / "h1"), Engine(h2, tmp / "h2")
        e1(
            lambda: e1.ctrl.create_network(
                NetworkSpec("lb", ipam=[IPAMConfig("10.82.1.0/24")], options={})
            )
        )
        e1(
            lambda: e1.ctrl.create_network(
                NetworkSpec(
                    "ovs", driver="ovs", ipam=[IPAMConfig("10.82.2.0/24")], options={"ovs.db": db1}
                )
            )
        )
        for e, db, gw, rng, remote in (
            (e1, db1, "10.82.3.1", "10.82.3.0/25", "192.168.77.2"),
            (e2, db2, "10.82.3.254", "10.82.3.128/25", "192.168.77.1"),
        ):
            spec = NetworkSpec(
                "vx",
                driver="ovs",
                ipam=[IPAMConfig("10.82.3.0/24", gateway=gw, ip_range=rng)],
                options={"ovs.db": db, "ovs.vxlan_remote": remote},
            )
            e(lambda e=e, spec=spec: e.ctrl.create_network(spec))  # type: ignore[misc]

        def attach(net: str) -> tuple[float, float]:
            conn, disc = [], []
            for _ in range(args.samples):
                sb_ns = create_netns(unique("kobs", 30))
                try:
                    sb = SandboxRef(new_id(), sb_ns, f"/run/netns/{sb_ns}")
                    t = time.perf_counter()
                    e1(lambda sb=sb: e1.ctrl.connect(net, sb))  # type: ignore[misc]
                    conn.append(time.perf_counter() - t)
                    t = time.perf_counter()
                    e1(lambda sb=sb: e1.ctrl.disconnect(net, sb.id))  # type: ignore[misc]
                    disc.append(time.perf_counter() - t)
                finally:
                    delete_netns(sb_ns)
            return p50_ms(conn), p50_ms(disc)

        att = {net: attach(net) for net in ("lb", "ovs")}

        def pair(ea: Engine, eb: Engine, net: str) -> tuple[str, str, str]:
            a, b = ns("kobs"), ns("kobs")
            ea(lambda: ea.ctrl.connect(net, SandboxRef(new_id(), a, f"/run/netns/{a}")))
            ep = eb(lambda: eb.ctrl.connect(net, SandboxRef(new_id(), b, f"/run/netns/{b}")))
            return a, b, ep.ipv4.split("/")[0]

        def thr(ea: Engine, eb: Engine, net: str) -> float:
            a, b, ip = pair(ea, eb, net)
            return statistics.median(iperf(a, b, ip, args.seconds) for _ in range(args.repeats))

        gbit = {
            "lb": thr(e1, e1, "lb"),
            "ovs": thr(e1, e1, "ovs"),
            "vx": thr(e1, e2, "vx"),
        }
        rows: list[tuple[str, str, str, str]] = [
            (
                "Linux bridge (bridge driver)",
                f"{att['lb'][0]:.1f} ms",
                f"{att['lb'][1]:.1f} ms",
                f"{gbit['lb']:.2f} Gbit/s",
            ),
            (
                "OVS userspace (ovs driver)",
                f"{att['ovs'][0]:.1f} ms",
                f"{att['ovs'][1]:.1f} ms",
                f"{gbit['ovs']:.2f} Gbit/s",
            ),
            ("OVS userspace, VXLAN across 2 hosts", "", "", f"{gbit['vx']:.2f} Gbit/s"),
        ]
        say: Callable[[str], None] = print
        say(
            f"attach/detach: p50 of {args.samples}; iperf3: TCP, median of "
            f"{args.repeats} x {args.seconds} s"
        )
        say(f"{'':38} {'attach':>10} {'detach':>10} {'iperf3':>14}")
        for name, a, d, g in rows:
            say(f"{name:38} {a:>10} {d:>10} {g:>14}")
        say(
            f"ratio OVS/bridge: attach {att['ovs'][0] / att['lb'][0]:.1f}x, "
            f"throughput {gbit['ovs'] / gbit['lb']:.2f}x"
        )
    finally:
        for d, procs in daemons:
            stop_ovs(d, procs)
        for n in reversed(made):
            delete_netns(n)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
