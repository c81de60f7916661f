"""Two commits of kanal side by side: CNI bridge and loopback execs, interleaved.

    bench/ab_bench.py A B [--samples N]

Checks out A and B as temporary worktrees, installs each one's plugin executables,
starts each one's kanald (fast path only) and then times, in turn, A through
kanald, A standalone, B through kanald, B standalone, A again ... — a bridge +
host-local + ipMasq ADD and DEL and a loopback ADD, each in a fresh container
namespace. Interleaving is the point: a machine shared with other work drifts by
more than a refactor's effect between two separate runs, and every sample of A
here has a sample of B next to it under the same load. Both trees run with this
checkout's interpreter and dependencies. Everything happens in a host namespace
made here; the worktrees are removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import create_netns, delete_netns, unique  # noqa: E402

PY = str(ROOT / ".venv" / "bin" / "python")


class Tree:
    """One commit's source, plugins and kanald."""

    def __init__(self, rev: str, src: Path, tmp: Path, index: int) -> None:
        self.rev, self.src = rev, src
        self.bindir = tmp / f"bin{index}"
        self.sock = tmp / f"kanald{index}.sock"
        self.env = {**os.environ, "PYTHONPATH": str(src / "src")}
        install = ["--socket", str(self.sock)]
        subprocess.run(
            [PY, "-m", "kanal.cli.main", "cni", "install", "--dir", str(self.bindir), *install],
            env=self.env,
            check=True,
            capture_output=True,
        )
        state = ["--state-dir", str(tmp / f"state{index}")]
        self.daemon = subprocess.Popen(
            [PY, "-m", "kanal.daemon.main", "--no-engine", "--socket", str(self.sock), *state],
            env=self.env,
            stderr=subprocess.DEVNULL,
        )
        self.bridge = json.dumps(
            {
                "cniVersion": "1.0.0",
                "name": f"ab{index}",
                "type": "bridge",
                "bridge": unique(f"kab{index}", 15),
                "isGateway": True,
                "ipMasq": True,
                "ipam": {
                    "type": "host-local",
                    "subnet": f"10.{214 + index}.0.0/16",
                    "dataDir": str(tmp / f"ipam{index}"),
                },
            }
        ).encode()
        self.no_daemon = {"KANAL_SOCKET": str(tmp / "nobody.sock")}

    def exec(
        self, plugin: str, cmd: str, cid: str, netns: str, conf: bytes, env: dict[str, str]
    ) -> float:
        full = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "CNI_COMMAND": cmd,
            "CNI_CONTAINERID": cid,
            "CNI_NETNS": netns,
            "CNI_IFNAME": "eth0",
            "CNI_PATH": str(self.bindir),
            **env,
        }
        t = time.perf_counter()
        p = subprocess.run([str(self.bindir / plugin)], input=conf, env=full, capture_output=True)
        dt = (time.perf_counter() - t) * 1000
        if p.returncode != 0:
            raise RuntimeError(f"{self.rev} {plugin} {cmd}: {p.stdout!r} {p.stderr!r}")
        return dt


LOOPBACK = json.dumps({"cniVersion": "1.0.0", "name": "lo", "type": "loopback"}).encode()


def inside(revs: list[str], samples: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="kanal-ab-"))
    trees: list[Tree] = []
    times: dict[tuple[int, str], list[float]] = {}
    try:
        for i, rev in enumerate(revs):
            wt = tmp / f"tree{i}"
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(wt), rev],
                check=True,
            )
            trees.append(Tree(rev, wt, tmp, i))
        for _ in range(300):
            if all(t.sock.exists() for t in trees):
                break
            time.sleep(0.02)
        for k in range(samples + 2):  # the first two warm caches: not counted
            # A B, then B A: neither tree always follows the other one's work.
            order = list(enumerate(trees)) if k % 2 == 0 else list(enumerate(trees))[::-1]
            for i, tree in order:
                for mode, env in (("kanald", {}), ("standalone", tree.no_daemon)):
                    ns = create_netns(unique("kab", 30))
                    netns = f"/run/netns/{ns}"
                    try:
                        got = {
                            "bridge ADD": tree.exec(
                                "bridge", "ADD", f"c{k}", netns, tree.bridge, env
                            ),
                            "bridge DEL": tree.exec(
                                "bridge", "DEL", f"c{k}", netns, tree.bridge, env
                            ),
                            "loopback ADD": tree.exec(
                                "loopback", "ADD", f"c{k}", netns, LOOPBACK, env
                            ),
                        }
                    finally:
                        delete_netns(ns)
                    if k >= 2:
                        for what, ms in got.items():
                            times.setdefault((i, f"{mode} {what}"), []).append(ms)
    finally:
        for tree in trees:
            tree.daemon.terminate()
            tree.daemon.wait(10)
        for i in range(len(revs)):
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tmp / f"tree{i}")],
                check=False,
            )
        shutil.rmtree(tmp, ignore_errors=True)
    names = sorted({what for _, what in times})
    print(f"p50 of {samples} interleaved samples, ms; ratio = {revs[1]} / {revs[0]}")
    print(f"{'measure':28s} {revs[0][:12]:>12s} {revs[1][:12]:>12s}  ratio")
    for what in names:
        a, b = statistics.median(times[(0, what)]), statistics.median(times[(1, what)])
        print(f"{what:28s} {a:12.2f} {b:12.2f}  {b / a:5.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a", help="the commit before")
    ap.add_argument("b", help="the commit after")
    ap.add_argument("--samples", type=int, default=30)
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inside:
        inside([args.a, args.b], args.samples)
        return
    if os.geteuid() != 0:
        sys.exit("ab_bench: needs root (it creates network namespaces)")
    host = create_netns(unique("kabhost", 30))
    try:
        subprocess.run(["ip", "netns", "exec", host, "ip", "link", "set", "lo", "up"], check=True)
        # nsenter, not `ip netns exec`: the container namespaces made inside must be
        # visible to the kanald started inside (one mount namespace).
        rest = [args.a, args.b, "--samples", str(args.samples)]
        subprocess.run(
            ["nsenter", f"--net=/run/netns/{host}", sys.executable, __file__, "--inside", *rest],
            check=True,
        )
    finally:
        delete_netns(host)


if __name__ == "__main__":
    main()
