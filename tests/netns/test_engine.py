"""The network controller with the bridge driver, in a host namespace made here.

Sandboxes are namespaces the tests make; connectivity and isolation are checked
with real packets between them, state with ``ip -j`` and the store.
"""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from kanal.daemon.cniruntime import inprocess_cni
from kanal.engine.context import EngineContext
from kanal.engine.controller import Controller, NetworkSpec, SandboxRef
from kanal.engine.ipam import Pool
from kanal.engine.model import IPAMConfig, PortBinding, new_id
from kanal.errors import Conflict, Forbidden, InvalidConfig, KanalError, NotFound
from kanal.ipam.diskfiles import INDEX_NAME
from kanal.store import open_store
from tests.helpers import ip_json, nsexec, unique
from tests.netns.inns import in_ns

T = TypeVar("T")
TEST_POOLS = [Pool("10.77.0.0/16", 24)]


class Engine:
    """A controller whose every call runs inside the test's host namespace."""

    def __init__(self, host: str, tmp: Path) -> None:
        self.host = host
        self.tmp = tmp
        self.ctrl = self.new_controller()

    def new_controller(self) -> Controller:
        """What a restarted daemon builds: same store and state directory."""
        store = open_store(f"sqlite://{self.tmp}/state.db")
        ctx = EngineContext(cni_runtime=inprocess_cni, state_dir=str(self.tmp / "state"))
        return Controller(
            store,
            ctx,
            pools=TEST_POOLS,
            default_bridge=unique("kb", 15),
            default_subnet="10.76.0.0/24",
        )

    def __call__(self, fn: Callable[[], T]) -> T:
        return in_ns(self.host, fn)

    def sandbox(self, make_netns: Callable[[str], str], name: str) -> tuple[str, SandboxRef]:
        ns = make_netns("kes")
        return ns, SandboxRef(new_id(), name, f"/run/netns/{ns}")


@pytest.fixture
def eng(host_ns: str, tmp_path: Path) -> Iterator[Engine]:
    e = Engine(host_ns, tmp_path)
    e(e.ctrl.ensure_builtin)
    yield e


def ping(ns: str, ip: str) -> bool:
    return nsexec(ns, "ping", "-c", "1", "-W", "1", ip, check=False).returncode == 0


def addr(ep: Any) -> str:
    return str(ep.ipv4).split("/")[0]


def test_builtin_networks_and_bad_requests(eng: Engine) -> None:
    names = {n.name: n for n in eng.ctrl.networks()}
    assert set(names) == {"bridge", "host", "none"}
    assert names["none"].driver == "null"
    br = names["bridge"].driver_state["bridge"]
    got = ip_json(eng.host, "-d", "addr", "show", "dev", br)[0]
    assert got["linkinfo"]["info_kind"] == "bridge"
    assert {a["local"] for a in got["addr_info"] if a["family"] == "inet"} == {"10.76.0.1"}
    before = eng.ctrl.store.revision()
    bad: list[tuple[NetworkSpec, type[KanalError]]] = [
        (NetworkSpec("bridge"), Conflict),
        (NetworkSpec("a/b"), InvalidConfig),
        (NetworkSpec("ov", ipam=[IPAMConfig("10.76.0.0/16")]), Conflict),
        (NetworkSpec("gw", ipam=[IPAMConfig("10.90.0.0/24", gateway="10.91.0.1")]), InvalidConfig),
        (NetworkSpec("hb", ipam=[IPAMConfig("10.90.0.5/24")]), InvalidConfig),
        (
            NetworkSpec("rg", ipam=[IPAMConfig("10.90.0.0/24", ip_range="10.91.0.0/25")]),
            InvalidConfig,
        ),
        (
            NetworkSpec("opt", options={"com.docker.network.bridge.enable_icc": "maybe"}),
            InvalidConfig,
        ),
        (NetworkSpec("unk", options={"com.docker.network.bridge.nope": "1"}), InvalidConfig),
        (NetworkSpec("drv", driver="nosuch"), InvalidConfig),
        (NetworkSpec("h2", driver="host"), InvalidConfig),
        (NetworkSpec("v6", ipam=[IPAMConfig("fd00:1::/64")]), InvalidConfig),
    ]
    for spec, exc in bad:
        with pytest.raises(exc):
            eng(lambda s=spec: eng.ctrl.create_network(s))  # type: ignore[misc]
    assert eng.ctrl.store.revision() == before  # nothing written
    with pytest.raises(Forbidden):
        eng(lambda: eng.ctrl.delete_network("bridge"))
    with pytest.raises(NotFound):
        eng(lambda: eng.ctrl.delete_network("nosuch"))


