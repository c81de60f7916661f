"""How fast kanald puts back what an outside hand removed (goal: within 1 s).

A kanald in a host namespace made here serves a network with two sandboxes, one
publishing a port. Each fault is made with the operator's own tools, ``rounds``
times; the time from the fault to a clean ``GET /system/check`` is measured (the
check polled every 10 ms). Run with ``python bench/fault_bench.py``; ``make bench``
runs it too.
"""

from __future__ import annotations

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

from tests.helpers import create_netns, delete_netns, nsexec, unique  # noqa: E402

VENV = ROOT / ".venv" / "bin"
GOAL = 1.0


def run(rounds: int, report: Callable[[str], None]) -> dict[str, object]:
    from kanal.daemon.client import ApiClient

    host = create_netns(unique("kbfault", 30))
    tmp = Path(tempfile.mkdtemp(prefix="kanal-fault-bench-"))
    api = tmp / "api.sock"
    argv = [
        "nsenter", f"--net=/run/netns/{host}", str(VENV / "kanald"),
        "--socket", str(tmp / "fp.sock"), "--state-dir", str(tmp / "state"),
        "--api-socket", str(api), "--default-bridge", unique("kbf", 15),
        "--default-subnet", "10.70.0.0/24", "--cni-conf-dir", str(tmp / "net.d"),
        "--netns-dir", str(tmp / "netns"), "--docker-plugin-socket", "none",
    ]  # fmt: skip
    daemon = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
    results: dict[str, object] = {}
    try:
        for _ in range(500):
            if api.exists():
                break
            time.sleep(0.02)
        c = ApiClient(str(api))

        def kanal(*args: str) -> str:
            group = (
                [args[0], "-H", str(api)] if args[0] != "network" else ["network", "-H", str(api)]
            )
            p = subprocess.run(
                [str(VENV / "kanal"), *group, *args[1:]], capture_output=True, text=True, check=True
            )
            return p.stdout

        net = c.request("POST", "/networks/create", {"Name": "app", "IPAM": {"Config": [
            {"Subnet": "10.88.0.0/24"}]}})["Id"]  # fmt: skip
        bridge = f"br-{net[:12]}"
        kanal("run", "-d", "--name", "web", "--network", "app", "-p", "127.0.0.1:18181:80", "--",
              "sleep", "3600")  # fmt: skip
        kanal("run", "-d", "--name", "peer", "--network", "app", "--", "sleep", "3600")

        def veth() -> str:
            import json

            links = json.loads(nsexec(host, "ip", "-j", "link").stdout)
            return str(next(ln["ifname"] for ln in links if ln.get("master") == bridge))

        faults: list[tuple[str, Callable[[], list[str]]]] = [
            ("nft flush ruleset", lambda: ["nft", "flush", "ruleset"]),
            ("kanal's nft table deleted", lambda: ["nft", "delete", "table", "inet", "kanal"]),
            ("bridge's addresses flushed", lambda: ["ip", "addr", "flush", "dev", bridge]),
            ("bridge deleted", lambda: ["ip", "link", "del", bridge]),
            ("a sandbox's veth deleted", lambda: ["ip", "link", "del", veth()]),
        ]
        report(f"{'fault':<28} {'p50':>8} {'max':>8}   goal ≤ {GOAL:.0f} s")
        for name, cmd in faults:
            times = []
            for _ in range(rounds):
                argv_fault = cmd()
                t0 = time.monotonic()
                nsexec(host, *argv_fault)
                while c.request("GET", "/system/check")["Problems"]:
                    time.sleep(0.01)
                    if time.monotonic() - t0 > 30:
                        break
                times.append(time.monotonic() - t0)
                time.sleep(0.2)  # let the repair's own events pass
            p50, worst = statistics.median(times), max(times)
            mark = "✔" if worst <= GOAL else "✗"
            report(f"{name:<28} {p50 * 1000:>6.0f}ms {worst * 1000:>6.0f}ms   {mark}")
            results[name] = {"p50_ms": round(p50 * 1000, 1), "max_ms": round(worst * 1000, 1)}
        for sb in ("web", "peer"):
            kanal("rm", "-f", sb)
    finally:
        daemon.terminate()
        daemon.wait(10)
        for f in (tmp / "netns").glob("*"):
            subprocess.run(["umount", str(f)], capture_output=True)
        delete_netns(host)
        shutil.rmtree(tmp, ignore_errors=True)
    return results


if __name__ == "__main__":
    run(int(sys.argv[1]) if len(sys.argv) > 1 else 10, lambda s: print(s, flush=True))
