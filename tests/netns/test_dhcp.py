"""The dhcp IPAM plugin and kanal's DHCP daemon against dnsmasq.

A "server" namespace runs dnsmasq (10.96.0.0/24, router .1, a classless route)
on a veth whose other end is a port of the host's bridge; kanal's bridge plugin
attaches containers to that bridge with ``"ipam": {"type": "dhcp"}``. The daemon
runs in the host namespace and keeps its leases in a directory of the test's.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kanal.dhcp.client import Lease, renew
from tests.helpers import go_plugin_dir, ip_json, nsexec, unique
from tests.netns.cni import PluginRunner
from tests.netns.inns import in_ns

DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
pytestmark = pytest.mark.skipif(not os.path.exists(DNSMASQ), reason="dnsmasq is not installed")


def wait_for(cond: Any, what: str, tries: int = 100) -> None:
    for _ in range(tries):
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


class Lab:
    def __init__(self, host: str, server: str, tmp: Path) -> None:
        self.host, self.server, self.tmp = host, server, tmp
        self.bridge = unique("kdh", 15)
        self.sock = tmp / "dhcp.sock"
        self.leases = tmp / "leases"
        self.dnsmasq_leases = tmp / "dnsmasq.leases"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        # A fixed MAC: a bridge without one takes its ports' lowest, which CHECK notices.
        nsexec(
            host, "ip", "link", "add", self.bridge, "address", "02:00:00:d4:c9:01", "type", "bridge"
        )
        nsexec(host, "ip", "link", "set", self.bridge, "up")
        nsexec(
            host,
            "ip",
            "link",
            "add",
            "tosrv",
            "master",
            self.bridge,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            server,
        )
        nsexec(host, "ip", "link", "set", "tosrv", "up")
        nsexec(server, "ip", "addr", "add", "10.96.0.1/24", "dev", "eth0")
        nsexec(server, "ip", "link", "set", "eth0", "up")
        self.procs["dnsmasq"] = subprocess.Popen(
            ["ip", "netns", "exec", server, DNSMASQ, "--no-daemon", "--conf-file=/dev/null",
             "--port=0", "--user=root", "--interface=eth0", "--bind-interfaces",
             "--dhcp-range=10.96.0.100,10.96.0.150,255.255.255.0,2m",
             "--dhcp-option=option:router,10.96.0.1",
             "--dhcp-option=121,10.97.0.0/16,10.96.0.1,0.0.0.0/0,10.96.0.1",
             "--dhcp-option=option:dns-server,10.96.0.53",
             f"--dhcp-leasefile={self.dnsmasq_leases}", f"--pid-file={tmp}/dnsmasq.pid"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.start_daemon()

    def start_daemon(self) -> None:
        self.sock.unlink(missing_ok=True)
        with open(self.tmp / "daemon.log", "ab") as log:
            self.procs["daemon"] = subprocess.Popen(
                ["nsenter", f"--net=/run/netns/{self.host}", sys.executable, "-m", "kanal.dhcp",
                 "--socket", str(self.sock), "--lease-dir", str(self.leases),
                 "--log-level", "info"],
                stdout=log,
                stderr=log,
            )  # fmt: skip
        wait_for(self.sock.exists, "the DHCP daemon's socket")

    def kill_daemon(self) -> None:
        self.procs["daemon"].send_signal(signal.SIGKILL)
        self.procs["daemon"].wait(10)

    def stop(self) -> None:
        for p in self.procs.values():
            p.kill()
            p.wait(10)

    def conf(self) -> dict[str, Any]:
        return {
            "cniVersion": "1.0.0",
            "name": "dhcpnet",
            "type": "bridge",
            "bridge": self.bridge,
            "ipam": {"type": "dhcp", "daemonSocketPath": str(self.sock), "timeout": 15},
        }

    def dnsmasq_has(self, ip: str) -> bool:
        try:
            return ip in self.dnsmasq_leases.read_text()
        except FileNotFoundError:
            return False


@pytest.fixture
def lab(make_netns: Any, tmp_path: Path) -> Iterator[Lab]:
    lab = Lab(make_netns("kdh"), make_netns("kds"), tmp_path)
    try:
        yield lab
    finally:
        lab.stop()


def test_lease_renew_restart_release(lab: Lab, make_netns: Any) -> None:
    cni = PluginRunner(lab.host, lab.tmp)
    ct = make_netns("kdc")
    r = cni("bridge", "ADD", lab.conf(), cid="d1", netns=f"/run/netns/{ct}")
    assert r.code == 0 and r.out is not None, r
    ipc = r.out["ips"][0]
    ip = ipc["address"].split("/")[0]
    assert ipc["address"].endswith("/24") and ipc.get("gateway") == "10.96.0.1"
    assert 100 <= int(ip.rsplit(".", 1)[1]) <= 150
    assert {"dst": "10.97.0.0/16", "gw": "10.96.0.1"} in r.out["routes"]
    # bridge returns its own netconf dns only, as Go's: the lease's DNS is not in it
    assert "dns" not in r.out
    addr = ip_json(ct, "addr", "show", "eth0")[0]
    assert any(a["local"] == ip for a in addr["addr_info"])
    assert nsexec(ct, "ping", "-c", "1", "-W", "2", "10.96.0.1", check=False).returncode == 0
    wait_for(lambda: lab.dnsmasq_has(ip), "dnsmasq's lease file")
    mac = addr["address"]
    assert mac in lab.dnsmasq_leases.read_text()

    # The daemon dies and comes back: the lease is still known (the Go one forgets).
    lab.kill_daemon()
    lab.start_daemon()
    chk = {**lab.conf(), "prevResult": r.out}
    assert cni("bridge", "CHECK", chk, cid="d1", netns=f"/run/netns/{ct}").code == 0
    (saved,) = list(lab.leases.iterdir())
    lease = Lease.from_json(json.loads(saved.read_text()))
    assert lease.dns == ["10.96.0.53"]  # what the dhcp plugin's own result carries
    before = lease.obtained
    # A renewal round trip (REQUEST unicast from the leased address, ACK back).
    renewed = in_ns(ct, lambda: renew(lease, timeout=10))
    assert renewed.address == ipc["address"] and renewed.obtained > before

    assert cni("bridge", "DEL", chk, cid="d1", netns=f"/run/netns/{ct}").code == 0
    wait_for(lambda: not lab.dnsmasq_has(ip), "dnsmasq to drop the released lease")
    assert list(lab.leases.iterdir()) == []
    assert cni("bridge", "DEL", chk, cid="d1", netns=f"/run/netns/{ct}").code == 0  # idempotent
    # and a check of what is gone fails
    ct2 = make_netns("kdc")
    r2 = cni("bridge", "ADD", lab.conf(), cid="d2", netns=f"/run/netns/{ct2}")
    assert r2.code == 0
    gc = {
        "cniVersion": "1.1.0",
        "name": "dhcpnet",
        "type": "bridge",
        "bridge": lab.bridge,
        "ipam": lab.conf()["ipam"],
        "cni.dev/valid-attachments": [],
    }
    assert cni("bridge", "GC", gc).code == 0
    assert list(lab.leases.iterdir()) == []  # GC released the lease of the invalid attachment


def test_no_daemon_or_no_server_is_a_clear_error(lab: Lab, make_netns: Any) -> None:
    cni = PluginRunner(lab.host, lab.tmp)
    ct = make_netns("kdc")
    bad = {**lab.conf(), "ipam": {"type": "dhcp", "daemonSocketPath": str(lab.tmp / "none.sock")}}
    got = cni("bridge", "ADD", bad, cid="x", netns=f"/run/netns/{ct}")
    assert got.code == 1 and got.out is not None and "dhcp daemon" in got.out["msg"]
    assert got.out["code"] == 50
    assert [x["ifname"] for x in ip_json(ct, "link")] == ["lo"]  # rolled back
    lab.procs["dnsmasq"].kill()  # nobody answers now
    slow = {**lab.conf(), "ipam": {**lab.conf()["ipam"], "timeout": 2}}
    got = cni("bridge", "ADD", slow, cid="y", netns=f"/run/netns/{ct}")
    assert got.code == 1 and got.out is not None and got.out["code"] == 11, got
    assert [x["ifname"] for x in ip_json(ct, "link")] == ["lo"]


@pytest.mark.oracle
def test_result_shape_as_go(lab: Lab, make_netns: Any) -> None:
    go = go_plugin_dir()
    if go is None:
        pytest.skip("the reference plugins are not installed")
    gsock = lab.tmp / "go-dhcp.sock"
    goproc = subprocess.Popen(
        [
            "nsenter",
            f"--net=/run/netns/{lab.host}",
            f"{go}/dhcp",
            "daemon",
            "-socketpath",
            str(gsock),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(gsock.exists, "the Go DHCP daemon")
        cni = PluginRunner(lab.host, lab.tmp)
        kc, gc = make_netns("kdk"), make_netns("kdg")
        k = cni("bridge", "ADD", lab.conf(), cid="k", netns=f"/run/netns/{kc}")
        env = {
            "CNI_COMMAND": "ADD",
            "CNI_CONTAINERID": "g",
            "CNI_NETNS": f"/run/netns/{gc}",
            "CNI_IFNAME": "eth0",
            "CNI_PATH": go,
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        }
        gconf = {**lab.conf(), "ipam": {"type": "dhcp", "daemonSocketPath": str(gsock)}}
        g = subprocess.run(
            ["ip", "netns", "exec", lab.host, f"{go}/bridge"],
            input=json.dumps(gconf).encode(),
            env=env,
            capture_output=True,
            timeout=60,
        )
        assert g.returncode == 0, g.stdout
        gout = json.loads(g.stdout)
        assert k.out is not None
        assert sorted(k.out["ips"][0]) == sorted(gout["ips"][0])  # same keys
        assert k.out["ips"][0]["gateway"] == gout["ips"][0]["gateway"] == "10.96.0.1"
        assert {r["dst"] for r in k.out.get("routes", [])} >= {
            r["dst"] for r in gout.get("routes", [])
        }
        env["CNI_COMMAND"] = "DEL"
        subprocess.run(
            ["ip", "netns", "exec", lab.host, f"{go}/bridge"],
            input=json.dumps(gconf).encode(),
            env=env,
            capture_output=True,
            timeout=60,
        )
    finally:
        goproc.kill()
        goproc.wait(10)
