"""The ``sbr`` CNI plugin (chained): source-based routing for one interface.

As the reference (Go ``plugins/meta/sbr``): in the container, pick the first
routing table from 100 up that no rule and no route uses (or ``table`` when
given), add ``from <ip>/32|128 lookup <table>`` for each address of CNI_IFNAME
in prevResult, a default route via each address's gateway in that table, and
move every main-table route of the interface into it. DEL removes the rules
whose source is an address of the interface; it needs the interface, and a DEL
after the container or the interface is gone has nothing left to do (kanal then
succeeds where Go errors). ADDs in one namespace are serialised with a lock on
the namespace file, as Go's.
"""

from __future__ import annotations

import dataclasses
import fcntl
import ipaddress
import os
import socket
from collections.abc import Callable
from typing import Any

from kanal.errors import Internal, InvalidConfig, KanalError
from kanal.netlink.handle import Netlink
from kanal.netlink.ns import NetnsNotFound, open_netns, run_in_netns
from kanal.plugins import _conf as c
from kanal.skel.cmdargs import CmdArgs, PluginFuncs
from kanal.skel.dispatcher import plugin_main
from kanal.spec import gotypes
from kanal.spec.gojson import INT, Ptr
from kanal.spec.types import IPConfig, Result
from kanal.spec.versions import ALL_VERSIONS

__all__ = ["PLUGIN", "main"]

FIRST_TABLE = 100


def _ipcfgs(ifname: str, result: Result) -> list[IPConfig]:
    if not result.ips:
        raise KanalError(f"No IP addresses supplied on interface: {ifname}")
    out = []
    for ipc in result.ips:
        idx = ipc.interface
        if (
            idx is not None
            and 0 <= idx < len(result.interfaces)
            and result.interfaces[idx].name != ifname
        ):
            continue
        out.append(ipc)
    return out


def _locked(netns: str, fn: Callable[[], None]) -> None:
    try:
        fd = open_netns(netns)
    except NetnsNotFound as e:
        raise Internal(f"failed to open netns {netns!r}", e.details) from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        run_in_netns(fd, fn)
    finally:
        os.close(fd)  # closing drops the lock


NETCONF = gotypes.NETCONF.extend("PluginConf", [("table", Ptr(INT))])


def cmd_add(args: CmdArgs) -> Result:
    conf = c.load(NETCONF, args)
    result = c.prev_result(conf, args)
    if result is None:
        raise KanalError("This plugin must be called as chained plugin")
    table_conf: int | None = conf["table"]
    if table_conf is not None and table_conf <= 0:
        raise InvalidConfig('"table" must be a positive integer')
    ipcfgs = _ipcfgs(args.ifname, result)

    def work() -> None:
        # lazy: rules needs pyroute2 (~100 ms): loaded by the command that uses it
        from kanal.netlink.rules import Rules

        with Rules() as r:
            try:
                index = socket.if_nametoindex(args.ifname)
            except OSError as e:
                raise Internal(f"Cannot find network interface {args.ifname}: {e}") from e
            if table_conf is not None:
                table = table_conf
            else:
                used = {x.table for x in r.rules()} | {x.table for x in r.routes()}
                table = FIRST_TABLE
                while table in used:
                    table += 1
            before = {x for x in r.rules() if x.table == table}
            defaults: list[Any] = []
            moved = []
            try:
                for ipc in ipcfgs:
                    r.add_rule(ipc.address.ip, table)
                    if ipc.gateway is not None:
                        r.add_default(ipc.gateway, index, table)
                        defaults.append(ipc.gateway)
                for route in r.routes(oif=index, table=254):
                    r.del_route(route)
                    moved.append(route)
                    r.replace_route(route, table)
            except BaseException:
                # Nothing half-done stays: our rules and default routes go, the moved
                # routes come back to the main table.
                for rule in r.rules():
                    if rule.table == table and rule not in before:
                        r.del_rule(rule)
                for route in r.routes(oif=index, table=table):
                    ours = route.dst_len == 0 and route.gateway in {str(g) for g in defaults}
                    if ours or any(dataclasses.replace(m, table=table) == route for m in moved):
                        r.del_route(route)
                for route in moved:
                    try:
                        r.replace_route(route, 254)
                    except KanalError:
                        pass
                raise

    _locked(args.netns_path, work)
    return result


def cmd_del(args: CmdArgs) -> None:
    if not args.netns:
        return
    try:
        fd = open_netns(args.netns_path)
    except NetnsNotFound:
        return
    os.close(fd)

    def work() -> None:
        # lazy: rules needs pyroute2 (~100 ms): loaded by the command that uses it
        from kanal.netlink.rules import Rules

        with Netlink() as nl:
            link = nl.find_link(args.ifname)
            if link is None:
                return
            addrs = {a.interface.ip for a in nl.addrs(link.index)}
        with Rules() as r:
            for rule in r.rules():
                if rule.src and ipaddress.ip_address(rule.src) in addrs:
                    r.del_rule(rule)

    _locked(args.netns_path, work)


def cmd_check(args: CmdArgs) -> None:
    """Go's CHECK accepts anything; kanal checks each address still has its rule."""
    prev = c.prev_result(c.load(NETCONF, args), args)
    if prev is None:
        raise KanalError("This plugin must be called as chained plugin")
    ips = {ipc.address.ip for ipc in _ipcfgs(args.ifname, prev)}

    def work() -> None:
        # lazy: rules needs pyroute2 (~100 ms): loaded by the command that uses it
        from kanal.netlink.rules import Rules

        with Rules() as r:
            have = {ipaddress.ip_address(x.src) for x in r.rules() if x.src}
        missing = ips - have
        if missing:
            raise Internal(f"no source rule for {', '.join(map(str, sorted(missing, key=str)))}")

    _locked(args.netns_path, work)


PLUGIN = PluginFuncs(
    about="kanal sbr plugin",
    versions=ALL_VERSIONS,
    add=cmd_add,
    delete=cmd_del,
    check=cmd_check,
)


def main() -> None:
    plugin_main(PLUGIN)
