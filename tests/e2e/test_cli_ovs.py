"""``kanal network create -d ovs`` and ``kanal run`` on it, against a real kanald.

kanald and the OVS daemons (private database and sockets) run in a host namespace
made here; OVSDB is compared before and after.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_cli_run import RunDaemon
from tests.helpers import have, run
from tests.netns.test_ovs import BINARIES, SCHEMA, start_ovs, stop_ovs

pytestmark = pytest.mark.skipif(
    any(not have(b) for b in BINARIES) or not os.path.exists(SCHEMA),
    reason="Open vSwitch is not installed (apt-get install openvswitch-switch)",
)


@pytest.fixture
def ovs(host_ns: str, tmp_path: Path) -> Iterator[tuple[RunDaemon, str]]:
    d, procs = start_ovs(host_ns)
    rd = RunDaemon(host_ns, tmp_path)
    rd.start()
    try:
        yield rd, f"unix:{d}/db.sock"
    finally:
        for sid in rd.k("ps", "-a", "-q", check=False).stdout.split():
            rd.k("rm", "-f", sid, check=False)
        rd.stop(kill=True)
        stop_ovs(d, procs)


def snapshot(db: str) -> list[str]:
    out = run(["ovs-vsctl", f"--db={db}", "--format=json", "--columns=name", "list", "Port"])
    return sorted(str(r[0]) for r in json.loads(out.stdout)["data"])


def test_ovs_network_through_the_cli(ovs: tuple[RunDaemon, str]) -> None:
    rd, db = ovs
    before = snapshot(db)
    rd.kanal("create", "-d", "ovs", "--subnet", "10.82.1.0/24", "-o", f"ovs.db={db}",
             "-o", "ovs.bridge=kcliovs", "onet")  # fmt: skip
    info = json.loads(rd.kanal("inspect", "onet").stdout)[0]
    assert info["Driver"] == "ovs" and info["IPAM"]["Config"][0]["Subnet"] == "10.82.1.0/24"
    assert "kcliovs" in snapshot(db)
    rd.k("run", "-d", "--name", "box", "--network", "onet", "--", "sleep", "300")
    rd.k("run", "-d", "--name", "box2", "--network", "onet", "--", "sleep", "300")
    assert rd.k("exec", "box", "ping", "-c", "1", "-w", "5", "10.82.1.1").returncode == 0
    assert rd.k("exec", "box", "ping", "-c", "1", "-w", "5", "box2").returncode == 0  # DNS
    bad = rd.kanal("create", "-d", "ovs", "-o", "ovs.nope=1", "o2", check=False)
    assert bad.returncode == 1 and bad.stderr.startswith("kanal: unknown ovs option")
    rd.k("rm", "-f", "box", "box2")
    rd.kanal("rm", "onet")
    assert snapshot(db) == before