def test_connect_isolation_masquerade_and_remove(
    eng: Engine, make_netns: Callable[[str], str]
) -> None:
    a = eng(lambda: eng.ctrl.create_network(NetworkSpec("neta")))
    b = eng(lambda: eng.ctrl.create_network(NetworkSpec("netb")))
    sa = ipaddress.IPv4Network(a.ipam[0].subnet)
    sb = ipaddress.IPv4Network(b.ipam[0].subnet)
    assert sa != sb and not sa.overlaps(sb) and sa.subnet_of(ipaddress.IPv4Network("10.77.0.0/16"))
    ns1, s1 = eng.sandbox(make_netns, "one")
    ns2, s2 = eng.sandbox(make_netns, "two")
    ns3, s3 = eng.sandbox(make_netns, "three")
    e1 = eng(lambda: eng.ctrl.connect("neta", s1))
    e2 = eng(lambda: eng.ctrl.connect(a.id[:8], s2, aliases=["deux"]))
    e3 = eng(lambda: eng.ctrl.connect("netb", s3))
    assert e1.ifname == "eth0" and e1.ipv4 == f"{sa.network_address + 2}/{sa.prefixlen}"
    assert addr(e2) == str(sa.network_address + 3)
    inside = ip_json(ns1, "addr", "show", "dev", "eth0")[0]
    assert inside["address"] == e1.mac
    routes = ip_json(ns1, "route", "show", "default")
    assert routes[0]["gateway"] == a.ipam[0].gateway
    assert ping(ns1, addr(e2))  # same network
    assert ping(ns1, b.ipam[0].gateway)  # a host address: input, not forward
    assert not ping(ns1, addr(e3))  # another network: dropped
    assert not ping(ns3, addr(e1))

    # masquerade towards an "outside" namespace behind the host
    out = make_netns("keo")
    nsexec(
        eng.host, "ip", "link", "add", "kout", "type", "veth", "peer", "name", "eth0", "netns", out
    )
    nsexec(eng.host, "ip", "addr", "add", "198.51.100.1/24", "dev", "kout")
    nsexec(eng.host, "ip", "link", "set", "kout", "up")
    nsexec(out, "ip", "addr", "add", "198.51.100.2/24", "dev", "eth0")
    nsexec(out, "ip", "link", "set", "eth0", "up")
    assert ping(ns1, "198.51.100.2")

    with pytest.raises(Conflict, match="already exists"):
        eng(lambda: eng.ctrl.connect("neta", s1))
    with pytest.raises(Conflict, match="active endpoints"):
        eng(lambda: eng.ctrl.delete_network("neta"))
    for s, net in ((s1, "neta"), (s2, "neta"), (s3, "netb")):
        eng(lambda s=s, net=net: eng.ctrl.disconnect(net, s.id))  # type: ignore[misc]
    assert ip_json(ns1, "link", "show", "dev", "lo")  # the sandbox itself stays
    assert not [x for x in ip_json(ns1, "link") if x["ifname"] == "eth0"]
    assert eng.ctrl.ipam.in_use(a.id) == {}
    with pytest.raises(NotFound):
        eng(lambda: eng.ctrl.disconnect("neta", s1.id))
    removed = eng(eng.ctrl.prune)
    assert {n.name for n in removed} == {"neta", "netb"}
    links = {x["ifname"] for x in ip_json(eng.host, "link")}
    assert a.driver_state["bridge"] not in links and b.driver_state["bridge"] not in links
    chains = nsexec(eng.host, "nft", "list", "table", "inet", "kanal").stdout.decode()
    assert f"kn_{a.id[:12]}" not in chains and a.driver_state["bridge"] not in chains


