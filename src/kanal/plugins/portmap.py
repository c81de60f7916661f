"""The ``portmap`` CNI plugin (chained): publish container ports on the host.

runtimeConfig ``portMappings`` (capability ``portMappings``) become DNAT entries
in kanal's nftables table (see :mod:`kanal.firewall.portmap_nft`): from every
local address, or only ``hostIP``; reachable from 127.0.0.1 (``route_localnet``
on the host interfaces, localhost SNAT) and by hairpin from containers of the
same subnet when ``snat`` (default true); ``masqAll`` masquerades all mapped
traffic. UDP conntrack entries of mapped ports are flushed on ADD and DEL.
DEL needs no netns; entries are keyed by attachment.

``"backend": "iptables"`` writes the Go plugin's chains instead (see
:mod:`kanal.firewall.portmap_ipt`), with ``markMasqBit``, ``externalSetMarkChain``
and ``conditionsV4``/``conditionsV6`` (extra iptables matches on the entry rule).
Those keys only mean something to iptables: with nftables, conditions are
refused with a clear error and the mark keys are accepted and unused (nftables
masquerades by address, not by mark). A DEL removes the attachment's entries
from both backends, whatever the config says now.
"""

from __future__ import annotations

import ipaddress

from kanal._dataclass import dataclass, field
from kanal.errors import InvalidConfig, KanalError
from kanal.firewall import Owner
from kanal.firewall.portmap_nft import (
    PortMapping,
    add_portmaps,
    check_portmaps,
    del_portmaps,
    flush_udp_conntrack,
    gc_portmaps,
)
from kanal.netlink.sysctl import write_sysctl
from kanal.plugins import _conf as c
from kanal.skel.cmdargs import CmdArgs, PluginFuncs
from kanal.spec import gotypes
from kanal.spec.gojson import BOOL, INT, STRING, Ptr, Slice, Struct
from kanal.spec.types import Result
from kanal.spec.versions import ALL_VERSIONS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    Addr = ipaddress.IPv4Address | ipaddress.IPv6Address

__all__ = ["PLUGIN", "main"]


@dataclass
class PortmapConf:
    name: str
    snat: bool = True
    masq_all: bool = False
    mappings: list[PortMapping] = field(default_factory=list)
    backend: str = "nftables"
    mark_bit: int = 13
    external_setmark: str | None = None
    conditions_v4: list[str] = field(default_factory=list)
    conditions_v6: list[str] = field(default_factory=list)
    conf: dict[str, Any] = field(default_factory=dict)  # as decoded


PORT_MAP_ENTRY = Struct(
    "PortMapEntry",
    [("hostPort", INT), ("containerPort", INT), ("protocol", STRING), ("hostIP", STRING)],
)
NETCONF = gotypes.NETCONF.extend(
    "PortMapConf",
    [
        ("backend", Ptr(STRING)),
        ("snat", Ptr(BOOL)),
        ("conditionsV4", Ptr(gotypes.STRINGS)),
        ("conditionsV6", Ptr(gotypes.STRINGS)),
        ("masqAll", BOOL),
        ("markMasqBit", Ptr(INT)),
        ("runtimeConfig", Struct("", [("portMappings", Slice(PORT_MAP_ENTRY))], pkg="")),
        ("externalSetMarkChain", Ptr(STRING)),
    ],
)


def _mapping(m: dict[str, Any]) -> PortMapping:
    """One decoded ``portMappings`` entry (containerd sends ``HostPort``…: same fields)."""
    proto = (m["protocol"] or "tcp").lower()
    if proto not in ("tcp", "udp", "sctp"):
        raise InvalidConfig(
            f"invalid protocol {m['protocol']!r} in portMappings", "must be tcp, udp or sctp"
        )
    for key in ("hostPort", "containerPort"):
        if not 0 < m[key] < 65536:
            raise InvalidConfig(f"invalid {key} {m[key]} in portMappings", "must be 1-65535")
    host_ip: Addr | None = None
    if m["hostIP"]:
        try:
            host_ip = ipaddress.ip_address(m["hostIP"])
        except ValueError as e:
            raise InvalidConfig(f"invalid hostIP {m['hostIP']!r} in portMappings") from e
        if host_ip.is_unspecified:
            host_ip = None  # 0.0.0.0 / :: mean every address, as in Go
    return PortMapping(m["hostPort"], m["containerPort"], proto, host_ip)


