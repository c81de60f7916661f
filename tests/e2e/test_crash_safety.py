"""Crash safety and concurrency against a real kanald, judged by ``kanal system check``.

- chaos: kanald is killed with -9 at a random moment during 30 concurrent
  run / rm / connect / disconnect / network create / network rm calls, then
  restarted; the invariant checker must find nothing, every name that is not a
  live sandbox's must be reusable, and later operations must succeed. 20 trials.
- 100 concurrent ``kanal run -d`` on one network, then 100 concurrent ``rm -f``:
  every call succeeds and nothing is left.

The host is a namespace made here; sandboxes' namespaces are mounted in a
directory of the test's own, so the check's "namespace without sandbox" rule
sees this daemon's only.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.private_kanald import PrivateNetnsDaemon, private_daemon
from tests.helpers import ip_json

pytestmark = pytest.mark.xdist_group("crash")

TRIALS = 20
CONCURRENT = 30


@pytest.fixture
def pd(host_ns: str, tmp_path: Path) -> Iterator[PrivateNetnsDaemon]:
    yield from private_daemon(host_ns, tmp_path)


def _ops(rng: random.Random, trial: int, live: list[str], nets: list[str]) -> list[list[str]]:
    """30 calls: mostly new sandboxes (some publishing a port), the rest on live ones."""
    ops: list[list[str]] = []
    for i in range(14):
        run = ["run", "-d", "--name", f"t{trial}s{i}", "--network", "base"]
        if i % 3 == 0:
            run += ["-p", f"127.0.0.1:{20000 + trial * 20 + i}:80"]
        ops.append([*run, "--", "sleep", "600"])
    victims = rng.sample(live, min(len(live), 10))
    for name in victims[:4]:
        ops.append(["rm", "-f", name])
    for name in victims[4:7]:
        ops.append(["network", "connect", "side", name])
    for name in victims[7:]:
        ops.append(["network", "disconnect", "-f", "side", name])
    for i in range(3):
        ops.append(["network", "create", f"n{trial}x{i}"])
    for n in nets[:3]:
        ops.append(["network", "rm", n])
    while len(ops) < CONCURRENT:
        ops.append(["ps", "-a"])
    rng.shuffle(ops)
    return ops


def test_kill_9_at_random_moments_during_concurrent_operations(pd: PrivateNetnsDaemon) -> None:
    seed = int(os.environ.get("KANAL_CHAOS_SEED", time.time()))
    rng = random.Random(seed)
    pd.kanal("create", "--subnet", "10.77.0.0/22", "base")
    pd.kanal("create", "--subnet", "10.78.0.0/22", "side")
    nets: list[str] = []
    for trial in range(TRIALS):
        live = sorted(pd.names())
        ops = _ops(rng, trial, live, nets)
        procs = [
            subprocess.Popen(
                pd.cli(*op), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True
            )
            for op in ops
        ]
        time.sleep(rng.uniform(0.02, 1.5))
        assert pd.proc is not None
        pd.proc.kill()
        pd.proc.wait()
        pd.proc = None
        for p in procs:
            p.wait(120)
        pd.start()
        problems = pd.check()
        assert not problems, f"seed {seed}, trial {trial}: " + "\n".join(problems)
        # Every name that is no live sandbox's can be taken again.
        names = pd.names()
        for op in ops:
            if op[0] == "run" and op[3] not in names:
                pd.k("run", "-d", "--name", op[3], "--network", "base", "--", "sleep", "600")
        # Later operations succeed: a run with a port, connect, disconnect, rm, networks.
        pd.k("run", "-d", "--name", f"after{trial}", "-p", "127.0.0.1::80", "--network", "base",
             "--", "sleep", "600")  # fmt: skip
        pd.kanal("connect", "side", f"after{trial}")
        pd.kanal("disconnect", "side", f"after{trial}")
        pd.k("rm", "-f", f"after{trial}")
        pd.kanal("create", f"later{trial}")
        pd.kanal("rm", f"later{trial}")
        assert not pd.check(), f"seed {seed}, trial {trial} after the later operations"
        nets = [
            line.split()[1]
            for line in pd.kanal("ls").stdout.splitlines()[1:]
            if line.split()[1].startswith("n")
        ]
        # Keep the population bounded: most sandboxes of this trial go.
        for name in sorted(pd.names())[:-12]:
            pd.k("rm", "-f", name)
    assert not pd.check()


def test_100_concurrent_runs_then_removals(pd: PrivateNetnsDaemon) -> None:
    pd.kanal("create", "--subnet", "10.79.0.0/24", "crowd")

    def all_of(calls: list[list[str]]) -> list[subprocess.CompletedProcess[str]]:
        procs = [
            subprocess.Popen(pd.cli(*c), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for c in calls
        ]
        out = []
        for c, p in zip(calls, procs):
            stdout, stderr = p.communicate(timeout=600)
            out.append(subprocess.CompletedProcess(c, p.returncode, stdout, stderr))
        return out

    runs = all_of(
        [
            ["run", "-d", "--name", f"c{i}", "--network", "crowd", "--", "sleep", "600"]
            for i in range(100)
        ]
    )
    failed = [(r.args, r.stderr) for r in runs if r.returncode != 0]
    assert not failed, failed[:5]
    ps = pd.k("ps").stdout.splitlines()[1:]
    assert len(ps) == 100 and all("running" in line for line in ps)
    addrs = [line.split("crowd=")[1].split()[0] for line in ps]
    assert len(set(addrs)) == 100  # no address twice
    assert not pd.check()
    rms = all_of([["rm", "-f", f"c{i}"] for i in range(100)])
    failed = [(r.args, r.stderr) for r in rms if r.returncode != 0]
    assert not failed, failed[:5]
    assert pd.k("ps", "-a", "-q").stdout == ""
    assert not pd.check()
    # The kernel agrees: no port left on the network's bridge.
    (net,) = json.loads(pd.kanal("inspect", "crowd").stdout)
    br = f"br-{net['Id'][:12]}"
    ports = [ln for ln in ip_json(pd.host, "link") if ln.get("master") == br]
    assert ports == []
