"""kanal touches only what it made: namesake links, an operator's bridge, host sysctls,
nftables entries of removed networks; and an interrupted start is found again.

Each test runs the controller in a host namespace made here (see test_engine).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from kanal.engine.controller import NetworkSpec
from kanal.engine.model import IPAMConfig, PortBinding
from kanal.engine.sandboxes import SandboxManager, SandboxSpec
from kanal.errors import KanalError
from tests.helpers import ip_json, nsexec
from tests.netns.test_engine import Engine, ping

OPT = "com.docker.network.bridge.name"


@pytest.fixture
def eng(host_ns: str, tmp_path: Path) -> Engine:
    e = Engine(host_ns, tmp_path)
    e(e.ctrl.ensure_builtin)
    return e


def _links(host: str) -> dict[str, dict[str, object]]:
    return {ln["ifname"]: ln for ln in ip_json(host, "-d", "link")}


def _sysctl(host: str, key: str) -> str:
    return nsexec(host, "cat", f"/proc/sys/{key}").stdout.decode().strip()


def test_a_failed_create_leaves_a_namesake_link_alone(eng: Engine) -> None:
    nsexec(eng.host, "ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1")
    before = eng.ctrl.store.revision()
    with pytest.raises(KanalError, match="not a bridge"):
        eng(lambda: eng.ctrl.create_network(NetworkSpec("x", options={OPT: "v0"})))
    links = _links(eng.host)
    assert "v0" in links and "v1" in links  # the operator's pair is still there
    assert eng.ctrl.store.revision() == before
    assert not eng.ctrl.journal.open()


def test_an_operators_bridge_keeps_its_own(eng: Engine, make_netns: Callable[[str], str]) -> None:
    h = eng.host
    nsexec(h, "ip", "link", "add", "opbr", "type", "bridge")
    nsexec(h, "ip", "addr", "add", "10.99.0.1/24", "dev", "opbr")
    nsexec(h, "ip", "link", "add", "p1", "type", "veth", "peer", "name", "p2")
    nsexec(h, "ip", "link", "set", "p1", "master", "opbr")
    nsexec(h, "ip", "link", "set", "opbr", "up")
    net = eng(
        lambda: eng.ctrl.create_network(
            NetworkSpec("ops", ipam=[IPAMConfig("10.98.0.0/24")], options={OPT: "opbr"})
        )
    )
    assert _links(h)["opbr"].get("ifalias", "") == ""  # not marked: not kanal's
    ns, sb = eng.sandbox(make_netns, "c1")
    ep = eng(lambda: eng.ctrl.connect("ops", sb))
    assert ping(ns, "10.98.0.1")
    eng(lambda: eng.ctrl.disconnect("ops", sb.id))
    eng(lambda: eng.ctrl.delete_network(net.id))
    links = _links(h)
    assert "opbr" in links and links["p1"]["master"] == "opbr" and "p2" in links
    (got,) = ip_json(h, "addr", "show", "dev", "opbr")
    assert [a["local"] for a in got["addr_info"] if a["family"] == "inet"] == ["10.99.0.1"]
    chains = nsexec(h, "nft", "list", "table", "inet", "kanal").stdout.decode()
    assert f"kn_{net.id[:12]}" not in chains
    assert ep.driver_state["host_veth"] not in links


def test_kanals_bridge_is_marked_and_only_a_marked_one_removed(eng: Engine) -> None:
    a = eng(lambda: eng.ctrl.create_network(NetworkSpec("mine")))
    br = a.driver_state["bridge"]
    assert _links(eng.host)[br]["ifalias"] == f"kanal:net:{a.id}"
    eng(lambda: eng.ctrl.delete_network("mine"))
    assert br not in _links(eng.host)
    # One whose mark someone took away is no longer kanal's to delete.
    b = eng(lambda: eng.ctrl.create_network(NetworkSpec("adopted")))
    br = b.driver_state["bridge"]
    nsexec(eng.host, "ip", "link", "set", br, "alias", "the operator's now")
    eng(lambda: eng.ctrl.delete_network("adopted"))
    assert br in _links(eng.host)
    nsexec(eng.host, "ip", "link", "del", br)


def test_ip_forward_is_given_back(eng: Engine) -> None:
    key = "net/ipv4/ip_forward"
    nsexec(eng.host, "sysctl", "-qw", "net.ipv4.ip_forward=0")
    eng(lambda: eng.ctrl.create_network(NetworkSpec("f1", ipam=[IPAMConfig("10.97.1.0/24")])))
    eng(lambda: eng.ctrl.create_network(NetworkSpec("f2", ipam=[IPAMConfig("10.97.2.0/24")])))
    assert _sysctl(eng.host, key) == "1"
    eng(lambda: eng.ctrl.delete_network("f1"))
    assert _sysctl(eng.host, key) == "1"  # f2 still needs it
    # (the built-in bridge network claimed it too, when the engine started)
    claims = eng.ctrl.ctx.sysctls.claims()[key]
    eng(lambda: eng.ctrl.delete_network("f2"))
    assert len(eng.ctrl.ctx.sysctls.claims()[key]) == len(claims) - 1
    # Last user gone: the earlier value is back.
    bridge = next(n for n in eng.ctrl.networks() if n.name == "bridge")
    eng(lambda: eng.ctrl.driver("bridge").delete_network(bridge))
    assert _sysctl(eng.host, key) == "0"
    assert key not in eng.ctrl.ctx.sysctls.claims()
    # A value that was already set is not the engine's: nothing recorded, nothing undone.
    nsexec(eng.host, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    eng(lambda: eng.ctrl.create_network(NetworkSpec("f3", ipam=[IPAMConfig("10.97.3.0/24")])))
    eng(lambda: eng.ctrl.delete_network("f3"))
    assert _sysctl(eng.host, key) == "1"


def _kanal_elements(host: str, sets: tuple[str, ...]) -> list[object]:
    out = []
    for name in sets:
        p = nsexec(host, "nft", "-j", "list", "set", "inet", "kanal", name, check=False)
        if p.returncode != 0:
            continue
        for obj in json.loads(p.stdout)["nftables"]:
            out += obj.get("set", {}).get("elem", [])
    return out


def test_a_removed_network_leaves_no_subnet_entries(
    eng: Engine, make_netns: Callable[[str], str]
) -> None:
    """Issue 11's dockerd reproduction, on the engine: a /25 inside a removed /24."""
    sets = ("skip4", "pm_subnets4", "masq4")
    eng(lambda: eng.ctrl.create_network(NetworkSpec("n24", ipam=[IPAMConfig("10.90.9.0/24")])))
    ns, sb = eng.sandbox(make_netns, "c1")
    eng(lambda: eng.ctrl.connect("n24", sb, ports=[PortBinding(80, host_port=18099)]))
    assert _kanal_elements(eng.host, sets)
    eng(lambda: eng.ctrl.disconnect("n24", sb.id))
    assert _kanal_elements(eng.host, sets) == []  # the last endpoint took them along
    eng(lambda: eng.ctrl.connect("n24", sb, ports=[PortBinding(80, host_port=18099)]))
    eng(lambda: eng.ctrl.disconnect_all(sb.id))
    eng(lambda: eng.ctrl.delete_network("n24"))
    assert _kanal_elements(eng.host, sets) == []
    eng(lambda: eng.ctrl.create_network(NetworkSpec("n25", ipam=[IPAMConfig("10.90.9.0/25")])))
    ep = eng(lambda: eng.ctrl.connect("n25", sb, ports=[PortBinding(80, host_port=18099)]))
    assert ep.ipv4.startswith("10.90.9.")


