"""kanal served as a Docker network + IPAM plugin, in a host namespace made here.

The recorded dockerd exchanges (../shared/reference/docker-traces) are replayed
against the dispatcher; the answers' shapes and the kernel state they imply are
checked with ``ip -j``. Sandboxes are namespaces into which the test moves the
interface the plugin names, as dockerd does.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kanal.daemon.cniruntime import inprocess_cni
from kanal.dockerplugin.ipamdriver import ServedIpamDriver
from kanal.dockerplugin.netdriver import ServedNetworkDriver
from kanal.dockerplugin.protocol import Dispatcher
from kanal.engine.context import EngineContext
from kanal.engine.controller import Controller
from kanal.engine.ipam import Pool
from kanal.store import open_store
from tests.helpers import ip_json, nft_json, nsexec, unique
from tests.netns.inns import in_ns
from tests.netns.test_engine import _fetch, _serve_once

# Copies of ../shared/reference/docker-traces (dockerd 20.10 with a recording plugin).
TRACES = Path(__file__).resolve().parents[1] / "fixtures" / "docker-traces"


def _trace(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (TRACES / name).read_text().splitlines() if line]


class Plugin:
    """The served plugin (dispatcher + engine) whose calls run in the host namespace."""

    def __init__(self, host: str, tmp: Path) -> None:
        self.host = host
        self.tmp = tmp
        self.restart()

    def restart(self) -> None:
        """What a restarted kanald builds: same store, same state directory."""
        store = open_store(f"sqlite://{self.tmp}/state.db")
        ctx = EngineContext(cni_runtime=inprocess_cni, state_dir=str(self.tmp / "state"))
        self.ctrl = Controller(store, ctx, pools=[Pool("10.78.0.0/16", 24)])
        self.disp = Dispatcher(ServedNetworkDriver(self.ctrl), ServedIpamDriver(self.ctrl))

    def call(self, path: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        return in_ns(self.host, lambda: self.disp.handle(path, data))

    def ok(self, path: str, body: Any = None) -> Any:
        status, reply = self.call(path, body)
        assert status == 200 and "Err" not in reply and "Error" not in reply, (path, reply)
        return reply


@pytest.fixture
def plugin(host_ns: str, tmp_path: Path) -> Iterator[Plugin]:
    yield Plugin(host_ns, tmp_path)


def links(ns: str) -> dict[str, Any]:
    return {ln["ifname"]: ln for ln in ip_json(ns, "-d", "link", "show")}


def _map(value: Any, seen: dict[str, str]) -> Any:
    """The trace's value with what dockerd got from the recorded plugin replaced by ours."""
    if isinstance(value, str):
        return seen.get(value, value)
    if isinstance(value, list):
        return [_map(v, seen) for v in value]
    if isinstance(value, dict):
        return {k: _map(v, seen) for k, v in value.items()}
    return value


def _learn(trace_reply: Any, ours: Any, seen: dict[str, str]) -> None:
    if isinstance(trace_reply, dict) and isinstance(ours, dict):
        for key in ("PoolID", "Pool", "Address"):
            a, b = trace_reply.get(key), ours.get(key)
            if isinstance(a, str) and isinstance(b, str) and a:
                seen[a] = b
                if "/" in a:  # the bare address, as ReleaseAddress sends it
                    seen[a.split("/")[0]] = b.split("/")[0]


