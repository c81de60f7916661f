"""Load and crash behaviour of the installed plugins, as a runtime drives them.

8 parallel streams of ADDs, through kanald or standalone, must never hand out an
address twice and DEL must leave nothing; a plugin or kanald killed with SIGKILL in
the middle of ADD must leave nothing that DEL + GC cannot clean, and no corrupt state
file.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from kanal.fastpath.install import install_plugins
from kanal.ipam.diskfiles import INDEX_NAME
from tests.helpers import create_netns, delete_netns, ip_json, nsexec, unique

VENV = Path(__file__).resolve().parents[2] / ".venv" / "bin"


class Host:
    """A host namespace with kanal's plugins installed and (optionally) kanald."""

    def __init__(self, ns: str, tmp: Path) -> None:
        self.ns = ns
        self.tmp = tmp
        self.bindir = tmp / "bin"
        self.sock = tmp / "kanald.sock"
        self.data = tmp / "ipam"
        self.bridge = unique("kld", 15)
        install_plugins(str(self.bindir), socket_path=str(self.sock))
        self.daemon: subprocess.Popen[bytes] | None = None

    def start_kanald(self) -> None:
        if self.sock.exists():
            self.sock.unlink()
        with open(self.tmp / "kanald.log", "ab") as log:
            self.daemon = subprocess.Popen(
                [
                    "nsenter",
                    f"--net=/run/netns/{self.ns}",
                    str(VENV / "kanald"),
                    "--no-engine",
                    "--socket",
                    str(self.sock),
                    "--log-level",
                    "info",
                ],
                stderr=log,
            )
        for _ in range(500):
            if self.sock.exists():
                return
            time.sleep(0.02)
        raise AssertionError("kanald did not start")

    def stop_kanald(self, sig: int = signal.SIGTERM) -> None:
        if self.daemon is not None:
            self.daemon.send_signal(sig)
            self.daemon.wait(10)
            self.daemon = None

    def conf(self, version: str = "1.0.0") -> dict[str, Any]:
        return {
            "cniVersion": version,
            "name": "loadnet",
            "type": "bridge",
            "bridge": self.bridge,
            "isGateway": True,
            "ipMasq": True,
            "ipam": {"type": "host-local", "subnet": "10.44.0.0/16", "dataDir": str(self.data)},
        }

    def popen(
        self,
        cmd: str,
        cid: str,
        netns: str,
        conf: dict[str, Any] | None = None,
    ) -> subprocess.Popen[bytes]:
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "CNI_COMMAND": cmd,
            "CNI_CONTAINERID": cid,
            "CNI_NETNS": netns,
            "CNI_IFNAME": "eth0",
            "CNI_PATH": str(self.bindir),
        }
        p = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{self.ns}", str(self.bindir / "bridge")],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert p.stdin is not None
        p.stdin.write(json.dumps(conf or self.conf()).encode())
        p.stdin.close()
        return p

    def run(
        self,
        cmd: str,
        cid: str,
        netns: str,
        conf: dict[str, Any] | None = None,
    ) -> tuple[int, Any]:
        p = self.popen(cmd, cid, netns, conf)
        assert p.stdout is not None and p.stderr is not None
        out = p.stdout.read()
        p.stderr.read()
        p.wait(120)
        return p.returncode, (json.loads(out) if out.strip() else None)

    def reservations(self) -> list[str]:
        d = self.data / "loadnet"
        if not d.exists():
            return []
        return sorted(
            p.name
            for p in d.iterdir()
            if p.name not in ("lock", INDEX_NAME) and not p.name.startswith("last_reserved_ip")
        )

    def ports(self) -> list[str]:
        if nsexec(self.ns, "ip", "link", "show", self.bridge, check=False).returncode:
            return []  # no bridge (yet): no ports
        return [x["ifname"] for x in ip_json(self.ns, "link", "show", "master", self.bridge)]

    def masq(self) -> str:
        p = nsexec(self.ns, "nft", "list", "set", "inet", "kanal", "masq4", check=False)
        return p.stdout.decode()


@pytest.fixture
def host(host_ns: str, tmp_path: Path) -> Iterator[Host]:
    h = Host(host_ns, tmp_path)
    try:
        yield h
    finally:
        h.stop_kanald(signal.SIGKILL)