def test_internal_icc_off_and_static_ips(eng: Engine, make_netns: Callable[[str], str]) -> None:
    eng(
        lambda: eng.ctrl.create_network(
            NetworkSpec(
                "inner", internal=True, ipam=[IPAMConfig("10.88.0.0/24", ip_range="10.88.0.128/25")]
            )
        )
    )
    ns1, s1 = eng.sandbox(make_netns, "i1")
    ns2, s2 = eng.sandbox(make_netns, "i2")
    e1 = eng(lambda: eng.ctrl.connect("inner", s1, ip="10.88.0.10"))
    e2 = eng(lambda: eng.ctrl.connect("inner", s2))
    assert e1.ipv4 == "10.88.0.10/24" and addr(e2) == "10.88.0.128"  # from --ip-range
    assert ip_json(ns1, "route", "show", "default") == []  # internal: no way out
    assert ping(ns1, addr(e2))
    eng(lambda: eng.ctrl.create_network(NetworkSpec("outer")))
    ns3, s3 = eng.sandbox(make_netns, "o1")
    e3 = eng(lambda: eng.ctrl.connect("outer", s3))
    assert not ping(ns3, addr(e1))
    with pytest.raises(Conflict, match="in use"):
        eng(lambda: eng.ctrl.connect("inner", eng.sandbox(make_netns, "dup")[1], ip="10.88.0.10"))
    with pytest.raises(InvalidConfig):
        eng(lambda: eng.ctrl.connect("inner", eng.sandbox(make_netns, "far")[1], ip="10.99.0.1"))
    with pytest.raises(InvalidConfig, match="user configured subnets"):
        eng(lambda: eng.ctrl.connect("bridge", eng.sandbox(make_netns, "st")[1], ip="10.76.0.9"))

    noicc = eng(
        lambda: eng.ctrl.create_network(
            NetworkSpec("noicc", options={"com.docker.network.bridge.enable_icc": "false"})
        )
    )
    ns4, s4 = eng.sandbox(make_netns, "n1")
    ns5, s5 = eng.sandbox(make_netns, "n2")
    eng(lambda: eng.ctrl.connect("noicc", s4))
    e5 = eng(lambda: eng.ctrl.connect("noicc", s5))
    assert ping(ns4, noicc.ipam[0].gateway)
    assert not ping(ns4, addr(e5))
    # a second network on one sandbox: eth1, reachable peers there
    e3b = eng(lambda: eng.ctrl.connect("noicc", s3))
    assert e3b.ifname == "eth1" and e3.ifname == "eth0"


def _serve_once(ns: str, port: int) -> subprocess.Popen[bytes]:
    code = (
        "import socket; s = socket.socket();"
        " s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1);"
        f" s.bind(('0.0.0.0', {port})); s.listen(4); print('ready', flush=True)\n"
        "while True:\n    c, a = s.accept(); c.sendall(b'hello ' + a[0].encode()); c.close()"
    )
    p = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-c", code], stdout=subprocess.PIPE
    )
    assert p.stdout is not None and p.stdout.readline().strip() == b"ready"
    return p


def _fetch(ns: str, ip: str, port: int) -> str:
    code = (
        "import socket, sys;"
        " c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3);"
        " print(c.recv(100).decode())"
    )
    r = nsexec(ns, sys.executable, "-c", code, ip, str(port), check=False)
    return r.stdout.decode().strip()


