"""The bridge plugin step by step against the real kernel, in namespaces made here."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from kanal.ipam.diskfiles import INDEX_NAME
from tests.helpers import delete_netns, ip_json, nsexec, unique
from tests.netns.cni import PluginRunner


@pytest.fixture
def cni(host_ns: str, tmp_path: Path) -> PluginRunner:
    return PluginRunner(host_ns, tmp_path)


def bridge_conf(cni: PluginRunner, br: str, version: str = "1.0.0", **kw: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "cniVersion": version,
        "name": "net-" + br,
        "type": "bridge",
        "bridge": br,
        "isGateway": True,
        "ipam": {
            "type": "host-local",
            "subnet": "10.66.0.0/24",
            "dataDir": str(cni.data_dir),
            "routes": [{"dst": "0.0.0.0/0"}],
        },
    }
    conf.update(kw)
    return conf


def addrs(ns: str, dev: str) -> set[str]:
    out = ip_json(ns, "addr", "show", "dev", dev)
    return (
        {f"{a['local']}/{a['prefixlen']}" for a in out[0]["addr_info"] if a.get("scope") != "link"}
        if out
        else set()
    )


def links(ns: str) -> dict[str, Any]:
    return {x["ifname"]: x for x in ip_json(ns, "-d", "link", "show")}


def reservations(cni: PluginRunner, net: str) -> list[str]:
    d = cni.data_dir / net
    return (
        sorted(
            p.name
            for p in d.iterdir()
            if p.name not in ("lock", INDEX_NAME) and not p.name.startswith("last_reserved_ip")
        )
        if d.exists()
        else []
    )


@pytest.mark.parametrize("version", ["0.2.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_add_check_del(cni: PluginRunner, make_netns, version: str) -> None:
    ct1, ct2 = make_netns("ktc"), make_netns("ktc")
    br = unique("kbr", 15)
    conf = bridge_conf(cni, br, version, mtu=1400, hairpinMode=True)
    r1 = cni("bridge", "ADD", conf, cid="c1", netns=f"/run/netns/{ct1}")
    assert r1.code == 0, r1
    r2 = cni("bridge", "ADD", conf, cid="c2", netns=f"/run/netns/{ct2}")
    assert r2.code == 0, r2
    res = r1.out
    assert res is not None and res["cniVersion"] == version
    if version == "0.2.0":
        assert res["ip4"]["ip"] == "10.66.0.2/24" and res["ip4"]["gateway"] == "10.66.0.1"
    else:
        br_if, host_if, ct_if = res["interfaces"]
        assert br_if["name"] == br and ct_if == {
            "name": "eth0",
            "mac": ct_if["mac"],
            "sandbox": f"/run/netns/{ct1}",
        }
        assert res["ips"][0]["address"] == "10.66.0.2/24"
        assert res["ips"][0]["interface"] == 2
        host_links = links(cni.host)
        assert host_links[host_if["name"]]["master"] == br
        assert host_links[host_if["name"]]["mtu"] == 1400
        assert host_links[host_if["name"]]["linkinfo"]["info_slave_data"]["hairpin"] is True
        assert host_links[host_if["name"]]["address"] == host_if["mac"]
        assert host_links[br]["address"] == br_if["mac"]
        assert links(ct1)["eth0"]["address"] == ct_if["mac"]
    assert addrs(cni.host, br) == {"10.66.0.1/24"}
    assert addrs(ct1, "eth0") == {"10.66.0.2/24"}
    routes = ip_json(ct1, "route", "show")
    assert {"dst": "default", "gateway": "10.66.0.1"}.items() <= routes[0].items()
    assert nsexec(cni.host, "sysctl", "-n", "net.ipv4.ip_forward").stdout.strip() == b"1"
    nsexec(ct1, "ping", "-c", "1", "-W", "2", "10.66.0.3")
    if version >= "0.4.0":
        ok = cni(
            "bridge", "CHECK", {**conf, "prevResult": res}, cid="c1", netns=f"/run/netns/{ct1}"
        )
        assert ok.code == 0, ok
        nsexec(ct1, "ip", "addr", "del", "10.66.0.2/24", "dev", "eth0")
        bad = cni(
            "bridge", "CHECK", {**conf, "prevResult": res}, cid="c1", netns=f"/run/netns/{ct1}"
        )
        assert bad.code != 0 and bad.out is not None and "10.66.0.2" in bad.out["msg"]
    for cid, ct in (("c1", ct1), ("c2", ct2)):
        assert cni("bridge", "DEL", conf, cid=cid, netns=f"/run/netns/{ct}").code == 0
        # containerd's second DEL, with no netns; and a third with a vanished one.
        assert cni("bridge", "DEL", conf, cid=cid, netns="").code == 0
        assert cni("bridge", "DEL", conf, cid=cid, netns="/run/netns/gone-kanal-x").code == 0
    assert "eth0" not in links(ct1)
    assert [n for n, x in links(cni.host).items() if x.get("master") == br] == []
    assert reservations(cni, conf["name"]) == []


def test_dual_stack_and_default_gateway(cni: PluginRunner, make_netns) -> None:
    ct = make_netns("ktc")
    br = unique("kbr", 15)
    conf = bridge_conf(cni, br, isDefaultGateway=True)
    conf["ipam"] = {
        "type": "host-local",
        "dataDir": str(cni.data_dir),
        "ranges": [[{"subnet": "10.67.0.0/24"}], [{"subnet": "fd00:67::/64"}]],
    }
    r = cni("bridge", "ADD", conf, netns=f"/run/netns/{ct}")
    assert r.code == 0, r
    assert r.out is not None
    assert {x["dst"] for x in r.out["routes"]} == {"0.0.0.0/0", "::/0"}
    assert addrs(ct, "eth0") == {"10.67.0.2/24", "fd00:67::2/64"}
    six = ip_json(ct, "-6", "addr", "show", "dev", "eth0")[0]["addr_info"]
    assert not any(a.get("tentative") for a in six if a["local"] == "fd00:67::2")
    nsexec(ct, "ping", "-6", "-c", "1", "-W", "2", "fd00:67::1")
    assert cni("bridge", "DEL", conf, netns=f"/run/netns/{ct}").code == 0


def test_l2_only_and_mac_sources(cni: PluginRunner, make_netns) -> None:
    ct = make_netns("ktc")
    br = unique("kbr", 15)
    conf: dict[str, Any] = {
        "cniVersion": "1.0.0",
        "name": "l2",
        "type": "bridge",
        "bridge": br,
        "ipam": {},
        "args": {"cni": {"mac": "0a:00:00:00:00:02"}},
    }
    r = cni(
        "bridge",
        "ADD",
        conf,
        netns=f"/run/netns/{ct}",
        args="IgnoreUnknown=1;MAC=0a:00:00:00:00:01",
    )
    assert r.code == 0, r
    assert r.out is not None and "ips" not in r.out
    eth0 = links(ct)["eth0"]
    assert eth0["address"] == "0a:00:00:00:00:02"  # args.cni wins over CNI_ARGS
    assert "UP" in eth0["flags"]
    assert cni("bridge", "DEL", conf, netns=f"/run/netns/{ct}").code == 0


@pytest.mark.parametrize(
    "extra,code,text",
    [
        ({"hairpinMode": True, "promiscMode": True}, 7, "hairpin"),
        ({"disableContainerInterface": True}, 7, "DisableContainerInterface"),
        ({"vlan": 5000}, 7, "VLAN"),
        ({"mtu": "big"}, 7, "mtu"),
        ({"ipMasqBackend": "pf"}, 7, "ipMasqBackend"),
    ],
)
def test_bad_config_changes_nothing(
    cni: PluginRunner, make_netns, extra: dict[str, Any], code: int, text: str
) -> None:
    ct = make_netns("ktc")
    br = unique("kbr", 15)
    before = set(links(cni.host))
    r = cni("bridge", "ADD", bridge_conf(cni, br, **extra), netns=f"/run/netns/{ct}")
    assert r.code == 1 and r.out is not None and r.out["code"] == code
    assert text.lower() in (r.out["msg"] + r.out.get("details", "")).lower()
    assert set(links(cni.host)) == before
    assert set(links(ct)) == {"lo"}
    assert reservations(cni, "net-" + br) == []


def test_vlan_refused_clearly_on_this_kernel(cni: PluginRunner, make_netns) -> None:
    ct = make_netns("ktc")
    br = unique("kbr", 15)
    r = cni("bridge", "ADD", bridge_conf(cni, br, vlan=10), netns=f"/run/netns/{ct}")
    if r.code == 0:
        pytest.skip("this kernel has bridge VLAN filtering; covered elsewhere")
    assert r.out is not None and "VLAN filtering" in r.out["msg"]
    assert br not in links(cni.host)


def test_same_ifname_twice_fails_and_releases(cni: PluginRunner, make_netns) -> None:
    ct = make_netns("ktc")
    br = unique("kbr", 15)
    conf = bridge_conf(cni, br)
    assert cni("bridge", "ADD", conf, cid="a", netns=f"/run/netns/{ct}").code == 0
    r = cni("bridge", "ADD", conf, cid="b", netns=f"/run/netns/{ct}")
    assert r.code == 1 and r.out is not None and "already exists" in r.out["msg"]
    assert reservations(cni, conf["name"]) == ["10.66.0.2"]
    assert len([n for n, x in links(cni.host).items() if x.get("master") == br]) == 1


def test_existing_non_bridge_name_is_refused(cni: PluginRunner, make_netns) -> None:
    ct = make_netns("ktc")
    r = cni("bridge", "ADD", bridge_conf(cni, "lo"), netns=f"/run/netns/{ct}")
    assert r.code == 1 and r.out is not None and "not a bridge" in r.out["msg"]
    assert set(links(ct)) == {"lo"}


def test_concurrent_adds_on_a_new_bridge(cni: PluginRunner, make_netns) -> None:
    br = unique("kbr", 15)
    conf = bridge_conf(cni, br)
    cts = [make_netns("ktc") for _ in range(8)]
    results: dict[int, Any] = {}

    def add(i: int) -> None:
        results[i] = cni("bridge", "ADD", conf, cid=f"p{i}", netns=f"/run/netns/{cts[i]}")

    threads = [threading.Thread(target=add, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.code == 0 for r in results.values()), results
    ips = {r.out["ips"][0]["address"] for r in results.values()}
    assert len(ips) == 8
    assert addrs(cni.host, br) == {"10.66.0.1/24"}


def test_macspoofchk_drops_frames_with_another_source_mac(cni: PluginRunner, make_netns) -> None:
    ct1, ct2 = make_netns("ktc"), make_netns("ktc")
    br = unique("kbr", 15)
    conf = bridge_conf(cni, br, macspoofchk=True)
    r1 = cni("bridge", "ADD", conf, cid="s1", netns=f"/run/netns/{ct1}")
    assert r1.code == 0, r1
    assert cni("bridge", "ADD", conf, cid="s2", netns=f"/run/netns/{ct2}").code == 0
    nsexec(ct1, "ping", "-c", "1", "-W", "2", "10.66.0.3")
    table = nsexec(cni.host, "nft", "list", "table", "bridge", "kanal").stdout.decode()
    assert r1.out is not None and r1.out["interfaces"][2]["mac"] in table
    # Spoof: change the container's MAC; its frames are now dropped at the bridge.
    nsexec(ct1, "ip", "link", "set", "eth0", "address", "0a:11:22:33:44:55")
    nsexec(ct1, "ip", "neigh", "flush", "all")
    assert nsexec(ct1, "ping", "-c", "1", "-W", "1", "10.66.0.3", check=False).returncode != 0
    assert cni("bridge", "DEL", conf, cid="s1", netns=f"/run/netns/{ct1}").code == 0
    table = nsexec(cni.host, "nft", "list", "table", "bridge", "kanal").stdout.decode()
    assert "s1-eth0" not in table and "s2-eth0" in table


def test_port_isolation_and_promisc(cni: PluginRunner, make_netns) -> None:
    ct1, ct2 = make_netns("ktc"), make_netns("ktc")
    br = unique("kbr", 15)
    conf = bridge_conf(cni, br, portIsolation=True, promiscMode=True)
    r1 = cni("bridge", "ADD", conf, cid="i1", netns=f"/run/netns/{ct1}")
    assert r1.code == 0, r1
    assert cni("bridge", "ADD", conf, cid="i2", netns=f"/run/netns/{ct2}").code == 0
    assert "PROMISC" in links(cni.host)[br]["flags"]
    assert r1.out is not None
    port = links(cni.host)[r1.out["interfaces"][1]["name"]]
    assert port["linkinfo"]["info_slave_data"]["isolated"] is True
    # Isolated ports do not talk to each other, but both reach the gateway.
    nsexec(ct1, "ping", "-c", "1", "-W", "2", "10.66.0.1")
    assert nsexec(ct1, "ping", "-c", "1", "-W", "1", "10.66.0.3", check=False).returncode != 0


def test_enabledad_keeps_dad_on(cni: PluginRunner, make_netns) -> None:
    ct = make_netns("ktc")
    br = unique("kbr", 15)
    conf = bridge_conf(cni, br, enabledad=True)
    conf["ipam"] = {
        "type": "host-local",
        "dataDir": str(cni.data_dir),
        "ranges": [[{"subnet": "fd00:69::/64"}]],
    }
    r = cni("bridge", "ADD", conf, netns=f"/run/netns/{ct}")
    assert r.code == 0, r
    assert nsexec(ct, "sysctl", "-n", "net.ipv6.conf.eth0.accept_dad").stdout.strip() == b"1"
    six = ip_json(ct, "-6", "addr", "show", "dev", "eth0")[0]["addr_info"]
    # The plugin waited for DAD to finish: the address is usable, not tentative.
    assert any(a["local"] == "fd00:69::2" and not a.get("tentative") for a in six)


def test_disable_container_interface_leaves_it_down(cni: PluginRunner, make_netns) -> None:
    ct = make_netns("ktc")
    br = unique("kbr", 15)
    conf = {
        "cniVersion": "1.0.0",
        "name": "l2d",
        "type": "bridge",
        "bridge": br,
        "disableContainerInterface": True,
    }
    r = cni("bridge", "ADD", conf, netns=f"/run/netns/{ct}")
    assert r.code == 0, r
    assert "UP" not in links(ct)["eth0"]["flags"]
    assert cni("bridge", "DEL", conf, netns=f"/run/netns/{ct}").code == 0


def test_gc_drops_invalid_attachments(cni: PluginRunner, make_netns) -> None:
    ct1, ct2 = make_netns("ktc"), make_netns("ktc")
    br = unique("kbr", 15)
    conf = bridge_conf(cni, br, "1.1.0", ipMasq=True)
    assert cni("bridge", "ADD", conf, cid="g1", netns=f"/run/netns/{ct1}").code == 0
    assert cni("bridge", "ADD", conf, cid="g2", netns=f"/run/netns/{ct2}").code == 0
    gc = {**conf, "cni.dev/valid-attachments": [{"containerID": "g2", "ifname": "eth0"}]}
    r = cni("bridge", "GC", gc)
    assert r.code == 0, r
    assert reservations(cni, conf["name"]) == ["10.66.0.3"]
    masq = nsexec(cni.host, "nft", "list", "set", "inet", "kanal", "masq4").stdout.decode()
    assert "10.66.0.2" not in masq and "10.66.0.3" in masq
    assert cni("bridge", "STATUS", conf).code == 0


@pytest.mark.parametrize("how", ["prevResult", "link addresses", "netns gone"])
def test_del_removes_only_its_own_masquerade(cni: PluginRunner, make_netns, how: str) -> None:
    """However DEL learns the addresses (the cached result, the link before it goes,
    or a scan by owner when the namespace is already gone), exactly the owner's
    masquerade elements go."""
    ct1, ct2 = make_netns("ktc"), make_netns("ktc")
    br = unique("kbr", 15)
    conf = bridge_conf(cni, br, "1.0.0", ipMasq=True)
    r1 = cni("bridge", "ADD", conf, cid="m1", netns=f"/run/netns/{ct1}")
    assert r1.code == 0 and r1.out is not None
    assert cni("bridge", "ADD", conf, cid="m2", netns=f"/run/netns/{ct2}").code == 0
    del_conf = {**conf, "prevResult": r1.out} if how == "prevResult" else conf
    if how == "netns gone":
        delete_netns(ct1)
    assert cni("bridge", "DEL", del_conf, cid="m1", netns=f"/run/netns/{ct1}").code == 0
    masq = nsexec(cni.host, "nft", "list", "set", "inet", "kanal", "masq4").stdout.decode()
    assert "10.66.0.2" not in masq and "10.66.0.3" in masq


@pytest.mark.parametrize(
    ("path", "why"),
    [("plain", "empty file here"), ("/proc/self/ns/mnt", "a mount namespace")],
)
def test_a_netns_path_that_is_no_network_namespace_is_named_as_such(
    cni: PluginRunner, tmp_path: Path, path: str, why: str
) -> None:
    """What a runtime in another mount namespace produces (the bind mount not
    visible here: an empty file) and a wrong namespace kind each get a reason, and
    nothing is created."""
    if path == "plain":
        (tmp_path / "plain").write_bytes(b"")
        path = str(tmp_path / "plain")
    br = unique("kbr", 15)
    r = cni("bridge", "ADD", bridge_conf(cni, br), netns=path)
    assert r.code == 1 and r.out is not None
    assert why in r.out["details"] and "failed to open netns" in r.out["msg"]
    assert not [ln for ln in ip_json(cni.host, "link", "show") if ln["ifname"] == br]
