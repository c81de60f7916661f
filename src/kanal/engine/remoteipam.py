"""Pools and addresses from a remote Docker IPAM plugin (docs/cnm.md, "IPAM").

The engine's counterpart of libnetwork's remote IPAM: the controller uses a
:class:`RemoteIpam` for a network created with ``--ipam-driver NAME``; the
plugin is found through the context's
:class:`~kanal.engine.remoteplugins.PluginRegistry`.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from kanal.engine.model import IPAMConfig
from kanal.errors import InvalidConfig, KanalError, best_effort

if TYPE_CHECKING:
    from kanal.engine.context import EngineContext
    from kanal.engine.remoteplugins import Plugin

__all__ = ["RemoteIpam"]

P = "com.docker.network."


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
