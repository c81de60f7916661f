"""200 containers with port mappings, ADD and DEL in parallel through kanald.

The chain bridge → portmap runs as a runtime runs it (installed executables,
prevResult handed on). 50 of the 200 ask for a TCP host port another one also
asks for: exactly one of each pair may get it, the other must fail (and is then
DELed, as a runtime does after a failed ADD) — no host port is ever programmed
twice or for the wrong container. After every DEL nothing is left: no mapping,
no reservation, no bridge port.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_load import Host
from tests.helpers import create_netns, delete_netns, nft_json, unique

pytestmark = pytest.mark.slow

N = 200
SHARED = 150  # containers i and i+150 (i < 50) ask for the same TCP host port


class ChainHost(Host):
    def plugin_conf(self, ptype: str, prev: Any, i: int) -> dict[str, Any]:
        base = self.conf()
        if ptype == "bridge":
            return base
        return {
            "cniVersion": base["cniVersion"],
            "name": base["name"],
            "type": "portmap",
            "capabilities": {"portMappings": True},
            "runtimeConfig": {
                "portMappings": [
                    {"hostPort": 41000 + i % SHARED, "containerPort": 80, "protocol": "tcp"},
                    {"hostPort": 42000 + i, "containerPort": 53, "protocol": "udp"},
                ]
            },
            "prevResult": prev,
        }

    def exec(self, ptype: str, cmd: str, cid: str, netns: str, conf: Any) -> tuple[int, Any]:
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "CNI_COMMAND": cmd,
            "CNI_CONTAINERID": cid,
            "CNI_NETNS": netns,
            "CNI_IFNAME": "eth0",
            "CNI_PATH": str(self.bindir),
        }
        p = subprocess.run(
            ["nsenter", f"--net=/run/netns/{self.ns}", str(self.bindir / ptype)],
            env=env,
            input=json.dumps(conf).encode(),
            capture_output=True,
            timeout=120,
        )
        return p.returncode, (json.loads(p.stdout) if p.stdout.strip() else None)

    def chain_add(self, i: int, cid: str, netns: str) -> tuple[int, Any]:
        code, res = self.exec("bridge", "ADD", cid, netns, self.plugin_conf("bridge", None, i))
        if code:
            return code, res
        return self.exec("portmap", "ADD", cid, netns, self.plugin_conf("portmap", res, i))

    def chain_del(self, i: int, cid: str, netns: str, prev: Any) -> None:
        for ptype in ("portmap", "bridge"):
            code, out = self.exec(ptype, "DEL", cid, netns, self.plugin_conf(ptype, prev, i))
            assert code == 0, (ptype, out)

    def mappings(self) -> dict[str, str]:
        """``proto . port`` → ``ip . port`` of kanal's any-address IPv4 port map."""
        got = nft_json(self.ns, "list", "map", "inet", "kanal", "pm_any4")
        out: dict[str, str] = {}
        for obj in got["nftables"]:
            for key, val in obj.get("map", {}).get("elem", []):
                k = key["elem"]["val"] if isinstance(key, dict) and "elem" in key else key
                out[" . ".join(map(str, k["concat"]))] = " . ".join(map(str, val["concat"]))
        return out


@pytest.fixture
def chost(host_ns: str, tmp_path: Path) -> Iterator[ChainHost]:
    h = ChainHost(host_ns, tmp_path)
    try:
        h.start_kanald()
        yield h
    finally:
        h.stop_kanald()


def test_200_containers_with_port_mappings(chost: ChainHost) -> None:
    names = [unique(f"kpl{i}x", 30) for i in range(N)]
    made: list[str] = []
    outcome: dict[int, tuple[int, Any]] = {}

    def add(i: int) -> None:
        create_netns(names[i])
        made.append(names[i])
        outcome[i] = chost.chain_add(i, names[i], f"/run/netns/{names[i]}")

    try:
        t = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(add, range(N)))
        print(f"{N} bridge+portmap ADDs in {time.perf_counter() - t:.1f} s")

        ok = {i for i, (code, _) in outcome.items() if code == 0}
        failed = set(range(N)) - ok
        for i in failed:  # only the losers of a shared port may fail, and clearly
            code, err = outcome[i]
            assert i % SHARED < N - SHARED, (i, err)
            assert "already mapped" in err["msg"], err
        for j in range(N - SHARED):  # each shared port: exactly one winner
            assert len({j, j + SHARED} & ok) == 1, (j, outcome[j], outcome[j + SHARED])

        ip_of = {i: outcome[i][1]["ips"][0]["address"].split("/")[0] for i in ok}
        assert len(set(ip_of.values())) == len(ok)
        maps = chost.mappings()
        want = {f"tcp . {41000 + i % SHARED}": f"{ip_of[i]} . 80" for i in ok}
        want |= {f"udp . {42000 + i}": f"{ip_of[i]} . 53" for i in ok}
        assert maps == want  # every port once, to its own container; losers left nothing

        # Runtimes DEL after a failed ADD: that must not touch the winner's mapping.
        for i in failed:
            chost.chain_del(i, names[i], f"/run/netns/{names[i]}", None)
        assert chost.mappings() == want

        def delete(i: int) -> None:
            chost.chain_del(i, names[i], f"/run/netns/{names[i]}", outcome[i][1])

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(delete, sorted(ok)))
        assert chost.mappings() == {}
        assert chost.reservations() == []
        for _ in range(300):  # kanald unregisters the veths in the background
            if not chost.ports():
                break
            time.sleep(0.1)
        assert chost.ports() == []
    finally:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(delete_netns, made))
