"""kanal's engine using remote Docker plugins served by other processes, as dockerd would.

Two plugins, each a separate process in the test's host namespace: a minimal one
written for the test (tests/fixtures/mini_docker_plugin.py, found as ``NAME.sock``)
and kanal's own, served by a second kanald (found through a ``.spec`` file).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from kanal.daemon.cniruntime import inprocess_cni
from kanal.engine.context import EngineContext
from kanal.engine.controller import Controller, NetworkSpec, SandboxRef
from kanal.engine.ipam import Pool
from kanal.engine.model import PortBinding, new_id
from kanal.engine.remoteplugins import PluginRegistry
from kanal.errors import InvalidConfig, KanalError
from kanal.store import open_store
from tests.helpers import ip_json, nsexec, unique
from tests.netns.inns import in_ns

T = TypeVar("T")
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
VENV = Path(__file__).resolve().parents[2] / ".venv" / "bin"


class Host:
    def __init__(self, host: str, tmp: Path) -> None:
        self.host = host
        self.tmp = tmp
        self.plugins = tmp / "plugins"
        self.plugins.mkdir()
        self.procs: list[subprocess.Popen[bytes]] = []
        store = open_store(f"sqlite://{tmp}/state.db")
        ctx = EngineContext(
            cni_runtime=inprocess_cni,
            state_dir=str(tmp / "state"),
            plugins=PluginRegistry([str(self.plugins)]),
        )
        self.ctrl = Controller(store, ctx, pools=[Pool("10.87.0.0/16", 24)])

    def __call__(self, fn: Callable[[], T]) -> T:
        return in_ns(self.host, fn)

    def spawn(self, argv: list[str], ready: Path) -> None:
        with open(self.tmp / "plugin.log", "ab") as log:
            p = subprocess.Popen(["ip", "netns", "exec", self.host, *argv], stderr=log)
        self.procs.append(p)
        for _ in range(500):
            if ready.exists():
                return
            time.sleep(0.02)
        raise AssertionError(f"{argv[0]} did not come up")

    def sandbox(self, make_netns: Callable[[str], str], name: str) -> tuple[str, SandboxRef]:
        ns = make_netns("krs")
        return ns, SandboxRef(new_id(), name, f"/run/netns/{ns}")


@pytest.fixture
def host(host_ns: str, tmp_path: Path) -> Iterator[Host]:
    h = Host(host_ns, tmp_path)
    yield h
    for p in h.procs:
        p.kill()
        p.wait()


def calls(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def ping(ns: str, ip: str) -> bool:
    return nsexec(ns, "ping", "-c", "1", "-W", "1", ip, check=False).returncode == 0


def test_a_third_party_plugin_as_driver_and_ipam(
    host: Host, make_netns: Callable[[str], str]
) -> None:
    log = host.tmp / "mini.log"
    host.spawn(
        [
            sys.executable,
            str(FIXTURES / "mini_docker_plugin.py"),
            str(host.plugins / "mini.sock"),
            str(log),
        ],
        host.plugins / "mini.sock",
    )
    c = host.ctrl
    net = host(lambda: c.create_network(NetworkSpec("mnet", driver="mini", ipam_driver="mini")))
    assert net.driver == "mini" and net.ipam_driver == "mini"
    assert net.ipam[0].subnet == "10.86.1.0/24" and net.ipam[0].gateway == "10.86.1.1"
    seq = [x["path"] for x in calls(log)]
    # dockerd's order (docker-traces): the driver's capabilities before any IPAM call
    assert seq == [
        "/Plugin.Activate",
        "/NetworkDriver.GetCapabilities",
        "/IpamDriver.GetDefaultAddressSpaces",
        "/IpamDriver.RequestPool",
        "/IpamDriver.RequestAddress",
        "/NetworkDriver.CreateNetwork",
    ]
    create = calls(log)[-1]["req"]
    # the IPAM driver's own address space, as dockerd passes it (docker-traces: "lablocal")
    assert (
        create["IPv4Data"]
        == [{"AddressSpace": "mini", "Pool": "10.86.1.0/24", "Gateway": "10.86.1.1/24"}]
        and create["NetworkID"] == net.id
    )
    a_ns, a = host.sandbox(make_netns, "a")
    b_ns, b = host.sandbox(make_netns, "b")
    ep_a = host(lambda: c.connect("mnet", a, ports=[PortBinding(80, "tcp", "", 0)]))
    ep_b = host(lambda: c.connect("mnet", b))
    assert ep_a.ipv4 == "10.86.1.2/24" and ep_b.ipv4 == "10.86.1.3/24"
    got = ip_json(a_ns, "addr", "show", "dev", "eth0")[0]
    v4 = [x for x in got["addr_info"] if x["family"] == "inet"]
    assert [f"{x['local']}/{x['prefixlen']}" for x in v4] == ["10.86.1.2/24"]
    assert ip_json(a_ns, "route", "show", "default")[0]["gateway"] == "10.86.1.1"
    assert ping(a_ns, "10.86.1.3") and ping(b_ns, "10.86.1.1")
    pec = [x for x in calls(log) if x["path"] == "/NetworkDriver.ProgramExternalConnectivity"]
    assert len(pec) == 1
    pm = pec[0]["req"]["Options"]["com.docker.network.portmap"]
    assert pm[0]["Port"] == 80 and pm[0]["Proto"] == 6 and pm[0]["HostPort"] > 0
    mark = len(calls(log))
    host(lambda: c.disconnect("mnet", a.id))
    assert [x["path"] for x in calls(log)[mark:]] == [
        "/NetworkDriver.RevokeExternalConnectivity",
        "/NetworkDriver.Leave",
        "/NetworkDriver.DeleteEndpoint",
        "/IpamDriver.ReleaseAddress",
    ]
    assert not [ln for ln in ip_json(a_ns, "link", "show") if ln["ifname"] == "eth0"]
    host(lambda: c.disconnect("mnet", b.id))
    host(lambda: c.delete_network("mnet"))
    tail = [x["path"] for x in calls(log)[-3:]]
    assert tail == [
        "/NetworkDriver.DeleteNetwork",
        "/IpamDriver.ReleaseAddress",
        "/IpamDriver.ReleasePool",
    ]
    assert [ln["ifname"] for ln in ip_json(host.host, "link", "show")] == ["lo"]


def test_kanal_uses_kanal_served_by_another_kanald(
    host: Host, make_netns: Callable[[str], str]
) -> None:
    sock = host.tmp / "other" / "kanal.sock"
    host.spawn(
        [
            str(VENV / "kanald"),
            "--socket",
            str(host.tmp / "fp.sock"),
            "--state-dir",
            str(host.tmp / "other-state"),
            "--api-socket",
            str(host.tmp / "other-api.sock"),
            "--default-bridge",
            unique("kd", 15),
            "--default-subnet",
            "10.88.0.0/24",
            "--cni-conf-dir",
            str(host.tmp / "net.d"),
            "--docker-plugin-socket",
            str(sock),
            "--docker-plugin-spec",
            str(host.plugins / "kself.spec"),
        ],
        host.plugins / "kself.spec",
    )
    assert (host.plugins / "kself.spec").read_text().strip() == f"unix://{sock}"
    c = host.ctrl
    br = unique("krb", 15)
    spec = NetworkSpec("knet", driver="kself", options={"com.docker.network.bridge.name": br})
    net = host(lambda: c.create_network(spec))
    # The other kanald made the bridge, with the gateway of the subnet kanal chose.
    got = ip_json(host.host, "addr", "show", "dev", br)[0]
    gw = [x["local"] for x in got["addr_info"] if x["family"] == "inet"]
    assert gw == [net.ipam[0].gateway]
    a_ns, a = host.sandbox(make_netns, "a")
    b_ns, b = host.sandbox(make_netns, "b")
    ep_a = host(lambda: c.connect("knet", a))
    ep_b = host(lambda: c.connect("knet", b))
    assert ping(a_ns, ep_b.ipv4.split("/")[0]) and ping(b_ns, ep_a.ipv4.split("/")[0])
    host(lambda: c.disconnect("knet", a.id))
    host(lambda: c.disconnect("knet", b.id))
    host(lambda: c.delete_network("knet"))
    assert not [ln for ln in ip_json(host.host, "link", "show") if ln["ifname"] == br]


def test_unknown_or_dead_plugins_are_clear_errors(host: Host) -> None:
    c = host.ctrl
    with pytest.raises(InvalidConfig, match="not found"):
        host(lambda: c.create_network(NetworkSpec("n1", driver="nosuch")))
    with pytest.raises(InvalidConfig, match="IPAM driver 'nosuch' not found"):
        host(lambda: c.create_network(NetworkSpec("n2", ipam_driver="nosuch")))
    # A socket file nobody serves: activation fails after the retries, nothing stored.
    import socket

    s = socket.socket(socket.AF_UNIX)
    s.bind(str(host.plugins / "dead.sock"))
    s.close()
    c.ctx.plugins.retry_for = 0.2
    with pytest.raises(KanalError, match="does not answer"):
        host(lambda: c.create_network(NetworkSpec("n3", driver="dead")))
    assert {n.name for n in c.networks()} == set()