@pytest.mark.parametrize(
    "trace",
    [
        "trace-docker-remote-netdriver.jsonl",
        "trace-docker-remote-ipam.jsonl",
        "trace-docker-remote-both-specfile.jsonl",
    ],
)
def test_replay_docker_traces(plugin: Plugin, trace: str) -> None:
    seen: dict[str, str] = {}
    nets: dict[str, str] = {}  # network id -> bridge
    for rec in _trace(trace):
        path, req = rec["path"], _map(rec["req"], seen)
        raw = b"" if rec["req"] == {} else json.dumps(req).encode()  # "{}" was 0 bytes
        status, reply = plugin.call(path, raw=raw)
        assert status == rec["code"] == 200, (path, reply)
        want = rec["resp"]
        # Same keys as the recorded plugin's answer (Scope, InterfaceName, Gateway, ...).
        assert set(want) <= set(reply) | {"Data"}, (path, want, reply)
        _learn(want, reply, seen)
        method = path.rsplit(".", 1)[1]
        if path == "/Plugin.Activate":
            assert set(want["Implements"]) <= set(reply["Implements"])
        elif method == "GetCapabilities" and "NetworkDriver" in path:
            assert reply["Scope"] == "local"
        elif method == "RequestPool":
            assert ipaddress.ip_network(reply["Pool"]) and reply["PoolID"]
            if req["Pool"]:
                assert reply["Pool"] == req["Pool"]
        elif method == "RequestAddress":
            addr = ipaddress.ip_interface(reply["Address"])
            if (req.get("Options") or {}).get("RequestAddressType"):
                assert int(addr.ip) == int(addr.network.network_address) + 1  # the gateway
        elif method == "CreateNetwork":
            nid = req["NetworkID"]
            net = plugin.ctrl.get_network(nid)
            br = net.driver_state["bridge"]
            nets[nid] = br
            got = links(plugin.host)[br]
            assert got["linkinfo"]["info_kind"] == "bridge"
            gw = req["IPv4Data"][0]["Gateway"]
            info = ip_json(plugin.host, "addr", "show", "dev", br)[0]["addr_info"]
            assert [f"{a['local']}/{a['prefixlen']}" for a in info if a["family"] == "inet"] == [gw]
        elif method == "Join":
            src = reply["InterfaceName"]["SrcName"]
            assert reply["InterfaceName"]["DstPrefix"] == "eth"
            gw = next(c.gateway for c in plugin.ctrl.get_network(req["NetworkID"]).ipam)
            assert reply["Gateway"] == gw
            ln = links(plugin.host)
            assert src in ln  # left in the host for dockerd to move
            host_end = [n for n, v in ln.items() if v.get("master") == nets[req["NetworkID"]]]
            assert len(host_end) >= 1
        elif method == "DeleteEndpoint":
            key = f"endpoints/{req['NetworkID']}/{req['EndpointID']}"
            assert plugin.ctrl.store.get(key) is None
        elif method == "DeleteNetwork":
            assert nets.pop(req["NetworkID"]) not in links(plugin.host)
    # What is left: only networks the trace did not delete, and their bridges.
    left = {n.id for n in plugin.ctrl.networks() if n.labels.get("kanal.docker.network")}
    assert left == set(nets)
    for br in nets.values():
        assert [n for n, v in links(plugin.host).items() if v.get("master") == br] == []


NID1, NID2 = "a1" * 32, "b2" * 32


def _network(plugin: Plugin, nid: str, pool: str, **generic: str) -> None:
    gw = str(next(ipaddress.ip_network(pool).hosts()))
    plugin.ok(
        "/NetworkDriver.CreateNetwork",
        {
            "NetworkID": nid,
            "Options": {
                "com.docker.network.enable_ipv6": False,
                "com.docker.network.generic": generic,
            },
            "IPv4Data": [
                {"AddressSpace": "LocalDefault", "Pool": pool, "Gateway": f"{gw}/{pool[-2:]}"}
            ],
            "IPv6Data": [],
        },
    )


def _container(
    plugin: Plugin, make_netns: Callable[[str], str], nid: str, eid: str, cidr: str
) -> str:
    """What dockerd does for ``docker run --network N``: CreateEndpoint, Join, then it
    moves the named interface into the sandbox and addresses it."""
    ns = make_netns("kds")
    plugin.ok(
        "/NetworkDriver.CreateEndpoint",
        {
            "NetworkID": nid,
            "EndpointID": eid,
            "Interface": {"Address": cidr, "AddressIPv6": "", "MacAddress": ""},
            "Options": {},
        },
    )
    joined = plugin.ok(
        "/NetworkDriver.Join",
        {"NetworkID": nid, "EndpointID": eid, "SandboxKey": f"/run/netns/{ns}", "Options": {}},
    )
    src = joined["InterfaceName"]["SrcName"]
    nsexec(plugin.host, "ip", "link", "set", src, "netns", ns, "name", "eth0")
    nsexec(ns, "ip", "addr", "add", cidr, "dev", "eth0")
    nsexec(ns, "ip", "link", "set", "eth0", "up")
    nsexec(ns, "ip", "link", "set", "lo", "up")
    if "Gateway" in joined:
        nsexec(ns, "ip", "route", "add", "default", "via", joined["Gateway"])
    return ns


