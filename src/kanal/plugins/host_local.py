"""The ``host-local`` IPAM plugin: a drop-in for Go's, sharing its on-disk state.

Logic in :mod:`kanal.ipam.hostlocal`, state in :mod:`kanal.ipam.disk`. Adds GC and
STATUS (CNI 1.1) to what Go implements.
"""

from __future__ import annotations

from kanal.errors import InvalidConfig
from kanal.ipam import hostlocal
from kanal.ipam.disk import DiskStore, disk_store
from kanal.skel.cmdargs import CmdArgs, PluginFuncs
from kanal.skel.dispatcher import plugin_main
from kanal.spec.types import Result
from kanal.spec.versions import ALL_VERSIONS

__all__ = ["PLUGIN", "cmd_add", "cmd_check", "cmd_del", "cmd_gc", "cmd_status", "main"]


def _store(conf: hostlocal.HostLocalConf, args: CmdArgs) -> DiskStore:
    # A relative dataDir is the runtime's: resolved against its working directory.
    return disk_store(args.abspath(conf.data_dir), conf.name)


def cmd_add(args: CmdArgs) -> Result:
    conf = hostlocal.load_conf(args.conf, args.args)
    return hostlocal.add(conf, _store(conf, args), args.container_id, args.ifname)


def cmd_del(args: CmdArgs) -> None:
    """Releases the attachment's addresses; reads only what names the store, so the
    DEL of an ADD that failed on its config (or its runtimeConfig) succeeds."""
    try:
        data_dir, name = hostlocal.data_dir_of(args.conf)
    except InvalidConfig:
        return  # no usable store name: ADD could not have reserved anything
    hostlocal.delete(
        disk_store(args.abspath(data_dir), name),
        args.container_id,
        args.ifname,
        passes=hostlocal.range_set_count(args.conf),
    )


def cmd_check(args: CmdArgs) -> None:
    conf = hostlocal.load_conf(args.conf, args.args)
    hostlocal.check(_store(conf, args), args.container_id, args.ifname)


def cmd_status(args: CmdArgs) -> None:
    data_dir, name = hostlocal.data_dir_of(args.conf)
    hostlocal.status(args.abspath(data_dir), name)


def cmd_gc(args: CmdArgs) -> None:
    # lazy: GC only (the conflist reader is not on the ADD/DEL path)
    from kanal.spec.netconf import parse_plugin_conf

    data_dir, name = hostlocal.data_dir_of(args.conf)
    valid = parse_plugin_conf(args.conf).valid_attachments
    pairs = None if valid is None else [(a.container_id, a.ifname) for a in valid]
    hostlocal.gc(disk_store(args.abspath(data_dir), name), pairs)


PLUGIN = PluginFuncs(
    about="kanal host-local IPAM plugin",
    versions=ALL_VERSIONS,
    add=cmd_add,
    delete=cmd_del,
    check=cmd_check,
    status=cmd_status,
    gc=cmd_gc,
)


def main() -> None:
    plugin_main(PLUGIN)
