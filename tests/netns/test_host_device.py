"""The host-device plugin: a host link moved into the container and back."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import go_plugin_dir, ip_json, nsexec, run
from tests.netns.cni import PluginRunner


@pytest.fixture
def hd(make_netns: Callable[[str], str], tmp_path: Path) -> dict[str, Any]:
    host, peer = make_netns("khh"), make_netns("khp")
    # The "device": one end of a veth pair, its other end in a peer namespace.
    nsexec(
        host,
        "ip",
        "link",
        "add",
        "dev0",
        "address",
        "02:00:00:00:d0:01",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        peer,
    )
    nsexec(host, "ip", "link", "set", "dev0", "up")
    nsexec(peer, "ip", "addr", "add", "192.0.2.1/24", "dev", "eth0")
    nsexec(peer, "ip", "link", "set", "eth0", "up")
    return {"host": host, "peer": peer, "cni": PluginRunner(host, tmp_path)}


def names(ns: str) -> list[str]:
    return sorted(x["ifname"] for x in ip_json(ns, "link"))


@pytest.mark.parametrize("how", ["device", "hwaddr"])
def test_move_in_with_ipam_and_back(hd: dict[str, Any], make_netns: Any, how: str) -> None:
    cni: PluginRunner = hd["cni"]
    ct = make_netns("khc")
    conf: dict[str, Any] = {
        "cniVersion": "1.0.0",
        "name": "hdnet",
        "type": "host-device",
        "ipam": {"type": "static", "addresses": [{"address": "192.0.2.10/24"}]},
    }
    conf[how] = "dev0" if how == "device" else "02:00:00:00:D0:01"
    r = cni("host-device", "ADD", conf, cid="h1", ifname="net1", netns=f"/run/netns/{ct}")
    assert r.code == 0 and r.out is not None, r
    assert r.out["interfaces"] == [
        {"name": "net1", "mac": "02:00:00:00:d0:01", "sandbox": f"/run/netns/{ct}"}
    ]
    assert "dev0" not in names(hd["host"])
    link = ip_json(ct, "link", "show", "net1")[0]
    assert link["address"] == "02:00:00:00:d0:01" and "UP" in link["flags"]
    assert nsexec(ct, "ping", "-c", "1", "-W", "2", "192.0.2.1", check=False).returncode == 0
    chk = {**conf, "prevResult": r.out}
    assert (
        cni("host-device", "CHECK", chk, cid="h1", ifname="net1", netns=f"/run/netns/{ct}").code
        == 0
    )
    assert (
        cni("host-device", "DEL", chk, cid="h1", ifname="net1", netns=f"/run/netns/{ct}").code == 0
    )
    assert "dev0" in names(hd["host"]) and names(ct) == ["lo"]
    back = ip_json(hd["host"], "link", "show", "dev0")[0]
    assert "UP" not in back["flags"]  # as Go leaves it: moved back down
    assert (
        cni("host-device", "DEL", chk, cid="h1", ifname="net1", netns=f"/run/netns/{ct}").code == 0
    )


def test_bad_input_changes_nothing(hd: dict[str, Any], make_netns: Any) -> None:
    cni: PluginRunner = hd["cni"]
    ct = make_netns("khc")
    base = {"cniVersion": "1.0.0", "name": "hdnet", "type": "host-device"}
    for extra, code in (
        ({}, 7),
        ({"device": "dev0", "hwaddr": "02:00:00:00:d0:01"}, 7),
        ({"device": "nosuch0"}, 3),
        ({"kernelpath": "/etc/passwd"}, 7),
        ({"pciBusID": "0000:00:1f.6"}, 7),
    ):
        got = cni("host-device", "ADD", {**base, **extra}, cid="h1", netns=f"/run/netns/{ct}")
        assert got.code == 1 and got.out is not None and got.out["code"] == code, (extra, got)
    assert "dev0" in names(hd["host"]) and names(ct) == ["lo"]


@pytest.mark.oracle
def test_go_add_kanal_del_and_back(hd: dict[str, Any], make_netns: Any) -> None:
    go = go_plugin_dir()
    if go is None:
        pytest.skip("the reference plugins are not installed")
    cni: PluginRunner = hd["cni"]
    ct = make_netns("khc")
    conf = {"cniVersion": "1.0.0", "name": "hdnet", "type": "host-device", "device": "dev0"}
    env = {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "g1",
        "CNI_NETNS": f"/run/netns/{ct}",
        "CNI_IFNAME": "net1",
        "CNI_PATH": go,
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    }
    g = run(
        ["ip", "netns", "exec", hd["host"], f"{go}/host-device"],
        input=json.dumps(conf).encode(),
        env=env,
    )
    gout = json.loads(g.stdout)
    assert names(ct) == ["lo", "net1"]
    # kanal's DEL brings Go's move back under the original name
    assert (
        cni(
            "host-device",
            "DEL",
            {**conf, "prevResult": gout},
            cid="g1",
            ifname="net1",
            netns=f"/run/netns/{ct}",
        ).code
        == 0
    )
    assert "dev0" in names(hd["host"]) and names(ct) == ["lo"]
    # and kanal's ADD result has the Go plugin's shape
    k = cni("host-device", "ADD", conf, cid="k1", ifname="net1", netns=f"/run/netns/{ct}")
    assert k.out is not None and k.out["interfaces"] == gout["interfaces"]
    env["CNI_COMMAND"] = "DEL"
    run(
        ["ip", "netns", "exec", hd["host"], f"{go}/host-device"],
        input=json.dumps(conf).encode(),
        env=env,
    )
    assert "dev0" in names(hd["host"]) and names(ct) == ["lo"]  # Go's DEL undoes kanal's ADD


def test_kernelpath_through_the_installed_plugin(hd: dict[str, Any], make_netns: Any) -> None:
    """kernelpath is read in sysfs, which shows the namespace it was mounted for: run
    the installed plugin under ``ip netns exec`` (which mounts the host's), standalone."""
    ct = make_netns("khc")
    cni: PluginRunner = hd["cni"]
    conf = {
        "cniVersion": "1.0.0",
        "name": "hdnet",
        "type": "host-device",
        "kernelpath": "/sys/devices/virtual/net/dev0",
    }
    env = {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "kp",
        "CNI_NETNS": f"/run/netns/{ct}",
        "CNI_IFNAME": "net9",
        "CNI_PATH": str(cni.bindir),
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "KANAL_SOCKET": "/nonexistent/kanald.sock",  # no daemon: the plugin runs itself
    }
    p = run(
        ["ip", "netns", "exec", hd["host"], str(cni.bindir / "host-device")],
        input=json.dumps(conf).encode(),
        env=env,
        check=False,
    )
    assert p.returncode == 0, p.stdout
    assert json.loads(p.stdout)["interfaces"][0]["name"] == "net9"
    assert names(ct) == ["lo", "net9"] and "dev0" not in names(hd["host"])
    env["CNI_COMMAND"] = "DEL"
    p = run(
        ["ip", "netns", "exec", hd["host"], str(cni.bindir / "host-device")],
        input=json.dumps(conf).encode(),
        env=env,
        check=False,
    )
    assert p.returncode == 0, p.stdout
    assert names(ct) == ["lo"] and "dev0" in names(hd["host"])