def ping(ns: str, ip: str) -> bool:
    return nsexec(ns, "ping", "-c", "1", "-W", "1", ip, check=False).returncode == 0


def test_containers_talk_ports_published_and_a_restart_forgets_nothing(
    plugin: Plugin, make_netns: Callable[[str], str]
) -> None:
    _network(plugin, NID1, "10.79.1.0/24")
    a = _container(plugin, make_netns, NID1, "e1" * 32, "10.79.1.2/24")
    b = _container(plugin, make_netns, NID1, "e2" * 32, "10.79.1.3/24")
    assert ping(a, "10.79.1.3") and ping(b, "10.79.1.2") and ping(a, "10.79.1.1")
    # -p 127.0.0.1:PORT:8080 and -p PORT2:8080: dockerd leaves publishing to the driver.
    server = _serve_once(a, 8080)
    try:
        pm = [
            {"Proto": 6, "IP": "", "Port": 8080, "HostIP": "127.0.0.1", "HostPort": 18080},
            {"Proto": 6, "IP": "", "Port": 8080, "HostIP": "", "HostPort": 0},
        ]
        ref = {"NetworkID": NID1, "EndpointID": "e1" * 32}
        plugin.ok(
            "/NetworkDriver.ProgramExternalConnectivity",
            {**ref, "Options": {"com.docker.network.portmap": pm}},
        )
        info = plugin.ok("/NetworkDriver.EndpointOperInfo", ref)["Value"]
        ports = info["com.docker.network.portmap"]
        assert ports[0]["HostPort"] == 18080 and ports[1]["HostPort"] > 0
        assert _fetch(plugin.host, "127.0.0.1", 18080).startswith("hello ")
        assert _fetch(b, "10.79.1.1", ports[1]["HostPort"]).startswith("hello ")
        # The same host port for another container: refused, nothing changed.
        status, reply = plugin.call(
            "/NetworkDriver.ProgramExternalConnectivity",
            {
                "NetworkID": NID1,
                "EndpointID": "e2" * 32,
                "Options": {"com.docker.network.portmap": [pm[0]]},
            },
        )
        assert status == 500 and "18080" in reply["Err"]
        # The plugin restarts (kanald -9 and back): it still knows the network and
        # the endpoints, and every call goes on working.
        plugin.restart()
        assert plugin.ok("/NetworkDriver.EndpointOperInfo", ref)["Value"] == info
        assert ping(a, "10.79.1.3")
        plugin.ok("/NetworkDriver.RevokeExternalConnectivity", ref)
        assert _fetch(plugin.host, "127.0.0.1", 18080) == ""
    finally:
        server.kill()
        server.wait()
    for eid in ("e1" * 32, "e2" * 32):
        ref = {"NetworkID": NID1, "EndpointID": eid}
        plugin.ok("/NetworkDriver.Leave", ref)
        plugin.ok("/NetworkDriver.DeleteEndpoint", ref)
    plugin.ok("/NetworkDriver.DeleteNetwork", {"NetworkID": NID1})
    # Nothing left: no bridge, no veth, no endpoint record, no port map entry.
    assert set(links(plugin.host)) == {"lo"}
    assert plugin.ctrl.store.list("endpoints/") == [] and plugin.ctrl.store.list("ports/") == []
    rules = json.dumps(nft_json(plugin.host, "list", "ruleset"))
    assert "18080" not in rules


def test_networks_are_isolated_and_options_apply(
    plugin: Plugin, make_netns: Callable[[str], str]
) -> None:
    br = unique("kdb", 15)
    _network(plugin, NID1, "10.79.2.0/24", **{"com.docker.network.bridge.name": br})
    _network(plugin, NID2, "10.79.3.0/24", **{"com.docker.network.bridge.enable_icc": "false"})
    assert links(plugin.host)[br]["linkinfo"]["info_kind"] == "bridge"
    a = _container(plugin, make_netns, NID1, "e3" * 32, "10.79.2.2/24")
    b = _container(plugin, make_netns, NID2, "e4" * 32, "10.79.3.2/24")
    c = _container(plugin, make_netns, NID2, "e5" * 32, "10.79.3.3/24")
    assert ping(a, "10.79.2.1") and ping(b, "10.79.3.1")
    assert not ping(a, "10.79.3.2")  # network to network: dropped
    assert not ping(b, "10.79.3.3")  # enable_icc=false: ports isolated
    assert c
    # kanal sees dockerd's networks as its own.
    names = {n.name for n in plugin.ctrl.networks()}
    assert f"docker-{NID1[:12]}" in names and f"docker-{NID2[:12]}" in names


