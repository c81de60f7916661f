"""A new endpoint (:func:`new_endpoint`, checked before anything is stored), and
docker's endpoint options beyond addresses and ports with what they change in
the sandbox's namespace after a driver joined it.

``--mac-address``: the driver is asked for that MAC (ours pass it to the CNI
plugin); one that gives another is an error, never a silent other MAC.
``--link NAME:ALIAS``: kept on the endpoint; embedded DNS answers ALIAS for this
sandbox only (:mod:`kanal.engine.dns.index`), /etc/hosts has it on the default
bridge. ``--link-local-ip``: docker puts each link-local address on the
endpoint's interface besides the network's own address, with the link-local
prefix length (169.254.0.0/16, fe80::/64). ``--driver-opt``: kept as given and
shown (no driver of kanal reads one yet).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kanal.engine.model import Endpoint, Network, SandboxRef, new_id, now, validate_name
from kanal.errors import Conflict, InvalidConfig

if TYPE_CHECKING:
    from kanal.engine.drivers import NetworkDriver

__all__ = ["EndpointOptions", "add_addresses", "link_local_ip", "new_endpoint"]


@dataclass
class EndpointOptions:
    """What a connect asks beyond addresses, aliases and ports (see the module)."""

    mac: str = ""
    links: list[str] = field(default_factory=list)  # "<sandbox name>:<alias>"
    link_local_ips: list[str] = field(default_factory=list)
    driver_opts: dict[str, str] = field(default_factory=dict)

    def apply(self, ep: Endpoint, network: str, has_interface: bool) -> None:
        """Onto the new endpoint, before the driver joins it. Raises InvalidConfig."""
        if (self.mac or self.link_local_ips) and not has_interface:
            raise InvalidConfig(
                f"network {network} gives no interface: no --mac-address or --link-local-ip"
            )
        ep.mac = self.mac.lower()
        ep.links = list(self.links)
        ep.link_local_ips = list(self.link_local_ips)
        ep.driver_opts = dict(self.driver_opts)

    def joined(self, ep: Endpoint, driver: str) -> None:
        """After the driver's join (undone by the caller on an error)."""
        if self.mac and ep.mac.lower() != self.mac.lower():
            raise InvalidConfig(f"the {driver} driver does not take --mac-address")
        if ep.link_local_ips:
            add_addresses(ep.netns, ep.ifname, ep.link_local_ips)


def link_local_ip(value: str) -> str:
    """A ``--link-local-ip`` value: one link-local address (no prefix).

    Raises:
        InvalidConfig: anything else.
    """
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        raise InvalidConfig(f"invalid link-local IP address: {value!r}") from None
    if not ip.is_link_local:
        raise InvalidConfig(
            f"invalid link-local IP address: {value} is not in 169.254.0.0/16 or fe80::/10"
        )
    return str(ip)


def add_addresses(netns: str, ifname: str, addrs: Sequence[str]) -> None:
    """Put ``addrs`` (link-local, see :func:`link_local_ip`) on ``ifname`` in the
    namespace ``netns``. Raises KanalError when the kernel refuses one."""
    # lazy: only a connect with --link-local-ip needs the netlink batch
    from kanal.netlink.batch import Batch, raw_socket
    from kanal.netlink.ns import open_netns, run_in_netns

    def work() -> None:
        index = socket.if_nametoindex(ifname)
        with raw_socket() as s:
            b = Batch(s)
            for a in addrs:
                ip = ipaddress.ip_address(a)
                b.add_addr(index, ipaddress.ip_interface(f"{ip}/{16 if ip.version == 4 else 64}"))
            b.commit()

    fd = open_netns(netns)
    try:
        run_in_netns(fd, work)
    finally:
        os.close(fd)


def new_endpoint(
    net: Network,
    driver: NetworkDriver,
    sandbox: SandboxRef,
    mine: list[Endpoint],
    static: bool,
    aliases: Sequence[str],
) -> Endpoint:
    """The endpoint a connect will make (checked, nothing stored): its interface
    name and whether it is the sandbox's way out. Raises Conflict, InvalidConfig."""
    if any(ep.network_id == net.id for ep in mine):
        raise Conflict(f"endpoint with name {sandbox.name} already exists in network {net.name}")
    for alias in aliases:
        validate_name(alias, "alias")
    if static and (net.builtin or not driver.needs_ipam):
        raise InvalidConfig(
            "user specified IP address is supported only when connecting to networks "
            "with user configured subnets"
        )
    prefix = net.driver_state.get("iface_prefix", "eth")
    ifname = ""
    if driver.has_interface:
        used = {ep.ifname for ep in mine}
        ifname = next(f"{prefix}{i}" for i in range(len(used) + 1) if f"{prefix}{i}" not in used)
    return Endpoint(
        id=new_id(),
        network_id=net.id,
        name=sandbox.name,
        sandbox_id=sandbox.id,
        netns=sandbox.netns,
        ifname=ifname,
        static_ip=static,
        default_gateway=not net.internal
        and net.scope != "global"  # an overlay has no way out (docker's neither)
        and not any(e.default_gateway for e in mine),
        aliases=list(aliases),
        created=now(),
    )
