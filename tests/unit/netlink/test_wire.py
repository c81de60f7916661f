"""kanal.netlink.wire packs what pyroute2's encoder packs, byte for byte."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from kanal.netlink import wire


def encoded(msg: Any) -> bytes:
    msg["header"]["type"] = 16
    msg["header"]["flags"] = 5
    msg["header"]["sequence_number"] = 7
    msg.encode()
    return bytes(msg.data)[16:]  # without the netlink header


@pytest.mark.parametrize(
    "mtu,mac,peer_mac,master,up",
    [(0, "", "", 0, False), (1400, "02:00:00:00:00:01", "0a:58:0a:00:00:02", 7, True)],
)
@pytest.mark.parametrize("txqlen", [None, 0])
def test_veth_create(
    mtu: int, mac: str, peer_mac: str, master: int, up: bool, txqlen: int | None
) -> None:
    peer: list[tuple[str, Any]] = [("IFLA_IFNAME", "eth0"), ("IFLA_NET_NS_FD", 9)]
    if peer_mac:
        peer.append(("IFLA_ADDRESS", peer_mac))
    if mtu:
        peer.append(("IFLA_MTU", mtu))
    if txqlen is not None:
        peer.append(("IFLA_TXQLEN", txqlen))
    m = ifinfmsg()
    attrs: list[tuple[str, Any]] = [("IFLA_IFNAME", "vethab12")]
    if mac:
        attrs.append(("IFLA_ADDRESS", mac))
    if mtu:
        attrs.append(("IFLA_MTU", mtu))
    if master:
        attrs.append(("IFLA_MASTER", master))
    if txqlen is not None:
        attrs.append(("IFLA_TXQLEN", txqlen))
    attrs.append(
        (
            "IFLA_LINKINFO",
            {
                "attrs": [
                    ("IFLA_INFO_KIND", "veth"),
                    ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", {"attrs": peer})]}),
                ]
            },
        )
    )
    m["attrs"] = attrs
    if up:
        m["flags"] = m["change"] = 1
    got = wire.veth_create_msg(
        "vethab12",
        "eth0",
        9,
        mac=mac,
        peer_mac=peer_mac,
        mtu=mtu,
        master=master,
        up=up,
        txqlen=txqlen,
    )
    assert got == encoded(m)


def test_set_link() -> None:
    m = ifinfmsg()
    m["index"] = 0
    m["attrs"] = [
        ("IFLA_IFNAME", "veth1"),
        ("IFLA_MASTER", 3),
        ("IFLA_IFALIAS", "kanal:reap"),
        ("IFLA_AF_SPEC", {"attrs": [("AF_INET6", {"attrs": [("IFLA_INET6_ADDR_GEN_MODE", 1)]})]}),
    ]
    m["change"] = 1
    m["flags"] = 1
    got = wire.link_msg(
        0,
        flags=1,
        change=1,
        attrs=[
            *wire.link_attrs(name="veth1", master=3, alias="kanal:reap"),
            wire.no_ipv6_link_local(),
        ],
    )
    assert got == encoded(m)


def test_master_zero_is_sent_and_none_is_not() -> None:
    """``master=0`` takes a link off its bridge (the reaper's inert host end); a
    master that was not asked for is not touched."""
    off = ifinfmsg()
    off["index"] = 5
    off["attrs"] = [("IFLA_MASTER", 0)]
    assert wire.link_msg(5, attrs=wire.link_attrs(master=0)) == encoded(off)
    kept = ifinfmsg()
    kept["index"] = 5
    kept["attrs"] = [("IFLA_IFALIAS", "x")]
    assert wire.link_msg(5, attrs=wire.link_attrs(alias="x")) == encoded(kept)


@pytest.mark.parametrize(
    "cidr,nodad", [("10.1.2.3/24", False), ("10.1.2.3/31", False), ("fd00::5/64", True)]
)
def test_addr(cidr: str, nodad: bool) -> None:
    iface = ipaddress.ip_interface(cidr)
    v4 = iface.version == 4
    m = ifaddrmsg()
    m["family"] = socket.AF_INET if v4 else socket.AF_INET6
    m["prefixlen"] = iface.network.prefixlen
    m["index"] = 4
    ip = str(iface.ip)
    attrs: list[tuple[str, Any]] = [("IFA_LOCAL", ip), ("IFA_ADDRESS", ip)]
    bcast = None
    if v4 and iface.network.prefixlen < 31:
        attrs.append(("IFA_BROADCAST", str(iface.network.broadcast_address)))
        bcast = iface.network.broadcast_address.packed
    if nodad:
        m["flags"] = 2
        attrs.append(("IFA_FLAGS", 2))
    m["attrs"] = attrs
    got = wire.addr_msg(
        m["family"],
        iface.network.prefixlen,
        4,
        iface.ip.packed,
        broadcast=bcast,
        ifa_flags=2 if nodad else 0,
    )
    assert got == encoded(m)


@pytest.mark.parametrize(
    "dst,gw,table,prio,mtu,advmss,src",
    [
        ("0.0.0.0/0", "10.0.0.1", 254, 0, 0, 0, None),
        ("10.9.0.0/16", None, 1000, 100, 1400, 1360, "10.0.0.2"),
        ("::/0", "fd00::1", 254, 0, 0, 0, None),
    ],
)
def test_route(
    dst: str, gw: str | None, table: int, prio: int, mtu: int, advmss: int, src: str | None
) -> None:
    net = ipaddress.ip_network(dst)
    m = rtmsg()
    m["family"] = socket.AF_INET if net.version == 4 else socket.AF_INET6
    m["dst_len"] = net.prefixlen
    m["table"] = table if table < 256 else 252
    m["proto"] = 3
    m["type"] = 1
    m["scope"] = 0
    attrs: list[tuple[str, Any]] = [("RTA_TABLE", table)]
    if net.prefixlen:
        attrs.append(("RTA_DST", str(net.network_address)))
    if gw:
        attrs.append(("RTA_GATEWAY", gw))
    attrs.append(("RTA_OIF", 5))
    if prio:
        attrs.append(("RTA_PRIORITY", prio))
    if src:
        attrs.append(("RTA_PREFSRC", src))
    metrics = []
    if mtu:
        metrics.append(("RTAX_MTU", mtu))
    if advmss:
        metrics.append(("RTAX_ADVMSS", advmss))
    if metrics:
        attrs.append(("RTA_METRICS", {"attrs": metrics}))
    m["attrs"] = attrs
    got = wire.route_msg(
        m["family"],
        net.prefixlen,
        table=table,
        proto=3,
        scope=0,
        rtype=1,
        dst=net.network_address.packed if net.prefixlen else None,
        gateway=ipaddress.ip_address(gw).packed if gw else None,
        oif=5,
        priority=prio,
        prefsrc=ipaddress.ip_address(src).packed if src else None,
        mtu=mtu,
        advmss=advmss,
    )
    assert got == encoded(m)


def test_macvlan_create() -> None:
    m = ifinfmsg()
    m["attrs"] = [
        ("IFLA_IFNAME", "eth1"),
        ("IFLA_LINK", 3),
        ("IFLA_ADDRESS", "02:00:00:00:00:09"),
        ("IFLA_MTU", 1400),
        ("IFLA_TXQLEN", 0),
        ("IFLA_NET_NS_FD", 7),
        (
            "IFLA_LINKINFO",
            {
                "attrs": [
                    ("IFLA_INFO_KIND", "macvlan"),
                    ("IFLA_INFO_DATA", {"attrs": [("IFLA_MACVLAN_MODE", 4)]}),
                ]
            },
        ),
    ]
    got = wire.macvlan_create_msg(
        "eth1", 3, 4, netns_fd=7, mac="02:00:00:00:00:09", mtu=1400, txqlen=0
    )
    assert got == encoded(m)


def test_brport() -> None:
    m = ifinfmsg()
    m["index"] = 0
    m["attrs"] = [
        ("IFLA_IFNAME", "veth9"),
        (
            "IFLA_LINKINFO",
            {
                "attrs": [
                    ("IFLA_INFO_SLAVE_KIND", "bridge"),
                    (
                        "IFLA_INFO_SLAVE_DATA",
                        {"attrs": [("IFLA_BRPORT_MODE", 1), ("IFLA_BRPORT_ISOLATED", 1)]},
                    ),
                ]
            },
        ),
    ]
    assert wire.brport_msg(0, "veth9", {"mode": 1, "isolated": 1}) == encoded(m)
