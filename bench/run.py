"""`make bench`: every benchmark, side by side with its reference, ratios printed.

The host side of every benchmark is a network namespace made here and deleted
afterwards; the machine's own namespace is never touched.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import create_netns, delete_netns, unique  # noqa: E402


def inside(args: argparse.Namespace) -> None:
    from bench import chain_bench, cni_bench, dns_bench, engine_bench, netavark_bench

    results: dict[str, object] = {}

    def say(line: str) -> None:
        print(line, flush=True)

    if "cni" in args.only:
        say(f"== CNI bridge+host-local+ipMasq; p50 of {args.samples} ADD/DEL each")
        attached = [int(x) for x in args.attached.split(",")]
        results["cni"] = cni_bench.run(attached, args.samples, say)
    if "loopback" in args.only:
        say(f"== CNI loopback; p50 of {args.samples} ADD/DEL each, interleaved")
        results["loopback"] = cni_bench.run_loopback(args.samples, say)
    if "chain" in args.only:
        say(f"== CNI chain bridge+portmap+firewall+tuning; p50 of {args.samples} ADD/DEL each")
        attached = [int(x) for x in args.chain_attached.split(",")]
        results["chain"] = chain_bench.run(attached, args.samples, say)
    if "engine" in args.only:
        say(f"== engine connect vs the kernel floor; p50 of {args.samples}; then {args.many}")
        results["engine"] = engine_bench.run(args.samples, args.many, say)
    if "netavark" in args.only:
        say(f"== attach/detach vs netavark 1.4; p50 of {args.samples}")
        results["netavark"] = netavark_bench.run(args.samples, say)
    if "dns" in args.only:
        say("== embedded DNS vs aardvark-dns 1.4; 5 alternating slices of 400, then 4 x 2000")
        results["dns"] = dns_bench.run(2000, say)
    Path(args.out).write_text(json.dumps(results, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument(
        "--attached",
        default="1,1000",
        help="comma-separated numbers of containers already attached",
    )
    ap.add_argument(
        "--chain-attached",
        default="1,100",
        help="containers already attached for the chain benchmark",
    )
    ap.add_argument(
        "--only",
        default="cni,loopback,chain,engine,netavark,dns,docker,overlay,ovs,faults,lab",
        help=(
            "comma-separated: cni, loopback, chain, engine, netavark, dns, docker, overlay, ovs,"
            " faults, lab"
        ),
    )
    ap.add_argument("--many", type=int, default=1000, help="sandboxes for the engine's bulk run")
    ap.add_argument("--samples", type=int, default=25)
    ap.add_argument("--lab-hosts", type=int, default=50, help="hosts of the lab benchmark")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results.json"))
    args = ap.parse_args()
    if args.inside:
        inside(args)
        return
    if os.geteuid() != 0:
        sys.exit("bench: needs root (it creates network namespaces)")
    only = set(args.only.split(","))
    host = create_netns(unique("kbhost", 30))
    try:
        print(f"kanal vs its references, host namespace {host}", flush=True)
        subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                host,
                sys.executable,
                __file__,
                "--inside",
                "--attached",
                args.attached,
                "--chain-attached",
                args.chain_attached,
                "--only",
                args.only,
                "--many",
                str(args.many),
                "--samples",
                str(args.samples),
                "--out",
                args.out,
            ],
            check=True,
        )
    finally:
        delete_netns(host)
    if "docker" in only:
        # dockerd needs a host namespace of its own (it is entered with nsenter).
        from bench import docker_bench

        print(f"== docker run --rm on kanal vs dockerd's bridges; p50 of {args.samples}")
        res = json.loads(Path(args.out).read_text() or "{}")
        res["docker"] = docker_bench.run(args.samples, lambda s: print(s, flush=True))
        Path(args.out).write_text(json.dumps(res, indent=2))
    if "overlay" in only:
        # Hosts of their own: namespaces on an underlay bridge, etcd, one kanald each.
        from bench import overlay_bench

        print("== overlay: reachability after kanal run, iperf3 vs the hand-made VXLAN")
        res = json.loads(Path(args.out).read_text() or "{}")
        res["overlay"] = overlay_bench.run(30, 5, 3, lambda s: print(s, flush=True))
        Path(args.out).write_text(json.dumps(res, indent=2))
    if "faults" in only:
        # kanald in a host namespace of its own, faults made by hand, repair timed.
        from bench import fault_bench

        print("== outside faults: from the fault to a clean kanal system check, 10 rounds each")
        res = json.loads(Path(args.out).read_text() or "{}")
        res["faults"] = fault_bench.run(10, lambda s: print(s, flush=True))
        Path(args.out).write_text(json.dumps(res, indent=2))
    if "ovs" in only:
        print("== ovs driver (userspace datapath) vs the Linux bridge driver")
        subprocess.run([sys.executable, str(ROOT / "bench" / "ovs_bench.py")], check=False)
    if "lab" in only:
        # A kanal lab of --lab-hosts hosts (namespaces of its own, taken down after).
        print(f"== overlay at scale and under faults in a kanal lab ({args.lab_hosts} hosts)")
        lab_out = str(Path(args.out).with_name("lab_results.json"))
        subprocess.run(
            [sys.executable, str(ROOT / "bench" / "lab_bench.py"), "--hosts",
             str(args.lab_hosts), "--out", lab_out],
            check=False,
        )  # fmt: skip
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
