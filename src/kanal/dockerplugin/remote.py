"""kanal as a *consumer* of remote Docker plugins (libnetwork's ``remote`` driver and IPAM).

Discovery is dockerd's (cnm.md §1.1): for a plugin ``NAME``, in each plugin
directory in order, ``NAME.sock`` / ``NAME/NAME.sock`` (a unix socket), then
``NAME.spec`` (one URL line: ``unix:///path`` or ``tcp://host:port``) and
``NAME.json`` (``{"Name", "Addr"}``), also under ``NAME/``. Activation is lazy
(the first network that names the plugin) and remembered by the
:class:`PluginRegistry`, which the engine context owns — no module-level state.

:class:`RemoteNetworkDriver` is an engine NetworkDriver that does what dockerd
does around a remote driver: CreateNetwork with the pools, CreateEndpoint then
Join, then it moves the interface the plugin names (``SrcName``) into the
sandbox as ``ep.ifname`` with the endpoint's addresses, gateway and static
routes, and hands published ports over in ProgramExternalConnectivity (the
plugin publishes them). :class:`RemoteIpam` asks the plugin for pools and
addresses.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from kanal.errors import (
    InvalidConfig,
    KanalError,
    NotFound,
    TeardownError,
    Unavailable,
    best_effort,
)

if TYPE_CHECKING:
    from kanal.engine.context import EngineContext
    from kanal.engine.model import Endpoint, IPAMConfig, Network

__all__ = [
    "DEFAULT_PLUGIN_DIRS",
    "NotImplementedByPlugin",
    "Plugin",
    "PluginRegistry",
    "RemoteIpam",
    "RemoteNetworkDriver",
]

DEFAULT_PLUGIN_DIRS = ["/run/docker/plugins", "/etc/docker/plugins", "/usr/lib/docker/plugins"]
ACCEPT = "application/vnd.docker.plugins.v1.2+json"
P = "com.docker.network."


class NotImplementedByPlugin(NotFound):
    """The plugin answered 404: it does not implement the method."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("plugin.moby.localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self.unix_path)
        except OSError:
            s.close()
            raise
        self.sock = s