def test_retries_are_idempotent(plugin: Plugin, make_netns: Callable[[str], str]) -> None:
    for _ in range(2):
        _network(plugin, NID1, "10.79.4.0/24")
    ep = {
        "NetworkID": NID1,
        "EndpointID": "e6" * 32,
        "Interface": {"Address": "10.79.4.2/24"},
        "Options": {},
    }
    plugin.ok("/NetworkDriver.CreateEndpoint", ep)
    plugin.ok("/NetworkDriver.CreateEndpoint", ep)
    ns = make_netns("kds")
    join = {"NetworkID": NID1, "EndpointID": "e6" * 32, "SandboxKey": f"/run/netns/{ns}"}
    first = plugin.ok("/NetworkDriver.Join", join)
    again = plugin.ok("/NetworkDriver.Join", join)
    assert first == again
    assert len([n for n in links(plugin.host) if n.startswith("kvh")]) == 1
    ref = {"NetworkID": NID1, "EndpointID": "e6" * 32}
    for _ in range(2):
        plugin.ok("/NetworkDriver.Leave", ref)
        plugin.ok("/NetworkDriver.DeleteEndpoint", ref)
    for _ in range(2):
        plugin.ok("/NetworkDriver.DeleteNetwork", {"NetworkID": NID1})
    assert set(links(plugin.host)) == {"lo"}


def _state(plugin: Plugin) -> tuple[Any, ...]:
    store = [(e.key, e.value) for e in plugin.ctrl.store.list("")]
    return store, sorted(links(plugin.host)), nft_json(plugin.host, "list", "ruleset")


@pytest.mark.parametrize(
    ("path", "raw", "key", "status"),
    [
        ("/NetworkDriver.CreateNetwork", b"{not json", "Err", 400),
        ("/NetworkDriver.CreateNetwork", b"[]", "Err", 400),
        ("/NetworkDriver.CreateNetwork", b'{"Options": {}}', "Err", 400),
        ("/NetworkDriver.CreateNetwork", b'{"NetworkID": "../x"}', "Err", 400),
        (
            "/NetworkDriver.CreateNetwork",
            b'{"NetworkID": "ab", "IPv4Data": [{"Pool": "10.79.9.0/24"}], '
            b'"Options": {"com.docker.network.generic": {"no.such.option": "1"}}}',
            "Err",
            500,
        ),
        (
            "/NetworkDriver.CreateNetwork",
            b'{"NetworkID": "ab", "IPv4Data": '
            b'[{"Pool": "10.79.9.0/24", "Gateway": "10.1.1.1/24"}]}',
            "Err",
            500,
        ),
        (
            "/NetworkDriver.CreateEndpoint",
            b'{"NetworkID": "nope", "EndpointID": "e", "Interface": {"Address": "10.0.0.2/24"}}',
            "Err",
            500,
        ),
        ("/NetworkDriver.Join", b'{"NetworkID": "a", "EndpointID": "b"}', "Err", 400),
        (
            "/NetworkDriver.Join",
            b'{"NetworkID": "a", "EndpointID": "b", "SandboxKey": "/x"}',
            "Err",
            500,
        ),
        (
            "/NetworkDriver.ProgramExternalConnectivity",
            b'{"NetworkID": "a", "EndpointID": "b", "Options": '
            b'{"com.docker.network.portmap": [{"Proto": 99, "Port": 1}]}}',
            "Err",
            400,
        ),
        ("/IpamDriver.RequestPool", b'{"SubPool": "10.0.0.0/25"}', "Error", 400),
        ("/IpamDriver.RequestPool", b'{"Pool": "10.0.0.0/24", "V6": true}', "Error", 200),
        ("/IpamDriver.RequestAddress", b'{"PoolID": "nope"}', "Error", 200),
        ("/IpamDriver.ReleaseAddress", b'{"PoolID": "p", "Address": "x"}', "Error", 400),
        ("/NetworkDriver.AllocateNetwork", b"{}", "Err", 404),
        ("/Nope.Nothing", b"", "Err", 404),
    ],
)
def test_bad_requests_change_nothing(
    plugin: Plugin, path: str, raw: bytes, key: str, status: int
) -> None:
    before = _state(plugin)
    got, reply = plugin.call(path, raw=raw)
    assert got == status and isinstance(reply.get(key), str) and reply[key], reply
    assert _state(plugin) == before