def load_conf(args: CmdArgs, *, lenient: bool = False) -> PortmapConf:
    """The config, checked. ``lenient`` (DEL): decode errors and bad values are
    skipped — a mapping that does not check out was never programmed."""
    conf = c.load(NETCONF, args, lenient=lenient)
    p = PortmapConf(name=conf["name"], conf=conf)
    if conf["snat"] is not None:
        p.snat = conf["snat"]
    p.masq_all = conf["masqAll"]
    backend = conf["backend"] or "nftables"
    if backend in ("nftables", "iptables"):
        p.backend = backend
    elif not lenient:
        raise InvalidConfig(f"unknown portmap backend {backend!r}: want iptables or nftables")
    mappings = []
    for m in conf["runtimeConfig"]["portMappings"] or []:
        try:
            mappings.append(_mapping(m))
        except InvalidConfig:
            if not lenient:
                raise
    p.mappings = mappings
    if lenient:
        return p
    bit = conf["markMasqBit"]
    ext = conf["externalSetMarkChain"]
    if bit is not None:
        if not 0 <= bit <= 31:
            raise InvalidConfig(f"MasqMarkBit must be between 0 and 31, got {bit}")
        if ext:
            raise InvalidConfig("Cannot specify externalSetMarkChain and markMasqBit")
        p.mark_bit = bit
    if ext is not None:
        if not ext or len(ext) > 28 or not ext.isprintable() or " " in ext:
            raise InvalidConfig(f"invalid externalSetMarkChain {ext!r}")
        p.external_setmark = ext
    from kanal.firewall.portmap_ipt import validate_conditions

    for key, attr in (("conditionsV4", "conditions_v4"), ("conditionsV6", "conditions_v6")):
        if conf[key] is not None:
            setattr(p, attr, validate_conditions(conf[key], key))
    if (p.conditions_v4 or p.conditions_v6) and backend != "iptables":
        raise InvalidConfig(
            "portmap conditionsV4/conditionsV6 are iptables match arguments: "
            'they need "backend": "iptables"'
        )
    return p


def _container(result: Result) -> tuple[list[Addr], list[Any]]:
    """The container's first IP per family, and their subnets."""
    ips: list[Addr] = []
    nets = []
    for ipc in result.ips:
        if (
            ipc.interface is not None
            and ipc.interface < len(result.interfaces)
            and not result.interfaces[ipc.interface].sandbox
        ):
            continue  # an address of a host-side interface
        if all(ip.version != ipc.address.version for ip in ips):
            ips.append(ipc.address.ip)
            nets.append(ipc.address.network)
    return ips, nets


