"""The firewall plugin chained after kanal's bridge, on both backends.

The test's host drops forwarded traffic by default (a FORWARD policy DROP, as
Docker leaves it), so a container reaches the "outside" namespace only through
the accepts the plugin adds. The iptables backend is checked against the Go
plugin (same iptables-save, and each one's DEL removes the other's rules).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import go_plugin_dir, nsexec, run, unique
from tests.netns.cni import PluginRunner


def ping(ns: str, ip: str) -> bool:
    return nsexec(ns, "ping", "-c", "1", "-W", "1", ip, check=False).returncode == 0


@pytest.fixture
def net(make_netns: Callable[[str], str], tmp_path: Path) -> Iterator[dict[str, Any]]:
    host, out = make_netns("kfh"), make_netns("kfo")
    nsexec(
        host, "ip", "link", "add", "to-out", "type", "veth", "peer", "name", "eth0", "netns", out
    )
    nsexec(host, "ip", "addr", "add", "198.51.100.1/24", "dev", "to-out")
    nsexec(host, "ip", "link", "set", "to-out", "up")
    nsexec(out, "ip", "addr", "add", "198.51.100.2/24", "dev", "eth0")
    nsexec(out, "ip", "link", "set", "eth0", "up")
    nsexec(out, "ip", "route", "add", "default", "via", "198.51.100.1")
    cni = PluginRunner(host, tmp_path)
    yield {"host": host, "out": out, "cni": cni, "tmp": tmp_path}


def bridge_conf(cni: PluginRunner, br: str, subnet: str, name: str = "fwnet") -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": name,
        "type": "bridge",
        "bridge": br,
        "isGateway": True,
        "isDefaultGateway": True,
        "ipMasq": False,
        "ipam": {"type": "host-local", "subnet": subnet, "dataDir": str(cni.data_dir)},
    }


def attach(
    cni: PluginRunner, ct: str, cid: str, bconf: dict[str, Any], **fw: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    r = cni("bridge", "ADD", bconf, cid=cid, netns=f"/run/netns/{ct}")
    assert r.code == 0 and r.out is not None, r
    conf = {
        "cniVersion": "1.0.0",
        "name": bconf["name"],
        "type": "firewall",
        "prevResult": r.out,
        **fw,
    }
    f = cni("firewall", "ADD", conf, cid=cid, netns=f"/run/netns/{ct}")
    assert f.code == 0 and f.out == r.out, f  # prevResult handed on unchanged
    return conf, r.out


def forward_drop(host: str) -> None:
    nsexec(host, "iptables", "-P", "FORWARD", "DROP")


@pytest.mark.parametrize("backend", ["iptables", "nftables"])
def test_accepts_forwarded_traffic_then_del_removes(
    net: dict[str, Any], make_netns: Any, backend: str
) -> None:
    host, cni = net["host"], net["cni"]
    ct = make_netns("kfc")
    bconf = bridge_conf(cni, unique("kfb", 15), "10.81.0.0/24")
    if backend == "iptables":
        forward_drop(host)
    r = cni("bridge", "ADD", bconf, cid="c1", netns=f"/run/netns/{ct}")
    assert r.code == 0 and r.out is not None
    if backend == "iptables":
        assert not ping(ct, "198.51.100.2")  # the host drops it: the plugin is what opens it
    conf = {
        "cniVersion": "1.0.0",
        "name": "fwnet",
        "type": "firewall",
        "backend": backend,
        "prevResult": r.out,
    }
    assert cni("firewall", "ADD", conf, cid="c1", netns=f"/run/netns/{ct}").code == 0
    assert ping(ct, "198.51.100.2")
    # The admin chain comes first: an admin's drop there beats the plugin's accept.
    admin = "CNI-ADMIN" if backend == "iptables" else "fw_admin"
    if backend == "iptables":
        nsexec(host, "iptables", "-A", admin, "-s", "10.81.0.2", "-j", "DROP")
    else:
        nsexec(
            host, "nft", "add", "rule", "inet", "kanal", admin, "ip", "saddr", "10.81.0.2", "drop"
        )
    assert not ping(ct, "198.51.100.2")
    if backend == "iptables":
        nsexec(host, "iptables", "-F", admin)
    else:
        nsexec(host, "nft", "flush", "chain", "inet", "kanal", admin)
    assert ping(ct, "198.51.100.2")
    assert cni("firewall", "CHECK", conf, cid="c1", netns=f"/run/netns/{ct}").code == 0
    assert cni("firewall", "DEL", conf, cid="c1", netns=f"/run/netns/{ct}").code == 0
    check = cni("firewall", "CHECK", conf, cid="c1", netns=f"/run/netns/{ct}")
    assert check.code != 0
    assert cni("firewall", "DEL", conf, cid="c1", netns=f"/run/netns/{ct}").code == 0  # idempotent
    if backend == "iptables":
        assert not ping(ct, "198.51.100.2")
        rules = nsexec(host, "iptables", "-S", "CNI-FORWARD").stdout.decode()
        assert "10.81.0.2" not in rules
    else:
        elems = nsexec(host, "nft", "list", "set", "inet", "kanal", "fw_ips4").stdout.decode()
        assert "10.81.0.2" not in elems


@pytest.mark.oracle
def test_iptables_rules_are_the_go_plugins(net: dict[str, Any], make_netns: Any) -> None:
    go = go_plugin_dir()
    if go is None:
        pytest.skip("the reference plugins are not installed")
    host, cni = net["host"], net["cni"]
    ct = make_netns("kfc")
    bconf = bridge_conf(cni, unique("kfb", 15), "10.82.0.0/24")
    r = cni("bridge", "ADD", bconf, cid="c1", netns=f"/run/netns/{ct}")
    assert r.out is not None
    conf = {
        "cniVersion": "1.0.0",
        "name": "fwnet",
        "type": "firewall",
        "backend": "iptables",
        "ingressPolicy": "same-bridge",
        "prevResult": r.out,
    }

    def go_run(cmd: str) -> Any:
        env = {
            "CNI_COMMAND": cmd,
            "CNI_CONTAINERID": "c1",
            "CNI_NETNS": f"/run/netns/{ct}",
            "CNI_IFNAME": "eth0",
            "CNI_PATH": go,
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        }
        return run(
            ["ip", "netns", "exec", host, f"{go}/firewall"],
            input=json.dumps(conf).encode(),
            env=env,
            check=False,
        )

    def saved() -> list[str]:
        out = nsexec(host, "iptables-save", "-t", "filter").stdout.decode().splitlines()
        return [line for line in out if line.startswith("-") or line.startswith(":CNI")]

    assert go_run("ADD").returncode == 0
    go_state = saved()
    assert any("10.82.0.2/32" in line for line in go_state)
    assert (
        cni("firewall", "DEL", conf, cid="c1", netns=f"/run/netns/{ct}").code == 0
    )  # kanal DELs Go's
    assert not any("10.82.0.2" in line for line in saved())
    nsexec(host, "iptables", "-F")
    for chain in ("CNI-FORWARD", "CNI-ADMIN", "CNI-ISOLATION-STAGE-1", "CNI-ISOLATION-STAGE-2"):
        nsexec(host, "iptables", "-X", chain)
    assert cni("firewall", "ADD", conf, cid="c1", netns=f"/run/netns/{ct}").code == 0
    assert saved() == go_state  # the very same rules, in the same order
    assert go_run("DEL").returncode == 0  # and Go's DEL removes kanal's
    assert not any("10.82.0.2" in line for line in saved())


@pytest.mark.parametrize("backend", ["iptables", "nftables"])
def test_ingress_policies(net: dict[str, Any], make_netns: Any, backend: str) -> None:
    cni = net["cni"]
    a1, a2, b1, c1 = (make_netns("kfi") for _ in range(4))
    bra, brb, brc = (unique("kfb", 15) for _ in range(3))
    ca = bridge_conf(cni, bra, "10.83.0.0/24", "neta")
    cb = bridge_conf(cni, brb, "10.84.0.0/24", "netb")
    cc = bridge_conf(cni, brc, "10.85.0.0/24", "netc")
    _, ra1 = attach(cni, a1, "a1", ca, backend=backend, ingressPolicy="same-bridge")
    _, ra2 = attach(cni, a2, "a2", ca, backend=backend, ingressPolicy="same-bridge")
    _, rb1 = attach(cni, b1, "b1", cb, backend=backend, ingressPolicy="same-bridge")
    _, rc1 = attach(cni, c1, "c1", cc, backend=backend, ingressPolicy="isolated")
    ip = {
        k: v["ips"][0]["address"].split("/")[0]
        for k, v in (("a1", ra1), ("a2", ra2), ("b1", rb1), ("c1", rc1))
    }
    assert ping(a1, ip["a2"])  # same bridge: open
    assert not ping(a1, ip["b1"])  # another same-bridge network: dropped
    assert not ping(b1, ip["a1"])
    assert not ping(a1, ip["c1"])
    # isolated: a second container on the same bridge cannot reach the first
    c2 = make_netns("kfi")
    _, rc2 = attach(cni, c2, "c2", cc, backend=backend, ingressPolicy="isolated")
    assert not ping(c2, ip["c1"])
    assert ping(c2, "10.85.0.1")  # the host (gateway) still answers
    _ = rc2


def test_bad_input_changes_nothing(net: dict[str, Any], make_netns: Any) -> None:
    host, cni = net["host"], net["cni"]
    ct = make_netns("kfc")
    r = cni(
        "bridge",
        "ADD",
        bridge_conf(cni, unique("kfb", 15), "10.86.0.0/24"),
        cid="c1",
        netns=f"/run/netns/{ct}",
    )
    base = {"cniVersion": "1.0.0", "name": "fwnet", "type": "firewall", "prevResult": r.out}
    before = nsexec(host, "nft", "list", "ruleset").stdout + nsexec(host, "iptables-save").stdout
    cases: list[tuple[dict[str, Any], int]] = [
        ({**base, "backend": "firewalld"}, 7),
        ({**base, "backend": "pf"}, 7),
        ({**base, "ingressPolicy": "closed"}, 7),
        ({**base, "iptablesAdminChainName": "bad name"}, 7),
        ({k: v for k, v in base.items() if k != "prevResult"}, 999),
        ({**base, "cniVersion": "0.3.1"}, 1),
    ]
    for conf, code in cases:
        got = cni("firewall", "ADD", conf, cid="c1", netns=f"/run/netns/{ct}")
        assert got.code == 1 and got.out is not None and got.out["code"] == code, (conf, got)
    after = nsexec(host, "nft", "list", "ruleset").stdout + nsexec(host, "iptables-save").stdout

    def strip(b: bytes) -> list[str]:
        return [x for x in b.decode().splitlines() if not x.startswith("#")]

    assert strip(after) == strip(before)


def test_gc_keeps_only_valid_attachments(net: dict[str, Any], make_netns: Any) -> None:
    cni = net["cni"]
    bconf = bridge_conf(cni, unique("kfb", 15), "10.87.0.0/24")
    cts = [make_netns("kfg") for _ in range(3)]
    for i, ct in enumerate(cts):
        attach(cni, ct, f"g{i}", bconf, backend="nftables")
    gc = {
        "cniVersion": "1.1.0",
        "name": "fwnet",
        "type": "firewall",
        "backend": "nftables",
        "cni.dev/valid-attachments": [{"containerID": "g1", "ifname": "eth0"}],
    }
    assert cni("firewall", "GC", gc).code == 0
    elems = nsexec(net["host"], "nft", "list", "set", "inet", "kanal", "fw_ips4").stdout.decode()
    assert "10.87.0.3" in elems and "10.87.0.2" not in elems and "10.87.0.4" not in elems
    # DEL without prevResult (a runtime that lost its cache) still finds its entries
    nop = {"cniVersion": "1.0.0", "name": "fwnet", "type": "firewall", "backend": "nftables"}
    assert cni("firewall", "DEL", nop, cid="g1", netns="").code == 0
    elems = nsexec(net["host"], "nft", "list", "set", "inet", "kanal", "fw_ips4").stdout.decode()
    assert "10.87.0.3" not in elems