@dataclass
class Plugin:
    """One discovered plugin: its name and address; ``implements`` once activated."""

    name: str
    addr: str  # unix:///path or tcp://host:port
    implements: list[str] = field(default_factory=list)
    timeout: float = 30.0
    retry_for: float = 10.0  # dockerd retries connection failures for 30 s

    def _connection(self) -> http.client.HTTPConnection:
        u = urlsplit(self.addr)
        if u.scheme == "unix":
            return _UnixConnection(u.path, self.timeout)
        if u.scheme in ("tcp", "http"):
            return http.client.HTTPConnection(u.hostname or "", u.port or 80, timeout=self.timeout)
        raise InvalidConfig(f"plugin {self.name}: unsupported address {self.addr!r}")

    def call(self, method: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """``POST /method``; the reply object. Connection failures are retried.

        Raises:
            NotImplementedByPlugin: 404. KanalError: the plugin's ``Err``/``Error``
            (or status and body). Unavailable: the plugin does not answer.
        """
        data = b"" if body is None else json.dumps(body).encode()
        deadline = time.monotonic() + self.retry_for
        delay = 0.05
        while True:
            conn = self._connection()
            try:
                conn.request(
                    "POST",
                    f"/{method}",
                    body=data,
                    headers={"Accept": ACCEPT, "Content-Type": ACCEPT},
                )
                resp = conn.getresponse()
                status, raw = resp.status, resp.read()
                break
            except OSError as e:
                if time.monotonic() >= deadline:
                    raise Unavailable(f"plugin {self.name} does not answer {method}: {e}") from None
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
            finally:
                conn.close()
        try:
            reply = json.loads(raw) if raw.strip() else {}
        except ValueError:
            reply = None
        if status == 404:
            raise NotImplementedByPlugin(f"{method}: not implemented by plugin {self.name}")
        err = ""
        if isinstance(reply, dict):
            err = str(reply.get("Err") or reply.get("Error") or "")
        if status != 200:
            raise KanalError(f"{method}: {err or raw.decode(errors='replace').strip()}")
        if not isinstance(reply, dict):
            raise KanalError(f"{method}: plugin {self.name} sent no JSON object")
        if err:
            raise KanalError(f"plugin {self.name}: {err}")
        return reply


class PluginRegistry:
    """Finds and activates plugins by name, once each (thread-safe)."""

    def __init__(
        self, dirs: list[str] | None = None, *, retry_for: float = 10.0, exclude: str = ""
    ) -> None:
        self.dirs = list(dirs or DEFAULT_PLUGIN_DIRS)
        self.retry_for = retry_for
        self.exclude = os.path.abspath(exclude) if exclude else ""
        self._lock = threading.Lock()
        self._active: dict[str, Plugin] = {}

    def find(self, name: str) -> Plugin:
        """Discovery as dockerd does it. Raises NotFound."""
        from kanal.engine.model import validate_name

        validate_name(name, "plugin")
        for d in self.dirs:
            for base in (os.path.join(d, name), os.path.join(d, name, name)):
                sock = base + ".sock"
                if os.path.exists(sock) and os.path.abspath(sock) != self.exclude:
                    return Plugin(name, f"unix://{sock}", retry_for=self.retry_for)
        for d in self.dirs:
            for base in (os.path.join(d, name), os.path.join(d, name, name)):
                if os.path.isfile(base + ".spec"):
                    with open(base + ".spec") as f:
                        addr = f.read().strip()
                    if self.exclude and addr == f"unix://{self.exclude}":
                        continue
                    return Plugin(name, _checked_addr(name, addr), retry_for=self.retry_for)
                if os.path.isfile(base + ".json"):
                    with open(base + ".json") as f:
                        try:
                            spec = json.load(f)
                        except ValueError:
                            raise InvalidConfig(f"plugin {name}: bad JSON in {f.name}") from None
                    addr = spec.get("Addr", "") if isinstance(spec, dict) else ""
                    return Plugin(name, _checked_addr(name, addr), retry_for=self.retry_for)
        raise NotFound(f"plugin {name!r} not found")

    def get(self, name: str, interface: str) -> Plugin:
        """The activated plugin implementing ``interface`` (``NetworkDriver``/``IpamDriver``).

        Raises NotFound (no such plugin, or it does not implement ``interface``).
        """
        with self._lock:
            plugin = self._active.get(name)
        if plugin is None:
            plugin = self.find(name)
            reply = plugin.call("Plugin.Activate")
            impl = reply.get("Implements")
            if not isinstance(impl, list):
                raise KanalError(f"plugin {name}: Activate gave no Implements list")
            plugin.implements = [str(x) for x in impl]
            with self._lock:
                self._active[name] = plugin
        if interface not in plugin.implements:
            raise NotFound(f"plugin {name!r} does not implement {interface}")
        return plugin

    def forget(self, name: str) -> None:
        """Drop an activation (the plugin restarted elsewhere, or went away)."""
        with self._lock:
            self._active.pop(name, None)

    def available(self, name: str) -> bool:
        try:
            self.find(name)
            return True
        except (NotFound, InvalidConfig):
            return False


def _checked_addr(name: str, addr: str) -> str:
    u = urlsplit(addr)
    if u.scheme not in ("unix", "tcp", "http") or not (u.path if u.scheme == "unix" else u.netloc):
        raise InvalidConfig(f"plugin {name}: bad address {addr!r} (want unix:///path or tcp://h:p)")
    return addr


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
        from kanal.dockerplugin.messages import PROTOCOL_NUMBERS, portmap_wire

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
        from kanal.netlink.batch import Batch, raw_socket
        from kanal.netlink.ns import open_netns
        from kanal.netlink.steps import in_container_fd

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
        from kanal.netlink.batch import Batch
        from kanal.netlink.ns import open_netns
        from kanal.netlink.steps import in_container_fd

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
        from kanal.netlink.steps import in_container

        try:
            return in_container(ep.netns, lambda nl: nl.find_link(ep.ifname) is not None)
        except (KanalError, OSError):
            return False


class RemoteIpam:
    """Pools and addresses from a remote IpamDriver (the order dockerd uses)."""

    def __init__(self, name: str, ctx: EngineContext) -> None:
        self.name = name
        self.ctx = ctx

    @property
    def plugin(self) -> Plugin:
        return self.ctx.plugins.get(self.name, "IpamDriver")

    def request_pools(
        self, wanted: list[IPAMConfig], v4: bool, v6: bool, options: dict[str, str]
    ) -> tuple[list[IPAMConfig], dict[str, Any]]:
        """Pools (and gateways) for a new network; the state to release them with.

        Undoes what it got before raising.
        """
        from kanal.engine.model import IPAMConfig

        plugin = self.plugin
        spaces = plugin.call("IpamDriver.GetDefaultAddressSpaces")
        space = str(spaces.get("LocalDefaultAddressSpace") or "")
        state: dict[str, Any] = {"space": space, "pools": []}
        out: list[IPAMConfig] = []
        todo = [(c, ipaddress.ip_network(c.subnet).version == 6) for c in wanted]
        versions = {6 if is_v6 else 4 for _, is_v6 in todo}
        if v4 and 4 not in versions:
            todo.append((IPAMConfig(subnet=""), False))
        if v6 and 6 not in versions:
            todo.append((IPAMConfig(subnet=""), True))
        try:
            for c, is_v6 in todo:
                got = plugin.call(
                    "IpamDriver.RequestPool",
                    {
                        "AddressSpace": space,
                        "Pool": c.subnet,
                        "SubPool": c.ip_range,
                        "Options": dict(options),
                        "V6": is_v6,
                    },
                )
                pool_id, pool = str(got.get("PoolID") or ""), str(got.get("Pool") or "")
                try:
                    sub = ipaddress.ip_network(pool)
                except ValueError:
                    raise KanalError(f"plugin {self.name} gave a bad pool {pool!r}") from None
                rec: dict[str, Any] = {"id": pool_id, "pool": pool, "held": []}
                state["pools"].append(rec)
                gw_req: dict[str, Any] = {
                    "PoolID": pool_id,
                    "Address": c.gateway,
                    "Options": {"RequestAddressType": P + "gateway"},
                }
                gw = str(plugin.call("IpamDriver.RequestAddress", gw_req).get("Address") or "")
                gw_ip = gw.split("/")[0]
                rec["held"].append(gw_ip)
                aux = dict(c.aux_addresses)
                for v in aux.values():
                    aux_req = {"PoolID": pool_id, "Address": v, "Options": {}}
                    plugin.call("IpamDriver.RequestAddress", aux_req)
                    rec["held"].append(v)
                out.append(
                    IPAMConfig(
                        subnet=str(sub), gateway=gw_ip, ip_range=c.ip_range, aux_addresses=aux
                    )
                )
        except BaseException:
            self.release_pools(state)
            raise
        return out, state

    def release_pools(self, state: dict[str, Any]) -> None:
        """Best-effort: every held address, then the pool (reverse order)."""
        for rec in reversed(state.get("pools", [])):
            for ip in reversed(rec.get("held", [])):
                best_effort(
                    self.plugin.call,
                    "IpamDriver.ReleaseAddress",
                    {"PoolID": rec["id"], "Address": ip},
                )
            best_effort(self.plugin.call, "IpamDriver.ReleasePool", {"PoolID": rec["id"]})

    def request_address(self, state: dict[str, Any], version: int, want: str) -> tuple[str, str]:
        """(address CIDR, pool id) from the pool of IP ``version``."""
        for rec in state.get("pools", []):
            if ipaddress.ip_network(rec["pool"]).version != version:
                continue
            got = self.plugin.call(
                "IpamDriver.RequestAddress", {"PoolID": rec["id"], "Address": want, "Options": None}
            )
            addr = str(got.get("Address") or "")
            try:
                ipaddress.ip_interface(addr)
            except ValueError:
                raise KanalError(f"plugin {self.name} gave a bad address {addr!r}") from None
            return addr, rec["id"]
        raise InvalidConfig(f"no IPv{version} pool")

    def release_address(self, pool_id: str, ip: str) -> None:
        self.plugin.call("IpamDriver.ReleaseAddress", {"PoolID": pool_id, "Address": ip})
