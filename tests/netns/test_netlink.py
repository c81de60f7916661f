"""The netlink layer against the real kernel, inside namespaces the tests made."""

from __future__ import annotations

import ipaddress
import os
import socket

import pytest

from kanal.errors import Conflict
from kanal.netlink.batch import Batch, NetlinkSocket, raw_socket
from kanal.netlink.handle import Link, LinkNotFound, Netlink
from kanal.netlink.ns import NetnsNotFound, current_netns_id, netns_id, open_netns
from kanal.netlink.sysctl import read_sysctl, write_sysctl
from tests.helpers import ip_json, nsexec
from tests.netns.inns import in_ns


def test_bridge_is_idempotent_and_refuses_non_bridge(host_ns: str) -> None:
    def work() -> None:
        with Netlink() as nl:
            br, created = nl.ensure_bridge("kbr0", mtu=1400, mac="02:00:00:00:00:aa")
            assert created and br.kind == "bridge" and br.up
            assert br.mac == "02:00:00:00:00:aa"
            again, created2 = nl.ensure_bridge("kbr0")
            assert not created2 and again.index == br.index

    in_ns(host_ns, work)
    links = {x["ifname"]: x for x in ip_json(host_ns, "link", "show")}
    assert links["kbr0"]["mtu"] == 1400

    def not_a_bridge() -> None:
        with Netlink() as nl:
            nl.ensure_bridge("lo")

    with pytest.raises(Conflict):
        in_ns(host_ns, not_a_bridge)


def test_batch_veth_addresses_routes(make_netns) -> None:
    host, ct = make_netns("kth"), make_netns("ktc")
    ct_fd = open_netns(f"/run/netns/{ct}")
    try:

        def work() -> None:
            with raw_socket() as s:
                b = Batch(s)
                b.add_veth(
                    "vhost0",
                    "eth0",
                    ct_fd,
                    mtu=1450,
                    peer_mac="0a:58:0a:00:00:05",
                    mac="0a:58:0a:00:00:06",
                    up=True,
                )
                b.commit()
                index = socket.if_nametoindex("vhost0")
                b.add_veth("vhost0", "eth9", ct_fd)
                with pytest.raises(Conflict):
                    b.commit()
                addr = ipaddress.ip_interface("10.99.0.1/24")
                b.add_addr(index, addr)
                b.add_addr(index, addr, exist_ok=True)
                assert b.commit() == [0, 17]  # created, then EEXIST accepted
                dst = ipaddress.ip_network("192.0.2.0/24")
                b.add_route(dst, gateway=ipaddress.ip_address("10.99.0.2"), oif=index)
                b.commit()
                with Netlink() as nl:
                    link = nl.get_link("vhost0")
                    assert link.kind == "veth" and link.mtu == 1450
                    assert link.mac == "0a:58:0a:00:00:06"
                    assert addr in {a.interface for a in nl.addrs(index)}
                    assert any(r.dst == dst for r in nl.routes(oif=index))
                b.del_route(dst)
                b.del_route(dst)  # missing is fine
                b.del_link(name="vhost0")
                b.del_link(name="vhost0")
                b.commit()
                with Netlink() as nl, pytest.raises(LinkNotFound):
                    nl.get_link("vhost0")

        in_ns(host, work)
    finally:
        os.close(ct_fd)
    # The peer was made directly in the container namespace, then went with the pair.
    assert [x["ifname"] for x in ip_json(ct, "link", "show")] == ["lo"]


def test_peer_mac_and_netns_ids(make_netns) -> None:
    host, ct = make_netns("kth"), make_netns("ktc")
    ct_fd = open_netns(f"/run/netns/{ct}")

    def work() -> None:
        with raw_socket() as s:
            b = Batch(s)
            b.add_veth("vh1", "eth0", ct_fd, peer_mac="0a:58:0a:00:00:07")
            b.commit()

    try:
        in_ns(host, work)
    finally:
        os.close(ct_fd)
    eth0 = next(x for x in ip_json(ct, "link", "show") if x["ifname"] == "eth0")
    assert eth0["address"] == "0a:58:0a:00:00:07"
    assert in_ns(host, current_netns_id) == netns_id(f"/run/netns/{host}")
    assert current_netns_id() != netns_id(f"/run/netns/{host}")


