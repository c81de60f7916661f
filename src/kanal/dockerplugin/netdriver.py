"""kanal's engine served as a libnetwork remote NetworkDriver (``docker network create -d kanal``).

dockerd owns the sandbox side: it picks addresses (its IPAM, or kanal's served
one), moves the interface the driver names into the container and addresses it.
kanal owns the host side: each docker network is a kanal network (same id, name
``docker-<id12>``, kanal's ``bridge`` driver and its ``-o`` options — or, with
``-o kanal.driver=macvlan``, its ``macvlan`` driver with ``parent`` and
``macvlan_mode`` — visible in ``kanal network ls``), each docker endpoint an
*external* kanal endpoint (its addresses reserved in kanal's IPAM) with a veth
pair on the bridge (or a macvlan on the parent), masquerade,
and published ports — dockerd publishes none for remote drivers, so
``ProgramExternalConnectivity`` maps ``com.docker.network.portmap`` through the
firewall layer's nftables backend (docs/firewall.md), which also owns the
``route_localnet`` switch that localhost mappings need. Everything is in the
engine's store: a restarted plugin still knows every network and endpoint. Every
call is idempotent (dockerd retries on connection errors).
"""

from __future__ import annotations

import ipaddress
import threading
from typing import TYPE_CHECKING, Any, Protocol

from kanal.dockerplugin import messages as m
from kanal.engine.controller import NetworkSpec
from kanal.engine.model import Endpoint, IPAMConfig, Network, PortBinding
from kanal.errors import Conflict, InvalidConfig, KanalError, NotFound
from kanal.firewall import Owner, PortMapping, PortMaps, allow_localhost_dnat, get_backend

if TYPE_CHECKING:
    from kanal.engine.controller import Controller


class Detachable(Protocol):
    """What an engine driver needs to serve dockerd: interfaces left for it to move."""

    def attach_detached(self, net: Network, ep: Endpoint) -> str: ...
    def detach(self, net: Network, ep: Endpoint) -> None: ...


__all__ = ["ServedNetworkDriver"]

Reply = dict[str, Any]
P = "com.docker.network."
# -o options that choose kanal's driver for the docker network.
DRIVER_OPTION = "kanal.driver"
MACVLAN_OPTIONS = {"parent", "macvlan_mode"}


