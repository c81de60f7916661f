"""The explain walk over a fake kernel (the live one is tests/e2e/test_explain.py)."""

from __future__ import annotations

from typing import Any

import pytest

from kanal.engine.explain import Place, explain
from kanal.engine.explainplaces import parse_target
from kanal.engine.model import Endpoint, IPAMConfig, Network
from kanal.engine.nftview import NftView
from kanal.errors import InvalidConfig
from kanal.firewall.nftables.state import BaseChain

FRONT = Network("f" * 12, "front", "bridge", ipam=[IPAMConfig("10.1.0.0/24", "10.1.0.1")],
                driver_state={"bridge": "br-f"})  # fmt: skip
OTHER = Network("o" * 12, "other", "bridge", ipam=[IPAMConfig("10.2.0.0/24", "10.2.0.1")],
                driver_state={"bridge": "br-o"})  # fmt: skip

TABLE: list[dict[str, Any]] = [
    {"map": {"name": "net_from", "elem": [["br-f", {"jump": {"target": "kn_f"}}],
                                          ["br-o", {"jump": {"target": "kn_o"}}]]}},
    {"set": {"name": "net_brs", "elem": ["br-f", "br-o"]}},
    {"set": {"name": "masq4", "elem": [{"elem": {"val": "10.1.0.2", "comment": "kx:y"}}]}},
    {"map": {"name": "pm_any4", "elem": [[{"elem": {"val": {"concat": ["tcp", 8080]},
                                                     "comment": "kx:y"}},
                                           {"concat": ["10.1.0.2", 80]}]]}},
    {"rule": {"chain": "kn_f", "handle": 7, "expr": [
        {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "br-f"}},
        {"accept": None}]}},
    {"rule": {"chain": "kn_f", "handle": 8, "expr": [
        {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "@net_brs"}},
        {"drop": None}]}},
    {"rule": {"chain": "kn_o", "handle": 9, "expr": [
        {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "@net_brs"}},
        {"drop": None}]}},
]  # fmt: skip


class FakeKernel:
    def __init__(self, routes: dict[tuple[str, str, str, str], dict[str, Any]]) -> None:
        self.routes = routes
        self.isolated: set[str] = set()
        self.forward = True
        self.chains: list[BaseChain] = []

    def route_get(
        self, dst: str, *, netns: str = "", src: str = "", iif: str = ""
    ) -> tuple[dict[str, Any] | None, str]:
        r = self.routes.get((netns, dst, src, iif))
        return (r, "") if r is not None else (None, "Network is unreachable")

    def bridge_ports(self, bridge: str) -> dict[str, dict[str, Any]]:
        return {p: {"isolated": p in self.isolated} for p in ("va", "vb", "vo")}

    def fdb(self, dev: str) -> list[dict[str, Any]]:
        return []

    def neighbours(self, dev: str) -> list[dict[str, Any]]:
        return []

    def forwarding(self) -> bool:
        return self.forward

    def nft(self) -> NftView:
        return NftView.parse(TABLE)

    def forward_chains(self) -> list[BaseChain]:
        return self.chains


def sandbox(name: str, net: Network, ip: str, veth: str) -> Place:
    ep = Endpoint(f"e{name}", net.id, name, ifname="eth0", ipv4=f"{ip}/24",
                  driver_state={"host_veth": veth})  # fmt: skip
    return Place("sandbox", name, ip=ip, netns=f"/ns/{name}", attachments=[(net, ep)])


A = sandbox("a", FRONT, "10.1.0.2", "va")
B = sandbox("b", FRONT, "10.1.0.3", "vb")
OT = sandbox("o", OTHER, "10.2.0.2", "vo")


GW = "10.1.0.1"


