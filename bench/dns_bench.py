"""Embedded DNS, kanal vs aardvark-dns 1.4, side by side.

Both answer the name of a container on the same network to a client inside
another container's namespace: aardvark-dns (started by netavark, as podman
does) on the network's gateway address, kanal's embedded DNS on 127.0.0.11 in
the client's namespace. The same Python client (dnslib queries over a UDP socket
made in the client's namespace) measures the p50 latency of sequential queries
and the queries per second of 4 concurrent clients.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import create_netns, delete_netns, unique  # noqa: E402

from bench.netavark_bench import NETAVARK, _nv, _nv_options  # noqa: E402


def _client_socket(netns: str) -> socket.socket:
    from kanal.netlink.ns import netns_socket, open_netns

    fd = open_netns(netns)
    try:
        s = netns_socket(fd, socket.AF_INET, socket.SOCK_DGRAM)
    finally:
        os.close(fd)
    s.settimeout(2)
    return s


def measure(netns: str, server: str, name: str, n: int) -> tuple[float, float]:
    """(p50 latency in ms, queries per second with 4 clients)."""
    from dnslib import DNSRecord

    query = DNSRecord.question(name, "A").pack()
    s = _client_socket(netns)
    lat = []
    for _ in range(n):
        t = time.perf_counter()
        s.sendto(query, (server, 53))
        reply = DNSRecord.parse(s.recv(4096))
        lat.append(time.perf_counter() - t)
        if not reply.rr:
            raise RuntimeError(f"{server} did not answer {name}")
    s.close()
    done = [0]
    lock = threading.Lock()

    def worker() -> None:
        c = _client_socket(netns)
        k = 0
        for _ in range(n):
            c.sendto(query, (server, 53))
            try:
                c.recv(4096)
                k += 1
            except OSError:
                pass
        c.close()
        with lock:
            done[0] += k

    threads = [threading.Thread(target=worker) for _ in range(4)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    qps = done[0] / (time.perf_counter() - t)
    return statistics.median(lat) * 1000, qps


SERVER = """
import sys, time
from kanal.engine.dns import DnsService
dns = DnsService(lambda sb, q: ["10.212.0.2"] if q == "target" else None)
dns.start()
dns.attach("client", sys.argv[1], [])
print("ready", flush=True)
time.sleep(3600)
"""


def run(queries: int, report: Callable[[str], None]) -> dict[str, object]:
    if not os.path.exists(NETAVARK):
        report("netavark/aardvark-dns are not installed: skipped")
        return {}
    tmp = Path(tempfile.mkdtemp(prefix="kanal-dns-bench-"))
    made: list[str] = []
    try:
        cfg = tmp / "nv"
        cfg.mkdir()
        bridge = unique("kdv", 15)
        target, client = create_netns(unique("kdt", 30)), create_netns(unique("kdc", 30))
        made += [target, client]
        t_opts = _nv_options(secrets.token_hex(32), "target", bridge, "10.212.0.2", 40001)
        c_opts = _nv_options(secrets.token_hex(32), "client", bridge, "10.212.0.3", 40002)
        _nv(cfg, "setup", f"/run/netns/{target}", t_opts)
        _nv(cfg, "setup", f"/run/netns/{client}", c_opts)
        try:
            a_lat, a_qps = measure(f"/run/netns/{client}", "10.212.0.1", "target", queries)
            # kanal's server in its own process, as in kanald (not sharing this
            # process's interpreter lock with the clients).
            server = subprocess.Popen(
                [sys.executable, "-c", SERVER, f"/run/netns/{client}"],
                stdout=subprocess.PIPE,
                env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
            )
            try:
                assert server.stdout is not None
                server.stdout.readline()  # "ready"
                k_lat, k_qps = measure(f"/run/netns/{client}", "127.0.0.11", "target", queries)
            finally:
                server.kill()
                server.wait(10)
        finally:
            _nv(cfg, "teardown", f"/run/netns/{client}", c_opts)
            _nv(cfg, "teardown", f"/run/netns/{target}", t_opts)
        report(
            f"DNS p50 latency: kanal {k_lat:.3f} ms, aardvark-dns {a_lat:.3f} ms "
            f"(ratio {k_lat / a_lat:.2f}, goal <= 1); queries/s with 4 clients: kanal "
            f"{k_qps:.0f}, aardvark-dns {a_qps:.0f} (ratio {k_qps / a_qps:.2f}, goal >= 1)"
        )
        return {
            "kanal_p50_ms": k_lat,
            "aardvark_p50_ms": a_lat,
            "kanal_qps": k_qps,
            "aardvark_qps": a_qps,
        }
    finally:
        for ns in made:
            delete_netns(ns)
        shutil.rmtree(tmp, ignore_errors=True)
