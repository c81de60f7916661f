"""Embedded DNS, kanal vs aardvark-dns 1.4, side by side.

Both answer the name of a container on the same network to a client inside
another container's namespace: aardvark-dns (started by netavark, as podman
does) on the network's gateway address, kanal's embedded DNS on 127.0.0.11 in
the client's namespace (in a process of its own, as in kanald). The same Python
client (dnslib queries over a UDP socket made in the client's namespace)
measures the p50 latency of sequential queries and the queries per second of 4
concurrent clients.

Both servers run for the whole benchmark and are measured in alternating slices
(aardvark, kanal, kanal, aardvark, ...): this machine is shared, and its load
moves within seconds, so measuring one server after the other measured the load
as much as the servers. p50 is over all sequential queries of a server; queries/s
is the median of its slices; every slice is in the JSON.
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


def sequential(netns: str, server: str, name: str, n: int) -> list[float]:
    """Latencies (s) of ``n`` queries asked one after the other."""
    from dnslib import DNSRecord

    query = DNSRecord.question(name, "A").pack()
    s = _client_socket(netns)
    lat = []
    try:
        for _ in range(n):
            t = time.perf_counter()
            s.sendto(query, (server, 53))
            reply = DNSRecord.parse(s.recv(4096))
            lat.append(time.perf_counter() - t)
            if not reply.rr:
                raise RuntimeError(f"{server} did not answer {name}")
    finally:
        s.close()
    return lat


def concurrent(netns: str, server: str, name: str, n: int, clients: int = 4) -> float:
    """Queries answered per second, ``clients`` threads asking ``n`` queries each (the
    clock runs from when all are ready to ask until the last is done)."""
    from dnslib import DNSRecord

    query = DNSRecord.question(name, "A").pack()
    done = [0]
    lock = threading.Lock()
    socks = [_client_socket(netns) for _ in range(clients)]
    start = threading.Barrier(clients + 1)

    def worker(c: socket.socket) -> None:
        k = 0
        start.wait()
        for _ in range(n):
            c.sendto(query, (server, 53))
            try:
                c.recv(4096)
                k += 1
            except OSError:
                pass
        with lock:
            done[0] += k

    threads = [threading.Thread(target=worker, args=(c,)) for c in socks]
    for th in threads:
        th.start()
    start.wait()
    t = time.perf_counter()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - t
    for c in socks:
        c.close()
    return done[0] / elapsed


def measure(
    netns: str, servers: dict[str, str], name: str, queries: int, rounds: int = 5
) -> dict[str, tuple[list[float], list[float]]]:
    """Per server: (latencies of ``queries`` sequential queries, q/s of each of
    ``rounds`` slices of 4 x ``queries``), measured in alternating slices."""
    out: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in servers}
    for addr in servers.values():
        sequential(netns, addr, name, 200)  # warm-up
    order = list(servers)
    for r in range(rounds):
        for who in order if r % 2 == 0 else reversed(order):
            lat, qps = out[who]
            lat += sequential(netns, servers[who], name, queries // rounds)
            qps.append(concurrent(netns, servers[who], name, queries))
    return out


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
            # kanal's server in its own process, as in kanald (not sharing this
            # process's interpreter lock with the clients), and in its own session
            # as a daemon, like aardvark-dns: with the kernel's autogroup scheduling
            # a session is what gets a fair share of the CPU on a busy machine.
            server = subprocess.Popen(
                [sys.executable, "-c", SERVER, f"/run/netns/{client}"],
                stdout=subprocess.PIPE,
                env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
                start_new_session=True,
            )
            try:
                assert server.stdout is not None
                server.stdout.readline()  # "ready"
                got = measure(
                    f"/run/netns/{client}",
                    {"aardvark": "10.212.0.1", "kanal": "127.0.0.11"},
                    "target",
                    queries,
                )
            finally:
                server.kill()
                server.wait(10)
        finally:
            _nv(cfg, "teardown", f"/run/netns/{client}", c_opts)
            _nv(cfg, "teardown", f"/run/netns/{target}", t_opts)
        k_lat, a_lat = (statistics.median(got[k][0]) * 1000 for k in ("kanal", "aardvark"))
        k_qps, a_qps = (statistics.median(got[k][1]) for k in ("kanal", "aardvark"))
        report(
            f"DNS p50 latency: kanal {k_lat:.3f} ms, aardvark-dns {a_lat:.3f} ms "
            f"(ratio {k_lat / a_lat:.2f}, goal <= 1); queries/s with 4 clients: kanal "
            f"{k_qps:.0f}, aardvark-dns {a_qps:.0f} (ratio {k_qps / a_qps:.2f}, goal >= 1.3)"
        )
        report(
            "  q/s slices: kanal "
            + " ".join(f"{x:.0f}" for x in got["kanal"][1])
            + "; aardvark "
            + " ".join(f"{x:.0f}" for x in got["aardvark"][1])
        )
        return {
            "kanal_p50_ms": k_lat,
            "aardvark_p50_ms": a_lat,
            "kanal_qps": k_qps,
            "aardvark_qps": a_qps,
            "kanal_qps_slices": got["kanal"][1],
            "aardvark_qps_slices": got["aardvark"][1],
        }
    finally:
        for ns in made:
            delete_netns(ns)
        shutil.rmtree(tmp, ignore_errors=True)
