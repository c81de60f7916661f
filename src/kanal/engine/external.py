"""Endpoints another runtime places: dockerd's, through kanal's Docker plugin.

dockerd creates the interface itself and chooses the addresses with its own
IPAM (kanal's, or another); kanal only records the endpoint and reserves its
addresses, so they are never handed out twice and show up in inspect and DNS.
Such an endpoint carries ``driver_state["external"]``; reconcile leaves its
sandbox side alone.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import TYPE_CHECKING

from kanal.engine.model import Endpoint, now
from kanal.errors import NotFound
from kanal.store import Put

if TYPE_CHECKING:
    from kanal.engine.controller import Controller

__all__ = ["add_external_endpoint", "remove_external_endpoint"]


def add_external_endpoint(
    ctrl: Controller,
    ref: str,
    endpoint_id: str,
    *,
    ipv4: str = "",
    ipv6: str = "",
    mac: str = "",
    name: str = "",
) -> Endpoint:
    """Record the endpoint and reserve its addresses (CIDRs). Idempotent for a
    retried call with the same id. The driver's kernel work is the caller's.

    Raises:
        NotFound: no such network. Conflict: an address is taken.
        InvalidConfig: an address outside the network's subnets.
    """
    net = ctrl.get_network(ref)
    key = f"endpoints/{net.id}/{endpoint_id}"
    old = ctrl.store.get(key)
    if old is not None:
        return Endpoint.from_json(old.value)
    ep = Endpoint(
        id=endpoint_id,
        network_id=net.id,
        name=name or endpoint_id[:12],
        sandbox_id=f"ext-{endpoint_id[:24]}",
        mac=mac,
        static_ip=True,
        created=now(),
        driver_state={"external": True},
    )
    with ExitStack() as undo:
        if ipv4:
            ep.ipv4 = ctrl.addressing.allocate(net, 4, ep.id, ipv4.split("/")[0])
            undo.callback(ctrl.addressing.free, net, ep.ipv4, ep.id)
        if ipv6:
            ep.ipv6 = ctrl.addressing.allocate(net, 6, ep.id, ipv6.split("/")[0])
            undo.callback(ctrl.addressing.free, net, ep.ipv6, ep.id)
        idx = f"by-sandbox/{ep.sandbox_id}/{ep.id}"
        ctrl.store.txn([Put(key, ep.to_json(), 0), Put(idx, net.id.encode())])
        undo.pop_all()
    return ep


def remove_external_endpoint(ctrl: Controller, net_id: str, endpoint_id: str) -> Endpoint | None:
    """Forget an external endpoint: addresses, ports and records; idempotent."""
    try:
        ep = ctrl.get_endpoint(net_id, endpoint_id)
        net = ctrl.get_network(net_id)
    except NotFound:
        return None
    ctrl.release_endpoint(net, ep)
    return ep