def test_no_ipv6_link_local(make_netns) -> None:
    host = make_netns("kth")

    def work() -> None:
        with raw_socket() as s, Netlink() as nl:
            own = open_netns(f"/run/netns/{host}")
            b = Batch(s)
            b.add_veth("va", "vb", own)
            b.set_link(name="va", no_ipv6_link_local=True)
            b.set_link(name="va", up=True)
            b.set_link(name="vb", up=True)
            b.commit()
            os.close(own)
            va, vb = nl.get_link("va"), nl.get_link("vb")
            assert [a for a in nl.addrs(va.index) if a.interface.version == 6] == []
            # Its peer, left in the default mode, did get one: the check can fail.
            assert [a for a in nl.addrs(vb.index) if a.interface.version == 6] != []

    in_ns(host, work)


def _bridge_with_veths(s: NetlinkSocket, nl: Netlink, host: str, bridge: str, *pairs: str) -> Link:
    """In ``host`` (the calling thread's namespace): ``bridge`` with the first end
    of each veth pair (``"va:vb"``) on it; returns the bridge."""
    own = open_netns(f"/run/netns/{host}")
    try:
        br, _ = nl.ensure_bridge(bridge)
        b = Batch(s)
        for pair in pairs:
            name, peer = pair.split(":")
            b.add_veth(name, peer, own, master=br.index)
        b.commit()
    finally:
        os.close(own)
    return br


def test_a_link_is_taken_off_its_bridge_and_made_inert(make_netns) -> None:
    """``set_link(master=0)`` detaches; the reaper's inert host end is off its bridge
    the moment DEL has made it inert, not when the background delete has run (the
    overlay driver's last leave counts the bridge's ports right after DEL: a port
    left on meant the bridge and VXLAN device stayed)."""
    from kanal.netlink import reaper

    host = make_netns("kth")

    def work() -> None:
        with raw_socket() as s, Netlink() as nl:
            br = _bridge_with_veths(s, nl, host, "kbr1", "va:vb", "vc:vd")
            va, vc = nl.get_link("va"), nl.get_link("vc")
            assert va.master == br.index and vc.master == br.index
            b = Batch(s)
            b.set_link(index=va.index, master=0)
            b.commit()
            assert nl.get_link("va").master == 0
            b = Batch(s)
            b.set_link(index=vc.index, alias="x")  # no master asked for: kept
            b.commit()
            assert nl.get_link("vc").master == br.index
            assert reaper._inert_host_end(vc.index) == vc.index
            inert = nl.get_link("vc")
            assert (inert.master, inert.up, inert.alias) == (0, False, reaper.REAP_ALIAS)

    in_ns(host, work)


def test_an_overlay_bridge_counts_only_live_container_ports(make_netns) -> None:
    """The overlay driver's last-leave count (kanal.engine.drivers.overlay): a veth on
    the bridge is a port; one tagged for the background delete is not, even if it
    were still on the bridge; no bridge, no ports."""
    from kanal.engine.drivers.overlay import _has_ports
    from kanal.netlink import reaper

    host = make_netns("kth")

    def work() -> None:
        with raw_socket() as s, Netlink() as nl:
            br = _bridge_with_veths(s, nl, host, "kov1", "va:vb")
            assert _has_ports("kov1")
            b = Batch(s)
            b.set_link(index=nl.get_link("va").index, alias=reaper.REAP_ALIAS)
            b.commit()
            assert nl.get_link("va").master == br.index
            assert not _has_ports("kov1")
            assert not _has_ports("kov2")

    in_ns(host, work)


