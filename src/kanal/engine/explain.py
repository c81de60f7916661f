"""Why a packet from A would or would not reach B (``kanal explain``, docs/explain.md).

The answer is a walk along the packet's path, each step decided by a kernel object
that is read, not assumed: the route ``ip route get`` picks in the source's
namespace and on the host, the bridge ports' ``isolated`` flags (ICC off), kanal's
nftables sets, maps and rules (network isolation, internal networks, published
ports, masquerade), the VXLAN device's neighbour and forwarding entries (the VTEP
an overlay packet is tunnelled to). Places are resolved by the caller
(:mod:`kanal.engine.explainplaces`); the kernel is behind :class:`Kernel`, so the
walk itself is pure and unit-tested with a fake one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from kanal.engine.model import Endpoint, Network
from kanal.engine.nftview import NftView
from kanal.firewall.nftables.state import BaseChain

__all__ = ["Explanation", "Kernel", "Place", "Step", "explain"]


@dataclass
class Place:
    """One end: a sandbox (its namespace and attachments), the host (kanald's own
    namespace) or an address outside both."""

    kind: str  # "sandbox" | "host" | "outside"
    label: str
    ip: str = ""  # the address the packet carries (chosen for the pair when several)
    netns: str = ""
    attachments: list[tuple[Network, Endpoint]] = field(default_factory=list)

    def attachment(self, ip: str) -> tuple[Network, Endpoint] | None:
        for net, ep in self.attachments:
            if ep.ipv4.split("/")[0] == ip or ep.ipv6.split("/")[0] == ip:
                return net, ep
        return None


@dataclass
class Step:
    stage: str  # route | bridge | firewall | nat | tunnel | host
    verdict: str  # pass | drop | note
    text: str
    evidence: str = ""


@dataclass
class Explanation:
    src: str
    dst: str
    port: int
    proto: str
    reachable: bool
    steps: list[Step]

    def to_json(self) -> dict[str, Any]:
        return {
            "Source": self.src,
            "Destination": self.dst,
            "Port": self.port,
            "Protocol": self.proto,
            "Reachable": self.reachable,
            "Steps": [
                {"Stage": s.stage, "Verdict": s.verdict, "Text": s.text, "Evidence": s.evidence}
                for s in self.steps
            ],
        }


class Kernel(Protocol):
    """The kernel state the walk reads (live: :class:`kanal.engine.explainplaces.LiveKernel`)."""

    def route_get(
        self, dst: str, *, netns: str = "", src: str = "", iif: str = ""
    ) -> tuple[dict[str, Any] | None, str]: ...

    def bridge_ports(self, bridge: str) -> dict[str, dict[str, Any]]: ...

    def fdb(self, dev: str) -> list[dict[str, Any]]: ...

    def neighbours(self, dev: str) -> list[dict[str, Any]]: ...

    def forwarding(self) -> bool: ...

    def nft(self) -> NftView: ...

    def forward_chains(self) -> list[BaseChain]: ...


def explain(
    src: Place,
    dst: Place,
    port: int,
    proto: str,
    kernel: Kernel,
    owner: Callable[[str], Place | None] = lambda _ip: None,
) -> Explanation:
    """Walk a packet from ``src`` to ``dst`` (``port``/``proto``: 0/"" for any).
    ``owner`` finds the sandbox holding an address (a published port's target)."""
    w = _Walk(kernel, port, proto, owner)
    ok = w.run(src, dst)
    return Explanation(src.label, dst.label, port, proto, ok, w.steps)


class _Walk:
    def __init__(
        self, kernel: Kernel, port: int, proto: str, owner: Callable[[str], Place | None]
    ) -> None:
        self.k, self.port, self.proto, self.owner = kernel, port, proto or "tcp", owner
        self.steps: list[Step] = []
        self._nft: NftView | None = None

    @property
    def nft(self) -> NftView:
        if self._nft is None:
            self._nft = self.k.nft()
        return self._nft

    def step(self, stage: str, verdict: str, text: str, evidence: str = "") -> bool:
        self.steps.append(Step(stage, verdict, text, evidence))
        return verdict != "drop"

    # --- the walk --------------------------------------------------------------------

    def run(self, src: Place, dst: Place) -> bool:
        if dst.kind == "host" and self.port:
            target = self._published(dst)
            if target is not None:
                return self._to_published(src, dst, *target)
        if src.kind == "sandbox":
            return self._from_sandbox(src, dst)
        if src.kind == "host":
            return self._from_host(dst)
        return self._from_outside(src, dst)

    def _from_sandbox(self, src: Place, dst: Place) -> bool:
        route, err = self.k.route_get(dst.ip, netns=src.netns)
        if route is None:
            return self.step("route", "drop", f"{src.label} has no route to {dst.ip}", err)
        via = route.get("gateway", "")
        dev = str(route.get("dev", ""))
        self.step(
            "route",
            "pass",
            f"{src.label} sends it out of {dev}" + (f" to its gateway {via}" if via else ""),
            _cite_route(route),
        )
        mine = next(((n, e) for n, e in src.attachments if e.ifname == dev), None)
        if mine is None:
            return self.step("route", "note", f"{dev} is not an interface kanal attached")
        net, ep = mine
        if not via:
            return self._on_link(src, dst, net, ep)
        if dst.kind == "host" or (dst.kind == "outside" and dst.ip == via):
            return self.step(
                "host", "pass", f"{via} is the host's address on {net.name}: delivered to the host"
            )
        return self._forward(src.ip, dst, net.driver_state.get("bridge", ""), net)

    def _on_link(self, src: Place, dst: Place, net: Network, ep: Endpoint) -> bool:
        if net.driver == "macvlan":
            mode = net.driver_state.get("mode", "bridge")
            parent = net.driver_state.get("parent", "")
            if dst.kind == "sandbox" and dst.attachment(dst.ip):
                if mode != "bridge":
                    return self.step(
                        "bridge",
                        "drop",
                        f"macvlan mode {mode} on {parent}: its sandboxes cannot talk to each other",
                    )
                return self.step(
                    "bridge", "pass", f"switched by macvlan (mode bridge) on parent {parent}"
                )
            return self.step(
                "bridge", "pass", f"sent on {parent}'s segment by macvlan (mode {mode})"
            )
        bridge = str(net.driver_state.get("bridge", ""))
        if dst.kind == "host":
            return self.step(
                "host", "pass", f"{dst.ip} is the host's address on {bridge}: delivered to the host"
            )
        theirs = dst.attachment(dst.ip) if dst.kind == "sandbox" else None
        if theirs is not None and theirs[0].id == net.id:
            return self._switched(bridge, ep, theirs[1])
        if net.driver == "overlay":
            return self._tunnel(bridge, dst.ip)
        return self.step(
            "bridge",
            "note",
            f"{dst.ip} is on {bridge}'s segment but belongs to no sandbox kanal knows",
        )

    def _switched(self, bridge: str, a: Endpoint, b: Endpoint) -> bool:
        ports = self.k.bridge_ports(bridge)
        pa, pb = a.driver_state.get("host_veth", ""), b.driver_state.get("host_veth", "")
        iso_a = bool(ports.get(pa, {}).get("isolated"))
        iso_b = bool(ports.get(pb, {}).get("isolated"))
        if iso_a and iso_b:
            return self.step(
                "bridge",
                "drop",
                (
                    f"ICC is off on {bridge}: both ports are isolated, "
                    "so the bridge does not forward between them"
                ),
                f"bridge link: {pa} isolated on, {pb} isolated on",
            )
        return self.step(
            "bridge",
            "pass",
            f"switched by {bridge} from port {pa} to port {pb} (layer 2: no firewall hook)",
            (
                f"bridge link: {pa} isolated {'on' if iso_a else 'off'}, "
                f"{pb} isolated {'on' if iso_b else 'off'}"
            ),
        )

    def _tunnel(self, bridge: str, ip: str) -> bool:
        vxlans = [n for n, p in self.k.bridge_ports(bridge).items() if p.get("kind") == "vxlan"]
        for dev in vxlans:
            mac = next(
                (
                    str(n.get("lladdr"))
                    for n in self.k.neighbours(dev)
                    if n.get("dst") == ip and n.get("lladdr")
                ),
                "",
            )
            if not mac:
                continue
            entry = next((f for f in self.k.fdb(dev) if f.get("mac") == mac and f.get("dst")), None)
            if entry is None:
                return self.step(
                    "tunnel",
                    "drop",
                    f"{ip} is {mac}, but {dev} has no VTEP for that MAC",
                    f"bridge fdb show dev {dev}",
                )
            return self.step(
                "tunnel",
                "pass",
                f"{ip} ({mac}) is tunnelled by {dev} to the VTEP {entry['dst']}",
                (
                    f"ip neigh: {ip} lladdr {mac} dev {dev}; bridge "
                    f"fdb: {mac} dev {dev} dst {entry['dst']}"
                ),
            )
        return self.step(
            "tunnel",
            "drop",
            f"no VXLAN device on {bridge} knows {ip} (no neighbour entry)",
            f"ip neigh show dev {' '.join(vxlans) or '(none)'}",
        )

    def _forward(self, src_ip: str, dst: Place, in_bridge: str, net: Network | None) -> bool:
        """A packet routed by the host from ``in_bridge`` (or an uplink) to ``dst``."""
        if not self.k.forwarding():
            return self.step(
                "host",
                "drop",
                "the host does not forward IPv4 (net.ipv4.ip_forward = 0)",
                "sysctl net.ipv4.ip_forward",
            )
        route, err = (
            self.k.route_get(dst.ip, src=src_ip, iif=in_bridge)
            if in_bridge
            else self.k.route_get(dst.ip)
        )
        if route is None:
            return self.step("route", "drop", f"the host has no route to {dst.ip}", err)
        out = str(route.get("dev", ""))
        self.step("route", "pass", f"the host routes it out of {out}", _cite_route(route))
        if not self._forward_rules(in_bridge, out):
            return False
        if dst.kind == "outside":
            self._masquerade(src_ip, dst.ip)
            return self.step(
                "host", "pass", f"it leaves the host on {out}; whether {dst.ip} answers is up to it"
            )
        return self.step("bridge", "pass", f"delivered by {out} to {dst.label}")

    def _forward_rules(self, in_dev: str, out: str) -> bool:
        nft = self.nft
        chain = nft.net_from.get(in_dev)
        if chain:
            if out == in_dev:
                r = nft.find(chain, f'oifname "{out}"', "accept")
                return self.step(
                    "firewall", "pass", "routed back into its own network", r.cite() if r else ""
                )
            if out in nft.net_brs:
                r = nft.find(chain, "@net_brs", "drop")
                return self.step(
                    "firewall",
                    "drop",
                    f"{in_dev} and {out} are different networks: kanal drops traffic between them",
                    r.cite() if r else "",
                )
            r = nft.find(chain, "drop")
            if r is not None and r.text == "drop":
                return self.step(
                    "firewall",
                    "drop",
                    f"the network on {in_dev} is internal: nothing leaves it",
                    r.cite(),
                )
        if out in nft.net_internal:
            r = nft.find("net_fwd", "@net_internal", "drop")
            return self.step(
                "firewall",
                "drop",
                f"{out} belongs to an internal network: nothing from outside it enters",
                r.cite() if r else "",
            )
        self.step(
            "firewall",
            "pass",
            "kanal's forward rules let it through",
            "nft chain inet kanal net_fwd",
        )
        return self._other_firewalls()

    def _other_firewalls(self) -> bool:
        """The host's other forward chains (its own firewall, iptables-nft's FORWARD):
        an empty one with policy drop drops for sure; rules kanal does not judge are
        named as such."""
        for c in self.k.forward_chains():
            if (c.family, c.table) == ("inet", "kanal"):
                continue
            where = f"nft chain {c.family} {c.table} {c.name} (hook forward, policy {c.policy})"
            if c.policy == "drop" and c.rules == 0:
                return self.step(
                    "firewall",
                    "drop",
                    f"the host's chain {c.table} {c.name} drops every forwarded packet",
                    where,
                )
            if c.policy == "drop" or c.rules:
                self.step(
                    "firewall",
                    "note",
                    f"the host's chain {c.table} {c.name} also sees it: {c.rules} rule(s) and"
                    f" policy {c.policy}, which kanal does not judge",
                    where,
                )
        return True

    def _masquerade(self, src_ip: str, dst_ip: str) -> None:
        nft = self.nft
        a = ipaddress.ip_address(src_ip)
        b = ipaddress.ip_address(dst_ip)
        for s, d in nft.skip:
            if a in ipaddress.ip_network(s) and b in ipaddress.ip_network(d):
                self.step(
                    "nat",
                    "note",
                    f"not masqueraded: {s} to {d} keeps its source",
                    "nft set inet kanal skip4",
                )
                return
        if src_ip in nft.masq:
            r = nft.find("postrouting", "@masq", "masquerade")
            self.step(
                "nat",
                "pass",
                f"masqueraded: {src_ip} leaves with the host's address",
                f"nft set inet kanal masq4 element {src_ip} comment {nft.masq[src_ip]}"
                + (f"; {r.cite()}" if r else ""),
            )
        else:
            self.step(
                "nat", "note", f"not masqueraded: {src_ip} leaves with its own address (routed)"
            )

    def _from_host(self, dst: Place) -> bool:
        route, err = self.k.route_get(dst.ip)
        if route is None:
            return self.step("route", "drop", f"the host has no route to {dst.ip}", err)
        dev = str(route.get("dev", ""))
        self.step("route", "pass", f"the host sends it out of {dev}", _cite_route(route))
        theirs = dst.attachment(dst.ip) if dst.kind == "sandbox" else None
        if theirs is not None and theirs[0].driver == "macvlan":
            return self.step(
                "bridge",
                "drop",
                f"{dst.label} is a macvlan child of {theirs[0].driver_state.get('parent', '')}:"
                " the parent's own namespace cannot reach its macvlan children",
                "the kernel passes nothing between a lower device and its macvlans",
            )
        return self.step(
            "host", "pass", "host to sandbox is output, not forward: kanal's rules allow it"
        )

    def _from_outside(self, src: Place, dst: Place) -> bool:
        route, err = self.k.route_get(src.ip)
        if route is None:
            return self.step("route", "drop", f"the host has no route back to {src.ip}", err)
        uplink = str(route.get("dev", ""))
        self.step("route", "note", f"{src.ip} reaches the host on {uplink}", _cite_route(route))
        if dst.kind == "host":
            return self.step("host", "pass", "addressed to the host itself: input")
        return self._forward(src.ip, dst, uplink, None)

    # --- published ports -------------------------------------------------------------

    def _published(self, dst: Place) -> tuple[str, int, str] | None:
        nft = self.nft
        got = nft.ports_ip.get((dst.ip, self.proto, self.port))
        if got is not None:
            return (*got, "pm_ip")
        got = nft.ports_any.get((self.proto, self.port))
        return None if got is None else (*got, "pm_any")

    def _to_published(self, src: Place, dst: Place, addr: str, to_port: int, m: str) -> bool:
        hook = "pm_out" if src.kind == "host" else "pm_pre"
        fam = "6" if ":" in addr else "4"
        r = self.nft.find("pm_dnat", f"@{m}{fam}")
        key = f"{dst.ip} . " if m == "pm_ip" else ""
        self.step(
            "nat",
            "pass",
            f"{dst.ip}:{self.port}/{self.proto} is published: DNAT to {addr}:{to_port}",
            f"nft chain inet kanal {hook} -> pm_dnat; map {m}{fam} element"
            f" {key}{self.proto} . {self.port} : {addr} . {to_port}"
            + (f"; {r.cite()}" if r else ""),
        )
        if src.kind != "outside":
            post = self.nft.find("pm_post", "127.0.0.0/8" if src.kind == "host" else "@pm_subnets")
            if post is not None:
                self.step(
                    "nat",
                    "note",
                    "its source is rewritten too, so that the answer comes back the same way",
                    post.cite(),
                )
        target = self.owner(addr) or Place("sandbox", addr, ip=addr)
        if src.kind == "host":
            return self._from_host(target)
        if src.kind == "sandbox":
            route, err = self.k.route_get(dst.ip, netns=src.netns)
            if route is None:
                return self.step("route", "drop", f"{src.label} has no route to {dst.ip}", err)
            dev = str(route.get("dev", ""))
            mine = next(((n, e) for n, e in src.attachments if e.ifname == dev), None)
            bridge = str(mine[0].driver_state.get("bridge", "")) if mine else ""
            self.step("route", "pass", f"{src.label} sends it out of {dev}", _cite_route(route))
            return self._forward(src.ip, target, bridge, mine[0] if mine else None)
        return self._from_outside(src, target)


def _cite_route(r: dict[str, Any]) -> str:
    keys = ("dst", "gateway", "dev", "prefsrc", "table")
    return "ip route get: " + " ".join(f"{k} {r[k]}" for k in keys if r.get(k) not in (None, ""))


def explanation_from_json(d: dict[str, Any]) -> Explanation:
    """The inverse of :meth:`Explanation.to_json` (the CLI's side)."""
    return Explanation(
        d["Source"],
        d["Destination"],
        int(d["Port"]),
        d["Protocol"],
        bool(d["Reachable"]),
        [Step(s["Stage"], s["Verdict"], s["Text"], s.get("Evidence", "")) for s in d["Steps"]],
    )
