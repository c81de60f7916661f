"""CNI plugin latency, kanal vs the Go reference plugins, side by side in one run.

All are executed as a runtime executes a plugin (fork+exec, env, config on
stdin) with the "host" inside a namespace made here. The conflist is the issue's:
bridge + host-local + ipMasq. kanal is measured twice, with the same installed
executables: handing requests to kanald (running inside the host namespace, as
on a node) and standalone (no daemon answers: each exec runs the plugin itself,
what containerd, podman or kubelet nodes do without kanald). Each implementation
gets its own bridge, subnet and state directories.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import create_netns, delete_netns, unique  # noqa: E402

GO_DIR = "/usr/lib/cni"
PY = str(ROOT / ".venv" / "bin" / "python")


@dataclass
class Impl:
    name: str
    plugin_dir: str
    bridge: str
    subnet: str
    data_dir: str
    backend: str | None = None
    env: dict[str, str] = field(default_factory=dict)

    def conf(self, netname: str) -> bytes:
        c: dict[str, object] = {
            "cniVersion": "1.0.0",
            "name": netname,
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
        }
        if self.backend:
            c["ipMasqBackend"] = self.backend
        return json.dumps(c).encode()


def exec_plugin(host_ns: str, impl: Impl, cmd: str, cid: str, netns: str, conf: bytes) -> float:
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "CNI_COMMAND": cmd,
        "CNI_CONTAINERID": cid,
        "CNI_NETNS": netns,
        "CNI_IFNAME": "eth0",
        "CNI_PATH": impl.plugin_dir,
        **impl.env,
    }
    # `ip netns exec` would add its own cost to every sample; enter the host
    # namespace once instead: this process runs inside it (see main()).
    t = time.perf_counter()
    p = subprocess.run(
        [os.path.join(impl.plugin_dir, "bridge")], input=conf, env=env, capture_output=True
    )
    dt = time.perf_counter() - t
    if p.returncode != 0:
        raise RuntimeError(f"{impl.name} {cmd} failed: {p.stdout!r} {p.stderr!r}")
    return dt


@contextmanager
def kanald(socket_path: str) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "kanald"), "--no-engine", "--socket", socket_path],
        stderr=subprocess.PIPE,
    )
    for _ in range(300):
        if os.path.exists(socket_path):
            break
        time.sleep(0.02)
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def p50(xs: list[float]) -> float:
    return statistics.median(xs) * 1000


# Up to this many attached containers, the implementations' samples interleave.
INTERLEAVE_UP_TO = 10

# The floor under a standalone exec (docs/fastpath.md, "The floor under a standalone
# exec"), timed like a plugin exec in the same rounds: the installed executables'
# interpreter starting with nothing to do, and then importing only the standard
# library the exec path stands on: os; ipaddress (with functools and collections: the
# CNI result types hold its addresses); json's C scanner (Go-compatible decoding);
# _ctypes (setns: Python 3.11's os has none); struct, errno, fcntl.
FLOOR_IMPORTS = "import os, ipaddress, _json, _ctypes, struct, errno, fcntl"


def shim_interpreter(kdir: Path) -> list[str]:
    """The interpreter line of an installed executable: ['/usr/bin/python3.11', '-IS']."""
    with open(kdir / "bridge", "rb") as f:
        first = f.readline().decode()
    assert first.startswith("#!"), first
    return first[2:].split()


def exec_floor(argv: list[str]) -> float:
    t = time.perf_counter()
    p = subprocess.run(argv, input=b"", env={"PATH": "/usr/bin:/bin"}, capture_output=True)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        raise RuntimeError(f"{argv} failed: {p.stderr!r}")
    return dt


def install(tmp: Path) -> tuple[Path, str]:
    """kanal's executables in ``tmp``/kanal-bin, talking to kanald at ``tmp``/kanald.sock."""
    kdir = tmp / "kanal-bin"
    sock = str(tmp / "kanald.sock")
    subprocess.run(
        [PY, "-m", "kanal.cli.main", "cni", "install", "--dir", str(kdir), "--socket", sock],
        check=True,
        capture_output=True,
    )
    return kdir, sock


def standalone_env(tmp: Path) -> dict[str, str]:
    """The environment that makes the installed executables run without kanald: a
    socket path nobody listens on (KANAL_SOCKET overrides the installed one)."""
    return {"KANAL_SOCKET": str(tmp / "no-kanald.sock")}


