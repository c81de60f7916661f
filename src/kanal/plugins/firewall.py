"""The ``firewall`` CNI plugin (chained): let a container's forwarded traffic through.

Reference: Go ``plugins/meta/firewall`` (cni.md §2). Keys: ``backend``
(``nftables`` — kanal's default when nftables works —, ``iptables`` — the Go
plugin's exact rules —; ``firewalld`` is refused: kanal does not talk to
firewalld), ``iptablesAdminChainName`` (default CNI-ADMIN), ``ingressPolicy``:

- ``open`` (default): nothing more;
- ``same-bridge``: traffic from the container's bridge to another bridge under
  the same policy is dropped (Go's CNI-ISOLATION-STAGE-1/2 on iptables);
- ``isolated``: same-bridge, and containers on the same bridge cannot reach each
  other either: the host-side port gets the bridge's ``isolated`` flag (Go drops
  with iptables, which sees bridged traffic only with br_netfilter loaded; the
  port flag works without it).

ADD needs prevResult and returns it. DEL works without prevResult (nftables:
by owner) and without the netns. GC drops nftables entries of attachments that
are no longer valid. Versions 0.4.0 and later, as Go.
"""

from __future__ import annotations

from kanal._dataclass import dataclass, field
from kanal.errors import InvalidConfig, KanalError, Unavailable
from kanal.firewall.intents import Owner
from kanal.plugins import _conf as c
from kanal.skel.cmdargs import CmdArgs, PluginFuncs
from kanal.spec import gotypes
from kanal.spec.gojson import STRING, decode_lenient
from kanal.spec.types import Result
from kanal.spec.versions import ALL_VERSIONS, version_ge

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ipaddress
    from typing import Any

    Addr = ipaddress.IPv4Address | ipaddress.IPv6Address

__all__ = ["PLUGIN", "main"]
POLICIES = ("", "open", "same-bridge", "isolated")


@dataclass
class FirewallConf:
    name: str
    backend: str
    admin_chain: str
    ingress_policy: str
    conf: dict[str, Any] = field(default_factory=dict)  # as decoded


NETCONF = gotypes.NETCONF.extend(
    "FirewallNetConf",
    [
        ("backend", STRING),
        ("iptablesAdminChainName", STRING),
        ("firewalldZone", STRING),
        ("ingressPolicy", STRING),
    ],
)


def load_conf(args: CmdArgs, *, lenient: bool = False) -> FirewallConf:
    """The config, checked; ``lenient`` (DEL): no checks. There a config that decodes
    without a backend gets the one ADD chose; an unusable backend (or a config that
    does not decode) is "": DEL then removes the attachment's entries from both."""
    if lenient:
        conf, err = decode_lenient(NETCONF, args.conf)
        backend = conf["backend"]
        if backend == "" and err is None:
            backend = _default_backend()
        elif backend not in ("iptables", "nftables"):
            backend = ""
        return FirewallConf(conf["name"], backend, "CNI-ADMIN", "open", conf)
    conf = c.load(NETCONF, args)
    backend = conf["backend"]
    if backend == "firewalld":
        raise InvalidConfig(
            'the firewalld backend is not supported by kanal: use "iptables" or "nftables"'
        )
    if backend not in ("", "iptables", "nftables"):
        raise InvalidConfig(f"unknown firewall backend {backend!r}: want iptables or nftables")
    policy = conf["ingressPolicy"]
    if policy not in POLICIES:
        raise InvalidConfig(f'unknown ingress policy: "{policy}"')
    from kanal.firewall.fwplugin_ipt import check_admin_chain

    admin = check_admin_chain(conf["iptablesAdminChainName"] or "CNI-ADMIN")
    # firewalldZone is accepted for compatibility; there is no firewalld here.
    return FirewallConf(conf["name"], backend or _default_backend(), admin, policy or "open", conf)


def _default_backend() -> str:
    """No backend configured: nftables where the kernel has it, else iptables."""
    from kanal.firewall import nft

    return "nftables" if nft.available() else "iptables"


def _prev(f: FirewallConf, args: CmdArgs) -> Result | None:
    return c.prev_result(f.conf, args)


def _ips(result: Result) -> list[Addr]:
    return [ipc.address.ip for ipc in result.ips]


