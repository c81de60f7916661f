"""Policy routing: ip rules, and routes moved between tables (for ``sbr``).

Runs in the calling thread's namespace (enter the container's first). Only this
package speaks pyroute2.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from kanal.errors import Conflict, Internal

__all__ = ["Rule", "RuleRoute", "Rules"]

Addr = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Rule:
    family: int
    table: int
    src: str  # "" or an address
    src_len: int
    priority: int


@dataclass(frozen=True)
class RuleRoute:
    """A route as read, enough to re-create it in another table."""

    family: int
    dst: str
    dst_len: int
    gateway: str
    oif: int
    table: int
    scope: int
    proto: int
    rtype: int
    prefsrc: str
    priority: int


class Rules:
    def __init__(self) -> None:
        self._ipr = IPRoute()

    def close(self) -> None:
        self._ipr.close()

    def __enter__(self) -> Rules:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def rules(self) -> list[Rule]:
        out = []
        for fam in (socket.AF_INET, socket.AF_INET6):
            for m in self._ipr.get_rules(family=fam):
                out.append(
                    Rule(
                        family=fam,
                        table=m.get_attr("FRA_TABLE") or m["table"],
                        src=m.get_attr("FRA_SRC") or "",
                        src_len=m["src_len"],
                        priority=m.get_attr("FRA_PRIORITY") or 0,
                    )
                )
        return out

    def add_rule(self, src: Addr, table: int) -> None:
        fam = socket.AF_INET if src.version == 4 else socket.AF_INET6
        try:
            self._ipr.rule("add", family=fam, table=table, src=str(src), src_len=src.max_prefixlen)
        except NetlinkError as e:
            if e.code == errno.EEXIST:
                raise Conflict(f"rule from {src} lookup {table} exists") from e
            raise Internal(f"Failed to add rule: {e}") from e

    def del_rule(self, rule: Rule) -> None:
        kw: dict[str, Any] = {"family": rule.family, "table": rule.table}
        if rule.src:
            kw.update(src=rule.src, src_len=rule.src_len)
        if rule.priority:
            kw["priority"] = rule.priority
        try:
            self._ipr.rule("del", **kw)
        except NetlinkError as e:
            if e.code not in (errno.ENOENT, errno.ESRCH):
                raise Internal(f"Failed to delete rule {rule}: {e}") from e

    def routes(self, *, oif: int | None = None, table: int | None = None) -> list[RuleRoute]:
        out = []
        for fam in (socket.AF_INET, socket.AF_INET6):
            kw: dict[str, Any] = {"family": fam}
            if table is not None:
                kw["table"] = table
            for m in self._ipr.get_routes(**kw):
                o = m.get_attr("RTA_OIF") or 0
                if oif is not None and o != oif:
                    continue
                out.append(
                    RuleRoute(
                        family=fam,
                        dst=m.get_attr("RTA_DST") or "",
                        dst_len=m["dst_len"],
                        gateway=m.get_attr("RTA_GATEWAY") or "",
                        oif=o,
                        table=m.get_attr("RTA_TABLE") or m["table"],
                        scope=m["scope"],
                        proto=m["proto"],
                        rtype=m["type"],
                        prefsrc=m.get_attr("RTA_PREFSRC") or "",
                        priority=m.get_attr("RTA_PRIORITY") or 0,
                    )
                )
        return out

    def _route_kw(self, r: RuleRoute, table: int) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "family": r.family,
            "dst_len": r.dst_len,
            "table": table,
            "oif": r.oif,
            "scope": r.scope,
            "proto": r.proto,
            "type": r.rtype,
        }
        if r.dst:
            kw["dst"] = r.dst
        if r.gateway:
            kw["gateway"] = r.gateway
        if r.prefsrc:
            kw["prefsrc"] = r.prefsrc
        if r.priority:
            kw["priority"] = r.priority
        return kw

    def del_route(self, r: RuleRoute) -> None:
        try:
            self._ipr.route("del", **self._route_kw(r, r.table))
        except NetlinkError as e:
            if e.code not in (errno.ESRCH, errno.ENOENT):
                raise Internal(f"Failed to delete route: {e}") from e

    def replace_route(self, r: RuleRoute, table: int) -> None:
        try:
            self._ipr.route("replace", **self._route_kw(r, table))
        except NetlinkError as e:
            raise Internal(f"Failed to readd route: {e}") from e

    def add_default(self, gateway: Addr, oif: int, table: int) -> None:
        fam = socket.AF_INET if gateway.version == 4 else socket.AF_INET6
        try:
            self._ipr.route(
                "add", family=fam, dst_len=0, gateway=str(gateway), oif=oif, table=table
            )
        except NetlinkError as e:
            raise Internal(f"Failed to add default route to {gateway}: {e}") from e
