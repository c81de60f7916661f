"""Where a network's subnets and an endpoint's addresses come from.

Three sources, chosen per network: the cluster's IPAM for global (overlay)
networks, the network's remote IPAM plugin when it was created with one, and
kanal's own allocator (:class:`~kanal.engine.ipam.AddressAllocator`) for the
rest. New networks without ``--subnet`` get one from the default pools that
overlaps neither another network nor a route of the host.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from kanal.engine.ipam import (
    AddressAllocator,
    Pool,
    choose_subnet,
    require_free,
    validate_ipam_config,
)
from kanal.engine.model import IPAMConfig, Network
from kanal.engine.remoteipam import RemoteIpam
from kanal.errors import InvalidConfig, best_effort

if TYPE_CHECKING:
    from kanal.engine.cluster import Cluster
    from kanal.engine.context import EngineContext

__all__ = ["Addressing", "Net", "checked_free", "has_version", "netlink_routes", "taken_subnets"]

Net = ipaddress.IPv4Network | ipaddress.IPv6Network


class Addressing:
    """Allocates and frees endpoint addresses; plans subnets for new networks.

    Args:
        ipam: kanal's own allocator (its records are in the state store).
        ctx: the engine context (its cluster and remote plugins).
        pools / pools_v6: the default address pools.
        host_routes: the host's route destinations (CIDR strings).
    """

    def __init__(
        self,
        ipam: AddressAllocator,
        ctx: EngineContext,
        pools: Sequence[Pool],
        pools_v6: Sequence[Pool],
        host_routes: Callable[[], Iterable[str]],
    ) -> None:
        self.ipam = ipam
        self.ctx = ctx
        self.pools = list(pools)
        self.pools_v6 = list(pools_v6)
        self.host_routes = host_routes

    @property
    def cluster(self) -> Cluster | None:
        c: Cluster | None = self.ctx.cluster
        return c

    def allocate(self, net: Network, version: int, ep_id: str, want: str) -> str:
        """An address (CIDR) for the endpoint, from kanal's IPAM or the network's plugin."""
        if net.scope == "global" and self.cluster is not None:
            g = self.cluster.ipam(net, version)
            got = g.allocate(ep_id, want or None)
            return f"{got.ip}/{g.subnet.prefixlen}"
        if net.ipam_state:
            cidr, _pool = RemoteIpam(net.ipam_driver, self.ctx).request_address(
                net.ipam_state, version, want
            )
            return cidr
        a, sub, _gw = self.ipam.allocate(net, version, ep_id, want)
        return f"{a}/{sub.prefixlen}"

    def free(self, net: Network, cidr: str, ep_id: str) -> None:
        """Give an address back where :meth:`allocate` took it."""
        ip = cidr.split("/")[0]
        if net.scope == "global" and self.cluster is not None:
            version = ipaddress.ip_address(ip).version
            self.cluster.ipam(net, version).release(ip, ep_id)
            return
        if net.ipam_state:
            remote = RemoteIpam(net.ipam_driver, self.ctx)
            for rec in net.ipam_state.get("pools", []):
                if ipaddress.ip_address(ip) in ipaddress.ip_network(rec["pool"]):
                    best_effort(remote.release_address, rec["id"], ip)
            return
        self.ipam.release(net.id, ip, ep_id)

    def plan_subnets(
        self,
        name: str,
        wanted: Sequence[IPAMConfig],
        v4: bool,
        v6: bool,
        others: list[Network],
    ) -> list[IPAMConfig]:
        """The subnets of a new network: those asked for (checked free), plus one from
        the pools for each enabled IP version that has none.

        Raises:
            InvalidConfig / Conflict: a bad or taken subnet, a version not enabled.
        """
        taken = taken_subnets(others)
        cfgs = [validate_ipam_config(c) for c in wanted]
        seen: list[tuple[str, Net]] = []
        for c in cfgs:
            sub = ipaddress.ip_network(c.subnet)
            require_free(sub, taken + seen)
            seen.append((name, sub))
        versions = {ipaddress.ip_network(c.subnet).version for c in cfgs}
        if 6 in versions and not v6:
            raise InvalidConfig("an IPv6 subnet requires --ipv6")
        if 4 in versions and not v4:
            raise InvalidConfig("an IPv4 subnet requires IPv4 to be enabled")
        avoid = [n for _, n in taken] + _host_networks(self.host_routes)
        if v4 and 4 not in versions:
            cfgs.append(validate_ipam_config(IPAMConfig(str(choose_subnet(self.pools, avoid, 4)))))
        if v6 and 6 not in versions:
            sub6 = choose_subnet(self.pools_v6, avoid, 6)
            cfgs.append(validate_ipam_config(IPAMConfig(str(sub6))))
        return cfgs


def checked_free(wanted: Sequence[IPAMConfig], others: list[Network]) -> list[IPAMConfig]:
    """The subnets asked for, validated, each overlapping none of ``others``'
    (a network whose pools a remote IPAM plugin gives). Raises InvalidConfig, Conflict."""
    cfgs = [validate_ipam_config(c) for c in wanted]
    for c in cfgs:
        require_free(ipaddress.ip_network(c.subnet), taken_subnets(others))
    return cfgs


def taken_subnets(others: list[Network]) -> list[tuple[str, Net]]:
    """(network name, subnet) of every subnet the networks ``others`` use."""
    # a configuration-only network holds no addresses: its subnets are for others
    return [
        (n.name, ipaddress.ip_network(c.subnet))
        for n in others
        if not n.config_only
        for c in n.ipam
    ]


def has_version(net: Network, version: int) -> bool:
    """Whether the network has a subnet of IP ``version``."""
    return any(ipaddress.ip_network(c.subnet).version == version for c in net.ipam)


def _host_networks(routes: Callable[[], Iterable[str]]) -> list[Net]:
    out: list[Net] = []
    for dst in routes():
        try:
            n = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            continue
        if n.prefixlen and not n.is_link_local and not n.is_loopback:
            out.append(n)
    return out


def netlink_routes() -> list[str]:
    """The route destinations of the daemon's network namespace."""
    # lazy: pyroute2 only when a network is created without a subnet
    from kanal.netlink.handle import Netlink

    with Netlink() as nl:
        return [str(r.dst) for r in nl.routes()]
