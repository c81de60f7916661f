"""The ``macvlan`` network driver: docker's macvlan networks, via kanal's CNI macvlan plugin.

Options as docker's: ``parent`` (the host link; required: a network without one is
refused, never put on the host's uplink — docker makes it internal on a dummy
link, which this kernel may not even have),
``macvlan_mode`` bridge|private|vepa|passthru (default bridge). The engine's IPAM
gives the address (``--subnet`` usually matches the parent's LAN; ``--gateway``
is the LAN's router and becomes the default route unless ``--internal``). The
host gets no address on the network and, as with docker, cannot reach its own
macvlan endpoints through the parent.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
from typing import TYPE_CHECKING, Any

from kanal.engine.drivers._cni import add, default_routes, static_runtime
from kanal.errors import InvalidConfig, KanalError
from kanal.netlink.batch import Batch, free_index, raw_socket
from kanal.netlink.handle import Netlink
from kanal.netlink.reaper import delete_host_link
from kanal.netlink.steps import random_mac
from kanal.plugins.macvlan import default_route_link
from kanal.spec.netconf import parse_conflist

if TYPE_CHECKING:
    from kanal.engine.context import EngineContext
    from kanal.engine.model import Endpoint, Network
    from kanal.spec.netconf import ConfList

__all__ = ["MacvlanDriver"]

MODES = ("bridge", "private", "vepa", "passthru")
_IFNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,15}\Z")


_NO_PARENT = (
    "a macvlan network needs -o parent=IFACE (the host link its containers join): "
    "kanal never picks the host's uplink by itself; docker without a parent makes an "
    "internal network on a dummy link, "
)


def _no_dummy() -> str:
    """The end of the no-parent error: why kanal does not do what docker does."""
    if os.path.exists("/sys/module/dummy"):
        return "which kanal does not (give a dummy link you made as the parent)"
    return "and this kernel has no dummy driver (give an existing link as the parent)"


class MacvlanDriver:
    name = "macvlan"
    needs_ipam = True
    has_interface = True

    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx

    def prepare(self, net: Network) -> None:
        unknown = set(net.options) - {"parent", "macvlan_mode"}
        if unknown:
            raise InvalidConfig(f"unknown macvlan option(s): {', '.join(sorted(unknown))}")
        mode = net.options.get("macvlan_mode") or "bridge"
        if mode not in MODES:
            raise InvalidConfig(f"unknown macvlan mode {mode!r}: want one of {', '.join(MODES)}")
        parent = net.options.get("parent", "")
        if not parent:
            raise InvalidConfig(_NO_PARENT + _no_dummy())
        if parent:
            if not _IFNAME.match(parent):
                raise InvalidConfig(f"invalid parent interface {parent!r}")
            try:
                socket.if_nametoindex(parent)
            except OSError:
                raise InvalidConfig(
                    f"-o parent interface was not found on the host: {parent}"
                ) from None
        net.driver_state = {"parent": parent, "mode": mode}

    def conflist(self, net: Network, ep: Endpoint | None = None) -> ConfList:
        plugin: dict[str, Any] = {
            "type": "macvlan",
            "mode": net.driver_state["mode"],
            "ipam": {"type": "static", "routes": default_routes(net, ep)},
        }
        if net.driver_state["parent"]:
            plugin["master"] = net.driver_state["parent"]
        doc = {"cniVersion": "1.0.0", "name": f"kanal-{net.id[:12]}", "plugins": [plugin]}
        return parse_conflist(json.dumps(doc))

    def reserve(self, net: Network) -> None:
        pass

    def idle(self, net: Network) -> None:
        pass

    def create_network(self, net: Network) -> None:
        pass  # the macvlans are made per endpoint; the parent is the host's

    def delete_network(self, net: Network) -> None:
        pass

    def join(self, net: Network, ep: Endpoint) -> None:
        result = add(self.ctx, self.conflist(net, ep), static_runtime(net, ep))
        for iface in result.interfaces:
            if iface.sandbox:
                ep.mac = iface.mac

    def leave(self, net: Network, ep: Endpoint) -> None:
        self.ctx.cni.del_network_list(self.conflist(net, ep), static_runtime(net, ep))

    def endpoint_ok(self, net: Network, ep: Endpoint) -> bool:
        try:
            conflist = self.conflist(net, ep)
            return self.ctx.cni.get_cached_result(conflist, static_runtime(net, ep)) is not None
        except KanalError:
            return False

    # --- endpoints whose interface another runtime places (Docker's remote driver) ---

    def attach_detached(self, net: Network, ep: Endpoint) -> str:
        """A macvlan on the parent, left in this namespace for dockerd to move in.

        Idempotent (a retried Join replaces it). Returns its name.
        """
        name = "kvm" + hashlib.sha256(ep.id.encode()).hexdigest()[:11]
        ep.driver_state.update({"peer": name, "external": True})
        self.detach(net, ep)
        parent = net.driver_state["parent"] or default_route_link()
        try:
            index = socket.if_nametoindex(parent)
        except OSError:
            raise InvalidConfig(f"parent interface {parent} was not found") from None
        new = free_index()
        with raw_socket() as s:
            b = Batch(s)
            b.add_macvlan(
                name, index, net.driver_state["mode"], mac=ep.mac or random_mac(), index=new
            )
            b.set_link(index=new, alias=ep.mark)  # in the same batch: never unmarked
            b.commit()
        return name

    def detach(self, net: Network, ep: Endpoint) -> None:
        """Undo :meth:`attach_detached` (only a link carrying the endpoint's mark);
        idempotent."""
        name = ep.driver_state.get("peer")
        if not name:
            return
        with Netlink() as nl:
            link = nl.find_link(name)
        if link is not None and link.alias == ep.mark:
            delete_host_link(name)
