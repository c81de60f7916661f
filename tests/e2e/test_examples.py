"""Every seed's runnable example (``examples/``) run as a user runs it.

Each example prints the seed's observable outcome and checks it, exits 1 when one
check differs, and takes its lab down. Here: it exits 0 with its summary line,
printed no failed check, and left no namespace, mount or directory of its labs on
the machine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("[0-9][0-9][0-9]-*/*.py"))

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    # one lab at a time on a 2-core machine: with the kanal lab tests
    pytest.mark.xdist_group("lab"),
]

NEEDS = {
    "001": ["etcd"],
    "002": ["ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "iptables", "curl"],
    "004": ["etcd"],
}


def _traces(out: str) -> list[str]:
    """What is left on the machine of the labs an example printed (their namespaces,
    mounts under their directories, the directories)."""
    nets = set(re.findall(r"netns (kl-ex\S+)", out))
    dirs = set(re.findall(r"\(the lab's files: (\S+)\)", out))
    assert nets and dirs, out[-3000:]
    left = [n for n in nets if os.path.exists(f"/run/netns/{n}")]
    with open("/proc/self/mountinfo") as f:
        left += [ln for ln in f if any(d in ln for d in dirs)]
    return left + [d for d in dirs if os.path.exists(d)]


def test_there_are_five_examples() -> None:
    assert [p.parent.name[:3] for p in EXAMPLES] == ["000", "001", "002", "003", "004"]


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.parent.name for p in EXAMPLES])
def test_example_shows_the_seeds_outcome_and_cleans_up(script: Path) -> None:
    for tool in NEEDS.get(script.parent.name[:3], []):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    p = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=900, cwd=ROOT
    )
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-6000:]
    assert re.search(r": all \d+ checks passed$", p.stdout.strip()), out[-3000:]
    assert "✘" not in p.stdout, out[-6000:]
    assert "nothing left" in p.stdout
    assert _traces(p.stdout) == []
