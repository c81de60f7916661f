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


def _mapping(raw: Any) -> PortMapping:
    if not isinstance(raw, dict):
        raise InvalidConfig("invalid portMappings entry", f"{raw!r} is not an object")
    proto = str(raw.get("protocol") or "tcp").lower()
    if proto not in ("tcp", "udp", "sctp"):
        raise InvalidConfig(
            f"invalid protocol {raw.get('protocol')!r} in portMappings", "must be tcp, udp or sctp"
        )
    ports = []
    for key in ("hostPort", "containerPort"):
        v = raw.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or not 0 < v < 65536:
            raise InvalidConfig(f"invalid {key} {v!r} in portMappings", "must be 1-65535")
        ports.append(v)
    host_ip: Addr | None = None
    if raw.get("hostIP"):
        try:
            host_ip = ipaddress.ip_address(str(raw["hostIP"]))
        except ValueError as e:
            raise InvalidConfig(f"invalid hostIP {raw['hostIP']!r} in portMappings") from e
        if host_ip.is_unspecified:
            host_ip = None  # 0.0.0.0 / :: mean every address, as in Go
    return PortMapping(ports[0], ports[1], proto, host_ip)


def load_conf(args: CmdArgs) -> PortmapConf:
    conf = dict(args.conf)
    p = PortmapConf(name=c.get_str(conf, "name"))
    if conf.get("snat") is not None:
        p.snat = c.get_bool(conf, "snat")
    p.masq_all = c.get_bool(conf, "masqAll")
    if conf.get("markMasqBit") is not None:
        bit = c.get_int(conf, "markMasqBit")
        if not 0 <= bit <= 31:
            raise InvalidConfig(f"MasqMarkBit must be between 0 and 31, got {bit}")
        if conf.get("externalSetMarkChain"):
            raise InvalidConfig("Cannot specify externalSetMarkChain and markMasqBit")
        p.mark_bit = bit
    ext = conf.get("externalSetMarkChain")
    if ext is not None:
        if (
            not isinstance(ext, str)
            or not ext
            or len(ext) > 28
            or not ext.isprintable()
            or " " in ext
        ):
            raise InvalidConfig(f"invalid externalSetMarkChain {ext!r}")
        p.external_setmark = ext
    backend = conf.get("backend") or "nftables"
    if backend not in ("nftables", "iptables"):
        raise InvalidConfig(f"unknown portmap backend {backend!r}: want iptables or nftables")
    p.backend = backend
    from kanal.firewall.portmap_ipt import validate_conditions

    for key, attr in (("conditionsV4", "conditions_v4"), ("conditionsV6", "conditions_v6")):
        raw = conf.get(key)
        if raw is None:
            continue
        if not isinstance(raw, list):
            raise InvalidConfig(f"{key} must be a list of strings")
        setattr(p, attr, validate_conditions(raw, key))
    if (p.conditions_v4 or p.conditions_v6) and backend != "iptables":
        raise InvalidConfig(
            "portmap conditionsV4/conditionsV6 are iptables match arguments: "
            'they need "backend": "iptables"'
        )
    rc = c.get_dict(conf, "runtimeConfig")
    p.mappings = [_mapping(m) for m in c.get_list(rc, "portMappings")]
    return p


def _container(result: Result) -> tuple[list[Addr], list[Any], list[str]]:
    """The container's first IP per family, their subnets, and the host interfaces."""
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
    hosts = [i.name for i in result.interfaces if not i.sandbox]
    return ips, nets, hosts


def cmd_add(args: CmdArgs) -> Result:
    p = load_conf(args)
    prev = args.conf.get("prevResult")
    if not prev:
        raise InvalidConfig("must be called as chained plugin")
    from kanal.spec.convert import parse_result

    result = parse_result(prev, args.cni_version)
    result.cni_version = args.cni_version
    if not p.mappings:
        return result  # nothing to publish: no firewall work at all (plugins#510)
    ips, nets, hosts = _container(result)
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
    if p.snat and any(ip.version == 4 for ip in ips):
        # 127.0.0.1 -> container needs the kernel to route "martian" localhost sources.
        for name in hosts:
            try:
                write_sysctl(f"net/ipv4/conf/{name}/route_localnet", "1")
            except KanalError:
                pass
    flush_udp_conntrack(p.mappings)
    return result


def cmd_del(args: CmdArgs) -> None:
    p = load_conf(args)
    ips: list[Addr] | None = None
    prev = args.conf.get("prevResult")
    if prev:
        from kanal.spec.convert import parse_result

        try:
            ips = _container(parse_result(prev, args.cni_version))[0]
        except KanalError:
            ips = None
    owner = Owner(p.name, args.container_id, args.ifname)
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
    prev = args.conf.get("prevResult")
    if not prev:
        raise InvalidConfig("must be called as chained plugin")
    if not p.mappings:
        return
    from kanal.spec.convert import parse_result

    ips = _container(parse_result(prev, args.cni_version))[0]
    if p.backend == "iptables":
        from kanal.firewall import portmap_ipt

        portmap_ipt.check_portmaps(p.name, args.container_id, sorted({ip.version for ip in ips}))
        return
    check_portmaps(Owner(p.name, args.container_id, args.ifname), p.mappings, ips)


def cmd_gc(args: CmdArgs) -> None:
    from kanal.spec.netconf import parse_plugin_conf

    valid = parse_plugin_conf(args.conf, require_name=False).valid_attachments
    if valid is not None:
        gc_portmaps(c.get_str(args.conf, "name"), {(a.container_id, a.ifname) for a in valid})


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
