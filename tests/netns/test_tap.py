"""The tap plugin: persistent taps in a container namespace (no Go oracle in Debian)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.helpers import ip_json, nsexec
from tests.netns.cni import PluginRunner


def test_tap_owner_mtu_mac_bridge_ipam_del(make_netns: Any, tmp_path: Path) -> None:
    host, ct = make_netns("kah"), make_netns("kac")
    cni = PluginRunner(host, tmp_path)
    nsexec(ct, "ip", "link", "add", "br0", "type", "bridge")
    conf = {
        "cniVersion": "1.1.0",
        "name": "tapnet",
        "type": "tap",
        "mac": "02:00:00:00:7a:01",
        "mtu": 1400,
        "multiQueue": True,
        "owner": 4242,
        "group": 4343,
        "bridge": "br0",
        "selinuxcontext": "system_u:system_r:container_t:s0",
    }
    r = cni("tap", "ADD", conf, cid="t1", ifname="tap0", netns=f"/run/netns/{ct}")
    assert r.code == 0 and r.out is not None, r
    assert r.out["interfaces"] == [
        {"name": "tap0", "mac": "02:00:00:00:7a:01", "sandbox": f"/run/netns/{ct}"}
    ]
    link = ip_json(ct, "-d", "link", "show", "tap0")[0]
    data = link["linkinfo"]["info_data"]
    assert link["linkinfo"]["info_kind"] == "tun" and data["type"] == "tap"
    assert data["persist"] is True and data["multi_queue"] is True
    assert data["user"] == 4242 and data["group"] == 4343 and data["pi"] is False
    assert link["mtu"] == 1400 and link["master"] == "br0"
    assert (
        cni(
            "tap",
            "CHECK",
            {**conf, "prevResult": r.out},
            cid="t1",
            ifname="tap0",
            netns=f"/run/netns/{ct}",
        ).code
        == 0
    )
    assert cni("tap", "DEL", conf, cid="t1", ifname="tap0", netns=f"/run/netns/{ct}").code == 0
    assert cni("tap", "DEL", conf, cid="t1", ifname="tap0", netns=f"/run/netns/{ct}").code == 0
    assert not [x for x in ip_json(ct, "link") if x["ifname"] == "tap0"]

    with_ipam = {
        "cniVersion": "1.0.0",
        "name": "tapnet",
        "type": "tap",
        "ipam": {"type": "static", "addresses": [{"address": "192.0.2.7/24"}]},
    }
    r = cni("tap", "ADD", with_ipam, cid="t2", ifname="tap1", netns=f"/run/netns/{ct}")
    assert r.code == 0 and r.out is not None, r
    addrs = ip_json(ct, "addr", "show", "tap1")[0]["addr_info"]
    assert any(a["local"] == "192.0.2.7" for a in addrs)


def test_tap_bad_input(make_netns: Any, tmp_path: Path) -> None:
    host, ct = make_netns("kah"), make_netns("kac")
    cni = PluginRunner(host, tmp_path)
    nsexec(ct, "ip", "link", "add", "taken", "type", "bridge")
    base = {"cniVersion": "1.0.0", "name": "tapnet", "type": "tap"}
    for extra, ifname, code in (
        ({"mac": "nope"}, "tap0", 7),
        ({"owner": -1}, "tap0", 7),
        ({"bridge": "nosuch"}, "tap0", 3),
        ({}, "taken", 999),
    ):
        got = cni("tap", "ADD", {**base, **extra}, cid="t", ifname=ifname, netns=f"/run/netns/{ct}")
        assert got.code == 1 and got.out is not None and got.out["code"] == code, (extra, got)
    assert sorted(x["ifname"] for x in ip_json(ct, "link")) == ["lo", "taken"]
