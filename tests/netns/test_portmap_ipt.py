"""portmap's iptables backend: the Go plugin's chains, and ports that work."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import pytest

from kanal.firewall.iptables.portmap import dnat_chain
from tests.helpers import go_plugin_dir, nsexec, run
from tests.netns.test_portmap import SERVER, client


def attach_ipt(
    net: dict[str, Any], ct: str, cid: str, mappings: list[dict[str, Any]], **pm: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    cni = net["cni"]
    r = cni("bridge", "ADD", net["bridge"], cid=cid, netns=f"/run/netns/{ct}")
    assert r.code == 0 and r.out is not None, r
    conf = {
        "cniVersion": "1.0.0",
        "name": "pmnet",
        "type": "portmap",
        "backend": "iptables",
        "capabilities": {"portMappings": True},
        "prevResult": r.out,
        "runtimeConfig": {"portMappings": mappings},
        **pm,
    }
    p = cni("portmap", "ADD", conf, cid=cid, netns=f"/run/netns/{ct}")
    assert p.code == 0 and p.out is not None, p
    return conf, p.out


def nat(host: str) -> list[str]:
    out = nsexec(host, "iptables-save", "-t", "nat").stdout.decode().splitlines()
    return [line for line in out if line.startswith(("-A", ":CNI"))]


def test_published_ports_through_go_chains(net: dict[str, Any], make_netns: Any) -> None:
    host, out, cni = net["host"], net["out"], net["cni"]
    ct = make_netns("kpi")
    conf, res = attach_ipt(
        net,
        ct,
        "i1",
        [
            {"hostPort": 9080, "containerPort": 80, "protocol": "tcp"},
            {"hostPort": 9081, "containerPort": 80, "protocol": "tcp", "hostIP": "127.0.0.1"},
            {"hostPort": 9053, "containerPort": 53, "protocol": "udp"},
        ],
    )
    chain = dnat_chain("pmnet", "i1")
    rules = nat(host)
    assert (
        "-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "
        f'"dnat name: \\"pmnet\\" id: \\"i1\\"" -m multiport --dports 9080,9081 -j {chain}' in rules
    )
    assert (
        '-A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" '
        "-j CNI-HOSTPORT-MASQ" in rules
    )
    assert "-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE" in rules
    assert f"-A {chain} -p tcp -m tcp --dport 9080 -j DNAT --to-destination 10.72.0.2:80" in rules
    net["servers"].append(
        subprocess.Popen(["ip", "netns", "exec", ct, sys.executable, "-c", SERVER, "tcp"])
    )
    net["servers"].append(
        subprocess.Popen(["ip", "netns", "exec", ct, sys.executable, "-c", SERVER, "udp"])
    )
    time.sleep(0.3)
    assert client(out, "198.51.100.1", 9080) == "hello 198.51.100.2"
    assert client(host, "127.0.0.1", 9080).startswith("hello")
    assert client(ct, "198.51.100.1", 9080).startswith("hello")  # hairpin
    assert client(host, "127.0.0.1", 9081).startswith("hello")
    assert client(out, "198.51.100.1", 9081).startswith("failed")
    assert client(out, "198.51.100.1", 9053, "udp") == "pong ping"
    chk = {**conf, "prevResult": res}
    assert cni("portmap", "CHECK", chk, cid="i1", netns=f"/run/netns/{ct}").code == 0
    assert cni("portmap", "DEL", chk, cid="i1", netns=f"/run/netns/{ct}").code == 0
    assert not [line for line in nat(host) if chain in line]
    assert client(out, "198.51.100.1", 9080).startswith("failed")
    assert cni("portmap", "DEL", chk, cid="i1", netns="").code == 0  # idempotent


def test_conditions_mark_bit_and_bad_input(net: dict[str, Any], make_netns: Any) -> None:
    host, out, cni = net["host"], net["out"], net["cni"]
    ct = make_netns("kpi")
    conf, _ = attach_ipt(
        net, ct, "c1", [{"hostPort": 9180, "containerPort": 80, "protocol": "tcp"}],
        conditionsV4=["!", "-s", "198.51.100.2"], markMasqBit=5,
    )  # fmt: skip
    rules = nat(host)
    assert any("! -s 198.51.100.2/32" in r and "--dports 9180" in r for r in rules), rules
    assert "-A CNI-HOSTPORT-MASQ -m mark --mark 0x20/0x20 -j MASQUERADE" in rules
    net["servers"].append(
        subprocess.Popen(["ip", "netns", "exec", ct, sys.executable, "-c", SERVER, "tcp"])
    )
    time.sleep(0.3)
    assert client(out, "198.51.100.1", 9180).startswith("failed")  # excluded by the condition
    assert client(host, "127.0.0.1", 9180).startswith("hello")
    before = nat(host)
    base = {k: v for k, v in conf.items() if k not in ("conditionsV4", "markMasqBit")}
    for extra in (
        {"backend": "pf"},
        {"backend": "nftables", "conditionsV4": ["-s", "1.2.3.4"]},
        {"conditionsV4": "-s 1.2.3.4"},
        {"markMasqBit": 40},
        {"markMasqBit": 3, "externalSetMarkChain": "X"},
    ):
        got = cni("portmap", "ADD", {**base, **extra}, cid="c2", netns=f"/run/netns/{ct}")
        assert got.code == 1 and got.out is not None and got.out["code"] == 7, (extra, got)
    assert nat(host) == before


@pytest.mark.oracle
def test_same_chains_as_go_and_cross_del(net: dict[str, Any], make_netns: Any) -> None:
    go = go_plugin_dir()
    if go is None:
        pytest.skip("the reference plugins are not installed")
    host, cni = net["host"], net["cni"]
    ct = make_netns("kpi")
    mappings = [
        {"hostPort": 9280, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": 9281, "containerPort": 81, "protocol": "udp", "hostIP": "127.0.0.1"},
    ]
    conf, res = attach_ipt(net, ct, "g1", mappings)
    kanal_rules = nat(host)
    assert (
        cni("portmap", "DEL", {**conf, "prevResult": res}, cid="g1", netns=f"/run/netns/{ct}").code
        == 0
    )
    for chain in ("CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ"):
        nsexec(host, "iptables", "-t", "nat", "-F", chain)
    nsexec(host, "iptables", "-t", "nat", "-F", "PREROUTING")
    nsexec(host, "iptables", "-t", "nat", "-F", "OUTPUT")
    nsexec(
        host,
        "iptables",
        "-t",
        "nat",
        "-D",
        "POSTROUTING",
        "-m",
        "comment",
        "--comment",
        "CNI portfwd requiring masquerade",
        "-j",
        "CNI-HOSTPORT-MASQ",
        check=False,
    )
    for chain in ("CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ"):
        nsexec(host, "iptables", "-t", "nat", "-X", chain)
    env = {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "g1",
        "CNI_NETNS": f"/run/netns/{ct}",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": go,
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    }
    gconf = {k: v for k, v in conf.items() if k != "backend"}
    g = run(
        ["ip", "netns", "exec", host, f"{go}/portmap"],
        input=json.dumps(gconf).encode(),
        env=env,
        check=False,
    )
    assert g.returncode == 0, g.stdout
    go_rules = nat(host)

    def mine(rules: list[str]) -> list[str]:
        # kanal's bridge masquerade lives in nftables: compare the portmap chains only
        return sorted(r for r in rules if "HOSTPORT" in r or "CNI-DN-" in r)

    assert mine(kanal_rules) == mine(go_rules)
    # kanal's DEL removes what Go added
    assert (
        cni("portmap", "DEL", {**conf, "prevResult": res}, cid="g1", netns=f"/run/netns/{ct}").code
        == 0
    )
    assert not [r for r in nat(host) if dnat_chain("pmnet", "g1") in r]
    # and Go's DEL removes what kanal added
    attach_ipt_again = cni("portmap", "ADD", conf, cid="g1", netns=f"/run/netns/{ct}")
    assert attach_ipt_again.code == 0
    env["CNI_COMMAND"] = "DEL"
    run(["ip", "netns", "exec", host, f"{go}/portmap"], input=json.dumps(gconf).encode(), env=env)
    assert not [r for r in nat(host) if dnat_chain("pmnet", "g1") in r]
