"""docker's network flags through the REST API's route table, on a controller with a
fake driver: --config-only/--config-from, --scope, prune's until filter, connect's
--link/--link-local-ip/--driver-opt/--mac-address, and the checks on each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kanal.daemon.messages import exposed_port, mac_address, parse_link
from kanal.daemon.routes import Reply
from kanal.daemon.shapes import prune_until, sandbox_ports
from kanal.engine.dns.index import NameIndex
from kanal.engine.model import Endpoint, NetworkSpec, PortBinding, SandboxRef
from kanal.engine.sandboxes import Sandbox
from kanal.engine.sandboxnet import EndpointOptions
from kanal.errors import Conflict, Forbidden, InvalidConfig, NotFound
from tests.unit.daemon.test_routes import Api, call
from tests.unit.engine.test_controller import Engine


@pytest.fixture
def api(tmp_path: Path) -> Api:
    from kanal.daemon.resolvers import NetnsSandboxes

    netns = tmp_path / "netns"
    netns.mkdir()
    for n in ("ns1", "ns2"):
        (netns / n).touch()
    return Api(Engine(tmp_path).ctrl, NetnsSandboxes(str(netns)))


def create(api: Api, **body: Any) -> Any:
    out = call(api, "POST", "/networks/create", {"Driver": "fake", **body})
    assert isinstance(out, Reply) and out.status == 201
    return call(api, "GET", f"/networks/{body['Name']}")


def test_config_only_and_config_from(api: Api) -> None:
    cfg = create(
        api,
        Name="conf",
        ConfigOnly=True,
        IPAM={"Config": [{"Subnet": "10.250.9.0/24", "Gateway": "10.250.9.254"}]},
        Options={"parent": "eth9"},
    )
    assert cfg["ConfigOnly"] is True and cfg["Driver"] == "null" and cfg["Scope"] == "local"
    assert cfg["IPAM"]["Config"] == [{"Subnet": "10.250.9.0/24", "Gateway": "10.250.9.254"}]
    assert api.controller.driver("fake").calls == []  # no driver, no kernel object
    # nothing connects to it
    with pytest.raises(Forbidden, match="configuration-only"):
        call(api, "POST", "/networks/conf/connect", {"Container": "ns1"})
    # its subnet is taken by no one: the network made from it has it
    net = create(api, Name="real", ConfigFrom={"Network": "conf"})
    assert net["ConfigFrom"] == {"Network": "conf"} and net["ConfigOnly"] is False
    assert net["IPAM"]["Config"] == cfg["IPAM"]["Config"] and net["Options"] == {"parent": "eth9"}
    assert net["Driver"] == "fake"
    # in use: neither rm nor prune takes it
    with pytest.raises(Conflict, match="in use by real"):
        call(api, "DELETE", "/networks/conf")
    pruned = call(api, "POST", "/networks/prune")
    assert pruned == {"NetworksDeleted": ["real"]}
    assert call(api, "DELETE", "/networks/conf") == Reply(204)
    assert call(api, "GET", "/networks") == []


@pytest.mark.parametrize(
    "body, match",
    [
        ({"ConfigFrom": {"Network": "nosuch"}}, "nosuch not found"),
        ({"ConfigFrom": {"Network": "plain"}}, "not a configuration-only network"),
        (
            {"ConfigFrom": {"Network": "conf"}, "IPAM": {"Config": [{"Subnet": "10.1.0.0/24"}]}},
            "no --subnet",
        ),
        ({"ConfigFrom": {"Network": "conf"}, "ConfigOnly": True}, "cannot have --config-from"),
        ({"ConfigOnly": True, "IPAM": {"Config": [{"Subnet": "10.90.0.0"}]}}, "no prefix length"),
        ({"IPAM": {"Config": [{"Subnet": "10.90.0.0"}]}}, r"CIDR notation \(for example"),
        ({"Scope": "swarm"}, "swarm mode"),
        ({"Scope": "global"}, "makes local networks, not --scope global"),
        ({"Scope": "galaxy"}, "invalid scope"),
    ],
)
def test_bad_network_configs_change_nothing(api: Api, body: dict[str, Any], match: str) -> None:
    create(api, Name="conf", ConfigOnly=True)
    create(api, Name="plain")
    before = call(api, "GET", "/networks")
    with pytest.raises((InvalidConfig, NotFound), match=match):
        call(api, "POST", "/networks/create", {"Name": "new", "Driver": "fake", **body})
    assert call(api, "GET", "/networks") == before


def test_scope_local_is_the_drivers_own(api: Api) -> None:
    assert create(api, Name="n", Scope="local")["Scope"] == "local"


def test_prune_until(api: Api) -> None:
    import json
    import time

    create(api, Name="old")
    create(api, Name="labelled", Labels={"keep": "1"})
    future = json.dumps({"until": [str(int(time.time()) + 3600)]})
    past = json.dumps({"until": ["2000-01-01T00:00:00Z"]})
    assert call(api, "POST", "/networks/prune", query=f"filters={past}") == {"NetworksDeleted": []}
    keep = json.dumps({"until": ["-1h"], "label!": ["keep"]})  # until an hour from now
    out = call(api, "POST", "/networks/prune", query=f"filters={keep}")
    assert out == {"NetworksDeleted": ["old"]}
    assert call(api, "POST", "/networks/prune", query=f"filters={future}") == {
        "NetworksDeleted": ["labelled"]
    }
    with pytest.raises(InvalidConfig, match="more than one until"):
        call(api, "POST", "/networks/prune", query='filters={"until": ["1h", "2h"]}')
    with pytest.raises(InvalidConfig, match="invalid filter 'driver'"):
        call(api, "POST", "/networks/prune", query='filters={"driver": ["bridge"]}')


def test_prune_until_values() -> None:
    now = 1_700_000_000.0
    assert prune_until([], now) is None
    assert prune_until(["1699999999"], now) == 1699999999.0
    assert prune_until(["24h"], now) == now - 86400
    assert prune_until(["1h30m"], now) == now - 5400
    assert prune_until(["1.5s"], now) == now - 1.5
    assert prune_until(["2023-11-14T22:13:20Z"], now) == now
    assert prune_until(["2023-11-14"], now) == now - (22 * 3600 + 13 * 60 + 20)
    for bad in ("yesterday", "10x", "h"):
        with pytest.raises(InvalidConfig, match="invalid until filter"):
            prune_until([bad], now)


def test_connect_with_links_link_local_ips_and_driver_opts(api: Api) -> None:
    create(api, Name="n1")
    call(api, "POST", "/networks/n1/connect", {"Container": "ns1"})
    body = {
        "Container": "ns2",
        "EndpointConfig": {
            "Links": ["ns1:db"],
            "DriverOpts": {"com.example.x": "1"},
        },
    }
    assert call(api, "POST", "/networks/n1/connect", body) is None
    eps = {e["Name"]: e for e in call(api, "GET", "/endpoints")}
    assert eps["ns2"]["Links"] == ["ns1:db"] and eps["ns2"]["DriverOpts"] == {"com.example.x": "1"}
    # the link is the linking sandbox's own name for the other
    index = NameIndex(api.controller)
    ns1_ip = eps["ns1"]["IPv4Address"].split("/")[0]
    sid1, sid2 = eps["ns1"]["SandboxID"], eps["ns2"]["SandboxID"]
    assert index.lookup(sid2, "db") == [ns1_ip] and index.lookup(sid2, "DB") == [ns1_ip]
    assert index.lookup(sid1, "db") is None
    assert index.lookup(sid2, "ns1") == [ns1_ip]


def test_connect_checks(api: Api) -> None:
    create(api, Name="n1")
    bad: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"Links": ["nosuch:x"]}, NotFound, "could not get container for nosuch"),
        ({"Links": ["bad/name"]}, InvalidConfig, "invalid --link"),
        ({"IPAMConfig": {"LinkLocalIPs": ["10.0.0.1"]}}, InvalidConfig, "link-local"),
        ({"MacAddress": "zz:00:00:00:00:01"}, InvalidConfig, "not a valid mac address"),
        # the fake driver sets its own MAC: a driver that ignores --mac-address is an error
        ({"MacAddress": "02:42:00:00:00:09"}, InvalidConfig, "does not take --mac-address"),
    ]
    for cfg, err, match in bad:
        with pytest.raises(err, match=match):
            call(api, "POST", "/networks/n1/connect", {"Container": "ns1", "EndpointConfig": cfg})
        assert call(api, "GET", "/endpoints") == []
    # the fake driver's own MAC, asked for: accepted
    body = {"Container": "ns1", "EndpointConfig": {"MacAddress": "02:00:00:00:00:01"}}
    assert call(api, "POST", "/networks/n1/connect", body) is None


def test_controller_refuses_mac_and_link_local_without_an_interface(tmp_path: Path) -> None:
    eng = Engine(tmp_path)
    eng.ctrl.create_network(NetworkSpec("n", "fake"))
    eng.fake.has_interface = False
    with pytest.raises(InvalidConfig, match="gives no interface"):
        eng.ctrl.connect(
            "n",
            SandboxRef("s" * 64, "s", "/x"),
            opts=EndpointOptions(link_local_ips=["169.254.1.1"]),
        )
    assert eng.ctrl.endpoints() == []


def test_small_parsers() -> None:
    assert mac_address("02:42:AC:11:00:02") == "02:42:ac:11:00:02" and mac_address("") == ""
    for bad in ("02:42:ac:11:00", "02-42-ac-11-00-02", "01:00:5e:00:00:01"):
        with pytest.raises(InvalidConfig):
            mac_address(bad)
    assert parse_link("db") == ("db", "db") and parse_link("db:d") == ("db", "d")
    assert exposed_port("80") == "80/tcp" and exposed_port("53/udp") == "53/udp"
    with pytest.raises(InvalidConfig):
        exposed_port("80/icmp")


def test_two_bindings_of_one_port_are_both_shown() -> None:
    sb = Sandbox(id="i", name="n", argv=["x"], netns="", own_netns=True, network_mode="b")
    sb.exposed = ["443/tcp", "80/tcp"]
    ep = Endpoint(
        id="e",
        network_id="n",
        name="n",
        ports=[PortBinding(80, "tcp", "", 8080), PortBinding(80, "tcp", "127.0.0.1", 8081)],
    )
    assert sandbox_ports(sb, [ep]) == {
        "443/tcp": None,
        "80/tcp": [
            {"HostIp": "0.0.0.0", "HostPort": "8080"},
            {"HostIp": "127.0.0.1", "HostPort": "8081"},
        ],
    }
