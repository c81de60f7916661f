"""What the drivers built on kanal's CNI plugins share.

An endpoint's addresses (chosen by the engine's IPAM) reach the plugin's
``static`` IPAM as CNI_ARGS ``IP``/``GATEWAY``; published ports as the
``portMappings`` capability. ``add`` runs a list and undoes it on failure (libcni
leaves a half-done chain to its runtime: here the runtime is the engine).
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from kanal.errors import KanalError
from kanal.runtime.libcni import RuntimeConf
from kanal.runtime.netnscheck import check_netns

if TYPE_CHECKING:
    from kanal.engine.context import EngineContext
    from kanal.engine.model import Endpoint, Network
    from kanal.spec.netconf import ConfList
    from kanal.spec.types import Result

__all__ = ["add", "default_routes", "static_runtime"]


def static_runtime(net: Network, ep: Endpoint, default_host_ip: str = "") -> RuntimeConf:
    ips = [a for a in (ep.ipv4, ep.ipv6) if a]
    gws = []
    for a in ips:
        iface = ipaddress.ip_interface(a)
        for c in net.ipam:
            if c.gateway and iface.ip in ipaddress.ip_network(c.subnet):
                gws.append(c.gateway)
    args = [("IgnoreUnknown", "1"), ("IP", ",".join(ips))]
    if gws:
        args.append(("GATEWAY", ",".join(gws)))
    if ep.mac:  # a rejoin keeps the endpoint's MAC: its peers' neighbour entries stay right
        args.append(("MAC", ep.mac))
    caps: dict[str, Any] = {}
    if ep.ports:
        caps["portMappings"] = [
            {
                "hostPort": p.host_port,
                "containerPort": p.container_port,
                "protocol": p.protocol,
                **(
                    {"hostIP": p.host_ip or default_host_ip}
                    if (p.host_ip or default_host_ip)
                    else {}
                ),
            }
            for p in ep.ports
        ]
    return RuntimeConf(
        container_id=ep.id, netns=ep.netns, ifname=ep.ifname, args=args, capability_args=caps
    )


def default_routes(net: Network, ep: Endpoint | None) -> list[dict[str, str]]:
    """A default route per family via the subnet's gateway, for the gateway endpoint."""
    if net.internal or ep is None or not ep.default_gateway:
        return []
    out = []
    for c in net.ipam:
        if c.gateway:
            v4 = ipaddress.ip_network(c.subnet).version == 4
            out.append({"dst": "0.0.0.0/0" if v4 else "::/0", "gw": c.gateway})
    return out


def add(ctx: EngineContext, conflist: ConfList, rt: RuntimeConf) -> Result:
    if rt.netns:
        # A sandbox namespace this mount namespace cannot see (an empty file) would
        # end in a plugin's kernel error that does not say why.
        check_netns(rt.netns)
    try:
        return ctx.cni.add_network_list(conflist, rt)
    except KanalError:
        try:
            ctx.cni.del_network_list(conflist, rt)
        except KanalError:
            pass
        raise
