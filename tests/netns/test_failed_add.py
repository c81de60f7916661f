"""A failed ADD leaves nothing, and DEL succeeds for whatever ADD was given.

Runtimes DEL the whole chain, in reverse, after an ADD failed somewhere in it, with
the same config and capabilities; a DEL that fails stops the teardown before it
reaches the plugins that did make something. So every plugin's DEL must succeed for
any input its ADD could have been given, including the one that made ADD fail; and
each plugin's ADD must undo its own steps when a later one fails.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ip_json, nsexec, unique
from tests.netns.cni import PluginRunner

# Every plugin key, capability and argument given a value of the wrong type or an
# invalid one: ADD refuses such a config; DEL must not.
POISON: dict[str, Any] = {
    "mtu": "big",
    "ipMasq": "yes",
    "ipMasqBackend": "pf",
    "bridge": "no/such",
    "hairpinMode": 1,
    "vlan": 99999,
    "mode": "sideways",
    "mac": "zz",
    "snat": "maybe",
    "backend": "pf",
    "markMasqBit": 99,
    "sysctl": {"net.x": 1},
    "table": -1,
    "ingressPolicy": "x",
    "ingressRate": -5,
    "dataDir": 5,
    "runtimeConfig": {
        "portMappings": [{"hostPort": "80", "containerPort": 0}],
        "mac": 5,
        "bandwidth": {"ingressRate": "x"},
        "ips": ["nope"],
        "ipRanges": "x",
    },
    "args": {"cni": {"mac": 5, "ips": "x", "mtu": "x"}},
    "prevResult": {"cniVersion": "1.0.0", "ips": "x"},
}

PLUGINS = [
    "bridge",
    "ptp",
    "macvlan",
    "host-device",
    "tap",
    "loopback",
    "host-local",
    "static",
    "portmap",
    "firewall",
    "tuning",
    "bandwidth",
    "sbr",
]


def links(ns: str) -> list[str]:
    return sorted(x["ifname"] for x in ip_json(ns, "link"))


@pytest.mark.parametrize("plugin", PLUGINS)
def test_del_succeeds_after_add_refused_its_config(
    make_netns: Any, tmp_path: Path, plugin: str
) -> None:
    host, ct = make_netns("kfh"), make_netns("kfc")
    cni = PluginRunner(host, tmp_path)
    conf = {
        "cniVersion": "1.0.0",
        "name": "poisoned",
        "type": plugin,
        "ipam": {"type": "host-local", "subnet": "10.75.0.0/24", "dataDir": str(cni.data_dir)},
        **POISON,
    }
    if plugin in ("host-local", "static"):
        conf["ipam"] = {"type": plugin, "subnet": "x", "addresses": "x", "dataDir": 7}
    before = links(host), links(ct)
    add = cni(plugin, "ADD", conf, cid="f1", netns=f"/run/netns/{ct}")
    if plugin != "loopback":  # (loopback has no keys to refuse)
        assert add.code == 1 and add.out is not None, add
        assert (links(host), links(ct)) == before
    for netns in (f"/run/netns/{ct}", ""):
        got = cni(plugin, "DEL", conf, cid="f1", netns=netns)
        assert (got.code, got.out) == (0, None), got
    assert (links(host), links(ct)) == before


def test_tuning_add_puts_back_what_it_changed(make_netns: Any, tmp_path: Path) -> None:
    """The link step fails (a multicast MAC) after the sysctls were written."""
    host, ct = make_netns("kfh"), make_netns("kfc")
    cni = PluginRunner(host, tmp_path)
    nsexec(ct, "ip", "link", "add", "eth0", "type", "dummy", check=False)
    if "eth0" not in links(ct):  # no dummy module: a veth end does as well
        nsexec(ct, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
    sysctl = "net.ipv4.conf.eth0.arp_ignore"
    prev = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": ct}]}
    conf = {
        "cniVersion": "1.0.0",
        "name": "tun",
        "type": "tuning",
        "dataDir": str(tmp_path / "tuning"),
        "sysctl": {sysctl: "2"},
        "mac": "01:00:5e:00:00:01",
        "prevResult": prev,
    }
    got = cni("tuning", "ADD", conf, cid="u1", netns=f"/run/netns/{ct}")
    assert got.code == 1 and got.out is not None, got
    assert "failed to set link" in got.out["msg"], got  # (after the sysctl was written)
    assert nsexec(ct, "sysctl", "-n", sysctl).stdout.strip() == b"0"
    assert not (tmp_path / "tuning").exists() or list((tmp_path / "tuning").iterdir()) == []


def test_sbr_add_takes_back_its_rules(make_netns: Any, tmp_path: Path) -> None:
    """The second address's default route fails (table 100 has one): the first
    address's rule and route go again, and what was there before stays."""
    host, ct = make_netns("kfh"), make_netns("kfc")
    cni = PluginRunner(host, tmp_path)
    bridge = {
        "cniVersion": "1.0.0",
        "name": "sbrfail",
        "type": "bridge",
        "bridge": unique("kfb", 15),
        "isGateway": True,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": "10.76.0.0/24"}], [{"subnet": "fd00:76::/64"}]],
            "dataDir": str(cni.data_dir),
        },
    }
    b = cni("bridge", "ADD", bridge, cid="s1", netns=f"/run/netns/{ct}")
    assert b.code == 0 and b.out is not None, b
    v6 = next(i["address"] for i in b.out["ips"] if ":" in i["address"]).split("/")[0]
    gw6 = next(i["gateway"] for i in b.out["ips"] if ":" in i["address"])
    nsexec(ct, "ip", "-6", "route", "add", "default", "via", gw6, "dev", "eth0", "table", "100")
    assert v6
    rules_before = json.dumps(ip_json(ct, "rule")), json.dumps(ip_json(ct, "-6", "rule"))
    routes_before = ip_json(ct, "route", "show", "table", "all")
    conf = {
        "cniVersion": "1.0.0",
        "name": "sbrfail",
        "type": "sbr",
        "table": 100,
        "prevResult": b.out,
    }
    got = cni("sbr", "ADD", conf, cid="s1", netns=f"/run/netns/{ct}")
    assert got.code == 1, got
    assert (json.dumps(ip_json(ct, "rule")), json.dumps(ip_json(ct, "-6", "rule"))) == rules_before
    assert ip_json(ct, "route", "show", "table", "all") == routes_before