def test_served_ipam(plugin: Plugin) -> None:
    ok = plugin.ok
    assert ok("/IpamDriver.GetDefaultAddressSpaces")["LocalDefaultAddressSpace"]
    p1 = ok("/IpamDriver.RequestPool", {"AddressSpace": "kanal-local", "Pool": ""})
    p2 = ok("/IpamDriver.RequestPool", {"AddressSpace": "kanal-local", "Pool": ""})
    assert not ipaddress.ip_network(p1["Pool"]).overlaps(ipaddress.ip_network(p2["Pool"]))
    # --subnet and --ip-range: addresses come from the range, the gateway from the pool
    p3 = ok(
        "/IpamDriver.RequestPool",
        {"AddressSpace": "kanal-local", "Pool": "10.79.8.0/24", "SubPool": "10.79.8.128/25"},
    )
    gw = ok(
        "/IpamDriver.RequestAddress",
        {"PoolID": p3["PoolID"], "Options": {"RequestAddressType": "com.docker.network.gateway"}},
    )
    assert gw["Address"] == "10.79.8.1/24"
    a = ok("/IpamDriver.RequestAddress", {"PoolID": p3["PoolID"], "Options": None})
    assert ipaddress.ip_interface(a["Address"]).ip in ipaddress.ip_network("10.79.8.128/25")
    # a static --ip: taken once only
    s = ok("/IpamDriver.RequestAddress", {"PoolID": p3["PoolID"], "Address": "10.79.8.7"})
    assert s["Address"] == "10.79.8.7/24"
    status, reply = plugin.call(
        "/IpamDriver.RequestAddress", {"PoolID": p3["PoolID"], "Address": "10.79.8.7"}
    )
    assert status == 200 and "in use" in reply["Error"]
    # an overlapping pool is refused; the same one again is the same pool (ref-counted)
    _, over = plugin.call("/IpamDriver.RequestPool", {"Pool": "10.79.8.0/23"})
    assert "overlaps" in over["Error"]
    again = ok(
        "/IpamDriver.RequestPool",
        {"AddressSpace": "kanal-local", "Pool": "10.79.8.0/24", "SubPool": "10.79.8.128/25"},
    )
    assert again["PoolID"] == p3["PoolID"]
    ok("/IpamDriver.ReleasePool", {"PoolID": p3["PoolID"]})
    plugin.restart()  # pools and addresses survive
    _, still = plugin.call(
        "/IpamDriver.RequestAddress", {"PoolID": p3["PoolID"], "Address": "10.79.8.7"}
    )
    assert "in use" in still["Error"]
    ok("/IpamDriver.ReleaseAddress", {"PoolID": p3["PoolID"], "Address": "10.79.8.7"})
    ok("/IpamDriver.RequestAddress", {"PoolID": p3["PoolID"], "Address": "10.79.8.7"})
    for p in (p1, p2, p3):
        ok("/IpamDriver.ReleasePool", {"PoolID": p["PoolID"]})
        ok("/IpamDriver.ReleasePool", {"PoolID": p["PoolID"]})  # a retry
    assert plugin.ctrl.store.list("dipam/") == [] and plugin.ctrl.store.list("ipam/") == []


