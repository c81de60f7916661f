"""The engine's driver for networks of a remote Docker plugin (libnetwork's ``remote``).

:class:`RemoteNetworkDriver` is an engine NetworkDriver that does what dockerd
does around a remote driver (docs/cnm.md): CreateNetwork with the pools,
CreateEndpoint then Join, then it moves the interface the plugin names
(``SrcName``) into the sandbox as ``ep.ifname`` with the endpoint's addresses,
gateway and static routes, and hands published ports over in
ProgramExternalConnectivity (the plugin publishes them). Plugins are found
through the
:class:`~kanal.engine.remoteplugins.PluginRegistry` the engine context carries.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import TYPE_CHECKING, Any

from kanal.engine.portwire import PROTOCOL_NUMBERS, portmap_wire
from kanal.engine.remoteplugins import NotImplementedByPlugin, Plugin
from kanal.errors import InvalidConfig, KanalError, TeardownError, best_effort
from kanal.netlink.batch import Batch, raw_socket
from kanal.netlink.ns import open_netns
from kanal.netlink.steps import in_container, in_container_fd

if TYPE_CHECKING:
    from kanal.engine.context import EngineContext
    from kanal.engine.model import Endpoint, IPAMConfig, Network

__all__ = ["RemoteNetworkDriver"]

P = "com.docker.network."


def _ipam_data(net: Network, cfg: IPAMConfig) -> dict[str, Any]:
    sub = ipaddress.ip_network(cfg.subnet)
    d: dict[str, Any] = {"AddressSpace": net.ipam_state.get("space", ""), "Pool": str(sub)}
    if cfg.gateway:
        d["Gateway"] = f"{cfg.gateway}/{sub.prefixlen}"
    if cfg.aux_addresses:
        d["AuxAddresses"] = {k: f"{v}/{sub.prefixlen}" for k, v in cfg.aux_addresses.items()}
    return d


class RemoteNetworkDriver:
    """The engine's NetworkDriver for a network whose driver is a remote plugin."""

    needs_ipam = True
    has_interface = True

    def __init__(self, name: str, ctx: EngineContext) -> None:
        self.name = name
        self.ctx = ctx

    @property
    def plugin(self) -> Plugin:
        return self.ctx.plugins.get(self.name, "NetworkDriver")

    def prepare(self, net: Network) -> None:
        caps = self.plugin.call("NetworkDriver.GetCapabilities")
        scope = caps.get("Scope", "local")
        if scope not in ("local", "global"):
            raise InvalidConfig(f"plugin {self.name}: invalid scope {scope!r}")
        net.scope = scope
        net.driver_state = {"plugin": self.name, "scope": scope}

    def reserve(self, net: Network) -> None:
        pass

    def idle(self, net: Network) -> None:
        pass

    def create_network(self, net: Network) -> None:
        if net.driver_state.get("created"):
            return  # the plugin keeps its own networks across our restarts
        v4 = [c for c in net.ipam if ipaddress.ip_network(c.subnet).version == 4]
        v6 = [c for c in net.ipam if ipaddress.ip_network(c.subnet).version == 6]
        opts: dict[str, Any] = {
            P + "generic": dict(net.options),
            P + "enable_ipv6": net.enable_ipv6,
        }
        if net.internal:
            opts[P + "internal"] = True
        self.plugin.call(
            "NetworkDriver.CreateNetwork",
            {
                "NetworkID": net.id,
                "Options": opts,
                "IPv4Data": [_ipam_data(net, c) for c in v4],
                "IPv6Data": [_ipam_data(net, c) for c in v6],
            },
        )
        net.driver_state["created"] = True

    def delete_network(self, net: Network) -> None:
        try:
            self.plugin.call("NetworkDriver.DeleteNetwork", {"NetworkID": net.id})
        except KanalError as e:
            raise TeardownError(f"removing network {net.name}", [e]) from None

    def join(self, net: Network, ep: Endpoint) -> None:
        plugin = self.plugin
        ref = {"NetworkID": net.id, "EndpointID": ep.id}
        reply = plugin.call(
            "NetworkDriver.CreateEndpoint",
            {
                **ref,
                "Options": {},
                "Interface": {"Address": ep.ipv4, "AddressIPv6": ep.ipv6, "MacAddress": ep.mac},
            },
        )
        iface = reply.get("Interface") or {}
        try:
            if isinstance(iface, dict):
                # Only what we left empty may be filled by the plugin.
                ep.mac = ep.mac or str(iface.get("MacAddress") or "")
                ep.ipv4 = ep.ipv4 or str(iface.get("Address") or "")
                ep.ipv6 = ep.ipv6 or str(iface.get("AddressIPv6") or "")
            join = {**ref, "SandboxKey": ep.netns, "Options": {}}
            joined = plugin.call("NetworkDriver.Join", join)
            names = joined.get("InterfaceName") or {}
            src = str(names.get("SrcName") or "") if isinstance(names, dict) else ""
            ep.driver_state = {"src": src}
            try:
                if src:
                    self._place(ep, src, joined)
                if ep.ports and not net.internal:
                    self._program(plugin, ref, ep)
            except BaseException:
                self._unplace(ep)
                best_effort(plugin.call, "NetworkDriver.Leave", ref)
                raise
        except BaseException:
            best_effort(plugin.call, "NetworkDriver.DeleteEndpoint", ref)
            raise

    def _program(self, plugin: Plugin, ref: dict[str, str], ep: Endpoint) -> None:
        portmap = portmap_wire(ep.ports, ep.ipv4.split("/")[0])
        exposed = [
            {"Proto": PROTOCOL_NUMBERS[p.protocol], "Port": p.container_port} for p in ep.ports
        ]
        try:
            plugin.call(
                "NetworkDriver.ProgramExternalConnectivity",
                {
                    **ref,
                    "Options": {P + "portmap": portmap, P + "endpoint.exposedports": exposed},
                },
            )
        except NotImplementedByPlugin:
            pass  # dockerd tolerates it too

    def _place(self, ep: Endpoint, src: str, joined: dict[str, Any]) -> None:
        """Move the plugin's interface into the sandbox and configure it as dockerd does."""
        try:
            index = socket.if_nametoindex(src)
        except OSError:
            raise KanalError(
                f"plugin {self.name} named interface {src!r}, which does not exist"
            ) from None
        fd = open_netns(ep.netns)
        try:
            with raw_socket() as s:
                b = Batch(s)
                b.set_link(index=index, up=False, mac=ep.mac)  # no mac: left as it is
                b.move_link(index, fd, ep.ifname)
                b.commit()

            def inside(batch: Batch) -> None:
                idx = socket.if_nametoindex(ep.ifname)
                for cidr in (ep.ipv4, ep.ipv6):
                    if cidr:
                        batch.add_addr(idx, ipaddress.ip_interface(cidr), nodad=True)
                batch.set_link(index=idx, up=True)
                batch.commit()
                for r in joined.get("StaticRoutes") or []:
                    dst = ipaddress.ip_network(r["Destination"], strict=False)
                    if r.get("RouteType") == 1:  # connected
                        batch.add_route(dst, oif=idx, scope=253, exist_ok=True)
                    else:
                        nh = ipaddress.ip_address(r["NextHop"])
                        batch.add_route(dst, gateway=nh, oif=idx, exist_ok=True)
                if ep.default_gateway:
                    for key, default in (("Gateway", "0.0.0.0/0"), ("GatewayIPv6", "::/0")):
                        if joined.get(key):
                            gw = ipaddress.ip_address(joined[key])
                            batch.add_route(
                                ipaddress.ip_network(default), gateway=gw, oif=idx, exist_ok=True
                            )
                batch.commit()

            in_container_fd(fd, inside)
        finally:
            os.close(fd)

    def _unplace(self, ep: Endpoint) -> None:
        """Give the interface back to the host under its plugin name (as dockerd does)."""
        src = ep.driver_state.get("src", "")
        if not src or not ep.netns or not os.path.exists(ep.netns):
            return
        try:
            fd = open_netns(ep.netns)
        except (OSError, KanalError):
            return
        try:
            with open("/proc/thread-self/ns/net", "rb") as host:

                def back(batch: Batch) -> None:
                    try:
                        idx = socket.if_nametoindex(ep.ifname)
                    except OSError:
                        return
                    batch.set_link(index=idx, up=False)
                    batch.move_link(idx, host.fileno(), src)
                    batch.commit()

                in_container_fd(fd, back)
        finally:
            os.close(fd)

    def leave(self, net: Network, ep: Endpoint) -> None:
        plugin = self.plugin
        ref = {"NetworkID": net.id, "EndpointID": ep.id}
        errors: list[Exception] = []
        try:
            plugin.call("NetworkDriver.RevokeExternalConnectivity", ref)
        except NotImplementedByPlugin:
            pass
        except KanalError as e:
            errors.append(e)
        try:
            self._unplace(ep)
        except KanalError as e:
            errors.append(e)
        for method in ("NetworkDriver.Leave", "NetworkDriver.DeleteEndpoint"):
            try:
                plugin.call(method, ref)
            except KanalError as e:
                errors.append(e)
        if errors:
            raise TeardownError(f"leaving network {net.name}", errors)

    def endpoint_ok(self, net: Network, ep: Endpoint) -> bool:
        # The plugin owns the host side; the sandbox side is ours to check.
        try:
            return in_container(ep.netns, lambda nl: nl.find_link(ep.ifname) is not None)
        except (KanalError, OSError):
            return False