def cmd_add(args: CmdArgs) -> Result:
    p = load_conf(args)
    result = c.prev_result(p.conf, args)
    if result is None:
        raise InvalidConfig("must be called as chained plugin")
    result.cni_version = args.cni_version
    if not p.mappings:
        return result  # nothing to publish: no firewall work at all (plugins#510)
    ips, nets = _container(result)
    if not ips:
        raise InvalidConfig("portmap: the previous result has no container address")
    if p.backend == "iptables":
        from kanal.firewall import portmap_ipt

        try:
            for ip, net in zip(ips, nets):
                portmap_ipt.add_portmaps(
                    p.name,
                    args.container_id,
                    p.mappings,
                    ip,
                    net,
                    snat=p.snat,
                    masq_all=p.masq_all,
                    mark_bit=p.mark_bit,
                    external_setmark=p.external_setmark,
                    conditions=p.conditions_v4 if ip.version == 4 else p.conditions_v6,
                )
        except BaseException:
            portmap_ipt.del_portmaps(p.name, args.container_id)
            raise
    else:
        owner = Owner(p.name, args.container_id, args.ifname)
        add_portmaps(owner, p.mappings, ips, nets, snat=p.snat, masq_all=p.masq_all)
    if p.snat:
        # 127.0.0.1 -> container needs the kernel to route "martian" localhost sources,
        # on the host link the container is reached by (Go's getRoutableHostIF).
        from kanal.netlink.routeget import route_link

        for ip in ips:
            name = route_link(ip) if ip.version == 4 else ""
            if name:
                try:
                    write_sysctl(f"net/ipv4/conf/{name}/route_localnet", "1")
                except KanalError:
                    pass
    flush_udp_conntrack(p.mappings)
    return result


def cmd_del(args: CmdArgs) -> None:
    """By attachment: whatever the config or the cached result say now (a bad
    mapping, a bad prevResult: what ADD refused was never programmed)."""
    p = load_conf(args, lenient=True)
    ips: list[Addr] | None = None
    try:
        prev = c.prev_result(p.conf, args)
        ips = _container(prev)[0] if prev is not None else None
    except KanalError:
        ips = None
    try:
        owner = Owner(p.name, args.container_id, args.ifname)
    except KanalError:
        return  # a network name no entry can carry: ADD programmed nothing under it
    if p.backend == "nftables":
        mappings = p.mappings if p.mappings and ips else None
        del_portmaps(owner, mappings, ips, snat=p.snat, masq_all=p.masq_all)
    elif p.mappings or not ips:
        del_portmaps(owner, None, None)  # (by owner: nothing there costs one lookup)
    _del_iptables(p, args, force=p.backend == "iptables")
    flush_udp_conntrack(p.mappings)


def _del_iptables(p: PortmapConf, args: CmdArgs, *, force: bool) -> None:
    """Remove Go-style chains of this attachment; a cheap existence check first."""
    from kanal.firewall import portmap_ipt

    if not force:
        from kanal.firewall import get_backend
        from kanal.firewall.iptables import IptablesBackend

        ib = get_backend("iptables")  # shared: it remembers which iptables this is
        assert isinstance(ib, IptablesBackend)
        chain = portmap_ipt.dnat_chain(p.name, args.container_id)
        try:
            if not any(ib.chain_exists(v, chain) for v in (4, 6)):
                return
        except KanalError:
            return
    portmap_ipt.del_portmaps(p.name, args.container_id)


def cmd_check(args: CmdArgs) -> None:
    p = load_conf(args)
    prev = c.prev_result(p.conf, args)
    if prev is None:
        raise InvalidConfig("must be called as chained plugin")
    if not p.mappings:
        return
    ips = _container(prev)[0]
    if p.backend == "iptables":
        from kanal.firewall import portmap_ipt

        portmap_ipt.check_portmaps(p.name, args.container_id, sorted({ip.version for ip in ips}))
        return
    check_portmaps(Owner(p.name, args.container_id, args.ifname), p.mappings, ips)


def cmd_gc(args: CmdArgs) -> None:
    from kanal.spec.netconf import parse_plugin_conf

    conf = parse_plugin_conf(args.conf, require_name=False)
    if conf.valid_attachments is not None:
        gc_portmaps(conf.name, {(a.container_id, a.ifname) for a in conf.valid_attachments})


PLUGIN = PluginFuncs(
    about="kanal portmap plugin",
    versions=ALL_VERSIONS,
    add=cmd_add,
    delete=cmd_del,
    check=cmd_check,
    gc=cmd_gc,
)


def main() -> None:
    from kanal.skel.dispatcher import plugin_main

    plugin_main(PLUGIN)
