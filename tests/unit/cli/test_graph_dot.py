"""``kanal graph``'s drawing of a topology model (pure: no daemon, no dot program)."""

from __future__ import annotations

from typing import Any

from kanal.cli.graph import build_dot
from tests.e2e.test_graph import parse_dot

NET = "a" * 64
SB = "b" * 64


def model(**over: Any) -> dict[str, Any]:
    vx = {
        "Name": "vx-100",
        "Vni": 100,
        "State": "ok",
        "Vteps": [
            {"Addr": "192.0.2.2", "Host": "h2", "Macs": 2, "State": "ok"},
            {"Addr": "2001:db8::3", "Host": "", "Macs": 1, "State": "kernel only"},
            {"Addr": "192.0.2.4", "Host": "h4", "Macs": 0, "State": "missing"},
        ],
    }
    net = {
        "Id": NET,
        "Name": "ov",
        "Driver": "overlay",
        "Scope": "global",
        "Internal": True,
        "Subnets": [{"Subnet": "10.9.0.0/24", "Gateway": ""}],
        "Device": {"Name": "kov100", "Kind": "bridge", "State": "ok", "Addresses": []},
        "Parent": None,
        "Vxlan": vx,
        "Stray": [],
    }
    iface = {
        "Network": NET,
        "NetworkName": "ov",
        "Name": "eth0",
        "Kind": "veth",
        "Mac": "02:00:00:00:00:01",
        "Addresses": ["10.9.0.2/24"],
        "KernelAddresses": ["10.9.0.2/24"],
        "Aliases": [],
        "Ports": [],
        "State": "ok",
        "HostVeth": {"Name": "veth1", "State": "not on kov100"},
    }
    sb = {"Id": SB, "Name": 'odd "name"', "State": "running", "Netns": "/x", "Interfaces": [iface]}
    m = {"Host": "h1", "Networks": [net], "Sandboxes": [sb], "Drift": ["one", "two"]}
    m.update(over)
    return m


def test_overlay_vteps_and_drift_colours() -> None:
    nodes, edges, eattrs = parse_dot(build_dot(model()))
    assert nodes[f"net_{NET[:12]}"]["label"].splitlines() == [
        "network ov",
        "overlay (global)",
        "10.9.0.0/24",
        "internal",
    ]
    vx = "dev_vx-100"
    assert nodes[vx]["label"] == "vxlan vx-100\nVNI 100"
    assert frozenset(("dev_kov100", vx)) in edges
    ok, v6, gone = "vtep_192.0.2.2", "vtep_2001_db8__3", "vtep_192.0.2.4"  # no ":" in ids
    assert nodes[ok]["label"] == "VTEP 192.0.2.2\nh2" and "color" not in nodes[ok]
    assert eattrs[frozenset((vx, ok))]["label"] == "2 MACs"
    assert nodes[v6]["color"] == "red" and nodes[v6]["label"].endswith("(kernel only)")
    assert eattrs[frozenset((vx, v6))]["label"] == "1 MAC"
    assert nodes[gone]["color"] == "red" and nodes[gone]["label"].endswith("(missing)")
    # a veth off its bridge: the veth red, its link to the bridge red, the interface not
    assert nodes["dev_veth1"]["color"] == "red"
    assert eattrs[frozenset(("dev_veth1", "dev_kov100"))]["color"] == "red"
    assert "color" not in nodes[f"if_{SB[:12]}_eth0"]
    assert nodes["drift"]["label"] == "store and kernel disagree (2)\none\ntwo"


def test_quotes_and_backslashes_survive() -> None:
    m = model(Drift=['a "quoted" \\ thing'])
    nodes, _, _ = parse_dot(build_dot(m))
    assert nodes["drift"]["label"].splitlines()[1] == 'a "quoted" \\\\ thing'


def test_empty() -> None:
    nodes, edges, _ = parse_dot(
        build_dot({"Host": "h", "Networks": [], "Sandboxes": [], "Drift": []})
    )
    assert nodes == {} and edges == set()