def kernel() -> FakeKernel:
    return FakeKernel(
        {
            ("/ns/a", "10.1.0.3", "", ""): {"dst": "10.1.0.3", "dev": "eth0"},
            ("/ns/a", "10.2.0.2", "", ""): {"dst": "10.2.0.2", "dev": "eth0", "gateway": GW},
            ("", "10.2.0.2", "10.1.0.2", "br-f"): {"dst": "10.2.0.2", "dev": "br-o"},
            ("/ns/a", "192.0.2.9", "", ""): {"dst": "192.0.2.9", "dev": "eth0", "gateway": GW},
            ("", "192.0.2.9", "10.1.0.2", "br-f"): {"dst": "192.0.2.9", "dev": "up0"},
            ("", "10.1.0.2", "", ""): {"dst": "10.1.0.2", "dev": "br-f"},
        }
    )  # fmt: skip


def test_same_bridge_passes_unless_both_ports_are_isolated() -> None:
    k = kernel()
    assert explain(A, B, 0, "", k).reachable
    k.isolated = {"va"}
    assert explain(A, B, 0, "", k).reachable  # one isolated port still talks to the others
    k.isolated = {"va", "vb"}
    got = explain(A, B, 0, "", k)
    assert not got.reachable and got.steps[-1].stage == "bridge"
    assert "isolated on" in got.steps[-1].evidence


def test_another_network_is_dropped_by_the_rule_that_does_it() -> None:
    got = explain(A, OT, 80, "tcp", kernel())
    assert not got.reachable
    assert got.steps[-1].evidence.endswith("kn_f handle 8: oifname @net_brs drop")


def test_outside_is_masqueraded_and_needs_forwarding() -> None:
    out = Place("outside", "192.0.2.9", ip="192.0.2.9")
    k = kernel()
    got = explain(A, out, 0, "", k)
    assert got.reachable and any(s.stage == "nat" and "masq4" in s.evidence for s in got.steps)
    k.forward = False
    got = explain(A, out, 0, "", k)
    assert not got.reachable and "ip_forward" in got.steps[-1].text


def test_the_hosts_own_forward_chains_are_reported() -> None:
    out = Place("outside", "192.0.2.9", ip="192.0.2.9")
    k = kernel()
    k.chains = [BaseChain("ip", "filter", "FORWARD", "forward", "drop", 3)]
    got = explain(A, out, 0, "", k)
    assert got.reachable and any("does not judge" in s.text for s in got.steps)
    k.chains = [BaseChain("inet", "hostfw", "fwd", "forward", "drop", 0)]
    got = explain(A, out, 0, "", k)
    assert not got.reachable and "hostfw" in got.steps[-1].text


def test_a_published_port_is_followed_to_its_sandbox() -> None:
    host = Place("host", "host", ip="127.0.0.1")
    got = explain(host, host, 8080, "tcp", kernel(), owner=lambda ip: A if ip == A.ip else None)
    assert got.reachable
    assert got.steps[0].stage == "nat" and "DNAT to 10.1.0.2:80" in got.steps[0].text
    assert explain(host, host, 8081, "tcp", kernel()).steps[0].stage != "nat"


def test_no_route_is_a_drop_that_quotes_the_kernel() -> None:
    got = explain(OT, A, 0, "", kernel())
    assert not got.reachable and got.steps == [got.steps[0]]
    assert got.steps[0].evidence == "Network is unreachable"


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("a1", ("a1", 0, "")),
        ("a1:80", ("a1", 80, "tcp")),
        ("a1:53/udp", ("a1", 53, "udp")),
        ("10.0.0.1:8080/tcp", ("10.0.0.1", 8080, "tcp")),
        ("fd00::1", ("fd00::1", 0, "")),
        ("[fd00::1]:80", ("fd00::1", 80, "tcp")),
        ("host:9090", ("host", 9090, "tcp")),
    ],
)
def test_targets_parse(text: str, want: tuple[str, int, str]) -> None:
    assert parse_target(text) == want


@pytest.mark.parametrize("text", ["a1:0", "a1:65536", "a1:x", "a1:80/icmp", "[fd00::1]:-1"])
def test_bad_targets_are_refused(text: str) -> None:
    with pytest.raises(InvalidConfig):
        parse_target(text)
