"""The networks the engine makes by itself: docker's built-in ones, and one per CNI list.

Every docker host has ``bridge`` (the default), ``host`` and ``none``. What a
CNI-only runtime configured on this host (a configuration list in the CNI config
directory) shows up as a ``cni`` network named like the list, labelled
``kanal.cni=auto`` so that it goes when its list goes (and no endpoint uses it).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from kanal.engine.model import IPAMConfig, NetworkSpec
from kanal.errors import KanalError
from kanal.runtime.config import list_networks

if TYPE_CHECKING:
    from kanal.engine.controller import Controller

__all__ = ["ensure_builtin", "sync_cni_networks"]

log = logging.getLogger("kanal.engine")


def ensure_builtin(ctrl: Controller) -> None:
    """Create whichever of ``bridge``, ``host`` and ``none`` is missing."""
    with ctrl.lock:
        names = {n.name for n in ctrl.networks()}
        if "bridge" not in names:
            ipam = [IPAMConfig(ctrl.default_subnet)] if ctrl.default_subnet else []
            options = {
                "com.docker.network.bridge.name": ctrl.default_bridge,
                "com.docker.network.bridge.default_bridge": "true",
            }
            ctrl.create_network(
                NetworkSpec("bridge", "bridge", ipam=ipam, options=options), builtin=True
            )
        for name, driver in (("host", "host"), ("none", "null")):
            if name not in names:
                ctrl.create_network(NetworkSpec(name, driver), builtin=True)


def sync_cni_networks(ctrl: Controller) -> list[str]:
    """New lists get a network named like the list (unless that name is taken by
    another network); networks of lists that disappeared are removed when no
    endpoint uses them. Returns the names created. A broken file is skipped."""
    errors: list[KanalError] = []
    try:
        lists = list_networks(ctrl.ctx.cni_conf_dir, errors)
    except KanalError as e:
        log.warning("cannot read CNI configs: %s", e)
        return []
    for err in errors:
        log.warning("skipping a CNI config: %s", err)
    made = []
    with ctrl.lock:
        nets = ctrl.networks()
        have = {n.driver_state.get("network") for n in nets if n.driver == "cni"}
        names = {n.name for n in nets}
        for cl in lists:
            if cl.name in have or cl.name in names:
                continue
            try:
                ctrl.create_network(NetworkSpec(cl.name, "cni", labels={"kanal.cni": "auto"}))
                made.append(cl.name)
            except KanalError as e:
                log.warning("CNI network %s: %s", cl.name, e)
        present = {cl.name for cl in lists}
        for n in nets:
            if (
                n.driver == "cni"
                and n.labels.get("kanal.cni") == "auto"
                and n.driver_state.get("network") not in present
                and not ctrl.endpoints(n.id)
            ):
                ctrl.remove_network(n)
    return made
