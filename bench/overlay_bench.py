"""Overlay networks across hosts: how fast a new endpoint is reachable, and throughput.

Two kanald hosts (a kanal lab: namespaces on an underlay bridge, a 3-member etcd;
see tests/e2e/overlay_hosts.py) share an overlay network.

- Reachability: a prober sandbox runs on host 2. Each sample ``kanal run``s a new
  sandbox on host 1 whose command pings the prober every 5 ms with timestamps
  (``ping -D``); the first reply can only come back once host 2 has programmed
  the new endpoint (FDB + neighbour from etcd). Latency = first reply - the
  moment ``kanal run`` returned (0 when earlier). p50/p99 over the samples.
- Throughput: iperf3 TCP between a sandbox on each host over kanal's overlay, and
  between two namespaces joined by the hand-made VXLAN recipe of
  ../shared/reference/multihost/vxlan-lab.sh (same hosts, same underlay, VNI 4242,
  FDB/neighbour entries by hand), median of ``--repeats`` runs each, side by side.

    .venv/bin/python bench/overlay_bench.py [--samples 30] [--seconds 5] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.overlay_hosts import Hosts, available  # noqa: E402
from tests.helpers import create_netns, delete_netns, nsexec  # noqa: E402

from bench.ovs_bench import iperf  # noqa: E402


def _handmade(h: Hosts) -> tuple[str, str, str, list[str]]:
    """The lab recipe's L2 mode on hosts 1 and 2: (server ns, client ns, server ip, made)."""
    made: list[str] = []
    vni, mtu = "4242", "1450"
    ctr = {}
    for i, mac, vmac, ip in (
        (1, "02:00:00:00:42:01", "02:00:00:00:4a:01", "10.121.0.1"),
        (2, "02:00:00:00:42:02", "02:00:00:00:4a:02", "10.121.0.2"),
    ):
        hn = h.ns[i]
        c = create_netns(f"kovhm{i}{h.token}")
        made.append(c)
        ctr[i] = (c, mac, vmac, ip)
        nsexec(
            hn,
            "ip",
            "link",
            "add",
            "hmvx",
            "address",
            vmac,
            "type",
            "vxlan",
            "id",
            vni,
            "local",
            h.addr(i),
            "dev",
            "ul0",
            "dstport",
            "4789",
            "nolearning",
            "proxy",
        )
        nsexec(hn, "ip", "link", "set", "hmvx", "mtu", mtu)
        nsexec(hn, "ip", "link", "add", "hmbr", "type", "bridge")
        nsexec(hn, "ip", "link", "set", "hmbr", "mtu", mtu, "up")
        nsexec(
            hn, "ip", "link", "add", "hmveth", "type", "veth", "peer", "name", "eth0", "netns", c
        )
        nsexec(c, "ip", "link", "set", "eth0", "address", mac, "mtu", mtu, "up")
        nsexec(c, "ip", "addr", "add", f"{ip}/24", "dev", "eth0")
        nsexec(hn, "ip", "link", "set", "hmveth", "master", "hmbr", "mtu", mtu, "up")
        nsexec(hn, "ip", "link", "set", "hmvx", "master", "hmbr", "up")
    for i, j in ((1, 2), (2, 1)):
        _c, rmac, _v, rip = ctr[j]
        hn = h.ns[i]
        nsexec(hn, "bridge", "fdb", "append", rmac, "dev", "hmvx", "dst", h.addr(j))
        nsexec(hn, "ip", "neigh", "add", rip, "lladdr", rmac, "dev", "hmvx", "nud", "permanent")
    return ctr[1][0], ctr[2][0], ctr[1][3], made


def run(
    samples: int, seconds: int, repeats: int, report: Callable[[str], None]
) -> dict[str, object]:
    why = available()
    if why:
        report(f"overlay benchmark skipped: {why}")
        return {}
    with tempfile.TemporaryDirectory(prefix="kovb") as tmp:
        h = Hosts(Path(tmp), n=2, ttl=5, grace=10.0, resync=5.0)
        made: list[str] = []
        try:
            h.setup()
            return _measure(h, samples, seconds, repeats, report, made)
        finally:
            for ns in made:
                delete_netns(ns)
            h.close()