def _bridge_and_port(result: Result, policy: str) -> tuple[str, str]:
    if not result.interfaces:
        raise KanalError(
            f'interface needs to be set for ingress policy "{policy}", make sure to chain '
            '"firewall" plugin with "bridge"'
        )
    bridge = result.interfaces[0].name
    if not bridge:
        raise KanalError("got empty bridge name")
    port = next((i.name for i in result.interfaces[1:] if not i.sandbox), "")
    return bridge, port


def _isolate_port(port: str) -> None:
    from kanal.netlink.batch import Batch, raw_socket

    with raw_socket() as s:
        b = Batch(s)
        b.set_link(name=port, brport={"isolated": 1})
        b.commit()


def cmd_add(args: CmdArgs) -> Result:
    f = load_conf(args)
    result = _prev(f, args)
    if result is None:
        raise KanalError("missing prevResult from earlier plugin")
    ips = _ips(result)
    owner = Owner(f.name, args.container_id, args.ifname)
    if f.backend == "nftables":
        from kanal.firewall.fwplugin_nft import add_container

        add_container(owner, ips)
    else:
        from kanal.firewall.fwplugin_ipt import add_rules

        add_rules(ips, f.admin_chain)
    # After the accepts, as Go: its isolation jump then comes first in FORWARD.
    try:
        _ingress(f, result, ips)
    except BaseException:
        _remove(f, owner, ips)  # nothing half-done stays behind
        raise
    return result


def _remove(f: FirewallConf, owner: Owner, ips: list[Addr] | None) -> None:
    """The attachment's entries; with no usable backend (a DEL), from both."""
    if f.backend in ("nftables", ""):
        from kanal.firewall.fwplugin_nft import del_container

        del_container(owner, ips)
    if f.backend in ("iptables", "") and ips:
        from kanal.firewall.fwplugin_ipt import del_rules

        del_rules(ips)


def _ingress(f: FirewallConf, result: Result, ips: list[Addr]) -> None:
    if f.ingress_policy in ("same-bridge", "isolated"):
        bridge, port = _bridge_and_port(result, f.ingress_policy)
        if f.backend == "nftables":
            from kanal.firewall.fwplugin_nft import isolate_bridge

            isolate_bridge(bridge)
        else:
            from kanal.firewall import fwplugin_ipt

            fwplugin_ipt.isolate_bridge(bridge, sorted({ip.version for ip in ips}) or [4, 6])
        if f.ingress_policy == "isolated":
            if not port:
                raise KanalError('ingress policy "isolated" needs the host-side bridge port')
            _isolate_port(port)


def cmd_del(args: CmdArgs) -> None:
    f = load_conf(args, lenient=True)
    try:
        result = _prev(f, args)
    except KanalError:
        result = None  # a DEL must not fail on a cached result it cannot read
    ips = _ips(result) if result is not None else None
    try:
        owner = Owner(f.name, args.container_id, args.ifname)
    except KanalError:
        return  # a network name no entry can carry: ADD made nothing under it
    _remove(f, owner, ips)


def cmd_check(args: CmdArgs) -> None:
    f = load_conf(args)
    result = _prev(f, args)
    if result is None:
        raise KanalError("missing prevResult from earlier plugin")
    if f.backend == "nftables":
        from kanal.firewall.fwplugin_nft import check_container

        check_container(Owner(f.name, args.container_id, args.ifname), _ips(result))
    else:
        from kanal.firewall.fwplugin_ipt import check_rules

        check_rules(_ips(result), f.admin_chain)


def cmd_status(args: CmdArgs) -> None:
    f = load_conf(args)
    if f.backend == "iptables":
        import shutil

        if shutil.which("iptables") is None:
            raise Unavailable("iptables is not installed", code=50)


def cmd_gc(args: CmdArgs) -> None:
    from kanal.spec.netconf import parse_plugin_conf

    f = load_conf(args)
    valid = parse_plugin_conf(args.conf, require_name=False).valid_attachments
    if valid is None or f.backend != "nftables":
        return  # the iptables rules name no owner (as Go's): nothing to tell apart
    from kanal.firewall.fwplugin_nft import gc_containers

    gc_containers(f.name, {(a.container_id, a.ifname) for a in valid})


PLUGIN = PluginFuncs(
    about="kanal firewall plugin",
    versions=tuple(v for v in ALL_VERSIONS if version_ge(v, "0.4.0")),
    add=cmd_add,
    delete=cmd_del,
    check=cmd_check,
    status=cmd_status,
    gc=cmd_gc,
)


def main() -> None:
    from kanal.skel.dispatcher import plugin_main

    plugin_main(PLUGIN)
