"""The firewall backends against real nftables/iptables, inside namespaces made here."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from kanal.errors import NotFound
from kanal.firewall import Masquerade, Owner, gc_masquerade_all, get_backend, teardown_masquerade
from tests.helpers import go_plugin_dir, nsexec
from tests.netns.cni import PluginRunner
from tests.netns.inns import in_ns


def masq(net: str, cid: str, ip: str, subnet: str) -> Masquerade:
    return Masquerade(
        Owner(net, cid, "eth0"), ipaddress.ip_address(ip), ipaddress.ip_network(subnet)
    )


def elements(ns: str, set_name: str) -> list[dict[str, Any]]:
    p = nsexec(ns, "nft", "-j", "list", "set", "inet", "kanal", set_name, check=False)
    if p.returncode:
        return []
    for obj in json.loads(p.stdout)["nftables"]:
        if "set" in obj:
            return [e["elem"] for e in obj["set"].get("elem", [])]
    return []


def test_nft_add_idempotent_del_with_and_without_ips(host_ns: str) -> None:
    nftb = get_backend("nftables")
    a = masq("net1", "ca", "10.1.0.2", "10.1.0.0/24")
    b = masq("net1", "cb", "10.1.0.3", "10.1.0.0/24")
    six = masq("net1", "ca", "fd00:1::2", "fd00:1::/64")
    in_ns(host_ns, lambda: nftb.add_masquerade([a, six]))
    in_ns(host_ns, lambda: nftb.add_masquerade([a, six]))
    in_ns(host_ns, lambda: nftb.add_masquerade([b]))
    assert {e["val"] for e in elements(host_ns, "masq4")} == {"10.1.0.2", "10.1.0.3"}
    # One subnet element per network subnet, one address element per container IP.
    assert len(elements(host_ns, "skip4")) == 1 and len(elements(host_ns, "masq6")) == 1
    in_ns(host_ns, lambda: nftb.check_masquerade([a, b]))
    # With IPs (what prevResult gives), only the owner's entries go.
    in_ns(host_ns, lambda: nftb.del_masquerade(a.owner, [a.ip, six.ip]))
    assert {e["val"] for e in elements(host_ns, "masq4")} == {"10.1.0.3"}
    assert elements(host_ns, "masq6") == []
    with pytest.raises(NotFound):
        in_ns(host_ns, lambda: nftb.check_masquerade([a]))
    # A stale owner re-adding an address hands it over: the tag is the new owner's.
    stale = masq("net1", "old", "10.1.0.3", "10.1.0.0/24")
    in_ns(host_ns, lambda: nftb.add_masquerade([stale]))
    in_ns(host_ns, lambda: nftb.add_masquerade([b]))
    in_ns(host_ns, lambda: nftb.del_masquerade(stale.owner))  # by tag: finds nothing now
    assert {e["val"] for e in elements(host_ns, "masq4")} == {"10.1.0.3"}
    # Without IPs: found by the owner tag.
    in_ns(host_ns, lambda: nftb.del_masquerade(b.owner))
    assert elements(host_ns, "masq4") == []
    in_ns(host_ns, lambda: nftb.del_masquerade(b.owner))  # idempotent
    in_ns(host_ns, lambda: nftb.del_masquerade(b.owner, [b.ip]))
    # The subnet element outlives its containers until GC finds the subnet empty.
    in_ns(host_ns, lambda: gc_masquerade_all("net1", set()))
    assert elements(host_ns, "skip4") == [] and elements(host_ns, "skip6") == []


def test_nft_gc_keeps_valid_and_other_networks(host_ns: str) -> None:
    nftb = get_backend("nftables")
    rules = [masq("gcnet", f"c{i}", f"10.2.0.{i + 2}", "10.2.0.0/24") for i in range(5)]
    other = masq("othernet", "c0", "10.3.0.2", "10.3.0.0/24")
    in_ns(host_ns, lambda: nftb.add_masquerade([*rules, other]))
    in_ns(host_ns, lambda: gc_masquerade_all("gcnet", {("c1", "eth0"), ("c3", "eth0")}))
    assert {e["val"] for e in elements(host_ns, "masq4")} == {"10.2.0.3", "10.2.0.5", "10.3.0.2"}
    assert len(elements(host_ns, "skip4")) == 2
    in_ns(host_ns, lambda: gc_masquerade_all("gcnet", set()))
    assert {e["val"] for e in elements(host_ns, "masq4")} == {"10.3.0.2"}
    assert len(elements(host_ns, "skip4")) == 1  # othernet's subnet stays


def test_nft_thousand_entries_then_nothing_left(host_ns: str) -> None:
    nftb = get_backend("nftables")
    rules = [
        masq("big", f"c{i}", str(ipaddress.ip_address("10.8.0.2") + i), "10.8.0.0/16")
        for i in range(1000)
    ]
    in_ns(host_ns, lambda: nftb.add_masquerade(rules))
    assert len(elements(host_ns, "masq4")) == 1000
    t = time.perf_counter()
    extra = masq("big", "extra", "10.8.200.1", "10.8.0.0/16")
    in_ns(host_ns, lambda: nftb.add_masquerade([extra]))
    in_ns(host_ns, lambda: nftb.del_masquerade(extra.owner, [extra.ip]))
    print(f"add+del of one container with 1000 attached: {(time.perf_counter() - t) * 1e3:.1f} ms")

    def del_all() -> None:
        for r in rules:
            nftb.del_masquerade(r.owner, [r.ip])

    in_ns(host_ns, del_all)
    assert elements(host_ns, "masq4") == []
    in_ns(host_ns, lambda: gc_masquerade_all("big", set()))
    assert elements(host_ns, "skip4") == []


def test_iptables_writes_go_rules_and_teardown_cleans(host_ns: str) -> None:
    ipt = get_backend("iptables")
    r = masq("mybridge", "1234567890", "10.15.20.2", "10.15.20.0/24")
    in_ns(host_ns, lambda: ipt.add_masquerade([r]))
    in_ns(host_ns, lambda: ipt.add_masquerade([r]))  # AppendUnique
    save = nsexec(host_ns, "iptables-save", "-t", "nat").stdout.decode()
    chain = r.owner.iptables_chain()
    comment = '"name: \\"mybridge\\" id: \\"1234567890\\""'
    assert f"-A POSTROUTING -s 10.15.20.2/32 -m comment --comment {comment} -j {chain}" in save
    assert save.count(f"-A {chain} ") == 2
    assert f"-A {chain} -d 10.15.20.0/24" in save and "! -d 224.0.0.0/4" in save
    in_ns(host_ns, lambda: ipt.check_masquerade([r]))
    in_ns(host_ns, lambda: teardown_masquerade(r.owner))  # no IPs known: found by chain
    assert chain not in nsexec(host_ns, "iptables-save", "-t", "nat").stdout.decode()


def _go_bridge(
    host: str, tmp: Path, cmd: str, ct: str, backend: str
) -> subprocess.CompletedProcess[bytes]:
    conf = {
        "cniVersion": "1.0.0",
        "name": "gonet",
        "type": "bridge",
        "bridge": "kgo0",
        "isGateway": True,
        "ipMasq": True,
        "ipMasqBackend": backend,
        "ipam": {"type": "host-local", "subnet": "10.31.0.0/24", "dataDir": str(tmp)},
    }
    env = {
        "CNI_COMMAND": cmd,
        "CNI_CONTAINERID": "goc1",
        "CNI_NETNS": f"/run/netns/{ct}",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/usr/lib/cni",
        "PATH": "/usr/sbin:/usr/bin",
    }
    return nsexec(
        host, "/usr/lib/cni/bridge", input=json.dumps(conf).encode(), env=env, check=False
    )


@pytest.mark.oracle
@pytest.mark.skipif(go_plugin_dir() is None, reason="Go reference plugins not installed")
@pytest.mark.parametrize("backend", ["iptables", "nftables"])
def test_kanal_teardown_removes_what_go_wrote(make_netns, tmp_path: Path, backend: str) -> None:
    host, ct = make_netns("kth"), make_netns("ktc")
    p = _go_bridge(host, tmp_path, "ADD", ct, backend)
    if p.returncode != 0 and backend == "nftables":
        pytest.skip(f"this Go bridge has no nftables ipMasq: {p.stdout!r}")
    assert p.returncode == 0, p
    owner = Owner("gonet", "goc1", "eth0")
    before = nsexec(host, "nft", "list", "ruleset").stdout.decode()
    assert (owner.iptables_chain() in before) or ("cni_plugins_masquerade" in before)
    in_ns(host, lambda: teardown_masquerade(owner))
    after = nsexec(host, "nft", "list", "ruleset").stdout.decode()
    assert owner.iptables_chain() not in after
    assert owner.go_nft_prefix() not in after


@pytest.mark.oracle
@pytest.mark.skipif(go_plugin_dir() is None, reason="Go reference plugins not installed")
def test_go_del_removes_what_kanal_wrote_with_iptables(make_netns, tmp_path: Path) -> None:
    host, ct = make_netns("kth"), make_netns("ktc")
    r = masq("gonet", "goc1", "10.31.0.2", "10.31.0.0/24")
    in_ns(host, lambda: get_backend("iptables").add_masquerade([r]))
    nsexec(ct, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "p0")
    nsexec(ct, "ip", "addr", "add", "10.31.0.2/24", "dev", "eth0")
    assert r.owner.iptables_chain() in nsexec(host, "iptables-save").stdout.decode()
    p = _go_bridge(host, tmp_path, "DEL", ct, "iptables")
    assert p.returncode == 0, p
    assert r.owner.iptables_chain() not in nsexec(host, "iptables-save").stdout.decode()


@pytest.mark.parametrize("backend", ["nftables", "iptables"])
def test_masquerade_as_seen_from_outside(make_netns, tmp_path: Path, backend: str) -> None:
    host, ct, out = make_netns("kth"), make_netns("ktc"), make_netns("kto")
    nsexec(
        host, "ip", "link", "add", "to-out", "type", "veth", "peer", "name", "eth0", "netns", out
    )
    nsexec(host, "ip", "addr", "add", "198.51.100.1/24", "dev", "to-out")
    nsexec(host, "ip", "link", "set", "to-out", "up")
    nsexec(out, "ip", "addr", "add", "198.51.100.2/24", "dev", "eth0")
    nsexec(out, "ip", "link", "set", "eth0", "up")
    cni = PluginRunner(host, tmp_path)
    conf = {
        "cniVersion": "1.0.0",
        "name": "masqnet",
        "type": "bridge",
        "bridge": "kmq0",
        "isGateway": True,
        "isDefaultGateway": True,
        "ipMasq": True,
        "ipMasqBackend": backend,
        "ipam": {"type": "host-local", "subnet": "10.32.0.0/24", "dataDir": str(cni.data_dir)},
    }
    assert cni("bridge", "ADD", conf, netns=f"/run/netns/{ct}").code == 0
    server = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            out,
            "python3",
            "-c",
            "import socket; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,"
            " socket.SO_REUSEADDR, 1); s.bind(('198.51.100.2', 7070)); s.listen(1);"
            " s.settimeout(10); c, a = s.accept(); print(a[0])",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(50):
            if nsexec(out, "ss", "-ltn", check=False).stdout.find(b":7070") >= 0:
                break
            time.sleep(0.05)
        nsexec(
            ct,
            "python3",
            "-c",
            "import socket; socket.create_connection(" "('198.51.100.2', 7070), timeout=5).close()",
        )
        seen = server.communicate(timeout=15)[0].strip()
    finally:
        server.kill()
    assert seen == "198.51.100.1"  # the host's address: masqueraded
    assert cni("bridge", "DEL", conf, netns=f"/run/netns/{ct}").code == 0
    ruleset = nsexec(host, "nft", "list", "ruleset").stdout.decode()
    assert "10.32.0.2" not in ruleset


def test_packed_elements_equal_libnftables_ones(host_ns: str) -> None:
    """A process that finds the table current (its marker) adds elements over raw
    netlink; nft shows them exactly as the ones libnftables added; a changed
    skeleton is found out of date and written again."""
    from kanal.firewall import nfnl
    from kanal.firewall.nftables import _MARKER, NftablesBackend

    first, second = NftablesBackend(), NftablesBackend()  # two plugin processes
    a = masq("net7", "ca", "10.7.0.2", "10.7.0.0/24")
    b = masq("net8", "cb", "10.8.0.2", "10.8.0.0/24")
    six = masq("net8", "cb", "fd00:8::2", "fd00:8::/64")
    assert not in_ns(host_ns, lambda: nfnl.has_marker("inet", "kanal", "postrouting", _MARKER))
    in_ns(host_ns, lambda: first.add_masquerade([a]))  # libnftables: skeleton + elements
    assert in_ns(host_ns, lambda: nfnl.has_marker("inet", "kanal", "postrouting", _MARKER))
    in_ns(host_ns, lambda: second.add_masquerade([b, six]))  # packed here
    by_val = {
        json.dumps(e["val"], sort_keys=True): e
        for s in ("masq4", "masq6", "skip4", "skip6")
        for e in elements(host_ns, s)
    }
    assert by_val['"10.7.0.2"']["comment"] == a.owner.tag
    assert by_val['"10.8.0.2"']["comment"] == b.owner.tag
    assert by_val['"fd00:8::2"']["comment"] == six.owner.tag
    skips = [e for e in elements(host_ns, "skip4")]
    assert [s["val"] for s in skips] == [
        {"concat": [{"prefix": {"addr": n, "len": 24}}] * 2} for n in ("10.7.0.0", "10.8.0.0")
    ]
    assert skips[0]["comment"] != skips[1]["comment"]  # each network's own tag
    # Deleting over raw netlink: what is gone already is fine.
    in_ns(host_ns, lambda: NftablesBackend().del_masquerade(b.owner, [b.ip, six.ip, b.ip]))
    assert {e["val"] for e in elements(host_ns, "masq4")} == {"10.7.0.2"}
    # An older (or hand-edited) chain has no current marker: the skeleton goes again.
    nsexec(host_ns, "nft", "flush", "chain", "inet", "kanal", "postrouting")
    assert not in_ns(host_ns, lambda: nfnl.has_marker("inet", "kanal", "postrouting", _MARKER))
    in_ns(host_ns, lambda: NftablesBackend().add_masquerade([b]))
    rules = nsexec(host_ns, "nft", "list", "chain", "inet", "kanal", "postrouting").stdout
    assert b"@masq4 masquerade" in rules and _MARKER.encode() in rules
