"""docker's configuration-only networks and ``--scope``.

``network create --config-only`` stores a configuration (subnets, IPAM and driver
options) and nothing else: no driver runs, no kernel object is made, its subnets
are taken by no one and nothing connects to it. ``--config-from NAME`` creates a
real network with that configuration (docker's way to give each host of a macvlan
network its own parent and range); while one exists, the configuration network
stays (rm refuses, prune skips it).

``--scope`` is the driver's scope said aloud: ``local`` or ``global`` (overlay);
``swarm`` needs docker's swarm mode, which kanal does not have.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from kanal.engine.ipam import validate_ipam_config
from kanal.engine.model import IPAMConfig, Network, NetworkSpec, new_id, now
from kanal.errors import Conflict, Forbidden, InvalidConfig, NotFound

if TYPE_CHECKING:
    from kanal.engine.controller import Controller

__all__ = [
    "after_prepare",
    "before_create",
    "check_connectable",
    "check_scope",
    "check_unused",
    "configured_from",
    "create",
]

log = logging.getLogger("kanal.engine")


def check_scope(spec: NetworkSpec) -> None:
    """Raises InvalidConfig for a ``--scope`` kanal cannot give."""
    if spec.scope == "swarm":
        raise InvalidConfig(
            "--scope swarm needs docker's swarm mode, which kanal does not have "
            "(kanal's global networks are overlay networks of kanald --cluster-store)"
        )
    if spec.scope not in ("", "local", "global"):
        raise InvalidConfig(f"invalid scope {spec.scope!r}: want local or global")


def before_create(
    ctrl: Controller, spec: NetworkSpec, others: Sequence[Network], net_id: str
) -> tuple[NetworkSpec, Network | None]:
    """The spec to create (with ``--config-from``'s configuration), or the
    configuration-only network ``spec`` asks for, made. Raises InvalidConfig,
    NotFound, Conflict."""
    check_scope(spec)
    if spec.config_from:
        spec = configured_from(spec, others)
    if not spec.config_only:
        return spec, None
    if any(n.name == spec.name for n in others):
        raise Conflict(f"network with name {spec.name} already exists")
    return spec, create(ctrl, spec, net_id)


def after_prepare(spec: NetworkSpec, net: Network) -> None:
    """After the driver's prepare: ``--scope`` must be the scope it gives; the
    network remembers where its configuration came from."""
    net.config_from = spec.config_from
    if spec.scope and spec.scope != net.scope:
        raise InvalidConfig(
            f"the {spec.driver} driver makes {net.scope} networks, not --scope {spec.scope}"
        )


def configured_from(spec: NetworkSpec, others: Sequence[Network]) -> NetworkSpec:
    """``--config-from NET``: ``spec`` with the subnets, IPAM and driver options of the
    configuration-only network NET. Raises NotFound, InvalidConfig."""
    if spec.config_only:
        raise InvalidConfig("a configuration-only network cannot have --config-from")
    if spec.ipam or spec.options or spec.ipam_options or spec.ipam_driver not in ("", "default"):
        raise InvalidConfig(
            f"the configuration comes from --config-from {spec.config_from}: no --subnet, "
            "--gateway, --ip-range, --aux-address, --ipam-driver, --ipam-opt or -o with it"
        )
    src = next((n for n in others if spec.config_from in (n.name, n.id)), None)
    if src is None:
        raise NotFound(f"network {spec.config_from} not found")
    if not src.config_only:
        raise InvalidConfig(
            f"network {src.name} is not a configuration-only network "
            "(--config-from takes one made with --config-only)"
        )
    return dataclasses.replace(
        spec,
        ipam=[IPAMConfig(c.subnet, c.gateway, c.ip_range, dict(c.aux_addresses)) for c in src.ipam],
        ipam_driver=src.ipam_driver,
        ipam_options=dict(src.ipam_options),
        options=dict(src.options),
        enable_ipv4=src.enable_ipv4,
        enable_ipv6=src.enable_ipv6 or spec.enable_ipv6,
        config_from=src.name,
    )


def create(ctrl: Controller, spec: NetworkSpec, net_id: str) -> Network:
    """Store a configuration-only network (its subnets checked, none allocated)."""
    if spec.scope == "global":
        raise InvalidConfig("a configuration-only network is local (no --scope global)")
    if spec.internal or spec.attachable:
        raise InvalidConfig("a configuration-only network takes no --internal or --attachable")
    net = Network(
        id=net_id or new_id(),
        name=spec.name,
        driver="null",
        created=now(),
        enable_ipv4=spec.enable_ipv4,
        enable_ipv6=spec.enable_ipv6,
        ipam_driver=spec.ipam_driver or "default",
        ipam=[validate_ipam_config(c) for c in spec.ipam],
        ipam_options=dict(spec.ipam_options),
        options=dict(spec.options),
        labels=dict(spec.labels),
        config_only=True,
    )
    ctrl.records.save(net, new=True)
    log.info("created configuration-only network %s (%s)", net.name, net.id[:12])
    return net


def check_connectable(net: Network) -> None:
    """Raises Forbidden for a configuration-only network."""
    if net.config_only:
        raise Forbidden(
            f"network {net.name} is a configuration-only network: it cannot be "
            "connected to (create one --config-from it)"
        )


def check_unused(net: Network, nets: Sequence[Network]) -> None:
    """Raises Conflict while networks made ``--config-from`` ``net`` exist."""
    users = sorted(n.name for n in nets if n.config_from == net.name)
    if users:
        raise Conflict(
            f"configuration network {net.name} is in use by {', '.join(users)}: "
            "remove those first"
        )