def test_sysctl_is_per_namespace(host_ns: str) -> None:
    before = read_sysctl("net.ipv4.ip_forward")
    in_ns(host_ns, lambda: write_sysctl("net/ipv4/ip_forward", "1"))
    assert in_ns(host_ns, lambda: read_sysctl("net.ipv4.ip_forward")) == "1"
    assert read_sysctl("net.ipv4.ip_forward") == before


def test_missing_netns_is_not_found() -> None:
    with pytest.raises(NetnsNotFound):
        open_netns("/run/netns/kanal-does-not-exist-42")


def test_lean_reads_match_pyroute2(host_ns: str) -> None:
    """Netlink's own decoding (the plugin exec path) reads what pyroute2 reads."""
    from pyroute2 import IPRoute

    from kanal.netlink.handle import _link_from_msg

    nsexec(host_ns, "ip", "link", "add", "kl0", "type", "bridge")
    nsexec(host_ns, "ip", "link", "set", "kl0", "up", "mtu", "1400", "alias", "some alias")
    nsexec(host_ns, "ip", "link", "add", "kv0", "type", "veth", "peer", "name", "kv1")
    nsexec(host_ns, "ip", "link", "set", "kv0", "master", "kl0", "txqueuelen", "77", "up")
    nsexec(host_ns, "ip", "link", "set", "kv1", "promisc", "on", "address", "0a:58:00:00:00:09")
    nsexec(host_ns, "ip", "link", "add", "kd0", "link", "kv1", "type", "macvlan", "mode", "vepa")
    nsexec(host_ns, "ip", "addr", "add", "10.9.0.1/24", "dev", "kl0")
    nsexec(host_ns, "ip", "addr", "add", "10.9.0.77/32", "peer", "10.9.9.9", "dev", "kv1")
    nsexec(host_ns, "ip", "addr", "add", "fd00:9::1/64", "dev", "kl0", "nodad")

    def work() -> None:
        with IPRoute() as ipr, Netlink() as nl:
            want = sorted((_link_from_msg(m) for m in ipr.get_links()), key=lambda x: x.index)
            got = sorted(nl.links(), key=lambda x: x.index)
            assert got == want
            assert nl.get_link("kv0") == next(x for x in want if x.name == "kv0")
            kv1 = nl.get_link("kv1")
            assert kv1.promiscuity and kv1.mac == "0a:58:00:00:00:09"
            assert nl.macvlan_mode(nl.get_link("kd0").index) == "vepa"
            want_addrs = set()
            for m in ipr.get_addr():
                ip = m.get_attr("IFA_ADDRESS")
                if m["family"] == socket.AF_INET:
                    ip = m.get_attr("IFA_LOCAL") or ip
                flags = m.get_attr("IFA_FLAGS") or m["flags"]
                want_addrs.add((m["index"], f"{ip}/{m['prefixlen']}", flags))
            got_addrs = {(a.index, str(a.interface), a.flags) for a in nl.addrs()}
            assert got_addrs == want_addrs and ("10.9.0.77/32" in {x[1] for x in got_addrs})
            kl0 = nl.get_link("kl0").index
            assert {str(a.interface) for a in nl.addrs(kl0)} >= {"10.9.0.1/24", "fd00:9::1/64"}
            with pytest.raises(LinkNotFound):
                nl.get_link("nope0")
            assert nl.find_link_by_index(999999) is None
            # Changes through the lean path land as asked.
            idx = nl.get_link("kv1").index
            nl.set_link(idx, mtu=1300, txqlen=5, address="0a:58:00:00:00:0a")
            nl.set_promisc(idx, False)
            nl.set_up(idx)
            after = nl.get_link_by_index(idx)
            assert (after.mtu, after.txqlen, after.mac, after.promiscuity, after.up) == (
                1300,
                5,
                "0a:58:00:00:00:0a",
                0,
                True,
            )
            assert nl.del_addr(kl0, ipaddress.ip_interface("10.9.0.1/24"))
            assert not nl.del_addr(kl0, ipaddress.ip_interface("10.9.0.1/24"))
            assert nl.del_link("kd0") and not nl.del_link("kd0")

    in_ns(host_ns, work)
