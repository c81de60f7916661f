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
    from bench import cni_bench

    attached = [int(x) for x in args.attached.split(",")]
    res = cni_bench.run(attached, args.samples, lambda line: print(line, flush=True))
    Path(args.out).write_text(json.dumps(res, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument(
        "--attached",
        default="1,1000",
        help="comma-separated numbers of containers already attached",
    )
    ap.add_argument("--samples", type=int, default=25)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results-cni.json"))
    args = ap.parse_args()
    if args.inside:
        inside(args)
        return
    if os.geteuid() != 0:
        sys.exit("bench: needs root (it creates network namespaces)")
    host = create_netns(unique("kbhost", 30))
    try:
        print(
            f"CNI bridge+host-local+ipMasq, kanal vs Go reference ({host}); p50 of "
            f"{args.samples} ADD/DEL each",
            flush=True,
        )
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
                "--samples",
                str(args.samples),
                "--out",
                args.out,
            ],
            check=True,
        )
    finally:
        delete_netns(host)
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
