"""The ``loopback`` CNI plugin: sets ``lo`` up in the container (ifname is ignored)."""

from __future__ import annotations

from kanal.errors import Internal, KanalError
from kanal.netlink.ns import NetnsNotFound
from kanal.plugins._iface import in_container
from kanal.skel.cmdargs import PluginFuncs
from kanal.spec.versions import ALL_VERSIONS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from kanal.netlink.handle import Netlink
    from kanal.skel.cmdargs import CmdArgs
    from kanal.spec.types import IPConfig, Result

__all__ = ["PLUGIN", "main"]


def cmd_add(args: CmdArgs) -> Result:
    # Here, not at the top: DEL and CHECK then never load the result model (and
    # ipaddress with it, ~3.5 ms of a standalone exec).
    from kanal.spec.types import Interface, IPConfig, Result

    def up(nl: Netlink) -> list[IPConfig]:
        link = nl.get_link("lo")
        nl.set_up(link.index)
        ips = []
        for fam in (4, 6):
            addrs = [a for a in nl.addrs(link.index) if a.interface.version == fam]
            if addrs:
                if not addrs[0].interface.ip.is_loopback:
                    raise Internal(
                        f"loopback interface found with non-loopback address "
                        f"{addrs[0].interface}"
                    )
                ips.append(IPConfig(address=addrs[0].interface, interface=0))
        return ips

    try:
        ips = in_container(args.netns_path, up)
    except NetnsNotFound as e:
        raise Internal(f"failed to open netns {args.netns!r}", e.details) from e
    from kanal.plugins._conf import load, prev_result
    from kanal.spec.gotypes import NETCONF

    prev = prev_result(load(NETCONF, args), args)
    if prev is not None:
        # Chained after another plugin: pass its result through unchanged.
        return prev
    return Result(
        cni_version=args.cni_version,
        interfaces=[Interface(name="lo", mac="00:00:00:00:00:00", sandbox=args.netns)],
        ips=ips,
    )


def cmd_del(args: CmdArgs) -> None:
    if not args.netns:
        return

    def down(nl: Netlink) -> None:
        link = nl.find_link("lo")
        if link is not None:
            nl.set_down(link.index)

    try:
        in_container(args.netns_path, down)
    except NetnsNotFound:
        return  # already gone: DEL is idempotent
    except KanalError:
        return


def cmd_check(args: CmdArgs) -> None:
    def check(nl: Netlink) -> None:
        if not nl.get_link("lo").up:
            raise Internal("loopback interface is down")

    try:
        in_container(args.netns_path, check)
    except NetnsNotFound as e:
        raise Internal(f"failed to open netns {args.netns!r}", e.details) from e


PLUGIN = PluginFuncs(
    about="kanal loopback plugin",
    versions=ALL_VERSIONS,
    add=cmd_add,
    delete=cmd_del,
    check=cmd_check,
)


def main() -> None:
    from kanal.skel.dispatcher import plugin_main

    plugin_main(PLUGIN)
