"""The ``bandwidth`` CNI plugin (chained): rate limits with tbf, egress through an ifb.

As the Go plugin of Debian (v1.1, docs/cni-spec.md §2): ``ingressRate``/``ingressBurst``
and ``egressRate``/``egressBurst`` in bits (rate and burst both set or neither),
from the config's top level or, when none is there, from
``runtimeConfig.bandwidth``. Ingress (traffic to the container) is a tbf on the
host end of the container's veth; egress is mirrored from that veth to an ifb
device ``bwp<hash of network+container>`` shaped by a tbf, and the ifb is added
to the result. DEL removes the ifb (idempotent, no netns needed). kanal tags its
ifbs with the network in the link alias so GC can remove those of attachments
that are gone (Go's have no owner and are left alone).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from kanal.errors import Internal, KanalError, NotFound
from kanal.netlink import tc
from kanal.netlink.batch import Batch, raw_socket
from kanal.netlink.handle import Netlink
from kanal.netlink.steps import in_container
from kanal.plugins import _conf as c
from kanal.skel.cmdargs import CmdArgs, PluginFuncs
from kanal.skel.dispatcher import plugin_main
from kanal.spec import gotypes
from kanal.spec.gojson import UINT64, Ptr, Struct, members
from kanal.spec.types import Interface, Result
from kanal.spec.versions import ALL_VERSIONS, version_ge

__all__ = ["PLUGIN", "ifb_name", "main"]

KEYS = ("ingressRate", "ingressBurst", "egressRate", "egressBurst")
ALIAS_PREFIX = "kanal-bw:"


@dataclass
class Bandwidth:
    ingress_rate: int = 0
    ingress_burst: int = 0
    egress_rate: int = 0
    egress_burst: int = 0

    def is_zero(self) -> bool:
        return not (
            self.ingress_rate or self.ingress_burst or self.egress_rate or self.egress_burst
        )


def _validate(rate: int, burst: int) -> None:
    if burst == 0 and rate != 0:
        raise KanalError("if rate is set, burst must also be set")
    if rate == 0 and burst != 0:
        raise KanalError("if burst is set, rate must also be set")
    if burst // 8 >= 2**32 - 1:
        raise KanalError("burst cannot be more than 4GB")


BANDWIDTH_ENTRY = Struct("BandwidthEntry", [(k, UINT64) for k in KEYS])
NETCONF = gotypes.NETCONF.extend(
    "PluginConf",
    [
        ("runtimeConfig", Struct("", [("bandwidth", Ptr(BANDWIDTH_ENTRY))], pkg="")),
        *BANDWIDTH_ENTRY.fields,  # the embedded *BandwidthEntry
    ],
)


def load_conf(args: CmdArgs, *, lenient: bool = False) -> tuple[dict[str, Any], Bandwidth | None]:
    """The decoded config and the limits: the top-level ones when the config has any
    of their keys (Go's embedded ``*BandwidthEntry``), else ``runtimeConfig.bandwidth``.
    ``lenient`` (DEL): no checks."""
    conf = c.load(NETCONF, args, lenient=lenient)
    src: dict[str, Any] | None = None
    if any(NETCONF.field_for(k) in KEYS for k, _ in members(args.conf)):
        src = conf
    elif conf["runtimeConfig"]["bandwidth"] is not None:
        src = conf["runtimeConfig"]["bandwidth"]
    if src is None:
        return conf, None
    b = Bandwidth(*(src[k] for k in KEYS))
    if not lenient:
        _validate(b.ingress_rate, b.ingress_burst)
        _validate(b.egress_rate, b.egress_burst)
    return conf, b


def ifb_name(network: str, container_id: str) -> str:
    """Go's ``utils.MustFormatHashWithPrefix(15, "bwp", network+containerID)``."""
    return "bwp" + hashlib.sha512((network + container_id).encode()).hexdigest()[:12]


def _host_iface(result: Result, args: CmdArgs) -> Interface:
    if not result.interfaces:
        raise KanalError("no interfaces provided")
    peer = in_container(args.netns_path, lambda nl: nl.get_link(args.ifname).peer_index)
    if peer <= 0:
        raise KanalError(f"container interface {args.ifname} has no veth peer")
    with Netlink() as nl:
        link = nl.find_link_by_index(peer)
    if link is None:
        raise KanalError(f"veth peer with index {peer} is not in host ns")
    for iface in result.interfaces:
        if not iface.sandbox and iface.name == link.name:
            return iface
    raise KanalError("no veth peer of container interface found in host ns")


def _delete_ifb(name: str) -> None:
    with raw_socket() as s:
        b = Batch(s)
        b.del_link(name=name)
        b.commit()


def cmd_add(args: CmdArgs) -> Result:
    conf, bw = load_conf(args)
    result = c.prev_result(conf, args)
    if result is None:
        raise KanalError("must be called as chained plugin")
    if bw is None or bw.is_zero():
        return result
    host = _host_iface(result, args)
    name: str = conf["name"]
    ifb = ""
    try:
        if bw.ingress_rate > 0 and bw.ingress_burst > 0:
            tc.add_tbf(host.name, bw.ingress_rate, bw.ingress_burst)
        if bw.egress_rate > 0 and bw.egress_burst > 0:
            with Netlink() as nl:
                hl = nl.get_link(host.name)
            ifb = ifb_name(name, args.container_id)
            with raw_socket() as s:
                b = Batch(s)
                # txqlen 0 as the Go plugin's netlink library leaves it
                b.add_link("ifb", ifb, mtu=hl.mtu, txqlen=0, up=True)
                # (an alias is only taken by a change, not at creation)
                b.set_link(name=ifb, alias=ALIAS_PREFIX + name)
                b.commit()
            with Netlink() as nl:
                mac = nl.get_link(ifb).mac
            result.interfaces.append(Interface(name=ifb, mac=mac))
            tc.add_egress_mirror(host.name, ifb)
            tc.add_tbf(ifb, bw.egress_rate, bw.egress_burst)
    except BaseException:
        if ifb:
            try:
                _delete_ifb(ifb)
            except KanalError:
                pass
        _clear_qdiscs(host.name)
        raise
    return result


def _clear_qdiscs(dev: str) -> None:
    # lazy: subprocess costs an exec ~9 ms; only this tc step runs a command
    import subprocess

    for args in (["qdisc", "del", "dev", dev, "root"], ["qdisc", "del", "dev", dev, "ingress"]):
        subprocess.run(["tc", *args], capture_output=True, timeout=30)


def cmd_del(args: CmdArgs) -> None:
    conf, _ = load_conf(args, lenient=True)
    _delete_ifb(ifb_name(conf["name"], args.container_id))


def cmd_check(args: CmdArgs) -> None:
    conf, bw = load_conf(args)
    result = c.prev_result(conf, args)
    if result is None:
        raise KanalError("must be called as a chained plugin")
    if bw is None:
        return
    host = _host_iface(result, args)
    checks = []
    if bw.ingress_rate > 0 and bw.ingress_burst > 0:
        checks.append((host.name, bw.ingress_rate, bw.ingress_burst))
    if bw.egress_rate > 0 and bw.egress_burst > 0:
        checks.append(
            (
                ifb_name(conf["name"], args.container_id),
                bw.egress_rate,
                bw.egress_burst,
            )
        )
    for dev, rate_bits, burst_bits in checks:
        rate, _, _ = tc.tbf_values(rate_bits, burst_bits)
        tbfs = [q for q in tc.qdiscs(dev) if q.get("kind") == "tbf"]
        if not tbfs:
            raise NotFound(f"Failed to find qdisc on {dev}")
        if int(tbfs[0].get("options", {}).get("rate", -1)) != rate:
            raise Internal(f"Rate does not match for {dev}")


def cmd_gc(args: CmdArgs) -> None:
    # lazy: GC only (the conflist reader is not on the ADD/DEL path)
    from kanal.spec.netconf import parse_plugin_conf

    pc = parse_plugin_conf(args.conf, require_name=False)
    valid = pc.valid_attachments
    if valid is None:
        return
    name = pc.name
    keep = {ifb_name(name, a.container_id) for a in valid}
    with Netlink() as nl:
        doomed = [
            link.name
            for link in nl.links()
            if link.kind == "ifb" and link.alias == ALIAS_PREFIX + name and link.name not in keep
        ]
    for ifb in doomed:
        _delete_ifb(ifb)


PLUGIN = PluginFuncs(
    about="kanal bandwidth plugin",
    versions=tuple(v for v in ALL_VERSIONS if version_ge(v, "0.3.0")),
    add=cmd_add,
    delete=cmd_del,
    check=cmd_check,
    gc=cmd_gc,
)


def main() -> None:
    plugin_main(PLUGIN)
