"""The ``cni`` network driver: any CNI configuration list becomes a network.

The seeds' question "can Docker-style networks use CNI plugins?": a network
with driver ``cni`` and option ``cni.network=NAME`` runs the configuration list
``NAME`` of the engine's CNI config directory (``--cni-conf-dir``) for each
endpoint, through the libcni runtime — kanal's own plugins in this process,
any other plugin (the reference plugins, a vendor's) executed from
``--cni-path``. Addresses come from the list's own IPAM; published ports reach
it as the ``portMappings`` capability. ``Controller.sync_cni_networks`` makes
one such network per list found in the directory.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from kanal.errors import InvalidConfig, KanalError
from kanal.runtime.config import load_network_conf
from kanal.runtime.libcni import RuntimeConf
from kanal.spec.netconf import parse_conflist

if TYPE_CHECKING:
    from kanal.engine.context import EngineContext
    from kanal.engine.model import Endpoint, Network
    from kanal.spec.netconf import ConfList

__all__ = ["CniDriver"]

OPTION = "cni.network"


class CniDriver:
    name = "cni"
    needs_ipam = False
    has_interface = True

    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx

    def conflist(self, net: Network) -> ConfList:
        return load_network_conf(self.ctx.cni_conf_dir, net.driver_state["network"])

    def prepare(self, net: Network) -> None:
        unknown = set(net.options) - {OPTION}
        if unknown:
            raise InvalidConfig(f"unknown cni driver option(s): {', '.join(sorted(unknown))}")
        name = net.options.get(OPTION) or net.name
        net.driver_state = {"network": name}
        if net.internal:
            raise InvalidConfig("--internal is not supported by the cni driver")
        self.conflist(net)  # it must exist and parse now, not at the first connect

    def reserve(self, net: Network) -> None:
        pass

    def idle(self, net: Network) -> None:
        pass

    def create_network(self, net: Network) -> None:
        pass  # the plugins make what they need at the first ADD

    def delete_network(self, net: Network) -> None:
        pass

    def _runtime(self, ep: Endpoint) -> RuntimeConf:
        caps: dict[str, Any] = {}
        if ep.ports:
            caps["portMappings"] = [
                {
                    "hostPort": p.host_port,
                    "containerPort": p.container_port,
                    "protocol": p.protocol,
                    **({"hostIP": p.host_ip} if p.host_ip else {}),
                }
                for p in ep.ports
            ]
        if ep.mac:
            caps["mac"] = ep.mac
        args = [("IgnoreUnknown", "1"), ("K8S_POD_NAME", ep.name)]
        return RuntimeConf(
            container_id=ep.id, netns=ep.netns, ifname=ep.ifname, args=args, capability_args=caps
        )

    def join(self, net: Network, ep: Endpoint) -> None:
        cni = self.ctx.cni
        conflist = self.conflist(net)
        rt = self._runtime(ep)
        try:
            result = cni.add_network_list(conflist, rt)
        except KanalError:
            try:
                cni.del_network_list(conflist, rt)
            except KanalError:
                pass
            raise
        for ipc in result.ips:
            cidr = str(ipc.address)
            if ipaddress.ip_interface(cidr).version == 4 and not ep.ipv4:
                ep.ipv4 = cidr
            elif ipaddress.ip_interface(cidr).version == 6 and not ep.ipv6:
                ep.ipv6 = cidr
        for iface in result.interfaces:
            if iface.sandbox and iface.name == ep.ifname:
                ep.mac = iface.mac

    def leave(self, net: Network, ep: Endpoint) -> None:
        rt = self._runtime(ep)
        try:
            conflist = self.conflist(net)
        except KanalError:
            # The file is gone: DEL with the list libcni cached at ADD.
            cached = self.ctx.cni.cache.read(f"{net.driver_state['network']}", ep.id, ep.ifname)
            if cached is None or not cached.config:
                return
            conflist = parse_conflist(cached.config)
        self.ctx.cni.del_network_list(conflist, rt)

    def endpoint_ok(self, net: Network, ep: Endpoint) -> bool:
        try:
            conflist = self.conflist(net)
        except KanalError:
            return True  # nothing to re-create it from; leave() still can remove it
        try:
            return self.ctx.cni.get_cached_result(conflist, self._runtime(ep)) is not None
        except KanalError:
            return False
