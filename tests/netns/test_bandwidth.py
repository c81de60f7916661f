"""The bandwidth plugin after kanal's bridge: tbf + ifb as the Go plugin sets them."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from kanal.plugins.bandwidth import ifb_name
from tests.helpers import go_plugin_dir, ip_json, nsexec, run, unique
from tests.netns.cni import PluginRunner

BLAST = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(3000):
    try:
        s.sendto(b"x" * 1400, (sys.argv[1], 9))
    except OSError:
        pass
"""


def tc_json(ns: str, *args: str) -> Any:
    out = nsexec(ns, "tc", "-s", "-j", *args).stdout
    return json.loads(out) if out.strip() else []


def bridge(cni: PluginRunner, br: str) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": "bwnet",
        "type": "bridge",
        "bridge": br,
        "isGateway": True,
        "ipam": {"type": "host-local", "subnet": "10.93.0.0/24", "dataDir": str(cni.data_dir)},
    }


def shaped(qdiscs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return sorted(
        (
            q["kind"],
            q.get("handle"),
            q.get("options", {}).get("rate"),
            q.get("options", {}).get("burst"),
        )
        for q in qdiscs
        if q["kind"] in ("tbf", "ingress")
    )


def test_shapes_both_ways_check_del_gc(make_netns: Any, tmp_path: Path) -> None:
    host, ct = make_netns("kbh"), make_netns("kbc")
    cni = PluginRunner(host, tmp_path)
    b = cni("bridge", "ADD", bridge(cni, unique("kbb", 15)), cid="b1", netns=f"/run/netns/{ct}")
    assert b.out is not None
    veth = b.out["interfaces"][1]["name"]
    conf = {
        "cniVersion": "1.0.0",
        "name": "bwnet",
        "type": "bandwidth",
        "capabilities": {"bandwidth": True},
        "runtimeConfig": {
            "bandwidth": {
                "ingressRate": 1_000_000,
                "ingressBurst": 80_000,
                "egressRate": 2_000_000,
                "egressBurst": 160_000,
            }
        },
        "prevResult": b.out,
    }
    r = cni("bandwidth", "ADD", conf, cid="b1", netns=f"/run/netns/{ct}")
    assert r.code == 0 and r.out is not None, r
    ifb = ifb_name("bwnet", "b1")
    assert r.out["interfaces"][-1]["name"] == ifb
    assert shaped(tc_json(host, "qdisc", "show", "dev", veth)) == [
        ("ingress", "ffff:", None, None),
        ("tbf", "1:", 125000, 10000),
    ]
    assert shaped(tc_json(host, "qdisc", "show", "dev", ifb)) == [("tbf", "1:", 250000, 20000)]
    filters = tc_json(host, "filter", "show", "dev", veth, "parent", "ffff:")
    assert any(
        a.get("kind") == "mirred" and a.get("to_dev") == ifb
        for f in filters
        for a in f.get("options", {}).get("actions", [])
    )
    # Shaping works: a burst of UDP both ways is held back (overlimits/drops), no timing.
    nsexec(ct, sys.executable, "-c", BLAST, "10.93.0.1")
    nsexec(host, sys.executable, "-c", BLAST, b.out["ips"][0]["address"].split("/")[0], check=False)
    egress = next(q for q in tc_json(host, "qdisc", "show", "dev", ifb) if q["kind"] == "tbf")
    ingress = next(q for q in tc_json(host, "qdisc", "show", "dev", veth) if q["kind"] == "tbf")
    assert egress["packets"] > 0 and (egress["overlimits"] > 0 or egress["drops"] > 0)
    assert ingress["packets"] > 0 and (ingress["overlimits"] > 0 or ingress["drops"] > 0)

    assert (
        cni(
            "bandwidth", "CHECK", {**conf, "prevResult": r.out}, cid="b1", netns=f"/run/netns/{ct}"
        ).code
        == 0
    )
    assert cni("bandwidth", "DEL", conf, cid="b1", netns=f"/run/netns/{ct}").code == 0
    assert not [x for x in ip_json(host, "link") if x["ifname"] == ifb]
    assert cni("bandwidth", "DEL", conf, cid="b1", netns="").code == 0  # idempotent, no netns

    # GC: an ifb of a container that is no longer valid goes; a valid one stays
    ct2, ct3 = make_netns("kbc"), make_netns("kbc")
    for cid, ns in (("b2", ct2), ("b3", ct3)):
        bb = cni(
            "bridge",
            "ADD",
            bridge(cni, b.out["interfaces"][0]["name"]),
            cid=cid,
            netns=f"/run/netns/{ns}",
        )
        assert (
            cni(
                "bandwidth",
                "ADD",
                {**conf, "prevResult": bb.out},
                cid=cid,
                netns=f"/run/netns/{ns}",
            ).code
            == 0
        )
    gc = {
        "cniVersion": "1.1.0",
        "name": "bwnet",
        "type": "bandwidth",
        "cni.dev/valid-attachments": [{"containerID": "b3", "ifname": "eth0"}],
    }
    assert cni("bandwidth", "GC", gc).code == 0
    names = {x["ifname"] for x in ip_json(host, "link")}
    assert ifb_name("bwnet", "b3") in names and ifb_name("bwnet", "b2") not in names


def test_bad_input_and_passthrough(make_netns: Any, tmp_path: Path) -> None:
    host, ct = make_netns("kbh"), make_netns("kbc")
    cni = PluginRunner(host, tmp_path)
    b = cni("bridge", "ADD", bridge(cni, unique("kbb", 15)), cid="b1", netns=f"/run/netns/{ct}")
    base = {"cniVersion": "1.0.0", "name": "bwnet", "type": "bandwidth", "prevResult": b.out}
    for extra in (
        {"ingressRate": 1000},
        {"egressBurst": 1000},
        {"ingressRate": -5, "ingressBurst": 10},
    ):
        got = cni("bandwidth", "ADD", {**base, **extra}, cid="b1", netns=f"/run/netns/{ct}")
        assert got.code == 1, (extra, got)
    veth = b.out["interfaces"][1]["name"] if b.out else ""
    assert shaped(tc_json(host, "qdisc", "show", "dev", veth)) == []
    # nothing asked: the previous result goes through untouched
    same = cni("bandwidth", "ADD", base, cid="b1", netns=f"/run/netns/{ct}")
    assert same.code == 0 and same.out == b.out


@pytest.mark.oracle
def test_same_tc_state_as_go(make_netns: Any, tmp_path: Path) -> None:
    go = go_plugin_dir()
    if go is None:
        pytest.skip("the reference plugins are not installed")
    host, kc, gc = make_netns("kbh"), make_netns("kbk"), make_netns("kbg")
    cni = PluginRunner(host, tmp_path)
    br = unique("kbb", 15)
    outs = {}
    for cid, ns in (("k1", kc), ("g1", gc)):
        bb = cni("bridge", "ADD", bridge(cni, br), cid=cid, netns=f"/run/netns/{ns}")
        assert bb.out is not None
        outs[cid] = bb.out
    bw = {
        "ingressRate": 3_000_000,
        "ingressBurst": 240_000,
        "egressRate": 5_000_000,
        "egressBurst": 400_000,
    }
    conf = {"cniVersion": "1.0.0", "name": "bwnet", "type": "bandwidth", **bw}
    k = cni(
        "bandwidth", "ADD", {**conf, "prevResult": outs["k1"]}, cid="k1", netns=f"/run/netns/{kc}"
    )
    assert k.code == 0 and k.out is not None
    env = {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "g1",
        "CNI_NETNS": f"/run/netns/{gc}",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": go,
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    }
    gconf = {**conf, "prevResult": outs["g1"]}
    g = run(
        ["ip", "netns", "exec", host, f"{go}/bandwidth"], input=json.dumps(gconf).encode(), env=env
    )
    gout = json.loads(g.stdout)
    assert gout["interfaces"][-1]["name"] == ifb_name("bwnet", "g1")  # the same ifb name

    def state(veth: str, ifb: str) -> Any:
        link = ip_json(host, "link", "show", ifb)[0]
        return (
            shaped(tc_json(host, "qdisc", "show", "dev", veth)),
            shaped(tc_json(host, "qdisc", "show", "dev", ifb)),
            link["mtu"],
            link.get("txqlen"),
        )

    ks = state(outs["k1"]["interfaces"][1]["name"], ifb_name("bwnet", "k1"))
    gs = state(outs["g1"]["interfaces"][1]["name"], ifb_name("bwnet", "g1"))
    assert ks[2:] == gs[2:]

    def close(a: list[tuple[Any, ...]], b: list[tuple[Any, ...]]) -> bool:
        # tc rounds the burst through a float: the kernel's buffer may be one tick
        # (64 ns) below the Go plugin's, shown as 1 byte less.
        return len(a) == len(b) and all(
            x[:3] == y[:3] and (x[3] == y[3] or abs(x[3] - y[3]) <= 1) for x, y in zip(a, b)
        )

    assert close(ks[0], gs[0]) and close(ks[1], gs[1]), (ks, gs)
    # each one's DEL removes the other's ifb
    env["CNI_CONTAINERID"] = "k1"
    env["CNI_COMMAND"] = "DEL"
    run(["ip", "netns", "exec", host, f"{go}/bandwidth"], input=json.dumps(conf).encode(), env=env)
    assert cni("bandwidth", "DEL", conf, cid="g1", netns=f"/run/netns/{gc}").code == 0
    names = {x["ifname"] for x in ip_json(host, "link")}
    assert ifb_name("bwnet", "k1") not in names and ifb_name("bwnet", "g1") not in names