def run(
    attached: list[int], samples: int, report: Callable[[str], None], settle: float = 8.0
) -> dict[str, object]:
    """Runs in the host namespace. Returns the measured numbers."""
    out: dict[str, object] = {}
    tmp = Path(tempfile.mkdtemp(prefix="kanal-bench-"))
    kdir, sock = install(tmp)
    impls = [
        Impl("kanal", str(kdir), unique("kbk", 15), "10.201.0.0/16", str(tmp / "k-ipam")),
        Impl(
            "kanal-standalone",
            str(kdir),
            unique("kbs", 15),
            "10.205.0.0/16",
            str(tmp / "s-ipam"),
            env=standalone_env(tmp),
        ),
        Impl("go-ref", GO_DIR, unique("kbg", 15), "10.202.0.0/16", str(tmp / "g-ipam")),
    ]
    made: list[str] = []
    adds: dict[tuple[str, int], list[float]] = {}
    dels: dict[tuple[str, int], list[float]] = {}
    rss: dict[int, float] = {}
    floors: dict[str, list[float]] = {"interp": [], "stdlib": []}
    interp = shim_interpreter(kdir)

    attached_ids = itertools.count()

    def attach(impl: Impl, mine: list[str], count: int) -> None:
        while len(mine) < count:
            ns = create_netns(unique("kbc", 30))
            mine.append(ns)
            made.append(ns)
            # Unique in the run: a detached namespace leaves its reservation behind, and
            # unique()'s 24 random bits repeat among a few thousand IDs now and then (a
            # repeated ID is a second ADD of one container: refused, as Go refuses it).
            cid = f"keep-{impl.name}-{next(attached_ids)}"
            exec_plugin("", impl, "ADD", cid, f"/run/netns/{ns}", impl.conf(net))

    def sample(impl: Impl, target: int, k: int) -> None:
        ns = create_netns(unique("kbs", 30))
        try:
            cid = f"s-{impl.name}-{target}-{k}"
            netns = f"/run/netns/{ns}"
            adds.setdefault((impl.name, target), []).append(
                exec_plugin("", impl, "ADD", cid, netns, impl.conf(net))
            )
            dels.setdefault((impl.name, target), []).append(
                exec_plugin("", impl, "DEL", cid, netns, impl.conf(net))
            )
        finally:
            delete_netns(ns)

    def detach(mine: list[str]) -> None:
        for ns in mine:
            delete_netns(ns)
            made.remove(ns)
        mine.clear()

    def done(impl: Impl, target: int, daemon: subprocess.Popen[bytes]) -> None:
        if impl.name == "kanal":
            rss[target] = _rss_mb(daemon.pid)
        a, d = adds[(impl.name, target)], dels[(impl.name, target)]
        report(
            f"  {impl.name:16s} attached={target:5d}: ADD p50 "
            f"{p50(a):6.1f} ms, DEL p50 {p50(d):6.1f} ms"
        )

    try:
        with kanald(sock) as daemon:
            net = unique("bench", 20)
            # A few attached containers: every implementation has its own bridge with
            # them, and the samples interleave (kanald, standalone, Go, kanald, ...),
            # so that all see the same load of a machine shared with other work.
            for target in [t for t in attached if t <= INTERLEAVE_UP_TO]:
                held: dict[str, list[str]] = {impl.name: [] for impl in impls}
                for impl in impls:
                    attach(impl, held[impl.name], target)
                time.sleep(settle)
                for k in range(samples):
                    for impl in impls:
                        sample(impl, target, k)
                    if target == attached[0]:
                        floors["interp"].append(exec_floor([*interp, "-c", "pass"]))
                        floors["stdlib"].append(exec_floor([*interp, "-c", FLOOR_IMPORTS]))
                for impl in impls:
                    done(impl, target, daemon)
                    detach(held[impl.name])
            # Many attached: one implementation at a time, in the same run: attach up
            # to each target, let the machine go quiet, sample ADD+DEL, and tear
            # everything down before the other one starts. Why not interleave: a fresh
            # container's IPv6 DAD/MLD/router solicitations (repeated with back-off for
            # minutes) and ARP are flooded to every port of its bridge; with both at
            # 1000 ports, each side would pay for the other's floods.
            for impl in impls:
                mine: list[str] = []
                for target in [t for t in attached if t > INTERLEAVE_UP_TO]:
                    attach(impl, mine, target)
                    time.sleep(settle)
                    for k in range(samples):
                        sample(impl, target, k)
                    done(impl, target, daemon)
                detach(mine)
            for target in attached:
                ra, rd = p50(adds[("go-ref", target)]), p50(dels[("go-ref", target)])
                ka, kd = p50(adds[("kanal", target)]), p50(dels[("kanal", target)])
                sa = p50(adds[("kanal-standalone", target)])
                sd = p50(dels[("kanal-standalone", target)])
                row = {
                    "attached": target,
                    "kanal_add_p50_ms": ka,
                    "ref_add_p50_ms": ra,
                    "kanal_del_p50_ms": kd,
                    "ref_del_p50_ms": rd,
                    "kanald_rss_mb": rss[target],
                    "add_ratio": ka / ra,
                    "del_ratio": kd / rd,
                    "standalone_add_p50_ms": sa,
                    "standalone_del_p50_ms": sd,
                    "standalone_add_ratio": sa / ra,
                    "standalone_del_ratio": sd / rd,
                }
                if target == attached[0] and floors["interp"]:
                    fi, fs = p50(floors["interp"]), p50(floors["stdlib"])
                    row.update(
                        floor_interpreter_p50_ms=fi,
                        floor_stdlib_p50_ms=fs,
                        floor_interpreter_ratio=fi / ra,
                        floor_stdlib_ratio=fs / ra,
                    )
                    report(
                        f"attached={target:5d}  floor: interpreter start {fi:5.1f} ms "
                        f"({fi / ra:.2f} of Go's ADD); with the standard library the exec "
                        f"path stands on {fs:5.1f} ms ({fs / ra:.2f}); 0.8 x Go leaves "
                        f"{0.8 * ra - fs:5.1f} ms for kanal's modules and the work"
                    )
                out[f"attached_{target}"] = row
                report(
                    f"attached={target:5d}  Go ADD {ra:6.1f} ms DEL {rd:6.1f} ms | "
                    f"kanald ADD {ka:6.1f} ms ({ka / ra:.2f}) DEL {kd:6.1f} ms ({kd / rd:.2f}) | "
                    f"standalone ADD {sa:6.1f} ms ({sa / ra:.2f}) DEL {sd:6.1f} ms "
                    f"({sd / rd:.2f}) | kanald RSS {rss[target]:.0f} MB"
                )
    finally:
        for ns in made:
            delete_netns(ns)
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def run_loopback(samples: int, report: Callable[[str], None]) -> dict[str, object]:
    """loopback ADD/DEL, each exec in a fresh container namespace: Go, kanal through
    kanald, kanal standalone (interleaved: nothing here floods a bridge)."""
    tmp = Path(tempfile.mkdtemp(prefix="kanal-lo-"))
    kdir, sock = install(tmp)
    sides = {
        "go-ref": (GO_DIR, {}),
        "kanal": (str(kdir), {}),
        "kanal-standalone": (str(kdir), standalone_env(tmp)),
    }
    conf = json.dumps({"cniVersion": "1.0.0", "name": "lo", "type": "loopback"}).encode()
    times: dict[tuple[str, str], list[float]] = {}
    try:
        with kanald(sock):
            for k in range(samples + 2):  # the first two warm caches: not counted
                for name, (bindir, env) in sides.items():
                    ns = create_netns(unique("kbl", 30))
                    try:
                        for cmd in ("ADD", "DEL"):
                            t = _exec(
                                bindir, "loopback", cmd, f"lo-{k}", f"/run/netns/{ns}", conf, env
                            )
                            if k >= 2:
                                times.setdefault((name, cmd), []).append(t)
                    finally:
                        delete_netns(ns)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out: dict[str, object] = {}
    for cmd in ("ADD", "DEL"):
        go = p50(times[("go-ref", cmd)])
        row = {"ref_p50_ms": go}
        for name in ("kanal", "kanal-standalone"):
            v = p50(times[(name, cmd)])
            key = "kanald" if name == "kanal" else "standalone"
            row[f"{key}_p50_ms"] = v
            row[f"{key}_ratio"] = v / go
        out[cmd.lower()] = row
        report(
            f"loopback {cmd}: Go {go:5.1f} ms | kanald {row['kanald_p50_ms']:5.1f} ms "
            f"({row['kanald_ratio']:.2f}) | standalone {row['standalone_p50_ms']:5.1f} ms "
            f"({row['standalone_ratio']:.2f})"
        )
    return out


def _exec(
    bindir: str, plugin: str, cmd: str, cid: str, netns: str, conf: bytes, extra: dict[str, str]
) -> float:
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "CNI_COMMAND": cmd,
        "CNI_CONTAINERID": cid,
        "CNI_NETNS": netns,
        "CNI_IFNAME": "eth0",
        "CNI_PATH": bindir,
        **extra,
    }
    t = time.perf_counter()
    p = subprocess.run([os.path.join(bindir, plugin)], input=conf, env=env, capture_output=True)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        raise RuntimeError(f"{bindir}/{plugin} {cmd} failed: {p.stdout!r} {p.stderr!r}")
    return dt