@pytest.mark.parametrize("mode", ["kanald", "standalone"])
def test_8_parallel_streams(host: Host, mode: str) -> None:
    """8 streams of ADDs (100 each through kanald; 40 each standalone, where every
    exec is a process of its own and host-local's index file is shared by all)."""
    streams, per = 8, 100
    if mode == "kanald":
        host.start_kanald()
    else:
        per = 40
    names = [[unique(f"kl{s}x", 30) for _ in range(per)] for s in range(streams)]
    results: dict[str, str] = {}
    made: list[str] = []

    def stream(s: int) -> None:
        for name in names[s]:
            create_netns(name)
            made.append(name)
            code, out = host.run("ADD", name, f"/run/netns/{name}")
            assert code == 0, out
            results[name] = out["ips"][0]["address"]

    try:
        t = time.perf_counter()
        with ThreadPoolExecutor(streams) as pool:
            list(pool.map(stream, range(streams)))
        print(f"{streams * per} ADDs in {time.perf_counter() - t:.1f} s")
        addrs = list(results.values())
        assert len(addrs) == streams * per and len(set(addrs)) == len(addrs)  # no duplicate
        for name, addr in random.sample(sorted(results.items()), 50):
            seen = ip_json(name, "addr", "show", "dev", "eth0")[0]["addr_info"]
            assert {f"{a['local']}/{a['prefixlen']}" for a in seen if a["family"] == "inet"} == {
                addr
            }
        assert len(host.reservations()) == streams * per
        assert len(host.ports()) == streams * per

        def delete(s: int) -> None:
            for name in names[s]:
                code, out = host.run("DEL", name, f"/run/netns/{name}")
                assert code == 0, out

        with ThreadPoolExecutor(streams) as pool:
            list(pool.map(delete, range(streams)))
        assert host.reservations() == []
        for _ in range(300):  # the veths are unregistered in the background
            if not host.ports():
                break
            time.sleep(0.1)
        assert host.ports() == []
        assert "10.44." not in host.masq()
    finally:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(delete_netns, made))


def _state_files_parse(host: Host) -> None:
    d = host.data / "loadnet"
    for p in d.iterdir() if d.exists() else []:
        data = p.read_bytes()
        if p.name.startswith("last_reserved_ip"):
            ipaddress.ip_address(data.decode().strip())
        elif p.name not in ("lock", INDEX_NAME):
            ipaddress.ip_address(p.name)
            cid, _, ifname = data.decode().partition("\r\n")
            assert cid and ifname == "eth0", (p.name, data)


@pytest.mark.parametrize("mode", ["standalone", "kanald"])
def test_kill9_during_add_then_del_and_gc_clean_up(host: Host, mode: str) -> None:
    rng = random.Random(42)
    made = []
    try:
        if mode == "kanald":
            host.start_kanald()
        for i in range(12):
            name = unique(f"kk{i}x", 30)
            create_netns(name)
            made.append(name)
            p = host.popen("ADD", name, f"/run/netns/{name}")
            # A standalone plugin spends ~0.3 s importing before it touches anything.
            time.sleep(rng.uniform(0.2, 0.6) if mode == "standalone" else rng.uniform(0, 0.03))
            if mode == "kanald" and i % 3 == 2:
                host.stop_kanald(signal.SIGKILL)  # the daemon dies mid-request
                host.start_kanald()
            else:
                p.send_signal(signal.SIGKILL)
            p.wait(60)
        _state_files_parse(host)
        if mode == "kanald":
            host.stop_kanald(signal.SIGKILL)
            host.start_kanald()  # reaps what the killed daemon left tagged
        for name in made:
            code, out = host.run("DEL", name, f"/run/netns/{name}")
            assert code == 0, out
        gc = {**host.conf("1.1.0"), "cni.dev/valid-attachments": []}
        code, out = host.run("GC", "gc", "", gc)
        assert code == 0, out
        time.sleep(1)
        _state_files_parse(host)
        assert host.reservations() == []
        assert host.ports() == []
        assert "10.44." not in host.masq()
        for name in made:  # nothing left in the containers either
            assert [x["ifname"] for x in ip_json(name, "link", "show")] == ["lo"]
    finally:
        for name in made:
            delete_netns(name)
        assert os.path.exists(host.tmp)
