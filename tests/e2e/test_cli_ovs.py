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


def test_an_operators_bridge_carries_two_networks_a_kanal_bridge_one(
    ovs: tuple[RunDaemon, str],
) -> None:
    """Seed 002's two subnets on one OVS bridge: an operator's bridge (made before)
    takes several networks; a bridge kanal makes belongs to its network alone."""
    rd, db = ovs
    run(["ovs-vsctl", f"--db={db}", "add-br", "kop1", "--", "set", "bridge", "kop1",
         "datapath_type=netdev"])  # fmt: skip
    try:
        for net, sub in (("op1", "10.82.2.0/24"), ("op2", "10.82.3.0/24")):
            rd.kanal("create", "-d", "ovs", "--subnet", sub, "-o", f"ovs.db={db}",
                     "-o", "ovs.bridge=kop1", net)  # fmt: skip
        rd.k("run", "-d", "--name", "a", "--network", "op1", "--", "sleep", "300")
        rd.k("run", "-d", "--name", "b", "--network", "op2", "--", "sleep", "300")
        assert rd.k("exec", "a", "ping", "-c", "1", "-w", "5", "10.82.2.1").returncode == 0
        assert rd.k("exec", "b", "ping", "-c", "1", "-w", "5", "10.82.3.1").returncode == 0
        rd.kanal("create", "-d", "ovs", "--subnet", "10.82.4.0/24", "-o", f"ovs.db={db}",
                 "-o", "ovs.bridge=kown1", "own")  # fmt: skip
        before = snapshot(db)
        bad = rd.kanal("create", "-d", "ovs", "--subnet", "10.82.5.0/24", "-o", f"ovs.db={db}",
                       "-o", "ovs.bridge=kown1", "own2", check=False)  # fmt: skip
        assert bad.returncode == 1 and "bridge kown1 belongs to kanal network" in bad.stderr
        assert snapshot(db) == before
        rd.k("rm", "-f", "a", "b")
        for net in ("op1", "op2", "own"):
            rd.kanal("rm", net)
        assert b"kop1" in run(["ovs-vsctl", f"--db={db}", "list-br"]).stdout.split()
    finally:
        run(["ovs-vsctl", f"--db={db}", "--if-exists", "del-br", "kop1"])
