"""The sbr plugin after kanal's bridge: rules and tables as the Go plugin makes them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import go_plugin_dir, ip_json, nsexec, run, unique
from tests.netns.cni import PluginRunner


def bridge(cni: PluginRunner, br: str) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": "sbrnet",
        "type": "bridge",
        "bridge": br,
        "isGateway": True,
        "isDefaultGateway": True,
        "ipam": {"type": "host-local", "subnet": "10.91.0.0/24", "dataDir": str(cni.data_dir)},
    }


def state(ns: str) -> tuple[Any, Any]:
    rules = [
        (r.get("src"), r.get("table"))
        for r in ip_json(ns, "rule")
        if r.get("src") not in (None, "all")
    ]
    routes = sorted(
        (str(r.get("table", "main")), r.get("dst"), r.get("gateway"), r.get("dev"))
        for r in ip_json(ns, "route", "show", "table", "all")
        if r.get("table") not in ("local",) and r.get("type", "unicast") == "unicast"
    )
    return sorted(rules, key=str), routes


def test_rules_tables_check_and_del(make_netns: Any, tmp_path: Path) -> None:
    host, ct = make_netns("ksh"), make_netns("ksc")
    cni = PluginRunner(host, tmp_path)
    b = cni("bridge", "ADD", bridge(cni, unique("ksb", 15)), cid="s1", netns=f"/run/netns/{ct}")
    assert b.out is not None
    conf = {"cniVersion": "1.0.0", "name": "sbrnet", "type": "sbr", "prevResult": b.out}
    r = cni("sbr", "ADD", conf, cid="s1", netns=f"/run/netns/{ct}")
    assert r.code == 0 and r.out == b.out, r
    rules, routes = state(ct)
    assert rules == [("10.91.0.2", "100")]
    assert ("100", "default", "10.91.0.1", "eth0") in routes
    assert ("100", "10.91.0.0/24", None, "eth0") in routes
    assert not [x for x in routes if x[0] == "main"]  # every route of eth0 moved
    # main has nothing left: traffic goes out only with the container's source address
    assert nsexec(ct, "ping", "-c", "1", "-W", "1", "10.91.0.1", check=False).returncode != 0
    ping = ["ping", "-I", "10.91.0.2", "-c", "1", "-W", "2", "10.91.0.1"]
    assert nsexec(ct, *ping, check=False).returncode == 0
    assert cni("sbr", "CHECK", conf, cid="s1", netns=f"/run/netns/{ct}").code == 0
    assert cni("sbr", "DEL", conf, cid="s1", netns=f"/run/netns/{ct}").code == 0
    assert state(ct)[0] == []
    assert cni("sbr", "CHECK", conf, cid="s1", netns=f"/run/netns/{ct}").code != 0
    assert cni("sbr", "DEL", conf, cid="s1", netns=f"/run/netns/{ct}").code == 0
    assert cni("sbr", "DEL", conf, cid="s1", netns="").code == 0
    # "table" chooses the table instead of the first free one
    ct2 = make_netns("ksc")
    b2 = cni(
        "bridge",
        "ADD",
        bridge(cni, b.out["interfaces"][0]["name"]),
        cid="s2",
        netns=f"/run/netns/{ct2}",
    )
    nconf = {**conf, "table": 250, "prevResult": b2.out}
    assert cni("sbr", "ADD", nconf, cid="s2", netns=f"/run/netns/{ct2}").code == 0
    assert state(ct2)[0] == [("10.91.0.3", "250")]
    bad = cni(
        "sbr",
        "ADD",
        {"cniVersion": "1.0.0", "name": "sbrnet", "type": "sbr"},
        cid="s1",
        netns=f"/run/netns/{ct}",
    )
    assert bad.code == 1


@pytest.mark.oracle
def test_same_state_as_go(make_netns: Any, tmp_path: Path) -> None:
    go = go_plugin_dir()
    if go is None:
        pytest.skip("the reference plugins are not installed")
    host, kc, gc = make_netns("ksh"), make_netns("ksk"), make_netns("ksg")
    cni = PluginRunner(host, tmp_path)
    br = unique("ksb", 15)
    outs = {}
    for ns, cid in ((kc, "k"), (gc, "g")):
        b = cni("bridge", "ADD", bridge(cni, br), cid=cid, netns=f"/run/netns/{ns}")
        assert b.out is not None
        outs[cid] = b.out
    conf = {"cniVersion": "1.0.0", "name": "sbrnet", "type": "sbr", "prevResult": outs["k"]}
    assert cni("sbr", "ADD", conf, cid="k", netns=f"/run/netns/{kc}").code == 0
    env = {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "g",
        "CNI_NETNS": f"/run/netns/{gc}",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": go,
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    }
    gconf = {**conf, "prevResult": outs["g"]}
    g = run(["ip", "netns", "exec", host, f"{go}/sbr"], input=json.dumps(gconf).encode(), env=env)
    assert json.loads(g.stdout)["ips"] == outs["g"]["ips"]

    def norm(ns: str, ip: str) -> Any:
        rules, routes = state(ns)
        return [(src == ip, t) for src, t in rules], routes

    assert norm(kc, "10.91.0.2") == norm(gc, "10.91.0.3")
    env["CNI_COMMAND"] = "DEL"
    run(["ip", "netns", "exec", host, f"{go}/sbr"], input=json.dumps(gconf).encode(), env=env)
    assert state(gc)[0] == []
