"""The ``static`` IPAM plugin: a drop-in for Go's (logic in :mod:`kanal.ipam.static`)."""

from __future__ import annotations

from kanal.errors import InvalidConfig
from kanal.ipam import static
from kanal.skel.cmdargs import CmdArgs, PluginFuncs
from kanal.skel.dispatcher import plugin_main
from kanal.spec.types import Result
from kanal.spec.versions import ALL_VERSIONS

__all__ = ["PLUGIN", "cmd_add", "cmd_check", "cmd_del", "main"]


def cmd_add(args: CmdArgs) -> Result:
    return static.result(static.load_conf(args.conf, args.args))


def cmd_del(args: CmdArgs) -> None:
    """Nothing was allocated, so nothing to release (Go does not even parse the config)."""


def cmd_check(args: CmdArgs) -> None:
    # lazy: CHECK only
    from kanal.plugins._conf import load

    # lazy: CHECK only
    from kanal.spec.convert import parse_result

    # lazy: CHECK only
    from kanal.spec.gotypes import NETCONF

    conf = static.load_conf(args.conf, args.args)
    prev = load(NETCONF, args)["prevResult"]
    if prev is None:
        raise InvalidConfig("Required prevResult missing")
    static.check(conf, parse_result(prev, args.cni_version, same_family=True), args.ifname)


PLUGIN = PluginFuncs(
    about="kanal static IPAM plugin",
    versions=ALL_VERSIONS,
    add=cmd_add,
    delete=cmd_del,
    check=cmd_check,
)


def main() -> None:
    plugin_main(PLUGIN)
