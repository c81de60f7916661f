"""The macvlan plugin: a host link's macvlans in containers, against the Go plugin.

The master is one end of a veth pair in the test's host namespace; the other end
is in an "outside" namespace (198.51.100.0/24 here), so containers on the master
reach it directly at layer 2. (A macvlan cannot sit on a bridge port here.)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import go_plugin_dir, ip_json, nsexec, run
from tests.netns.cni import PluginRunner


def ping(ns: str, ip: str) -> bool:
    return nsexec(ns, "ping", "-c", "1", "-W", "2", ip, check=False).returncode == 0


@pytest.fixture
def lan(make_netns: Callable[[str], str], tmp_path: Path) -> dict[str, Any]:
    host, out = make_netns("kmh"), make_netns("kmo")
    nsexec(host, "ip", "link", "add", "lan0", "type", "veth", "peer", "name", "eth0", "netns", out)
    nsexec(host, "ip", "link", "set", "lan0", "up")
    nsexec(host, "ip", "addr", "add", "198.51.100.1/24", "dev", "lan0")
    nsexec(host, "ip", "route", "add", "default", "via", "198.51.100.254")
    nsexec(out, "ip", "addr", "add", "198.51.100.2/24", "dev", "eth0")
    nsexec(out, "ip", "link", "set", "eth0", "up")
    return {"host": host, "out": out, "cni": PluginRunner(host, tmp_path), "tmp": tmp_path}


def conf(lan: dict[str, Any], **kw: Any) -> dict[str, Any]:
    c: dict[str, Any] = {
        "cniVersion": "1.0.0",
        "name": "mvnet",
        "type": "macvlan",
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": "198.51.100.0/24", "rangeStart": "198.51.100.10"}]],
            "dataDir": str(lan["cni"].data_dir),
        },
    }
    c.update(kw)
    return c


def test_bridge_mode_default_master_connectivity_del(lan: dict[str, Any], make_netns: Any) -> None:
    cni: PluginRunner = lan["cni"]
    c1, c2 = make_netns("kmc"), make_netns("kmc")
    cf = conf(lan)  # no "master": the default route's link (lan0)
    r1 = cni("macvlan", "ADD", cf, cid="m1", netns=f"/run/netns/{c1}")
    r2 = cni(
        "macvlan",
        "ADD",
        cf,
        cid="m2",
        netns=f"/run/netns/{c2}",
        args="IgnoreUnknown=1;MAC=02:00:00:aa:bb:02",
    )
    assert r1.code == 0 and r2.code == 0, (r1, r2)
    assert r1.out is not None and r2.out is not None
    assert r1.out["interfaces"] == [
        {"name": "eth0", "mac": r1.out["interfaces"][0]["mac"], "sandbox": f"/run/netns/{c1}"}
    ]
    assert r1.out["ips"][0] == {
        "interface": 0,
        "address": "198.51.100.10/24",
        "gateway": "198.51.100.1",
    }
    assert r2.out["interfaces"][0]["mac"] == "02:00:00:aa:bb:02"
    link = ip_json(c1, "-d", "link", "show", "eth0")[0]
    assert link["linkinfo"]["info_kind"] == "macvlan"
    assert link["linkinfo"]["info_data"]["mode"] == "bridge"
    assert ping(c1, "198.51.100.11")  # two macvlans on one master (bridge mode)
    assert ping(c1, "198.51.100.2")  # a host on the master's wire
    assert ping(lan["out"], "198.51.100.11")
    chk = {**cf, "prevResult": r1.out}
    assert cni("macvlan", "CHECK", chk, cid="m1", netns=f"/run/netns/{c1}").code == 0
    assert cni("macvlan", "DEL", chk, cid="m1", netns=f"/run/netns/{c1}").code == 0
    assert cni("macvlan", "DEL", chk, cid="m1", netns=f"/run/netns/{c1}").code == 0  # idempotent
    assert cni("macvlan", "DEL", chk, cid="m1", netns="").code == 0  # without the netns
    assert [x["ifname"] for x in ip_json(c1, "link")] == ["lo"]
    assert cni("macvlan", "CHECK", chk, cid="m1", netns=f"/run/netns/{c1}").code != 0


def test_modes_mtu_no_ipam(lan: dict[str, Any], make_netns: Any) -> None:
    cni: PluginRunner = lan["cni"]
    for mode in ("private", "vepa", "passthru"):
        ct = make_netns("kmc")
        cf = {
            "cniVersion": "1.0.0",
            "name": "mvnet",
            "type": "macvlan",
            "master": "lan0",
            "mode": mode,
            "mtu": 1400,
        }
        r = cni("macvlan", "ADD", cf, cid=f"x{mode}", netns=f"/run/netns/{ct}")
        assert r.code == 0 and r.out is not None, r
        assert "ips" not in r.out
        link = ip_json(ct, "-d", "link", "show", "eth0")[0]
        assert link["linkinfo"]["info_data"]["mode"] == mode
        assert link["mtu"] == 1400 and "UP" in link["flags"]
        assert cni("macvlan", "DEL", cf, cid=f"x{mode}", netns=f"/run/netns/{ct}").code == 0


def test_link_in_container(lan: dict[str, Any], make_netns: Any) -> None:
    cni: PluginRunner = lan["cni"]
    ct = make_netns("kmc")
    nsexec(ct, "ip", "link", "add", "up0", "type", "veth", "peer", "name", "up1")
    nsexec(ct, "ip", "link", "set", "up0", "up")
    cf = {
        "cniVersion": "1.0.0",
        "name": "mvnet",
        "type": "macvlan",
        "master": "up0",
        "linkInContainer": True,
    }
    r = cni("macvlan", "ADD", cf, cid="lic", ifname="mv0", netns=f"/run/netns/{ct}")
    assert r.code == 0, r
    link = ip_json(ct, "-d", "link", "show", "mv0")[0]
    assert link["link"] == "up0" and link["linkinfo"]["info_kind"] == "macvlan"
    assert cni("macvlan", "DEL", cf, cid="lic", ifname="mv0", netns=f"/run/netns/{ct}").code == 0


def test_bad_input(lan: dict[str, Any], make_netns: Any) -> None:
    cni: PluginRunner = lan["cni"]
    ct = make_netns("kmc")
    cases = [
        (conf(lan, master="nosuch0"), 3),
        (conf(lan, mode="weird"), 7),
        (conf(lan, master="lan0", mtu=9000), 7),
        (conf(lan, master="lan0", mac="zz:zz"), 7),
    ]
    for cf, code in cases:
        got = cni("macvlan", "ADD", cf, cid="bad", netns=f"/run/netns/{ct}")
        assert got.code == 1 and got.out is not None and got.out["code"] == code, (cf, got)
    assert [x["ifname"] for x in ip_json(ct, "link")] == ["lo"]
    assert (
        not (lan["cni"].data_dir / "mvnet").exists()
        or [p.name for p in (lan["cni"].data_dir / "mvnet").iterdir() if p.name[0].isdigit()] == []
    )


@pytest.mark.oracle
def test_same_result_and_state_as_go(lan: dict[str, Any], make_netns: Any) -> None:
    go = go_plugin_dir()
    if go is None:
        pytest.skip("the reference plugins are not installed")
    cni: PluginRunner = lan["cni"]
    kc, gc = make_netns("kmk"), make_netns("kmg")
    cf = conf(lan, master="lan0", mode="vepa", mtu=1300)
    k = cni("macvlan", "ADD", cf, cid="k1", netns=f"/run/netns/{kc}")
    assert k.out is not None
    env = {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "g1",
        "CNI_NETNS": f"/run/netns/{gc}",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": go,
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    }
    g = run(
        ["ip", "netns", "exec", lan["host"], f"{go}/macvlan"],
        input=json.dumps(cf).encode(),
        env=env,
    )
    gout = json.loads(g.stdout)

    def norm(res: dict[str, Any]) -> dict[str, Any]:
        res = json.loads(json.dumps(res))
        for i in res["interfaces"]:
            i["mac"] = "MAC"
            i["sandbox"] = "NS"
        for ip in res["ips"]:
            ip["address"] = ip["address"].rsplit(".", 1)[0]
        res.pop("dns", None)
        return res

    assert norm(k.out) == norm(gout)

    def state(ns: str) -> Any:
        link = ip_json(ns, "-d", "link", "show", "eth0")[0]
        return (
            link["mtu"],
            link["linkinfo"]["info_data"]["mode"],
            sorted(
                a["prefixlen"]
                for a in ip_json(ns, "addr", "show", "eth0")[0]["addr_info"]
                if a["family"] == "inet"
            ),
            [r.get("dst") for r in ip_json(ns, "route")],
        )

    assert state(kc) == state(gc)
    env["CNI_COMMAND"] = "DEL"
    run(
        ["ip", "netns", "exec", lan["host"], f"{go}/macvlan"],
        input=json.dumps(cf).encode(),
        env=env,
    )