def test_published_ports(eng: Engine, make_netns: Callable[[str], str]) -> None:
    eng(lambda: eng.ctrl.create_network(NetworkSpec("pub")))
    ns1, s1 = eng.sandbox(make_netns, "web")
    e1 = eng(
        lambda: eng.ctrl.connect(
            "pub",
            s1,
            ports=[PortBinding(80, "tcp", "", 18080), PortBinding(81, "tcp", "127.0.0.1", 0)],
        )
    )
    random_port = e1.ports[1].host_port
    assert e1.ports[0].host_port == 18080 and random_port > 1024
    srv = _serve_once(ns1, 80)
    srv2 = _serve_once(ns1, 81)
    try:
        out = make_netns("kpo")
        nsexec(
            eng.host,
            "ip",
            "link",
            "add",
            "kout",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            out,
        )
        nsexec(eng.host, "ip", "addr", "add", "198.51.100.1/24", "dev", "kout")
        nsexec(eng.host, "ip", "link", "set", "kout", "up")
        nsexec(out, "ip", "addr", "add", "198.51.100.2/24", "dev", "eth0")
        nsexec(out, "ip", "link", "set", "eth0", "up")
        assert _fetch(out, "198.51.100.1", 18080) == "hello 198.51.100.2"  # client address kept
        assert _fetch(eng.host, "127.0.0.1", random_port).startswith("hello")
        assert _fetch(ns1, "198.51.100.1", 18080).startswith("hello")  # hairpin
        assert _fetch(out, "198.51.100.1", random_port) == ""  # 127.0.0.1 only
        ns2, s2 = eng.sandbox(make_netns, "other")
        with pytest.raises(Conflict, match="already allocated"):
            eng(lambda: eng.ctrl.connect("pub", s2, ports=[PortBinding(80, "tcp", "", 18080)]))
        assert not [e for e in eng.ctrl.endpoints() if e.sandbox_id == s2.id]
        assert not [x for x in ip_json(ns2, "link") if x["ifname"] == "eth0"]
        eng(lambda: eng.ctrl.disconnect("pub", s1.id))
        assert _fetch(out, "198.51.100.1", 18080) == ""
        assert eng.ctrl.store.list("ports/") == []
    finally:
        srv.kill()
        srv2.kill()


def test_restart_reconciles(eng: Engine, make_netns: Callable[[str], str]) -> None:
    net = eng(lambda: eng.ctrl.create_network(NetworkSpec("keep")))
    ns1, s1 = eng.sandbox(make_netns, "alive")
    ns2, s2 = eng.sandbox(make_netns, "gone")
    e1 = eng(lambda: eng.ctrl.connect("keep", s1))
    e2 = eng(lambda: eng.ctrl.connect("keep", s2))
    # the daemon dies; meanwhile one sandbox disappears and the bridge is deleted
    nsexec(eng.host, "ip", "link", "del", net.driver_state["bridge"])
    subprocess.run(["ip", "netns", "del", ns2], check=True)
    fresh = eng.new_controller()
    counts = eng(fresh.reconcile)
    assert counts["dropped"] == 1 and counts["rejoined"] == 1
    assert [e.id for e in fresh.endpoints(net.id)] == [e1.id]
    assert fresh.ipam.in_use(net.id) == {addr(e1): e1.id}  # e2's address released
    assert ping(ns1, net.ipam[0].gateway)
    assert ip_json(ns1, "addr", "show", "dev", "eth0")[0]["addr_info"][0]["local"] == addr(e1)
    # a new endpoint never gets the address the live one holds
    ns3, s3 = eng.sandbox(make_netns, "new")
    e3 = eng(lambda: fresh.connect("keep", s3))
    assert addr(e3) != addr(e1)
    assert ping(ns3, addr(e1))
    _ = e2


