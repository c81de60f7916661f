"""``docker run --rm`` on a kanal network vs on dockerd's built-in bridge, side by side.

One private dockerd 20.10 (its default ``bridge`` network on) and kanald serving
the Docker plugin run in a host namespace made here (tests/e2e/dockerd.py). The
same busybox container (``true``) is run alternately on the built-in bridge and
on a ``-d kanal`` network, so both see the same machine load; p50 and the ratio
are reported. Also ``docker network create`` + ``rm`` for each driver.

    .venv/bin/python bench/docker_bench.py [--samples 15]
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

from tests.e2e.dockerd import Dockerd, available  # noqa: E402
from tests.helpers import create_netns, delete_netns, unique  # noqa: E402


def _timed(dk: Dockerd, *args: str) -> float:
    t = time.perf_counter()
    dk.docker(*args)
    return time.perf_counter() - t


def run(samples: int, report: Callable[[str], None]) -> dict[str, object]:
    why = available()
    if why:
        report(f"docker benchmark skipped: {why}")
        return {}
    host = create_netns(unique("kbdk", 30))
    try:
        with tempfile.TemporaryDirectory(prefix="kbdk") as tmp:
            dk = Dockerd(host, Path(tmp), builtin_bridge=True)
            try:
                dk.start()
                return _measure(dk, samples, report)
            finally:
                dk.stop()
    finally:
        delete_netns(host)


def _measure(dk: Dockerd, samples: int, report: Callable[[str], None]) -> dict[str, object]:
    dk.docker("network", "create", "-d", dk.plugin, "kbench")
    dk.docker("network", "create", "-d", "bridge", "kbuser")
    runs: dict[str, list[float]] = {"bridge": [], "user": [], "kanal": []}
    # dockerd's default network, a user-defined bridge network (which, like every
    # user-defined network, also gets dockerd's embedded DNS), and kanal's.
    nets = {"bridge": "bridge", "user": "kbuser", "kanal": "kbench"}
    for net in nets.values():  # warm both paths (image layers, plugin activation)
        dk.docker("run", "--rm", "--network", net, dk.IMAGE, "true")
    for _ in range(samples):
        for name, net in nets.items():
            runs[name].append(_timed(dk, "run", "--rm", "--network", net, dk.IMAGE, "true"))
    create: dict[str, list[float]] = {"bridge": [], "kanal": []}
    for i in range(max(3, samples // 3)):
        for name, driver in (("bridge", "bridge"), ("kanal", dk.plugin)):
            net = f"kb{name}{i}"
            made = _timed(dk, "network", "create", "-d", driver, net)
            create[name].append(made + _timed(dk, "network", "rm", net))
    dk.docker("network", "rm", "kbench", "kbuser")
    p50 = {k: statistics.median(v) * 1000 for k, v in runs.items()}
    c50 = {k: statistics.median(v) * 1000 for k, v in create.items()}
    ratio = p50["kanal"] / p50["bridge"]
    ratio_user = p50["kanal"] / p50["user"]
    report(f"  docker run --rm, default bridge network     p50 {p50['bridge']:7.1f} ms")
    report(f"  docker run --rm, user-defined -d bridge     p50 {p50['user']:7.1f} ms")
    report(f"  docker run --rm, -d kanal (plugin)          p50 {p50['kanal']:7.1f} ms")
    report(f"  ratio kanal / default bridge                {ratio:7.2f}  (goal <= 1.1)")
    report(f"  ratio kanal / user-defined bridge           {ratio_user:7.2f}")
    report(
        f"  network create+rm: built-in {c50['bridge']:.1f} ms, kanal {c50['kanal']:.1f} ms "
        f"({c50['kanal'] / c50['bridge']:.2f}x)"
    )
    return {
        "run_p50_ms": p50,
        "ratio": ratio,
        "ratio_user_defined": ratio_user,
        "create_rm_p50_ms": c50,
        "samples": samples,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=15)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    print(f"== docker run --rm on kanal vs dockerd's bridge; p50 of {args.samples} each")
    res = run(args.samples, lambda s: print(s, flush=True))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