def test_an_interrupted_start_is_adopted_then_stopped(eng: Engine, tmp_path: Path) -> None:
    """kanald dies between starting a sandbox's process and recording it: the restarted
    one finds the process (pidfile, start time) and ``rm -f`` stops it."""
    from kanal.engine.recovery import recover

    m = SandboxManager(eng.ctrl.store, eng.ctrl, state_dir=str(tmp_path / "s"),
                       netns_dir=str(tmp_path / "netns"))  # fmt: skip
    sb = eng(lambda: m.create(SandboxSpec(["sleep", "300"], name="late", network_mode="none")))
    it = m.journal.begin("sandbox-start", sandbox=sb.id)
    p = eng(lambda: m.procs.launch(sb))  # ... and the daemon "dies" here: nothing recorded
    assert m.get("late").state == "created"
    # A new daemon on the same store and directories.
    ctrl2 = eng.new_controller()
    m2 = SandboxManager(ctrl2.store, ctrl2, state_dir=str(tmp_path / "s"),
                        netns_dir=str(tmp_path / "netns"))  # fmt: skip
    for _ in range(100):  # the launcher writes its pidfile before it runs the command
        if os.path.exists(os.path.join(tmp_path, "s", "sandboxes", sb.id, "pid")):
            break
        time.sleep(0.02)
    done = eng(lambda: recover(ctrl2, m2))
    assert [d.split()[0] for d in done] == ["sandbox-start"]
    adopted = m2.get("late")
    assert adopted.state == "running" and adopted.pid == p.pid
    assert ctrl2.store.get(it.key) is None
    eng(lambda: m2.remove("late", force=True))
    # ended by rm's signal (our child here: reaped by wait); the PID namespace's init
    # reports its command's SIGTERM as docker does (143), a SIGKILL kills unshare itself
    assert p.wait(10) in (143, -9)