class ServedNetworkDriver:
    """The NetworkHandlers of :mod:`kanal.dockerplugin.protocol`, on a Controller."""

    def __init__(self, controller: Controller) -> None:
        self.ctrl = controller
        # One call at a time: dockerd serialises per container anyway, and this
        # keeps a retried call from racing its first attempt.
        self._lock = threading.RLock()

    def _kernel(self, net: Network) -> Detachable:
        """The engine driver doing the host side of ``net`` (bridge or macvlan)."""
        d: Any = self.ctrl.driver(net.driver)
        return d  # type: ignore[no-any-return]

    def _net(self, net_id: str) -> Network:
        e = self.ctrl.store.get(f"networks/{net_id}")
        if e is None:
            raise NotFound(f"network {net_id} not found")
        return Network.from_json(e.value)

    def _endpoint(self, req: m.EndpointRef) -> tuple[Network, Endpoint] | None:
        """The endpoint a request names; None if it (or its network) is gone: a
        retried teardown call is a success."""
        try:
            net = self._net(req.network_id)
            return net, self.ctrl.get_endpoint(net.id, req.endpoint_id)
        except NotFound:
            return None

    # --- networks ----------------------------------------------------------------

    def get_capabilities(self) -> Reply:
        return {"Scope": "local", "ConnectivityScope": "local"}

    def create_network(self, req: m.CreateNetwork) -> Reply:
        with self._lock:
            if self.ctrl.store.get(f"networks/{req.network_id}") is not None:
                return {}  # a retry of a call that already made it
            opts = req.generic
            kind = opts.pop(DRIVER_OPTION, "bridge")
            if kind not in ("bridge", "macvlan"):
                raise InvalidConfig(
                    f"unsupported {DRIVER_OPTION} {kind!r}: the plugin serves bridge and "
                    "macvlan networks"
                )
            for key in opts:
                if kind == "macvlan" and key in MACVLAN_OPTIONS:
                    continue
                if not key.startswith(P) or kind == "macvlan":
                    raise InvalidConfig(
                        f"unknown option {key!r}: kanal takes docker's bridge options "
                        "(com.docker.network.bridge.*, com.docker.network.driver.mtu, ...)"
                    )
            mtu = req.options.get(P + "driver.mtu")
            if mtu and kind == "bridge" and P + "driver.mtu" not in opts:
                opts[P + "driver.mtu"] = str(mtu)
            ipam = [
                IPAMConfig(subnet=d.pool, gateway=d.gateway, aux_addresses=dict(d.aux_addresses))
                for d in req.ipv4 + req.ipv6
            ]
            spec = NetworkSpec(
                name=f"docker-{req.network_id[:12]}",
                driver=kind,
                ipam=ipam,
                enable_ipv4=bool(req.ipv4),
                enable_ipv6=bool(req.ipv6) or req.flag(P + "enable_ipv6"),
                internal=req.flag(P + "internal"),
                options=opts,
                labels={"kanal.docker.network": req.network_id},
            )
            if not spec.enable_ipv4 and not spec.enable_ipv6:
                raise InvalidConfig("the network has no IPv4 or IPv6 pool")
            self.ctrl.create_network(spec, net_id=req.network_id)
            return {}

    def delete_network(self, req: m.NetworkRef) -> Reply:
        with self._lock:
            try:
                net = self._net(req.network_id)
            except NotFound:
                return {}  # already gone: a retry
            for ep in self.ctrl.endpoints(net.id):
                if ep.driver_state.get("external"):
                    self._teardown(net, ep)
            self.ctrl.delete_network(net.id)
            return {}

    # --- endpoints ---------------------------------------------------------------

    def create_endpoint(self, req: m.CreateEndpoint) -> Reply:
        with self._lock:
            net = self._net(req.network_id)
            if not req.address and not req.address_ipv6:
                raise InvalidConfig("the endpoint has no address: dockerd's IPAM gives one")
            ep = self.ctrl.add_external_endpoint(
                net.id,
                req.endpoint_id,
                ipv4=req.address,
                ipv6=req.address_ipv6,
                mac=req.mac,
                name=str(req.options.get(P + "endpoint.name") or ""),
            )
            if (req.address and ep.ipv4 != req.address) or (
                req.address_ipv6 and ep.ipv6 != req.address_ipv6
            ):
                raise Conflict(f"endpoint {req.endpoint_id} exists with other addresses")
            # dockerd gave the addresses: a reply without "Interface" tells it to keep them.
            return {}

    def endpoint_oper_info(self, req: m.EndpointRef) -> Reply:
        ep = self.ctrl.get_endpoint(req.network_id, req.endpoint_id)
        value: dict[str, Any] = {}
        if ep.mac:
            value[P + "endpoint.macaddress"] = ep.mac
        if ep.ports:
            value[P + "portmap"] = m.portmap_wire(ep.ports, ep.ipv4.split("/")[0])
        return {"Value": value}

    def delete_endpoint(self, req: m.EndpointRef) -> Reply:
        with self._lock:
            found = self._endpoint(req)
            if found is None:
                return {}
            net, ep = found
            self._teardown(net, ep)
            return {}

    def _teardown(self, net: Network, ep: Endpoint) -> None:
        errors: list[Exception] = []
        # After a Leave (dockerd's order) the host side is gone already.
        steps = (
            [self._unpublish]
            if ep.driver_state.get("left")
            else [
                self._unpublish,
                self._kernel(net).detach,
            ]
        )
        for step in steps:
            try:
                step(net, ep)
            except KanalError as e:
                errors.append(e)
        self.ctrl.remove_external_endpoint(net.id, ep.id)
        if errors:
            raise errors[0]

    def join(self, req: m.Join) -> Reply:
        with self._lock:
            net = self._net(req.network_id)
            ep = self.ctrl.get_endpoint(net.id, req.endpoint_id)
            ep.driver_state.pop("left", None)
            peer = self._kernel(net).attach_detached(net, ep)
            ep.netns = req.sandbox_key
            self.ctrl.save_endpoint(ep, event="connect")
            reply: Reply = {
                "InterfaceName": {
                    "SrcName": peer,
                    "DstPrefix": net.driver_state.get("iface_prefix", "eth"),
                }
            }
            if not net.internal:
                for cidr, key in ((ep.ipv4, "Gateway"), (ep.ipv6, "GatewayIPv6")):
                    if not cidr:
                        continue
                    gw = _gateway(net, cidr)
                    if gw:
                        reply[key] = gw
            return reply

    def leave(self, req: m.EndpointRef) -> Reply:
        with self._lock:
            found = self._endpoint(req)
            if found is None:
                return {}  # dockerd's Leave after a DeleteEndpoint retry
            net, ep = found
            self._unpublish(net, ep)
            self._kernel(net).detach(net, ep)
            ep.netns = ""
            ep.driver_state["left"] = True  # only once it all went: DeleteEndpoint skips it
            self.ctrl.save_endpoint(ep, event="disconnect")
            return {}

    # --- ports -------------------------------------------------------------------

    def program_external_connectivity(self, req: m.ProgramExternalConnectivity) -> Reply:
        with self._lock:
            net = self._net(req.network_id)
            ep = self.ctrl.get_endpoint(net.id, req.endpoint_id)
            self._unpublish(net, ep)  # a retry replaces what the first call did
            if not req.ports or net.internal or net.driver != "bridge":
                return {}  # as dockerd: no published ports on internal or macvlan networks
            if not ep.ipv4 and not ep.ipv6:
                raise InvalidConfig("cannot publish ports of an endpoint without addresses")
            host_ip = net.driver_state.get("host_ip", "")
            ep.ports = self._reserve(ep.id, req.ports, host_ip)
            # Recorded before the firewall is touched: an endpoint with no ports in
            # the store has no entries in nftables, so teardown can skip it.
            self.ctrl.save_endpoint(ep)
            try:
                self._publish(net, ep)
            except BaseException:
                self._unpublish(net, ep)
                raise
            return {}

    def revoke_external_connectivity(self, req: m.EndpointRef) -> Reply:
        with self._lock:
            found = self._endpoint(req)
            if found is None:
                return {}
            net, ep = found
            self._unpublish(net, ep)
            return {}

    def _reserve(self, ep_id: str, ports: list[m.PortBinding], host_ip: str) -> list[PortBinding]:
        out: list[PortBinding] = []
        try:
            for p in ports:
                want = PortBinding(p.port, p.proto, p.host_ip or host_ip, p.host_port)
                if p.host_port and p.host_port_end > p.host_port:
                    # A host range: the first free port in it (docker's -p 8000-8010:80).
                    for port in range(p.host_port, p.host_port_end + 1):
                        try:
                            out += self.ctrl.ports.reserve(
                                ep_id, [PortBinding(p.port, p.proto, want.host_ip, port)]
                            )
                            break
                        except Conflict:
                            continue
                    else:
                        raise Conflict(
                            f"no free host port in {p.host_port}-{p.host_port_end}/{p.proto}"
                        )
                else:
                    out += self.ctrl.ports.reserve(ep_id, [want])
        except BaseException:
            self.ctrl.ports.release(ep_id, out)
            raise
        return out

    def _publish(self, net: Network, ep: Endpoint) -> None:
        ips = [ipaddress.ip_interface(c).ip for c in (ep.ipv4, ep.ipv6) if c]
        subnets = [ipaddress.ip_network(c.subnet) for c in net.ipam]
        mappings = [
            PortMapping(
                p.host_port,
                p.container_port,
                p.protocol,
                ipaddress.ip_address(p.host_ip) if p.host_ip else None,
            )
            for p in ep.ports
        ]
        intent = PortMaps(self._owner(net, ep), mappings, ips, subnets, snat=True, masq_all=False)
        get_backend("nftables").add_portmaps(intent)
        if any(p.host_ip in ("", "127.0.0.1") for p in ep.ports):
            # 127.0.0.1:PORT reaches the container only with route_localnet on the
            # bridge (then SNAT makes the reply come back), as the portmap plugin does.
            allow_localhost_dnat(net.driver_state["bridge"])

    def _unpublish(self, net: Network, ep: Endpoint) -> None:
        """Remove the endpoint's published ports; nothing to do (no nft call) without."""
        if not ep.ports:
            return
        get_backend("nftables").del_portmaps(self._owner(net, ep))
        self.ctrl.ports.release(ep.id, ep.ports)
        ep.ports = []
        self.ctrl.save_endpoint(ep)

    def _owner(self, net: Network, ep: Endpoint) -> Owner:
        return Owner(f"kanal-{net.id[:12]}", ep.id, "dockerpm")


def _gateway(net: Network, cidr: str) -> str:
    ip = ipaddress.ip_interface(cidr).ip
    for c in net.ipam:
        if c.gateway and ip in ipaddress.ip_network(c.subnet):
            return c.gateway
    return ""