def test_macvlan_networks_for_dockerd(plugin: Plugin, make_netns: Callable[[str], str]) -> None:
    lan = make_netns("kdl")
    nsexec(
        plugin.host,
        "ip",
        "link",
        "add",
        "kup0",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        lan,
    )
    nsexec(plugin.host, "ip", "link", "set", "kup0", "up")
    nsexec(lan, "ip", "addr", "add", "10.79.5.1/24", "dev", "eth0")
    nsexec(lan, "ip", "link", "set", "eth0", "up")
    _network(plugin, NID1, "10.79.5.0/24", **{"kanal.driver": "macvlan", "parent": "kup0"})
    assert plugin.ctrl.get_network(NID1).driver == "macvlan"
    a = _container(plugin, make_netns, NID1, "e7" * 32, "10.79.5.2/24")
    b = _container(plugin, make_netns, NID1, "e8" * 32, "10.79.5.3/24")
    kinds = {
        ln["ifname"]: ln["linkinfo"]["info_kind"]
        for ln in ip_json(a, "-d", "link", "show")
        if "linkinfo" in ln
    }
    assert kinds == {"eth0": "macvlan"}
    assert ping(a, "10.79.5.3") and ping(b, "10.79.5.1")  # each other, and the LAN
    # Ports are not published on macvlan networks (as dockerd's own macvlan driver).
    plugin.ok(
        "/NetworkDriver.ProgramExternalConnectivity",
        {
            "NetworkID": NID1,
            "EndpointID": "e7" * 32,
            "Options": {"com.docker.network.portmap": [{"Proto": 6, "Port": 80, "HostPort": 80}]},
        },
    )
    assert plugin.ctrl.store.list("ports/") == []
    for eid in ("e7" * 32, "e8" * 32):
        ref = {"NetworkID": NID1, "EndpointID": eid}
        plugin.ok("/NetworkDriver.Leave", ref)
        plugin.ok("/NetworkDriver.DeleteEndpoint", ref)
    plugin.ok("/NetworkDriver.DeleteNetwork", {"NetworkID": NID1})
    assert not [n for n in links(plugin.host) if n.startswith("kvm")]
    status, reply = plugin.call(
        "/NetworkDriver.CreateNetwork",
        {
            "NetworkID": NID2,
            "IPv4Data": [{"Pool": "10.79.6.0/24", "Gateway": "10.79.6.1/24"}],
            "Options": {
                "com.docker.network.generic": {"kanal.driver": "macvlan", "parent": "nope0"}
            },
        },
    )
    assert status == 500 and "nope0" in reply["Err"]
    assert not [n for n in plugin.ctrl.networks() if n.id == NID2]


def test_dual_stack_network(plugin: Plugin, make_netns: Callable[[str], str]) -> None:
    plugin.ok(
        "/NetworkDriver.CreateNetwork",
        {
            "NetworkID": NID1,
            "Options": {"com.docker.network.enable_ipv6": True},
            "IPv4Data": [{"Pool": "10.79.7.0/24", "Gateway": "10.79.7.1/24"}],
            "IPv6Data": [{"Pool": "fd00:79:7::/64", "Gateway": "fd00:79:7::1/64"}],
        },
    )
    ns = {}
    for k, eid in enumerate(("f1" * 32, "f2" * 32), start=2):
        ns[k] = make_netns("kds")
        plugin.ok(
            "/NetworkDriver.CreateEndpoint",
            {
                "NetworkID": NID1,
                "EndpointID": eid,
                "Interface": {"Address": f"10.79.7.{k}/24", "AddressIPv6": f"fd00:79:7::{k}/64"},
            },
        )
        joined = plugin.ok(
            "/NetworkDriver.Join",
            {"NetworkID": NID1, "EndpointID": eid, "SandboxKey": f"/run/netns/{ns[k]}"},
        )
        assert joined["Gateway"] == "10.79.7.1" and joined["GatewayIPv6"] == "fd00:79:7::1"
        src = joined["InterfaceName"]["SrcName"]
        nsexec(plugin.host, "ip", "link", "set", src, "netns", ns[k], "name", "eth0")
        nsexec(ns[k], "ip", "addr", "add", f"10.79.7.{k}/24", "dev", "eth0")
        nsexec(ns[k], "ip", "-6", "addr", "add", f"fd00:79:7::{k}/64", "dev", "eth0", "nodad")
        nsexec(ns[k], "ip", "link", "set", "eth0", "up")
    ok6 = nsexec(ns[2], "ping", "-6", "-c", "1", "-W", "2", "fd00:79:7::3", check=False)
    assert ok6.returncode == 0 and ping(ns[3], "10.79.7.2")
    net = plugin.ctrl.get_network(NID1)
    assert net.enable_ipv6 and {c.subnet for c in net.ipam} == {"10.79.7.0/24", "fd00:79:7::/64"}
    for eid in ("f1" * 32, "f2" * 32):
        plugin.ok("/NetworkDriver.Leave", {"NetworkID": NID1, "EndpointID": eid})
        plugin.ok("/NetworkDriver.DeleteEndpoint", {"NetworkID": NID1, "EndpointID": eid})
    plugin.ok("/NetworkDriver.DeleteNetwork", {"NetworkID": NID1})
    assert plugin.ctrl.store.list("ipam/") == []
