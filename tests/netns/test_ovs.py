"""The ``ovs`` network driver against real Open vSwitch daemons (userspace datapath).

Each "host" is a namespace made here running its own ovsdb-server and
ovs-vswitchd (database, sockets and logs in a private directory, stopped by pid
and deleted afterwards); sandboxes are namespaces too. Two hosts are joined by a
veth "underlay" whose ends sit on an OVS bridge of each host (OVS's userspace
tunnelling sends VXLAN packets through a bridge's internal port), as in seed 002:
same-host and cross-host connectivity (ping and TCP), a route between two
subnets, teardown that leaves OVSDB as it was, and bad options.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kanal.engine.controller import NetworkSpec, SandboxRef
from kanal.engine.drivers.ovs import vxlan_port_name
from kanal.engine.model import IPAMConfig, new_id
from kanal.errors import Conflict, InvalidConfig, KanalError
from kanal.ovs import OWNER_KEY, Vsctl
from tests.helpers import have, ip_json, nsexec, run
from tests.netns.inns import in_ns
from tests.netns.test_engine import Engine, addr

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
BINARIES = ("ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl")


@dataclass
class OvsHost:
    """A host namespace with its own OVS daemons and a kanal controller."""

    ns: str
    dir: str
    eng: Engine
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def db(self) -> str:
        return f"unix:{self.dir}/db.sock"

    def vsctl(self, *args: str) -> str:
        return run(["ovs-vsctl", f"--db={self.db}", "--timeout=10", *args]).stdout.decode()

    def snapshot(self) -> dict[str, Any]:
        """Every bridge, port and interface row (by name), without uuids."""
        out: dict[str, Any] = {}
        for table, cols in (
            ("Bridge", "name,datapath_type,external_ids"),
            ("Port", "name,external_ids"),
            ("Interface", "name,type,options,external_ids"),
        ):
            doc = json.loads(self.vsctl("--format=json", f"--columns={cols}", "list", table))
            out[table] = sorted(json.dumps(r, sort_keys=True) for r in doc["data"])
        return out

    def spec(self, name: str, subnet: str, **opts: str) -> NetworkSpec:
        gw = opts.pop("gateway", "")
        rng = opts.pop("ip_range", "")
        options = {"ovs.db": self.db, **{k.replace("_", ".", 1): v for k, v in opts.items()}}
        return NetworkSpec(
            name,
            driver="ovs",
            ipam=[IPAMConfig(subnet, gateway=gw, ip_range=rng)],
            options=options,
        )


def start_ovs(ns: str) -> tuple[str, list[subprocess.Popen[bytes]]]:
    """ovsdb-server (in this namespace) and ovs-vswitchd (in ``ns``) on a fresh private
    database; returns (directory, processes) for :func:`stop_ovs`."""
    # A short path: unix socket names are limited to 108 bytes.
    d = tempfile.mkdtemp(prefix="kovs", dir="/tmp")
    env = {**os.environ, "OVS_RUNDIR": d, "OVS_LOGDIR": d, "OVS_DBDIR": d}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        run(["ovsdb-tool", "create", f"{d}/conf.db", SCHEMA])
        # Not --detach: as our children they are reaped when stopped (no zombies).
        common = ["--no-chdir"]
        procs.append(
            subprocess.Popen(
                [
                    "ovsdb-server",
                    f"{d}/conf.db",
                    f"--remote=punix:{d}/db.sock",
                    f"--pidfile={d}/ovsdb.pid",
                    f"--unixctl={d}/ovsdb.ctl",
                    f"--log-file={d}/ovsdb.log",
                    *common,
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        for _ in range(500):
            if os.path.exists(f"{d}/db.sock"):
                break
            time.sleep(0.01)
        run(["ovs-vsctl", f"--db=unix:{d}/db.sock", "--timeout=10", "--no-wait", "init"])
        procs.append(
            subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    "ovs-vswitchd",
                    f"unix:{d}/db.sock",
                    f"--pidfile={d}/vswitchd.pid",
                    f"--unixctl={d}/vswitchd.ctl",
                    f"--log-file={d}/vswitchd.log",
                    *common,
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        # Waits for ovs-vswitchd to pick the database up (cur_cfg catches up).
        run(["ovs-vsctl", f"--db=unix:{d}/db.sock", "--timeout=10", "init"])
    except BaseException:
        stop_ovs(d, procs)
        raise
    return d, procs


def stop_ovs(d: str, procs: list[subprocess.Popen[bytes]]) -> None:
    for p in reversed(procs):
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def ovs_host(make_netns: Callable[[str], str], tmp_path: Path) -> Iterator[Callable[[], OvsHost]]:
    """Make hosts: a namespace, OVS daemons in it and a controller; all removed after."""
    missing = [b for b in BINARIES if not have(b)]
    if missing or not os.path.exists(SCHEMA):
        pytest.skip(f"Open vSwitch not installed (missing: {', '.join(missing) or SCHEMA})")
    made: list[OvsHost] = []

    def make() -> OvsHost:
        ns = make_netns("kovh")
        nsexec(ns, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0")
        d, procs = start_ovs(ns)
        sub = tmp_path / f"h{len(made)}"
        sub.mkdir()
        h = OvsHost(ns, d, Engine(ns, sub), procs)
        made.append(h)
        return h

    try:
        yield make
    finally:
        for h in made:
            stop_ovs(h.dir, h.procs)


def sandbox(make_netns: Callable[[str], str], name: str) -> tuple[str, SandboxRef]:
    ns = make_netns("kos")
    return ns, SandboxRef(new_id(), name, f"/run/netns/{ns}")


def tcp_roundtrip(src_ns: str, dst_ns: str, dst_ip: str, size: int = 1 << 20) -> bool:
    """Send ``size`` bytes over TCP from ``src_ns`` to a listener in ``dst_ns`` and back."""
    srv = in_ns(dst_ns, lambda: socket.create_server((dst_ip, 0)))
    port = srv.getsockname()[1]
    payload = os.urandom(size)
    got: list[bytes] = []

    def serve() -> None:
        srv.settimeout(10)
        try:
            conn, _ = srv.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            buf = b""
            try:
                while len(buf) < size:
                    chunk = conn.recv(1 << 16)
                    if not chunk:
                        break
                    buf += chunk
                conn.sendall(buf[:64])
            except OSError:
                return
        got.append(buf)

    th = threading.Thread(target=serve)
    th.start()
    try:
        cli = in_ns(src_ns, lambda: socket.create_connection((dst_ip, port), timeout=10))
        with cli:
            cli.sendall(payload)
            echo = b""
            while len(echo) < 64:
                chunk = cli.recv(64)
                if not chunk:
                    break
                echo += chunk
        ok = echo == payload[:64]
    except OSError:
        ok = False
    finally:
        th.join(15)
        srv.close()
    return ok and got == [payload]


def ping(ns: str, ip: str) -> bool:
    """Whether one echo comes back, asking every 0.2 s until 5 s have passed.

    The first frames to a new neighbour can be lost while ovs-vswitchd resolves the
    underlay's ARP for its tunnel (it drops the packet that triggers it).
    """
    cmd = ("ping", "-c", "1", "-i", "0.2", "-w", "5", ip)
    return nsexec(ns, *cmd, check=False).returncode == 0


def tx_checksum(ns: str, ifname: str) -> int:
    """ETHTOOL_GTXCSUM of ``ifname`` in ``ns`` (1: offload on)."""
    import ctypes
    import fcntl
    import struct

    def get() -> int:
        value = ctypes.create_string_buffer(struct.pack("=II", 0x16, 0))
        ifreq = struct.pack("16sP", ifname.encode(), ctypes.addressof(value))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            fcntl.ioctl(s.fileno(), 0x8946, ifreq)  # SIOCETHTOOL
        return int(struct.unpack_from("=II", value.raw)[1])

    return in_ns(ns, get)


def kernel_links(ns: str) -> set[str]:
    """The namespace's links, but ovs-netdev (ovs-vswitchd's own datapath device)."""
    return {link["ifname"] for link in ip_json(ns, "link", "show")} - {"ovs-netdev"}


def ovs_underlay(h1: OvsHost, h2: OvsHost) -> None:
    """A veth between the hosts, each end on an OVS bridge (the operator's) holding
    the host's underlay address 192.168.77.<1|2>."""
    nsexec(h1.ns, "ip", "link", "add", "und", "type", "veth", "peer", "name", "und", "netns", h2.ns)
    for i, h in enumerate((h1, h2), start=1):
        h.vsctl("add-br", "kphy", "--", "set", "Bridge", "kphy", "datapath_type=netdev")
        h.vsctl("add-port", "kphy", "und")
        nsexec(h.ns, "ip", "link", "set", "und", "up")
        nsexec(h.ns, "ip", "addr", "add", f"192.168.77.{i}/24", "dev", "kphy")
        nsexec(h.ns, "ip", "link", "set", "kphy", "up")


def test_same_host_ping_tcp_and_teardown(
    ovs_host: Callable[[], OvsHost], make_netns: Callable[[str], str]
) -> None:
    h = ovs_host()
    before, links_before = h.snapshot(), kernel_links(h.ns)
    net = h.eng(lambda: h.eng.ctrl.create_network(h.spec("o1", "10.81.1.0/24")))
    br = net.driver_state["bridge"]
    assert br == f"kovs-{net.id[:8]}" and net.driver_state["own_bridge"]
    got = Vsctl(h.db).bridge(br)
    # userspace unless the openvswitch kernel module is loaded
    want = "system" if os.path.isdir("/sys/module/openvswitch") else "netdev"
    assert got is not None and got.datapath_type == want
    assert got.external_ids[OWNER_KEY] == net.id
    gw = ip_json(h.ns, "addr", "show", "dev", br)[0]
    assert {a["local"] for a in gw["addr_info"] if a["family"] == "inet"} == {"10.81.1.1"}

    ns1, s1 = sandbox(make_netns, "one")
    ns2, s2 = sandbox(make_netns, "two")
    e1 = h.eng(lambda: h.eng.ctrl.connect("o1", s1))
    e2 = h.eng(lambda: h.eng.ctrl.connect("o1", s2))
    assert sorted(Vsctl(h.db).list_ports(br)) == sorted(
        [e1.driver_state["host_veth"], e2.driver_state["host_veth"]]
    )
    inside = ip_json(ns1, "addr", "show", "dev", "eth0")[0]
    assert inside["address"] == e1.mac
    assert ip_json(ns1, "route", "show", "default")[0]["gateway"] == "10.81.1.1"
    assert ping(ns1, addr(e2)) and ping(ns2, "10.81.1.1")
    if want == "netdev":
        assert tx_checksum(ns1, "eth0") == 0 and tx_checksum(h.ns, e1.driver_state["host_veth"])
    assert tcp_roundtrip(ns1, ns2, addr(e2))  # needs tx checksum offload off
    assert h.eng(lambda: h.eng.ctrl.driver("ovs").endpoint_ok(net, e1))

    for s in (s1, s2):
        h.eng(lambda s=s: h.eng.ctrl.disconnect("o1", s.id))  # type: ignore[misc]
    assert kernel_links(ns1) == {"lo"}
    h.eng(lambda: h.eng.ctrl.delete_network("o1"))
    assert h.snapshot() == before
    assert kernel_links(h.ns) == links_before


def test_cross_host_vxlan_and_route_between_subnets(
    ovs_host: Callable[[], OvsHost], make_netns: Callable[[str], str]
) -> None:
    h1, h2 = ovs_host(), ovs_host()
    # The underlay: a veth between the hosts, each end on an OVS bridge (the
    # operator's) holding the host's underlay address.
    ovs_underlay(h1, h2)
    before1, before2 = h1.snapshot(), h2.snapshot()

    # One subnet over both hosts: each host hands out its own range, has its own gateway.
    n1 = h1.eng(
        lambda: h1.eng.ctrl.create_network(
            h1.spec(
                "ov",
                "10.81.2.0/24",
                gateway="10.81.2.1",
                ip_range="10.81.2.0/25",
                ovs_vxlan_remote="192.168.77.2",
                ovs_datapath="netdev",
            )
        )
    )
    n2 = h2.eng(
        lambda: h2.eng.ctrl.create_network(
            h2.spec(
                "ov",
                "10.81.2.0/24",
                gateway="10.81.2.254",
                ip_range="10.81.2.128/25",
                ovs_vxlan_remote="192.168.77.1",
                ovs_datapath="netdev",
            )
        )
    )
    # A second subnet on host 2 only (seed 002's last step: c2 in another subnet).
    h2.eng(lambda: h2.eng.ctrl.create_network(h2.spec("ov2", "10.81.3.0/24")))
    vx = [p for p in Vsctl(h1.db).list_ports(n1.driver_state["bridge"]) if p.startswith("kx")]
    assert len(vx) == 1
    row = Vsctl(h1.db).list_json("Interface", ["type", "options"], vx[0])[0]
    assert row["type"] == "vxlan" and row["options"] == {"remote_ip": "192.168.77.2", "key": "flow"}

    ns1, c1 = sandbox(make_netns, "c1")
    ns2, c2 = sandbox(make_netns, "c2")
    ns3, c3 = sandbox(make_netns, "c3")
    e1 = h1.eng(lambda: h1.eng.ctrl.connect("ov", c1))
    e3 = h2.eng(lambda: h2.eng.ctrl.connect("ov", c3))
    e2 = h2.eng(lambda: h2.eng.ctrl.connect("ov2", c2))
    assert ip_json(ns1, "link", "show", "eth0")[0]["mtu"] == 1450
    # same subnet, two hosts, over VXLAN: ping and TCP (MTU leaves room for the headers)
    assert ping(ns1, addr(e3)) and ping(ns3, addr(e1))
    assert tcp_roundtrip(ns1, ns3, addr(e3))
    # between subnets on host 2: through the host's forwarding
    assert ping(ns3, addr(e2))
    # between subnets across hosts: host 1 routes 10.81.3.0/24 via host 2's gateway
    nsexec(h1.ns, "ip", "route", "add", "10.81.3.0/24", "via", "10.81.2.254")
    assert ping(ns1, addr(e2)) and ping(ns2, addr(e1))
    assert tcp_roundtrip(ns2, ns1, addr(e1))

    h1.eng(lambda: h1.eng.ctrl.disconnect("ov", c1.id))
    h2.eng(lambda: h2.eng.ctrl.disconnect("ov", c3.id))
    h2.eng(lambda: h2.eng.ctrl.disconnect("ov2", c2.id))
    h1.eng(lambda: h1.eng.ctrl.delete_network("ov"))
    for name in ("ov", "ov2"):
        h2.eng(lambda name=name: h2.eng.ctrl.delete_network(name))  # type: ignore[misc]
    assert h1.snapshot() == before1 and h2.snapshot() == before2
    assert n2.driver_state["vxlan_remotes"] == ["192.168.77.1"]


def test_operator_bridge_kept_and_bad_options(
    ovs_host: Callable[[], OvsHost], make_netns: Callable[[str], str]
) -> None:
    h = ovs_host()
    # A bridge that exists before the network is the operator's: used, then left as it was.
    h.vsctl("add-br", "opbr", "--", "set", "Bridge", "opbr", "datapath_type=netdev")
    nsexec(h.ns, "ip", "link", "set", "opbr", "up")
    before, links_before = h.snapshot(), kernel_links(h.ns)
    net = h.eng(lambda: h.eng.ctrl.create_network(h.spec("op", "10.81.4.0/24", ovs_bridge="opbr")))
    assert not net.driver_state["own_bridge"]
    ns1, s1 = sandbox(make_netns, "one")
    e1 = h.eng(lambda: h.eng.ctrl.connect("op", s1))
    assert Vsctl(h.db).port_owners("opbr") == {e1.driver_state["host_veth"]: net.id}
    assert ping(ns1, "10.81.4.1")
    h.eng(lambda: h.eng.ctrl.disconnect("op", s1.id))
    h.eng(lambda: h.eng.ctrl.delete_network("op"))
    assert h.snapshot() == before and kernel_links(h.ns) == links_before
    gw = ip_json(h.ns, "addr", "show", "dev", "opbr")[0]
    assert not [a for a in gw["addr_info"] if a["family"] == "inet"]

    # A bridge of another kanal network is refused.
    h.eng(lambda: h.eng.ctrl.create_network(h.spec("mine", "10.81.5.0/24", ovs_bridge="kb5")))
    h.vsctl("br-exists", "kb5")
    store_rev = h.eng.ctrl.store.revision()
    ovsdb = h.snapshot()
    bad: list[tuple[dict[str, str], type[KanalError], str]] = [
        ({"ovs_nope": "1"}, InvalidConfig, "unknown ovs option"),
        ({"ovs_bridge": "x" * 16}, InvalidConfig, "invalid ovs.bridge"),
        ({"ovs_bridge": "a b"}, InvalidConfig, "invalid ovs.bridge"),
        ({"ovs_vxlan_remote": "10.0.0.1,nope"}, InvalidConfig, "invalid ovs.vxlan_remote"),
        ({"ovs_vxlan_remote": "224.0.0.1"}, InvalidConfig, "unicast"),
        ({"ovs_vxlan_remote": "10.9.9.9", "ovs_vxlan_key": "x"}, InvalidConfig, "vxlan_key"),
        ({"ovs_vxlan_remote": "10.9.9.9", "ovs_vxlan_key": "16777216"}, InvalidConfig, "0-"),
        ({"ovs_vxlan_key": "5"}, InvalidConfig, "need ovs.vxlan_remote"),
        ({"ovs_vxlan_remote": "10.9.9.9", "ovs_vxlan_port": "0"}, InvalidConfig, "1-65535"),
        ({"ovs_mtu": "50"}, InvalidConfig, "invalid ovs.mtu"),
        ({"ovs_datapath": "dpdk"}, InvalidConfig, "want netdev or system"),
        ({"ovs_db": "tcp:127.0.0.1:6640"}, InvalidConfig, "unix:/absolute/path"),
        ({"ovs_db": "unix:/nonexistent/db.sock"}, InvalidConfig, "cannot reach OVSDB"),
        # userspace tunnelling: no route through an OVS bridge to the remote
        ({"ovs_vxlan_remote": "10.9.9.9", "ovs_datapath": "netdev"}, InvalidConfig, "no route"),
        ({"ovs_bridge": "kb5"}, Conflict, "belongs to kanal network"),
    ]
    if not os.path.isdir("/sys/module/openvswitch"):
        bad.append(({"ovs_datapath": "system"}, InvalidConfig, "kernel module"))
    for opts, exc, msg in bad:
        spec = h.spec("bad", "10.81.6.0/24", **opts)
        with pytest.raises(exc, match=msg):
            h.eng(lambda spec=spec: h.eng.ctrl.create_network(spec))  # type: ignore[misc]
    # an underlay route that is not an OVS bridge: refused with the reason
    nsexec(h.ns, "ip", "route", "add", "10.9.9.0/24", "dev", "lo")
    with pytest.raises(InvalidConfig, match="not an OVS bridge"):
        h.eng(
            lambda: h.eng.ctrl.create_network(
                h.spec("bad", "10.81.6.0/24", ovs_vxlan_remote="10.9.9.9", ovs_datapath="netdev")
            )
        )
    assert h.eng.ctrl.store.revision() == store_rev  # nothing written
    assert h.snapshot() == ovsdb  # nothing changed in OVSDB
    h.eng(lambda: h.eng.ctrl.delete_network("mine"))
    assert h.snapshot() == before


def test_restart_reconciles_bridge_and_ports(
    ovs_host: Callable[[], OvsHost], make_netns: Callable[[str], str]
) -> None:
    h = ovs_host()
    before = h.snapshot()
    net = h.eng(lambda: h.eng.ctrl.create_network(h.spec("keep", "10.81.7.0/24")))
    ns1, s1 = sandbox(make_netns, "alive")
    ns2, s2 = sandbox(make_netns, "gone")
    e1 = h.eng(lambda: h.eng.ctrl.connect("keep", s1))
    h.eng(lambda: h.eng.ctrl.connect("keep", s2))
    # kanald is down; meanwhile the bridge is deleted from OVSDB and a sandbox goes
    h.vsctl("del-br", net.driver_state["bridge"])
    nsexec(h.ns, "ip", "link", "del", e1.driver_state["host_veth"])
    subprocess.run(["ip", "netns", "del", ns2], check=True)
    fresh = h.eng.new_controller()
    counts = h.eng(fresh.reconcile)
    assert counts["dropped"] == 1 and counts["rejoined"] == 1
    [e1b] = fresh.endpoints(net.id)
    assert Vsctl(h.db).list_ports(net.driver_state["bridge"]) == [e1b.driver_state["host_veth"]]
    assert ping(ns1, "10.81.7.1")
    h.eng(lambda: fresh.disconnect("keep", s1.id))
    h.eng(lambda: fresh.delete_network("keep"))
    assert h.snapshot() == before


def test_vxlan_peers_from_the_cluster_store(
    ovs_host: Callable[[], OvsHost], make_netns: Callable[[str], str], tmp_path: Path
) -> None:
    """``ovs.vxlan_remote=cluster``: one tunnel per other host registered in etcd,
    followed at reconcile (a host that left loses its tunnel)."""
    if not have("etcd"):
        pytest.skip("etcd is not installed")
    from kanal.cluster.nodes import Node, node_key
    from kanal.engine.cluster import Cluster

    h1, h2 = ovs_host(), ovs_host()
    ovs_underlay(h1, h2)
    # The cluster store: one etcd member on host 1's underlay address.
    a = "192.168.77.1"
    etcd = subprocess.Popen(
        ["ip", "netns", "exec", h1.ns, "etcd", "--name", "m1", "--data-dir", str(tmp_path / "etcd"),
         "--listen-client-urls", f"http://{a}:2379", "--advertise-client-urls", f"http://{a}:2379",
         "--listen-peer-urls", f"http://{a}:2380", "--initial-advertise-peer-urls",
         f"http://{a}:2380", "--initial-cluster", f"m1=http://{a}:2380"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        clusters = {}
        for i, h in enumerate((h1, h2), start=1):
            c = Cluster(f"etcd://{a}:2379/kovs/", f"o{i}", f"192.168.77.{i}")
            h.eng.ctrl.ctx.cluster = clusters[i] = c  # registration and agent not started
        store = clusters[1].store

        def register(name: str, addr_: str) -> None:
            node = Node(name, addr_, time.time(), 0)
            for _ in range(100):  # etcd may still be starting
                try:
                    store.put(node_key(name), node.to_json())
                    return
                except KanalError:
                    time.sleep(0.1)
            raise AssertionError("etcd did not come up")

        for name, ip in (("o1", "192.168.77.1"), ("o2", "192.168.77.2"), ("o3", "192.168.77.3")):
            h1.eng(lambda n=name, ip=ip: register(n, ip))  # type: ignore[misc]
        nets = {}
        for i, h, rng in ((1, h1, "10.81.6.0/25"), (2, h2, "10.81.6.128/25")):
            spec = h.spec("oc", "10.81.6.0/24", gateway=f"10.81.6.{i}", ip_range=rng,
                          ovs_vxlan_remote="cluster", ovs_datapath="netdev")  # fmt: skip
            nets[i] = h.eng(lambda h=h, spec=spec: h.eng.ctrl.create_network(spec))  # type: ignore[misc]
        assert nets[1].driver_state["vxlan_remotes"] == ["192.168.77.2", "192.168.77.3"]
        assert nets[2].driver_state["vxlan_remotes"] == ["192.168.77.1", "192.168.77.3"]
        ns1, c1 = sandbox(make_netns, "c1")
        ns2, c2 = sandbox(make_netns, "c2")
        e1 = h1.eng(lambda: h1.eng.ctrl.connect("oc", c1))
        e2 = h2.eng(lambda: h2.eng.ctrl.connect("oc", c2))
        assert ping(ns1, addr(e2)) and ping(ns2, addr(e1))
        # o3 leaves the cluster: host 1's reconcile drops its tunnel, keeps the other.
        gone = vxlan_port_name(nets[1].id, "192.168.77.3")
        assert gone in Vsctl(h1.db).list_ports(nets[1].driver_state["bridge"])
        h1.eng(lambda: store.delete(node_key("o3")))
        h1.eng(h1.eng.ctrl.reconcile)
        ports = Vsctl(h1.db).list_ports(nets[1].driver_state["bridge"])
        assert gone not in ports and vxlan_port_name(nets[1].id, "192.168.77.2") in ports
        assert ping(ns1, addr(e2))
        h1.eng(lambda: h1.eng.ctrl.disconnect("oc", c1.id))
        h2.eng(lambda: h2.eng.ctrl.disconnect("oc", c2.id))
        for h in (h1, h2):
            h.eng(lambda h=h: h.eng.ctrl.delete_network("oc"))  # type: ignore[misc]
        # Without a cluster the option is refused clearly.
        h2.eng.ctrl.ctx.cluster = None
        with pytest.raises(InvalidConfig, match="--cluster-store"):
            h2.eng(lambda: h2.eng.ctrl.create_network(
                h2.spec("oc2", "10.81.7.0/24", ovs_vxlan_remote="cluster")))  # fmt: skip
    finally:
        etcd.kill()
        etcd.wait(10)