def test_cni_driver_runs_any_conflist(
    host_ns: str, tmp_path: Path, make_netns: Callable[[str], str]
) -> None:
    """A conflist dir: one list on kanal's plugins, one on a foreign plugin executable."""
    import json
    import shutil

    from tests.helpers import go_plugin_dir

    go = go_plugin_dir()
    if go is None:
        pytest.skip("the reference plugins (containernetworking-plugins) are not installed")
    confdir, foreign = tmp_path / "net.d", tmp_path / "foreign"
    confdir.mkdir()
    foreign.mkdir()
    shutil.copy(f"{go}/bridge", foreign / "gobridge")  # a third-party plugin
    for name, ptype, subnet in (
        ("kcni", "bridge", "10.61.0.0/24"),
        ("gcni", "gobridge", "10.62.0.0/24"),
    ):
        (confdir / f"10-{name}.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "1.0.0",
                    "name": name,
                    "plugins": [
                        {
                            "type": ptype,
                            "bridge": unique("kc", 15),
                            "isGateway": True,
                            "ipMasq": True,
                            "ipam": {
                                "type": "host-local",
                                "subnet": subnet,
                                "dataDir": str(tmp_path / "ipam"),
                            },
                        },
                        {"type": "portmap", "capabilities": {"portMappings": True}},
                    ],
                }
            )
        )
    (confdir / "99-broken.conflist").write_text("{not json")
    ctx = EngineContext(
        cni_runtime=inprocess_cni,
        state_dir=str(tmp_path / "state"),
        cni_paths=[str(foreign), go],
        cni_conf_dir=str(confdir),
    )
    ctrl = Controller(
        open_store("memory://"), ctx, pools=TEST_POOLS, default_bridge=unique("kb", 15)
    )
    made = in_ns(host_ns, ctrl.sync_cni_networks)
    assert sorted(made) == ["gcni", "kcni"]
    assert in_ns(host_ns, ctrl.sync_cni_networks) == []  # idempotent
    ns1 = make_netns("kec")
    s1 = SandboxRef(new_id(), "c1", f"/run/netns/{ns1}")
    ns2 = make_netns("kec")
    s2 = SandboxRef(new_id(), "c2", f"/run/netns/{ns2}")
    e1 = in_ns(host_ns, lambda: ctrl.connect("kcni", s1, ports=[PortBinding(80, "tcp", "", 18081)]))
    e2 = in_ns(host_ns, lambda: ctrl.connect("gcni", s2))
    assert e1.ipv4 == "10.61.0.2/24" and e2.ipv4 == "10.62.0.2/24"
    assert e1.mac and e2.mac
    assert ping(ns1, "10.61.0.1") and ping(ns2, "10.62.0.1")
    # a second network on the same sandbox: eth1 from the foreign plugin
    e3 = in_ns(host_ns, lambda: ctrl.connect("gcni", s1))
    assert e3.ifname == "eth1" and e3.ipv4 == "10.62.0.3/24"
    assert ping(ns1, "10.62.0.2")
    nft = nsexec(host_ns, "nft", "list", "map", "inet", "kanal", "pm_any4").stdout.decode()
    assert "18081" in nft
    for s, net in ((s1, "kcni"), (s1, "gcni"), (s2, "gcni")):
        in_ns(host_ns, lambda s=s, net=net: ctrl.disconnect(net, s.id))  # type: ignore[misc]
    assert not [x for x in ip_json(ns1, "link") if x["ifname"].startswith("eth")]
    assert (
        "18081"
        not in nsexec(host_ns, "nft", "list", "map", "inet", "kanal", "pm_any4").stdout.decode()
    )
    assert sorted(
        p.name for p in (tmp_path / "ipam" / "gcni").iterdir() if p.name != INDEX_NAME
    ) == [
        "last_reserved_ip.0",
        "lock",
    ]
    (confdir / "10-gcni.conflist").unlink()
    in_ns(host_ns, ctrl.sync_cni_networks)
    assert {n.name for n in ctrl.networks()} == {"kcni"}


