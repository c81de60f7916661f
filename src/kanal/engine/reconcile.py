"""Bringing the kernel back to the store: at start, after a crash, after outside harm.

The controller writes every change to the store before it touches the kernel and
journals the multi-step ones (docs/crash-safety.md), so these steps only ever
have to make the kernel match the store again: re-create what is missing,
finish interrupted deletions, drop endpoints whose sandbox is gone, and undo
what an interrupted connect or network create left behind.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from kanal.engine.model import Endpoint, Network
from kanal.engine.remoteipam import RemoteIpam
from kanal.errors import NotFound, best_effort

if TYPE_CHECKING:
    from kanal.engine.controller import Controller
    from kanal.engine.journal import Intent

__all__ = ["purge_endpoint", "reconcile", "rejoin", "undo_network_create"]


def reconcile(
    ctrl: Controller, sandbox_alive: Callable[[Endpoint], bool] | None = None
) -> dict[str, int]:
    """Networks: interrupted deletions are finished, every other network's kernel
    objects re-created (idempotent). Endpoints: those whose sandbox is gone
    (``sandbox_alive`` false; default: its netns path no longer exists) are
    removed with their addresses and ports; those whose kernel side is missing
    are joined again with the same addresses. Returns counts of what it did."""
    alive = sandbox_alive or (lambda ep: bool(ep.netns) and os.path.exists(ep.netns))
    counts = {"networks": 0, "deleted": 0, "rejoined": 0, "dropped": 0}
    with ctrl.lock:
        ctrl.ipam.forget_cache()
        for net in ctrl.networks():
            driver = ctrl.driver(net.driver)
            if net.driver_state.get("deleting"):
                for ep in ctrl.endpoints(net.id):
                    best_effort(driver.leave, net, ep)
                    ctrl.release_endpoint(net, ep)
                ctrl.remove_network(net)
                counts["deleted"] += 1
                continue
            driver.create_network(net)
            counts["networks"] += 1
            for ep in ctrl.endpoints(net.id):
                if ep.driver_state.get("external"):
                    continue  # its runtime (dockerd) owns the sandbox side
                if not alive(ep):
                    best_effort(driver.leave, net, ep)
                    ctrl.release_endpoint(net, ep)
                    counts["dropped"] += 1
                elif not driver.endpoint_ok(net, ep):
                    _rejoin(ctrl, net, ep)
                    counts["rejoined"] += 1
    return counts


def rejoin(ctrl: Controller, net_id: str, ep_id: str) -> bool:
    """Make an endpoint's kernel side again (what an outside hand removed), with
    its addresses and ports; False if the endpoint went meanwhile or its sandbox's
    namespace is gone (nothing to join into)."""
    with ctrl.ep_locks.hold(ep_id):
        got = ctrl.store.get(f"endpoints/{net_id}/{ep_id}")
        if got is None:
            return False
        ep = Endpoint.from_json(got.value)
        if not ep.netns or not os.path.exists(ep.netns):
            return False
        _rejoin(ctrl, ctrl.get_network(net_id), ep)
        return True


def _rejoin(ctrl: Controller, net: Network, ep: Endpoint) -> None:
    driver = ctrl.driver(net.driver)
    best_effort(driver.leave, net, ep)
    fresh = replace(ep, driver_state={})
    driver.join(net, fresh)
    ctrl.store.put(f"endpoints/{net.id}/{ep.id}", fresh.to_json())


def purge_endpoint(
    ctrl: Controller, net_id: str, ep_id: str, sandbox_id: str, addresses: Sequence[str] = ()
) -> None:
    """Recovery of an interrupted connect or disconnect: the endpoint goes entirely
    — kernel side, addresses, ports, records — whatever step it had reached.
    ``addresses``: those held where no owner scan finds them (cluster, remote
    IPAM). Idempotent."""
    try:
        net: Network | None = ctrl.get_network(net_id)
    except NotFound:
        net = None
    e = ctrl.store.get(f"endpoints/{net_id}/{ep_id}")
    ep = Endpoint.from_json(e.value) if e is not None else None
    if net is not None:
        if ep is not None:
            best_effort(ctrl.driver(net.driver).leave, net, ep)
        held = {a for a in (*addresses, *((ep.ipv4, ep.ipv6) if ep else ())) if a}
        for cidr in held:
            best_effort(ctrl.addressing.free, net, cidr, ep_id)
        for ip, owner in ctrl.ipam.in_use(net_id).items():
            if owner == ep_id:
                ctrl.ipam.release(net_id, ip, ep_id)
    ctrl.ports.release_owner(ep_id)
    ctrl.forget_endpoint_records(net_id, ep_id, sandbox_id)


def undo_network_create(ctrl: Controller, it: Intent) -> None:
    """Recovery of an interrupted ``network create``: whatever it made goes (the
    driver removes only what carries the network's mark). Idempotent."""
    net_id = str(it["network"])
    try:
        net = ctrl.get_network(net_id)
    except NotFound:
        net = None
    with ctrl.lock:
        if net is not None and net.id == net_id:
            if net.scope == "global" and ctrl.cluster and ctrl.cluster.endpoint_count(net_id):
                return  # stored and in use elsewhere: the create did complete
            for ep in ctrl.endpoints(net.id):
                best_effort(ctrl.driver(net.driver).leave, net, ep)
                ctrl.release_endpoint(net, ep)
            ctrl.remove_network(net)
            return
        # Never stored: only what the steps before could hold.
        if it.fields.get("ipam_state"):
            remote = RemoteIpam(str(it["ipam_driver"]), ctrl.ctx)
            best_effort(remote.release_pools, it["ipam_state"])
        if it["driver"] == "overlay" and ctrl.cluster is not None:
            ctrl.cluster.release_vnis_of(net_id)
