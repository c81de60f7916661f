"""The cluster layer on a real 3-member etcd and real VXLAN, all inside namespaces.

Topology (every namespace made here, deleted at the end, even on failure)::

    underlay namespace: bridge "ul" ── veth ── h1 (192.0.2.1)  etcd m1 + host process
                                    ├─ veth ── h2 (192.0.2.2)  etcd m2 + host process
                                    ├─ veth ── h3 (192.0.2.3)  etcd m3 + host process
                                    └─ veth ── h4 (192.0.2.4)  host process only (the one that dies)

Each host process (tests/netns/cluster_host.py, run with ``ip netns exec``) holds a
NodeRegistration (TTL 3 s), an OverlayAgent (full reconcile + GC every second,
grace 2 s) and a GlobalIpam per network; "containers" are namespaces with a veth
on the network's bridge. Slow parts (≈5-10 s each): the etcd member kill/restart
and the host-death test, which waits for a lease to expire and a grace to pass.
Polls below wait for an event with a generous bound; nothing asserts on timing.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from base64 import b64encode
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from kanal.cluster.vxlan import (
    EndpointRecord,
    OverlayLink,
    apply,
    delete_device,
    desired_entries,
    ensure_device,
)
from kanal.errors import Conflict
from tests.helpers import ip_json, nsexec, unique
from tests.multihost import Underlay, wait_for

pytestmark = pytest.mark.skipif(
    shutil.which("etcd") is None or shutil.which("curl") is None,
    reason="etcd or curl is not installed",
)

REPO = Path(__file__).resolve().parents[2]
SUBNET = "10.70.0.0/16"


class HostProc:
    """A cluster_host.py process inside a host namespace, spoken to in JSON lines."""

    def __init__(self, ns: str, name: str, addr: str, store: str, log: Path) -> None:
        self.ns, self.name, self.addr = ns, name, addr
        env = dict(os.environ, PYTHONPATH=f"{REPO}:{REPO / 'src'}")
        self.proc = subprocess.Popen(
            [
                *("ip", "netns", "exec", ns, sys.executable, "-m", "tests.netns.cluster_host"),
                *("--name", name, "--addr", addr, "--store", store),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log.open("ab"),
            cwd=REPO,
            env=env,
        )
        assert self.read(30)["ready"]

    def send(self, **cmd: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd).encode() + b"\n")
        self.proc.stdin.flush()

    def read(self, timeout: float = 60) -> dict[str, Any]:
        assert self.proc.stdout is not None
        r, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not r:
            raise AssertionError(f"{self.name}: no answer within {timeout} s")
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"{self.name}: host process ended")
        out: dict[str, Any] = json.loads(line)
        return out

    def call(self, **cmd: Any) -> dict[str, Any]:
        self.send(**cmd)
        return self.read()

    def ok(self, **cmd: Any) -> dict[str, Any]:
        out = self.call(**cmd)
        assert out["ok"], out
        return out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


class Cluster(Underlay):
    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp, "kc")
        self.hosts: dict[int, HostProc] = {}
        self.store = ""

    def setup(self) -> None:
        self.make_underlay(4)  # h4 joins later (test_dead_host_...)
        self.start_etcd_cluster()
        self.store = self.etcd_url("/kct/")
        for i in (1, 2, 3):
            self.start_host(i)

    def count(self, prefix: str) -> int:
        """How many keys under ``prefix`` (of the test's store prefix), asked of any member."""
        key = f"/kct/{prefix}".encode()
        end = key[:-1] + bytes([key[-1] + 1])
        body: dict[str, Any] = {"key": b64encode(key).decode(), "count_only": True}
        body["range_end"] = b64encode(end).decode()
        for i in (1, 2, 3):
            out = nsexec(
                self.ns[i],
                *("curl", "-s", "-m", "1", "-X", "POST"),
                f"http://{self.etcd_addr(i)}:2379/v3/kv/range",
                *("-d", json.dumps(body)),
                check=False,
            )
            try:
                return int(json.loads(out.stdout).get("count", 0))
            except ValueError:
                continue
        return 0

    def leader(self) -> int:
        st = wait_for("an etcd leader", lambda: self.etcd_status(1) or self.etcd_status(2))
        for i in (1, 2, 3):
            s = self.etcd_status(i)
            if s and s["header"]["member_id"] == st["leader"]:
                return i
        raise AssertionError("no member is the leader")

    def start_host(self, i: int) -> HostProc:
        h = HostProc(self.ns[i], f"h{i}", self.addr(i), self.store, self.tmp / f"h{i}.log")
        self.hosts[i] = h
        return h

    def container(self, i: int, bridge: str, ip: str) -> tuple[str, str]:
        """A container namespace on host ``i``'s ``bridge`` with ``ip``; returns (ns, mac)."""
        c = self.netns("kcc")
        mac = "02:42:" + ":".join(f"{int(x):02x}" for x in ip.split("."))
        veth = unique("kv", 15)
        nsexec(self.ns[i], "ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0")
        nsexec(self.ns[i], "ip", "link", "set", "eth0", "netns", c)
        nsexec(self.ns[i], "ip", "link", "set", veth, "master", bridge, "mtu", "1450", "up")
        nsexec(c, "ip", "link", "set", "eth0", "address", mac, "mtu", "1450", "up")
        nsexec(c, "ip", "addr", "add", f"{ip}/16", "dev", "eth0")
        return c, mac

    def close(self) -> None:
        for h in self.hosts.values():
            h.kill()
        super().close()


def ping(c: str, ip: str) -> bool:
    return nsexec(c, "ping", "-c", "1", "-W", "1", ip, check=False).returncode == 0


def _fdb(ns: str, dev: str) -> list[dict[str, Any]]:
    out = nsexec(ns, "bridge", "-j", "fdb", "show", "dev", dev).stdout
    got: list[dict[str, Any]] = json.loads(out) if out.strip() else []
    return got


def neigh_is(h: HostProc, net: str, want: list[list[str]]) -> Callable[[], bool]:
    return lambda: bool(h.ok(op="entries", net=net)["neigh"] == want)


def no_fdb_to(ns: str, dev: str, dst: str) -> Callable[[], bool]:
    return lambda: dst not in {e.get("dst") for e in _fdb(ns, dev)}


def no_fdb_missing(ns: str, want: int) -> Callable[[], bool]:
    """The device exists and holds ``want`` flood entries (one per remote host)."""

    def check() -> bool:
        out = nsexec(ns, "bridge", "-j", "fdb", "show", "dev", "kvx4101", check=False)
        if out.returncode != 0 or not out.stdout.strip():
            return False
        flood = [e for e in json.loads(out.stdout) if e["mac"] == "00:00:00:00:00:00"]
        return len(flood) == want

    return check


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        c.setup()
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def ova(cluster: Cluster) -> dict[str, Any]:
    """Overlay network "ova" (VNI 4101) on h1-h3, one container each, published."""
    ctrs: dict[int, tuple[str, str, str]] = {}
    for i in (1, 2, 3):
        h = cluster.hosts[i]
        h.ok(op="attach", net="ova", vni=4101, subnet=SUBNET, bridge="kbova")
        ip = h.ok(op="alloc", net="ova", owner="ctr")["ips"][0]
        c, mac = cluster.container(i, "kbova", ip)
        pub = h.ok(op="publish", net="ova", id=f"ep-h{i}", ip=ip, mac=mac, name=f"c{i}")
        assert pub["seen"] is True and pub["rev"] > 0  # back through h_i's own watch
        ctrs[i] = (c, ip, mac)
    for i in (1, 2, 3):  # each host has programmed the other two
        want = sorted([ip, mac] for k, (_, ip, mac) in ctrs.items() if k != i)
        wait_for(f"h{i} programs ova", neigh_is(cluster.hosts[i], "ova", want))
    return {"ctrs": ctrs}


def test_containers_on_three_hosts_reach_each_other(cluster: Cluster, ova: dict[str, Any]) -> None:
    ctrs = ova["ctrs"]
    names = cluster.hosts[3].ok(op="names", net="ova")["names"]
    assert {n: names[n] for n in ("c1", "c2", "c3")} == {f"c{i}": ctrs[i][1] for i in (1, 2, 3)}
    for a in (1, 2, 3):
        for b in (1, 2, 3):
            if a != b:
                assert ping(ctrs[a][0], ctrs[b][1]), f"h{a} -> h{b}"
    # the kernel holds what the agent says: per remote MAC + a flood entry per remote host
    fdb = _fdb(cluster.ns[1], "kvx4101")
    mine = {(e["mac"], e["dst"]) for e in fdb if "dst" in e}
    assert mine == {
        (ctrs[2][2], "192.0.2.2"),
        (ctrs[3][2], "192.0.2.3"),
        ("00:00:00:00:00:00", "192.0.2.2"),
        ("00:00:00:00:00:00", "192.0.2.3"),
    }
    dev = ip_json(cluster.ns[1], "-d", "link", "show", "kvx4101")[0]
    data = dev["linkinfo"]["info_data"]
    assert (data["id"], data["port"], data["learning"], dev["mtu"]) == (4101, 4789, False, 1450)


def test_a_deleted_vxlan_device_is_recreated_by_the_reconcile(
    cluster: Cluster, ova: dict[str, Any]
) -> None:
    ctrs = ova["ctrs"]
    nsexec(cluster.ns[2], "ip", "link", "del", "kvx4101")
    wait_for("kvx4101 back on h2 with its entries", no_fdb_missing(cluster.ns[2], 2))
    link = ip_json(cluster.ns[2], "link", "show", "kvx4101")[0]
    assert link["master"] == "kbova" and "UP" in link["flags"]
    assert ping(ctrs[2][0], ctrs[3][1])


@contextmanager
def _one_arp_probe_a_minute(c: str) -> Iterator[None]:
    """The container sends one ARP request for an address, then nothing for 60 s: only
    an announcement (the agent answering the miss) can resolve it before."""
    nsexec(c, "sysctl", "-q", "-w", "net.ipv4.neigh.eth0.retrans_time_ms=60000",
           "net.ipv4.neigh.eth0.mcast_solicit=1")  # fmt: skip
    nsexec(c, "ip", "neigh", "flush", "dev", "eth0")
    try:
        yield
    finally:
        nsexec(c, "sysctl", "-q", "-w", "net.ipv4.neigh.eth0.retrans_time_ms=1000",
               "net.ipv4.neigh.eth0.mcast_solicit=3")  # fmt: skip


def _incomplete(c: str, ip: str) -> bool:
    out = nsexec(c, "ip", "neigh", "show", ip, "dev", "eth0").stdout.decode()
    return "INCOMPLETE" in out or "FAILED" in out


def test_a_miss_for_an_address_published_later_is_answered(
    cluster: Cluster, ova: dict[str, Any]
) -> None:
    """c1 asks (once) for an address no host has published; the request is dropped by
    h1's VXLAN device, which reports the miss. When h2 publishes the endpoint, h1's
    agent programs it and announces it on the bridge: c1's ping goes through (it would
    otherwise wait for its next ARP probe, a minute later)."""
    c1 = ova["ctrs"][1][0]
    h2 = cluster.hosts[2]
    ip = h2.ok(op="alloc", net="ova", owner="late")["ips"][0]
    c, mac = cluster.container(2, "kbova", ip)
    with _one_arp_probe_a_minute(c1):
        _ping_later(cluster, c1, ip, mac)


def _ping_later(cluster: Cluster, c1: str, ip: str, mac: str) -> None:
    h2 = cluster.hosts[2]
    pinger = subprocess.Popen(
        ["ip", "netns", "exec", c1, "ping", "-n", "-c", "1", "-W", "40", ip],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for("c1's request for the new address", lambda: _incomplete(c1, ip))
        h2.ok(op="publish", net="ova", id="ep-late", ip=ip, mac=mac, name="late")
        out, _ = pinger.communicate(timeout=60)
        assert pinger.returncode == 0, out.decode()
        # the entry is programmed on h1 as well (later requests are answered by the proxy)
        assert [ip, mac] in cluster.hosts[1].ok(op="entries", net="ova")["neigh"]
    finally:
        if pinger.poll() is None:
            pinger.kill()
            pinger.wait()
        h2.ok(op="unpublish", net="ova", id="ep-late")
    wait_for("h1 drops ep-late", lambda: [ip, mac] not in cluster.hosts[1].ok(
        op="entries", net="ova")["neigh"])  # fmt: skip


def test_a_miss_for_a_known_address_is_answered_at_once(
    cluster: Cluster, ova: dict[str, Any]
) -> None:
    """The neighbour entry for c2 is deleted from h1's device behind the agent's back;
    c1's one ARP request misses, and the agent (which knows c2) answers it at once."""
    c1, (_c2, ip2, _mac2) = ova["ctrs"][1][0], ova["ctrs"][2]
    with _one_arp_probe_a_minute(c1):
        nsexec(cluster.ns[1], "ip", "neigh", "del", ip2, "dev", "kvx4101", check=False)
        p = nsexec(c1, "ping", "-n", "-c", "1", "-W", "40", ip2, check=False)
        assert p.returncode == 0, p.stdout.decode()
    wait_for("the entry back (the periodic reconcile)", lambda: ip2 in nsexec(
        cluster.ns[1], "ip", "neigh", "show", "dev", "kvx4101").stdout.decode())  # fmt: skip


def test_waiting_for_a_revision_not_written_yet_times_out(
    cluster: Cluster, ova: dict[str, Any]
) -> None:
    """wait_seen (what a join waits on after publishing) gives up at its deadline."""
    h = cluster.hosts[1]
    assert h.ok(op="wait_seen", rev=1, timeout=0.0)["seen"] is True
    assert h.ok(op="wait_seen", rev=10**9, timeout=0.3)["seen"] is False


def test_two_overlay_networks_are_isolated(cluster: Cluster, ova: dict[str, Any]) -> None:
    """Network "ovb" uses the same subnet as "ova" and VNI 4102: only its own peers answer."""
    ctrs = {}
    for i in (1, 2):
        h = cluster.hosts[i]
        h.ok(op="attach", net="ovb", vni=4102, subnet=SUBNET, bridge="kbovb")
        ip = h.ok(op="alloc", net="ovb", owner="ctr")["ips"][0]
        c, mac = cluster.container(i, "kbovb", ip)
        h.ok(op="publish", net="ovb", id=f"ep-h{i}", ip=ip, mac=mac)
        ctrs[i] = (c, ip, mac)
    wait_for("h1 programs ovb", lambda: cluster.hosts[1].ok(op="entries", net="ovb")["neigh"])
    assert ping(ctrs[1][0], ctrs[2][1])
    ova_h3_ip = ova["ctrs"][3][1]
    assert ova_h3_ip not in (ctrs[1][1], ctrs[2][1])
    assert not ping(ctrs[1][0], ova_h3_ip)  # an ova container, from ovb
    ovb_fdb = {e["dst"] for e in _fdb(cluster.ns[1], "kvx4102") if "dst" in e}
    assert ovb_fdb == {"192.0.2.2"}  # h3 has no ovb endpoint: nothing towards it


@pytest.mark.slow
def test_concurrent_allocation_with_the_etcd_leader_killed(cluster: Cluster) -> None:
    """3 hosts x 50 allocations at once (4 threads each); the etcd leader is SIGKILLed
    in the middle. Every allocation succeeds, none is duplicated, etcd holds each."""
    for i in (1, 2, 3):
        cluster.hosts[i].ok(op="attach", net="ovc", vni=4103, subnet="10.71.0.0/16", bridge="kbovc")
    victim = cluster.leader()
    for i in (1, 2, 3):
        cluster.hosts[i].send(op="alloc", net="ovc", owner="bulk", n=50, threads=4, pace=0.1)
    wait_for("allocations under way", lambda: cluster.count("ipam/ovc/ips/") >= 15)
    killed_at = time.time()
    cluster.kill_etcd(victim)
    results = [cluster.hosts[i].read(120) for i in (1, 2, 3)]
    try:
        for r in results:
            assert r["ok"] and r["errors"] == [], r["errors"][:3]
            assert killed_at < r["t1"]  # the kill landed while every host was at work
        ips = [ip for r in results for ip in r["ips"]]
        assert len(ips) == 150 and len(set(ips)) == 150
        keys = cluster.hosts[1].ok(op="dump", prefix="ipam/ovc/ips/")["keys"]
        in_etcd = [k.rsplit("/", 1)[1] for k, _ in keys]
        assert sorted(in_etcd) == sorted(ips)
        blocks = cluster.hosts[1].ok(op="dump", prefix="ipam/ovc/blocks/")["keys"]
        owners = [json.loads(v)["host"] for _, v in blocks]
        assert sorted(set(owners)) == ["h1", "h2", "h3"]
    finally:
        cluster.start_etcd(victim, new=False)
        cluster.wait_etcd(victim)


@pytest.mark.slow
def test_etcd_down_gives_clear_errors_and_the_overlay_resumes(
    cluster: Cluster, ova: dict[str, Any]
) -> None:
    ctrs = ova["ctrs"]
    h1, h2 = cluster.hosts[1], cluster.hosts[2]
    for i in (1, 2, 3):
        cluster.kill_etcd(i)
    try:
        out = h1.call(op="alloc", net="ova", owner="down")
        assert out["ok"] and out["ips"] == []
        assert out["errors"][0].startswith("Unavailable: etcd is unreachable"), out
        wait_for("h1 notices etcd is down", lambda: not h1.ok(op="health")["healthy"])
        # what was programmed keeps forwarding
        assert ping(ctrs[1][0], ctrs[2][1])
    finally:
        for i in (1, 2, 3):
            cluster.start_etcd(i, new=False)
        for i in (1, 2, 3):
            cluster.wait_etcd(i)
    wait_for("h1 healthy again", lambda: h1.ok(op="health")["healthy"])
    ip = h1.ok(op="alloc", net="ova", owner="after")["ips"][0]
    c, mac = cluster.container(1, "kbova", ip)
    h1.ok(op="publish", net="ova", id="ep-h1-after", ip=ip, mac=mac)
    wait_for(
        "h2 programs the new endpoint", lambda: [ip, mac] in h2.ok(op="entries", net="ova")["neigh"]
    )
    assert ping(c, ctrs[2][1])


@pytest.mark.slow
def test_dead_host_is_dropped_then_its_blocks_freed_and_it_is_fenced(
    cluster: Cluster, ova: dict[str, Any]
) -> None:
    """h4 joins, gets an address and a container, then freezes (SIGSTOP: a host cut off
    without dying). Its lease expires: h1-h3 drop its entries; after the grace its
    block is freed. When it wakes it re-registers, learns its address is gone, and its
    stale block view is fenced: its next address comes from a fresh claim."""
    ns4 = cluster.host_ns(4)
    cluster.ns[4] = ns4
    h4 = cluster.start_host(4)
    h4.ok(op="attach", net="ova", vni=4101, subnet=SUBNET, bridge="kbova")
    ip = h4.ok(op="alloc", net="ova", owner="ctr")["ips"][0]
    c, mac = cluster.container(4, "kbova", ip)
    h4.ok(op="publish", net="ova", id="ep-h4", ip=ip, mac=mac, name="c4")
    wait_for(
        "h1 programs h4", lambda: [ip, mac] in cluster.hosts[1].ok(op="entries", net="ova")["neigh"]
    )
    assert ping(ova["ctrs"][1][0], ip)
    assert cluster.hosts[1].ok(op="names", net="ova")["names"]["c4"] == ip
    old_block = h4.ok(op="blocks", net="ova")["blocks"]

    h4.proc.send_signal(signal.SIGSTOP)  # ip netns exec execs python: this is the host
    try:
        for i in (1, 2, 3):
            wait_for(f"h{i} drops h4's entries", no_fdb_to(cluster.ns[i], "kvx4101", "192.0.2.4"))
        assert not ping(ova["ctrs"][1][0], ip)
        assert "c4" not in cluster.hosts[1].ok(op="names", net="ova")["names"]  # not in DNS

        def h4_keys() -> list[str]:
            keys = cluster.hosts[1].ok(op="dump", prefix="ipam/ova/")["keys"]
            keys += cluster.hosts[1].ok(op="dump", prefix="overlay/ova/")["keys"]
            return [k for k, v in keys if json.loads(v).get("host") == "h4"]

        # the block, the address and the endpoint record (freed in one GC round, by
        # whichever host's collector gets there first)
        wait_for("h4's block, address and endpoint record freed", lambda: not h4_keys())
    finally:
        h4.proc.send_signal(signal.SIGCONT)
    assert h4.ok(op="held", net="ova")["allocs"] == [[ip, False]]
    again = h4.ok(op="alloc", net="ova", owner="again")
    assert again["errors"] == [] and again["ips"]
    keys = dict(cluster.hosts[1].ok(op="dump", prefix="ipam/ova/")["keys"])
    blocks = {k: json.loads(v) for k, v in keys.items() if "/blocks/" in k}
    mine = [k for k, v in blocks.items() if v["host"] == "h4"]
    assert len(mine) == 1  # a new claim (with a new claim token), not the stale view
    assert old_block and h4.ok(op="blocks", net="ova")["blocks"] == [mine[0].rsplit("/", 1)[1]]
    h4.kill()


@pytest.mark.slow
def test_watch_resumes_on_another_member_without_losing_events(cluster: Cluster) -> None:
    """h1 watches ``wt/`` while h2 writes 60 keys; the member h1's watch reads from is
    SIGKILLed in the middle. The watch goes on from the last revision it delivered on
    another member: every put arrives once, in order. A watch from a compacted
    revision gets the whole listing instead (resync)."""
    h1, h2 = cluster.hosts[1], cluster.hosts[2]
    member = h1.ok(op="watch_start", prefix="wt/")["member"]
    victim = cluster.etcd_index(member[0])
    h2.send(op="put_many", prefix="wt/", n=60, pace=0.03)
    try:
        wait_for("puts under way", lambda: cluster.count("wt/") >= 15)
        cluster.kill_etcd(victim)
        done = h2.read(120)
        assert done["ok"], done
    finally:
        cluster.start_etcd(victim, new=False)
        cluster.wait_etcd(victim)
    keys = [f"wt/{i:04d}" for i in range(60)]
    got = wait_for(
        "all 60 events", lambda: (w := h1.ok(op="watch_get"))["events"][59:] and w, timeout=60
    )
    assert [k for _, k, _ in got["events"]] == keys
    revs = [r for _, _, r in got["events"]]
    assert revs == sorted(set(revs))
    assert got["errors"] >= 1 and got["resyncs"] == []  # it did lose its member

    old = got["events"][0][2]
    h1.ok(op="compact")
    h1.ok(op="watch_start", prefix="wt/", **{"from": old})
    again = wait_for("a resync", lambda: h1.ok(op="watch_get")["resyncs"])
    assert again[0] == keys


def test_vnis_are_unique_per_network_and_nodes_are_listed(cluster: Cluster) -> None:
    nets = [f"vn{k}" for k in range(6)]
    for i in (1, 2, 3):
        cluster.hosts[i].send(op="vnis", nets=nets[i - 1 :] + nets[: i - 1])
    got = [cluster.hosts[i].read() for i in (1, 2, 3)]
    assert all(g["ok"] for g in got), got
    assert got[0]["vnis"] == got[1]["vnis"] == got[2]["vnis"]  # one VNI per network
    assert len(set(got[0]["vnis"].values())) == len(nets)
    assert all(v >= 4096 for v in got[0]["vnis"].values())
    rows = cluster.hosts[2].ok(op="nodes")["nodes"]
    mine = [(r["Name"], r["Addr"], r["Self"]) for r in rows if r["Name"] in ("h1", "h2", "h3")]
    assert mine == [
        ("h1", "192.0.2.1", False),
        ("h2", "192.0.2.2", True),
        ("h3", "192.0.2.3", False),
    ]


def test_vxlan_device_and_entries_in_one_namespace(make_netns: Callable[[str], str]) -> None:
    """The netlink layer alone (no etcd): device checks, idempotent entries, apply()."""
    ns = make_netns("kcvx")
    nsexec(ns, "ip", "link", "add", "ul0", "type", "veth", "peer", "name", "ul1")
    nsexec(ns, "ip", "addr", "add", "192.0.2.1/24", "dev", "ul0")
    nsexec(ns, "ip", "link", "add", "kbr", "type", "bridge")
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        link = OverlayLink("n", 4242, "kbr", "192.0.2.1", 1450)
        idx = ensure_device(link, fd)
        assert ensure_device(link, fd) == idx  # adopted, not re-made
        with pytest.raises(Conflict):
            ensure_device(OverlayLink("n", 4243, "kbr", "192.0.2.1", 1450, device="kvx4242"), fd)
        eps = [
            EndpointRecord("10.9.0.2", "02:42:0a:09:00:02", "h2", "192.0.2.2"),
            EndpointRecord("10.9.0.3", "02:42:0a:09:00:03", "h3", "192.0.2.3"),
        ]
        want = desired_entries(eps, {"h2": "192.0.2.2", "h3": "192.0.2.3"}, "h1", host_routes=True)
        first = apply("kvx4242", want, fd)
        assert len(first.add_fdb) == 4 and len(first.set_neigh) == 2 and len(first.add_routes) == 2
        assert not apply("kvx4242", want, fd)  # nothing left to do
        routes = {r["dst"] for r in ip_json(ns, "route", "show", "dev", "kvx4242")}
        assert routes == {"10.9.0.2", "10.9.0.3"}
        neigh = ip_json(ns, "neigh", "show", "dev", "kvx4242")
        assert {(n["dst"], n["lladdr"]) for n in neigh} == {
            ("10.9.0.2", "02:42:0a:09:00:02"),
            ("10.9.0.3", "02:42:0a:09:00:03"),
        }
        assert all("PERMANENT" in n["state"] for n in neigh)
        # h3 dies: exactly its entries go
        gone = apply(
            "kvx4242", desired_entries(eps, {"h2": "192.0.2.2"}, "h1", host_routes=True), fd
        )
        assert {f.dst for f in gone.del_fdb} == {"192.0.2.3"} and len(gone.del_fdb) == 2
        assert [n.ip for n in gone.del_neigh] == ["10.9.0.3"]
        assert [r.dst for r in gone.del_routes] == ["10.9.0.3/32"]
        assert {e["dst"] for e in _fdb(ns, "kvx4242") if "dst" in e} == {"192.0.2.2"}
        assert delete_device(link, fd) and not delete_device(link, fd)
    finally:
        os.close(fd)