def test_macvlan_network(eng: Engine, make_netns: Callable[[str], str]) -> None:
    lan = make_netns("kel")  # a host on the parent's wire, also the LAN's router
    nsexec(
        eng.host, "ip", "link", "add", "lan0", "type", "veth", "peer", "name", "eth0", "netns", lan
    )
    nsexec(eng.host, "ip", "link", "set", "lan0", "up")
    nsexec(lan, "ip", "addr", "add", "198.51.100.2/24", "dev", "eth0")
    nsexec(lan, "ip", "link", "set", "eth0", "up")
    spec = NetworkSpec(
        "mvlan",
        "macvlan",
        ipam=[IPAMConfig("198.51.100.0/24", gateway="198.51.100.2", ip_range="198.51.100.64/26")],
        options={"parent": "lan0", "macvlan_mode": "bridge"},
    )
    eng(lambda: eng.ctrl.create_network(spec))
    ns1, s1 = eng.sandbox(make_netns, "m1")
    ns2, s2 = eng.sandbox(make_netns, "m2")
    e1 = eng(lambda: eng.ctrl.connect("mvlan", s1))
    e2 = eng(lambda: eng.ctrl.connect("mvlan", s2, ip="198.51.100.10"))
    assert e1.ipv4 == "198.51.100.64/24" and e2.ipv4 == "198.51.100.10/24"
    link = ip_json(ns1, "-d", "link", "show", "eth0")[0]
    assert link["linkinfo"]["info_kind"] == "macvlan" and link["address"] == e1.mac
    assert ip_json(ns1, "route", "show", "default")[0]["gateway"] == "198.51.100.2"
    assert ping(ns1, "198.51.100.10") and ping(ns1, "198.51.100.2") and ping(lan, "198.51.100.64")
    for bad in (
        NetworkSpec(
            "mv2", "macvlan", ipam=[IPAMConfig("192.0.2.0/24")], options={"parent": "nosuch0"}
        ),
        NetworkSpec(
            "mv3", "macvlan", ipam=[IPAMConfig("192.0.2.0/24")], options={"macvlan_mode": "weird"}
        ),
        NetworkSpec("mv4", "macvlan", ipam=[IPAMConfig("192.0.2.0/24")], options={"bogus": "1"}),
    ):
        with pytest.raises(InvalidConfig):
            eng(lambda b=bad: eng.ctrl.create_network(b))  # type: ignore[misc]
    eng(lambda: eng.ctrl.disconnect("mvlan", s1.id))
    eng(lambda: eng.ctrl.disconnect("mvlan", s2.id))
    assert [x["ifname"] for x in ip_json(ns1, "link")] == ["lo"]
    eng(lambda: eng.ctrl.delete_network("mvlan"))


def test_dual_stack_network(eng: Engine, make_netns: Callable[[str], str]) -> None:
    net = eng(
        lambda: eng.ctrl.create_network(
            NetworkSpec(
                "dual",
                enable_ipv6=True,
                ipam=[IPAMConfig("10.79.0.0/24"), IPAMConfig("fd00:79::/64")],
            )
        )
    )
    auto6 = eng(lambda: eng.ctrl.create_network(NetworkSpec("auto6", enable_ipv6=True)))
    assert [c.subnet for c in auto6.ipam][1].startswith("fd6b:616e:616c:")  # the ULA pool
    ns1, s1 = eng.sandbox(make_netns, "d1")
    ns2, s2 = eng.sandbox(make_netns, "d2")
    e1 = eng(lambda: eng.ctrl.connect("dual", s1))
    e2 = eng(lambda: eng.ctrl.connect("dual", s2, ip6="fd00:79::99"))
    assert e1.ipv4 == "10.79.0.2/24" and e1.ipv6 == "fd00:79::2/64"
    assert e2.ipv6 == "fd00:79::99/64"
    assert (
        nsexec(ns1, "ping", "-6", "-c", "1", "-W", "2", "fd00:79::99", check=False).returncode == 0
    )
    assert ping(ns1, addr(e2))
    routes6 = ip_json(ns1, "-6", "route", "show", "default")
    assert routes6 and routes6[0]["gateway"] == net.ipam[1].gateway
    eng(lambda: eng.ctrl.disconnect("dual", s1.id))
    assert eng.ctrl.ipam.in_use(net.id) == {"10.79.0.3": e2.id, "fd00:79::99": e2.id}