def _measure(
    h: Hosts,
    samples: int,
    seconds: int,
    repeats: int,
    report: Callable[[str], None],
    made: list[str],
) -> dict[str, object]:
    h.kanal(1, "network", "create", "-d", "overlay", "--subnet", "10.120.0.0/24", "ovb")
    h.kanal(2, "run", "-d", "--name", "prober", "--network", "ovb", "--", "sleep", "3600")
    prober = h.ip_of(2, "prober", "ovb")
    logs = Path(h.tmp) / "pings"
    logs.mkdir()
    lat: list[float] = []
    for k in range(samples):
        log = logs / f"p{k}.log"
        h.kanal(
            1,
            "run",
            "-d",
            "--name",
            f"p{k}",
            "--network",
            "ovb",
            "--",
            "sh",
            "-c",
            f"exec ping -D -n -i 0.005 -c 2000 -W 1 {prober} > {log} 2>&1",
        )
        returned = time.time()
        first = None
        for _ in range(400):
            for line in log.read_text().splitlines() if log.exists() else []:
                if "bytes from" in line and line.startswith("["):
                    first = float(line[1 : line.index("]")])
                    break
            if first is not None:
                break
            time.sleep(0.025)
        if first is None:
            raise RuntimeError(f"p{k} never reached the prober")
        lat.append(max(0.0, first - returned))
        h.kanal(1, "rm", "-f", f"p{k}")
    lat_ms = sorted(x * 1000 for x in lat)
    p50 = statistics.median(lat_ms)
    p99 = lat_ms[min(len(lat_ms) - 1, int(round(0.99 * (len(lat_ms) - 1))))]
    report(
        f"  reachable from the other host after kanal run: p50 {p50:.1f} ms, "
        f"p99 {p99:.1f} ms, max {lat_ms[-1]:.1f} ms (goal p99 <= 1000 ms)"
    )

    h.kanal(1, "run", "-d", "--name", "srv", "--network", "ovb", "--", "sleep", "3600")
    h.kanal(2, "run", "-d", "--name", "cli", "--network", "ovb", "--", "sleep", "3600")
    srv_ip = h.ip_of(1, "srv", "ovb")
    srv_ns, cli_ns = h.sandbox_netns(1, "srv"), h.sandbox_netns(2, "cli")
    s_ns, c_ns, s_ip, hm = _handmade(h)
    made += hm
    kan, lab = [], []
    for k in range(repeats):  # interleaved (and alternating), so both see the same load
        if k % 2 == 0:
            kan.append(iperf(cli_ns, srv_ns, srv_ip, seconds))
            lab.append(iperf(c_ns, s_ns, s_ip, seconds))
        else:
            lab.append(iperf(c_ns, s_ns, s_ip, seconds))
            kan.append(iperf(cli_ns, srv_ns, srv_ip, seconds))
    k50, l50 = statistics.median(kan), statistics.median(lab)
    report(
        f"  iperf3 over kanal's overlay       {k50:6.2f} Gbit/s  (runs: "
        + ", ".join(f"{x:.2f}" for x in kan)
        + ")"
    )
    report(
        f"  iperf3 over the hand-made VXLAN   {l50:6.2f} Gbit/s  (runs: "
        + ", ".join(f"{x:.2f}" for x in lab)
        + ")"
    )
    report(f"  ratio kanal / hand-made           {k50 / l50:6.2f}  (goal >= 0.95)")
    h.kanal(1, "rm", "-f", "srv")
    h.kanal(2, "rm", "-f", "cli", "prober")
    return {
        "reachable_ms": {"p50": p50, "p99": p99, "max": lat_ms[-1], "samples": samples},
        "iperf_gbit": {"kanal": kan, "handmade": lab, "ratio": k50 / l50},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=30)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    print(
        f"== overlay: reachability after kanal run ({args.samples} samples), iperf3 "
        f"({args.repeats} x {args.seconds} s) vs the hand-made VXLAN recipe"
    )
    res = run(args.samples, args.seconds, args.repeats, lambda s: print(s, flush=True))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
