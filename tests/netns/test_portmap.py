"""The portmap plugin chained after kanal's bridge: published ports, from every angle."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.helpers import nsexec
from tests.netns.cni import PluginRunner

SERVER = """
import socket, sys
proto = sys.argv[1]
if proto == "tcp":
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 80)); s.listen(16)
    while True:
        c, a = s.accept(); c.sendall(f"hello {a[0]}\\n".encode()); c.close()
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 53))
    while True:
        d, a = s.recvfrom(100); s.sendto(b"pong " + d, a)
"""
CLIENT = """
import socket, sys
host, port, proto = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if proto == "tcp":
    c = socket.create_connection((host, port), timeout=3); print(c.recv(100).decode().strip())
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
    s.sendto(b"ping", (host, port)); print(s.recv(100).decode())
"""


def kanal_table(ns: str) -> str:
    return nsexec(ns, "nft", "list", "table", "inet", "kanal").stdout.decode()


def client(ns: str, host: str, port: int, proto: str = "tcp") -> str:
    p = nsexec(ns, sys.executable, "-c", CLIENT, host, str(port), proto, check=False)
    return p.stdout.decode().strip() if p.returncode == 0 else f"failed: {p.stderr[-200:]!r}"


def attach(
    net: dict[str, Any], ct: str, cid: str, mappings: list[dict[str, Any]], **pm: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    cni: PluginRunner = net["cni"]
    r = cni("bridge", "ADD", net["bridge"], cid=cid, netns=f"/run/netns/{ct}")
    assert r.code == 0 and r.out is not None, r
    conf = {
        "cniVersion": "1.0.0",
        "name": "pmnet",
        "type": "portmap",
        "capabilities": {"portMappings": True},
        "prevResult": r.out,
        "runtimeConfig": {"portMappings": mappings},
        **pm,
    }
    p = cni("portmap", "ADD", conf, cid=cid, netns=f"/run/netns/{ct}")
    assert p.code == 0 and p.out is not None, p
    return conf, p.out


def serve(net: dict[str, Any], ct: str, proto: str = "tcp") -> None:
    net["servers"].append(
        subprocess.Popen(["ip", "netns", "exec", ct, sys.executable, "-c", SERVER, proto])
    )
    time.sleep(0.3)


def test_published_port_from_everywhere_then_gone(net: dict[str, Any], make_netns) -> None:
    ct1, ct2 = make_netns("ktc"), make_netns("ktc")
    conf, res = attach(
        net,
        ct1,
        "p1",
        [
            {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
            {"hostPort": 8081, "containerPort": 80, "protocol": "tcp", "hostIP": "127.0.0.1"},
            {"hostPort": 5353, "containerPort": 53, "protocol": "udp"},
        ],
    )
    assert res["ips"][0]["address"] == "10.72.0.2/24"  # prevResult passed through
    attach(net, ct2, "p2", [])
    serve(net, ct1)
    serve(net, ct1, "udp")
    host, out = net["host"], net["out"]
    # From outside, to the host's address: DNAT; the container sees the real client.
    assert client(out, "198.51.100.1", 8080) == "hello 198.51.100.2"
    # From the host itself, to 127.0.0.1: route_localnet + SNAT.
    assert client(host, "127.0.0.1", 8080).startswith("hello 10.72.0.1")
    # Hairpin: the container reaches its own published port through the host.
    assert client(ct1, "198.51.100.1", 8080).startswith("hello")
    # Another container of the same bridge, through the host port.
    assert client(ct2, "198.51.100.1", 8080).startswith("hello")
    # hostIP 127.0.0.1: only there.
    assert client(host, "127.0.0.1", 8081).startswith("hello")
    assert client(out, "198.51.100.1", 8081).startswith("failed")
    assert client(out, "198.51.100.1", 5353, "udp") == "pong ping"
    cni: PluginRunner = net["cni"]
    assert (
        cni(
            "portmap", "CHECK", {**conf, "prevResult": res}, cid="p1", netns=f"/run/netns/{ct1}"
        ).code
        == 0
    )
    assert (
        cni("portmap", "DEL", {**conf, "prevResult": res}, cid="p1", netns=f"/run/netns/{ct1}").code
        == 0
    )
    assert cni("portmap", "DEL", conf, cid="p1", netns="").code == 0  # idempotent
    table = nsexec(host, "nft", "list", "table", "inet", "kanal").stdout.decode()
    assert "8080" not in table and "8081" not in table and "10.72.0.2 . 80" not in table
    assert client(out, "198.51.100.1", 8080).startswith("failed")


def test_del_without_prev_result_finds_entries_by_owner(net: dict[str, Any], make_netns) -> None:
    ct = make_netns("ktc")
    conf, _ = attach(net, ct, "p3", [{"hostPort": 9090, "containerPort": 80}])
    cni: PluginRunner = net["cni"]
    bare = {k: v for k, v in conf.items() if k not in ("prevResult", "runtimeConfig")}
    assert cni("portmap", "DEL", bare, cid="p3", netns="").code == 0
    assert (
        "9090" not in nsexec(net["host"], "nft", "list", "table", "inet", "kanal").stdout.decode()
    )


def test_taken_port_is_refused(net: dict[str, Any], make_netns) -> None:
    ct1, ct2 = make_netns("ktc"), make_netns("ktc")
    attach(net, ct1, "a1", [{"hostPort": 7070, "containerPort": 80}])
    cni: PluginRunner = net["cni"]
    r = cni("bridge", "ADD", net["bridge"], cid="a2", netns=f"/run/netns/{ct2}")
    conf = {
        "cniVersion": "1.0.0",
        "name": "pmnet",
        "type": "portmap",
        "prevResult": r.out,
        "runtimeConfig": {"portMappings": [{"hostPort": 7070, "containerPort": 80}]},
    }
    p = cni("portmap", "ADD", conf, cid="a2", netns=f"/run/netns/{ct2}")
    assert p.code == 1 and p.out is not None and "already mapped" in p.out["msg"]
    table = nsexec(net["host"], "nft", "list", "table", "inet", "kanal").stdout.decode()
    assert "10.72.0.3 . 80" not in table


def test_gc_and_no_mappings_means_no_firewall_work(net: dict[str, Any], make_netns) -> None:
    ct = make_netns("ktc")
    cni: PluginRunner = net["cni"]
    r = cni("bridge", "ADD", net["bridge"], cid="g0", netns=f"/run/netns/{ct}")
    conf = {"cniVersion": "1.1.0", "name": "pmnet", "type": "portmap", "prevResult": r.out}
    before = nsexec(net["host"], "nft", "list", "ruleset").stdout
    assert cni("portmap", "ADD", conf, cid="g0", netns=f"/run/netns/{ct}").code == 0
    assert nsexec(net["host"], "nft", "list", "ruleset").stdout == before
    ct2 = make_netns("ktc")
    attach(net, ct2, "g1", [{"hostPort": 6060, "containerPort": 80}])
    gc = {
        "cniVersion": "1.1.0",
        "name": "pmnet",
        "type": "portmap",
        "cni.dev/valid-attachments": [{"containerID": "g0", "ifname": "eth0"}],
    }
    assert cni("portmap", "GC", gc).code == 0
    assert (
        "6060" not in nsexec(net["host"], "nft", "list", "table", "inet", "kanal").stdout.decode()
    )


@pytest.mark.parametrize(
    "mappings,extra",
    [
        ([{"hostPort": 0, "containerPort": 80}], {}),
        ([{"hostPort": 70000, "containerPort": 80}], {}),
        ([{"hostPort": 80, "containerPort": 80, "protocol": "icmp"}], {}),
        ([{"hostPort": 80, "containerPort": 80}], {"markMasqBit": 40}),
        ([{"hostPort": 80, "containerPort": 80}], {"markMasqBit": 13, "externalSetMarkChain": "X"}),
    ],
)
def test_bad_input_code_7_no_state(
    net: dict[str, Any], make_netns, mappings: list[Any], extra: dict[str, Any]
) -> None:
    ct = make_netns("ktc")
    cni: PluginRunner = net["cni"]
    r = cni("bridge", "ADD", net["bridge"], cid="b1", netns=f"/run/netns/{ct}")
    before = nsexec(net["host"], "nft", "list", "ruleset").stdout
    conf = {
        "cniVersion": "1.0.0",
        "name": "pmnet",
        "type": "portmap",
        "prevResult": r.out,
        "runtimeConfig": {"portMappings": mappings},
        **extra,
    }
    p = cni("portmap", "ADD", conf, cid="b1", netns=f"/run/netns/{ct}")
    assert p.code == 1 and p.out is not None and p.out["code"] == 7, p
    assert nsexec(net["host"], "nft", "list", "ruleset").stdout == before
    assert json.dumps(p.out)


def test_a_taken_port_is_refused_while_the_table_churns(host_ns: str) -> None:
    """Lookups under concurrent commits can come back "Interrupted system call"; a
    port another container holds must still be refused as taken, never retried over,
    and a retried ADD of the holder itself must still succeed."""
    import ipaddress
    import threading

    from kanal.errors import Conflict
    from kanal.firewall.intents import Owner, PortMapping
    from kanal.firewall.nftables import portmap
    from tests.netns.inns import in_ns

    ROUNDS = 150
    holder = Owner("churn", "holder", "eth0")
    tcp = [PortMapping(host_port=7171, container_port=80, protocol="tcp")]
    ip1, ip2 = ipaddress.ip_address("10.79.0.2"), ipaddress.ip_address("10.79.0.3")
    in_ns(host_ns, lambda: portmap.add_portmaps(holder, tcp, [ip1], [], snat=True, masq_all=False))
    stop = threading.Event()

    def churn(k: int) -> None:  # another process commits, one element after another
        p = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{host_ns}", "nft", "-i"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert p.stdin is not None
        n = 0
        try:
            while not stop.is_set():
                n += 1
                key = f"udp . {20000 + k * 1000 + n % 1000}"
                p.stdin.write(
                    f'add element inet kanal pm_any4 {{ {key} comment "x" : 10.79.1.{k} . 53 }}\n'
                    f"delete element inet kanal pm_any4 {{ {key} }}\n".encode()
                )
                p.stdin.flush()
        finally:
            p.stdin.close()
            p.wait(timeout=60)

    churners = [threading.Thread(target=churn, args=(k,)) for k in range(3)]
    for t in churners:
        t.start()
    refused = again = 0
    try:
        for i in range(ROUNDS):
            who = Owner("churn", f"late{i}", "eth0")
            try:
                in_ns(
                    host_ns,
                    lambda w=who: portmap.add_portmaps(  # type: ignore[misc]
                        w, tcp, [ip2], [], snat=True, masq_all=False
                    ),
                )
            except Conflict as e:
                assert "already mapped" in str(e)
                refused += 1
            in_ns(
                host_ns,
                lambda: portmap.add_portmaps(holder, tcp, [ip1], [], snat=True, masq_all=False),
            )
            again += 1
    finally:
        stop.set()
        for t in churners:
            t.join()
    assert (refused, again) == (ROUNDS, ROUNDS)
    table = nsexec(host_ns, "nft", "list", "map", "inet", "kanal", "pm_any4").stdout.decode()
    assert "10.79.0.2 . 80" in table and "10.79.0.3" not in table