def test_bridge_options(eng: Engine, make_netns: Callable[[str], str]) -> None:
    out = make_netns("keo")
    nsexec(
        eng.host, "ip", "link", "add", "kout", "type", "veth", "peer", "name", "eth0", "netns", out
    )
    nsexec(eng.host, "ip", "addr", "add", "198.51.100.1/24", "dev", "kout")
    nsexec(eng.host, "ip", "link", "set", "kout", "up")
    nsexec(out, "ip", "addr", "add", "198.51.100.2/24", "dev", "eth0")
    nsexec(out, "ip", "link", "set", "eth0", "up")
    P = "com.docker.network."
    opts = {
        P + "bridge.name": unique("kbo", 15),
        P + "bridge.enable_ip_masquerade": "false",
        P + "driver.mtu": "1400",
        P + "container_iface_prefix": "net",
        P + "bridge.host_binding_ipv4": "127.0.0.1",
    }
    net = eng(
        lambda: eng.ctrl.create_network(
            NetworkSpec("opts", ipam=[IPAMConfig("10.81.0.0/24")], options=opts)
        )
    )
    ns1, s1 = eng.sandbox(make_netns, "o1")
    e1 = eng(lambda: eng.ctrl.connect("opts", s1, ports=[PortBinding(80, "tcp", "", 18095)]))
    assert e1.ifname == "net0"  # container_iface_prefix
    link = ip_json(ns1, "link", "show", "net0")[0]
    assert link["mtu"] == 1400
    assert ip_json(eng.host, "link", "show", opts[P + "bridge.name"])[0]["mtu"] == 1400
    # no masquerade: the outside sees the container's own address, and has no route back
    srv = _serve_once(out, 7070)
    try:
        nsexec(out, "ip", "route", "add", "10.81.0.0/24", "via", "198.51.100.1")
        assert _fetch(ns1, "198.51.100.2", 7070) == "hello 10.81.0.2"
    finally:
        srv.kill()
    # host_binding_ipv4: a -p without an address publishes on 127.0.0.1 only
    pm = nsexec(eng.host, "nft", "list", "map", "inet", "kanal", "pm_ip4").stdout.decode()
    assert "127.0.0.1 . tcp . 18095" in pm

    # gateway mode routed: no masquerade either; isolated (with --internal): no gateway address
    routed = eng(
        lambda: eng.ctrl.create_network(
            NetworkSpec("routed", options={P + "bridge.gateway_mode_ipv4": "routed"})
        )
    )
    ns2, s2 = eng.sandbox(make_netns, "r1")
    e2 = eng(lambda: eng.ctrl.connect("routed", s2))
    masq = nsexec(eng.host, "nft", "list", "set", "inet", "kanal", "masq4", check=False)
    masq_text = masq.stdout.decode()  # (no set at all when nothing was ever masqueraded)
    assert addr(e2) not in masq_text
    iso = eng(
        lambda: eng.ctrl.create_network(
            NetworkSpec("iso", internal=True, options={P + "bridge.gateway_mode_ipv4": "isolated"})
        )
    )
    br = iso.driver_state["bridge"]
    assert not [
        a
        for a in ip_json(eng.host, "addr", "show", "dev", br)[0]["addr_info"]
        if a["family"] == "inet"
    ]
    inhibit = eng(
        lambda: eng.ctrl.create_network(
            NetworkSpec("inh", options={P + "bridge.inhibit_ipv4": "true"})
        )
    )
    br2 = inhibit.driver_state["bridge"]
    assert not [
        a
        for a in ip_json(eng.host, "addr", "show", "dev", br2)[0]["addr_info"]
        if a["family"] == "inet"
    ]
    with pytest.raises(InvalidConfig, match="isolated"):
        eng(
            lambda: eng.ctrl.create_network(
                NetworkSpec("bad", options={P + "bridge.gateway_mode_ipv4": "isolated"})
            )
        )
    _ = (net, routed)
