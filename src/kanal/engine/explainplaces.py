"""The two ends of ``kanal explain``, found in the engine's records, and the live kernel.

A reference is ``host``, a sandbox's name or ID, or an address: a sandbox's, one of
the host's own (``ip route get`` says ``local``), or anything else (outside). Which
of a sandbox's addresses the packet uses depends on the other end: one on a network
they share, else the sandbox's default-gateway network's.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from kanal.engine.explain import Place
from kanal.engine.nftview import NftView
from kanal.errors import InvalidConfig, NotFound
from kanal.firewall.nftables.state import BaseChain, base_chains, table_json
from kanal.netlink import inspect

if TYPE_CHECKING:
    from kanal.engine.controller import Controller
    from kanal.engine.model import Endpoint, Network
    from kanal.engine.sandboxes import SandboxManager

__all__ = ["LiveKernel", "Places", "parse_target"]


class LiveKernel:
    """The kernel of kanald's own namespace (and the sandboxes' by path)."""

    def route_get(
        self, dst: str, *, netns: str = "", src: str = "", iif: str = ""
    ) -> tuple[dict[str, Any] | None, str]:
        return inspect.route_get(dst, netns=netns, src=src, iif=iif)

    def bridge_ports(self, bridge: str) -> dict[str, dict[str, Any]]:
        return inspect.bridge_ports(bridge)

    def fdb(self, dev: str) -> list[dict[str, Any]]:
        return inspect.fdb(dev)

    def neighbours(self, dev: str) -> list[dict[str, Any]]:
        return inspect.neighbours(dev)

    def forwarding(self) -> bool:
        try:
            with open("/proc/sys/net/ipv4/ip_forward") as f:
                return f.read().strip() == "1"
        except OSError:
            return False

    def nft(self) -> NftView:
        return NftView.parse(table_json() or [])

    def forward_chains(self) -> list[BaseChain]:
        return base_chains("forward")


def parse_target(text: str) -> tuple[str, int, str]:
    """``DST[:PORT[/PROTO]]`` -> (reference, port, proto); IPv6 as ``[addr]:port``."""
    ref, port, proto = text, 0, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        ref, rest = host, rest[1:] if rest.startswith(":") else rest
        spec = rest
    else:
        ref, sep, spec = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
        if not sep:
            ref, spec = text, ""
    if spec:
        num, _, proto = spec.partition("/")
        if not num.isdigit() or not 0 < int(num) < 65536:
            raise InvalidConfig(f"invalid port {num!r} in {text!r}")
        port = int(num)
        if proto not in ("", "tcp", "udp", "sctp"):
            raise InvalidConfig(f"invalid protocol {proto!r} in {text!r}: want tcp, udp or sctp")
    return ref, port, proto or ("tcp" if port else "")


class Places:
    """Resolves references against the engine's sandboxes, endpoints and networks."""

    def __init__(self, controller: Controller, manager: SandboxManager, kernel: LiveKernel) -> None:
        self.c, self.m, self.k = controller, manager, kernel
        self.nets: dict[str, Network] = {n.id: n for n in controller.networks()}

    def resolve(self, ref: str) -> Place:
        if ref == "host":
            return Place("host", "host")
        try:
            ip = str(ipaddress.ip_address(ref))
        except ValueError:
            sb = self.m.get(ref)  # NotFound names the reference
            return self._sandbox(sb.id, sb.name, sb.netns, "")
        owner = self.owner(ip)
        if owner is not None:
            return owner
        route, _ = self.k.route_get(ip)
        if route is not None and route.get("type") == "local":
            return Place("host", f"host ({ip})", ip=ip)
        return Place("outside", ip, ip=ip)

    def owner(self, ip: str) -> Place | None:
        """The local sandbox holding ``ip``, or None."""
        for ep in self.c.endpoints():
            if ip in (ep.ipv4.split("/")[0], ep.ipv6.split("/")[0]) and ep.sandbox_id:
                try:
                    sb = self.m.get(ep.sandbox_id)
                except NotFound:
                    continue
                return self._sandbox(sb.id, sb.name, sb.netns, ip)
        return None

    def _sandbox(self, sid: str, name: str, netns: str, ip: str) -> Place:
        atts: list[tuple[Network, Endpoint]] = [
            (self.nets[ep.network_id], ep)
            for ep in self.c.sandbox_endpoints(sid)
            if ep.network_id in self.nets
        ]
        return Place("sandbox", name, ip=ip, netns=netns, attachments=atts)

    def pair(self, src: Place, dst: Place) -> None:
        """Choose the addresses the packet carries, as the two ends' networks decide."""
        shared = {n.id for n, _ in src.attachments} & {n.id for n, _ in dst.attachments}

        def pick(p: Place) -> str:
            atts = sorted(
                p.attachments, key=lambda a: (a[0].id not in shared, not a[1].default_gateway)
            )
            return atts[0][1].ipv4.split("/")[0] if atts and atts[0][1].ipv4 else ""

        if src.kind == "sandbox" and not src.ip:
            src.ip = pick(src)
        if dst.kind == "sandbox" and not dst.ip:
            dst.ip = pick(dst)
        if dst.kind == "host" and not dst.ip:
            dst.ip = self._host_address(src)
        if src.kind == "host" and not src.ip:
            src.ip = ""
        if not dst.ip:
            raise InvalidConfig(f"{dst.label} has no IPv4 address to send to")

    def _host_address(self, src: Place) -> str:
        if src.kind == "sandbox":
            atts = sorted(src.attachments, key=lambda a: not a[1].default_gateway)
            for net, _ in atts:
                for cfg in net.ipam:
                    if cfg.gateway and ":" not in cfg.gateway:
                        return cfg.gateway
        if src.kind == "outside":
            route, _ = self.k.route_get(src.ip)
            if route is not None and route.get("prefsrc"):
                return str(route["prefsrc"])
        return "127.0.0.1"
