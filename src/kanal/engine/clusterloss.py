"""What a host does about overlay addresses the cluster took back while it was away.

A host cut off from the cluster store past the grace period loses its address
leases (docs/crash-safety.md); the cluster may have given those addresses to
another host since. At rejoin (and at start) every overlay endpoint of this
host whose address is no longer held for it leaves its network.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import TYPE_CHECKING

from kanal.errors import best_effort

if TYPE_CHECKING:
    from kanal.engine.controller import Controller
    from kanal.engine.model import Endpoint

__all__ = ["drop_lost_addresses"]

log = logging.getLogger("kanal.engine")


def drop_lost_addresses(ctrl: Controller) -> list[Endpoint]:
    """Disconnect the overlay endpoints whose address the cluster freed; returns
    them. Raises Unavailable (the cluster store does not answer)."""
    cluster = ctrl.cluster
    if cluster is None:
        return []
    dropped = []
    for net in ctrl.networks():
        if net.scope != "global":
            continue
        for ep in ctrl.endpoints(net.id):
            lost = [
                c
                for c in (ep.ipv4, ep.ipv6)
                if c
                and not cluster.ipam(net, ipaddress.ip_interface(c).version).holds(
                    c.split("/")[0], ep.id
                )
            ]
            if not lost:
                continue
            log.warning(
                "%s lost %s on %s while this host was cut off: disconnected",
                ep.name,
                ", ".join(lost),
                net.name,
            )
            ctrl.emit("lost", net, ep)  # the sandbox keeps a note (kanal inspect)
            best_effort(ctrl.driver(net.driver).leave, net, ep)
            ctrl.release_endpoint(net, ep)
            ctrl.emit("disconnect", net, ep)
            dropped.append(ep)
    return dropped
