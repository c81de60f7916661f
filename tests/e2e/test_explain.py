"""``kanal explain``: each verdict is checked against a real connection attempt.

One kanald in a host namespace made here, with an "outside" namespace on an uplink
(198.51.100.0/24) and a "lan" namespace behind a macvlan parent (192.0.2.0/24):
bridge networks (one with a published port), a second bridge network, an internal
one, one with ICC off, and a macvlan network. Every sandbox listens on TCP 80. For
each scenario the test runs ``kanal explain SRC DST:PORT`` and makes the TCP
connection itself from SRC's namespace; the two must agree.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.private_kanald import PrivateNetnsDaemon, private_daemon
from tests.helpers import nsexec, unique

LISTEN = (
    "import socket\n"
    "s = socket.socket(socket.AF_INET6 if ':' in '{ip}' else socket.AF_INET)\n"
    "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('{ip}', {port}))\n"
    "s.listen(64)\n"
    "while True:\n"
    "    c, _ = s.accept()\n"
    "    c.close()\n"
)
CONNECT = (
    "import socket, sys\n"
    "try:\n"
    "    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.5).close()\n"
    "except OSError:\n"
    "    sys.exit(1)\n"
)
PY = "/usr/bin/python3"


class Lab:
    def __init__(self, d: PrivateNetnsDaemon, host: str, outside: str, lan: str) -> None:
        self.d, self.host, self.outside, self.lan = d, host, outside, lan
        self.procs: list[subprocess.Popen[bytes]] = []

    def netns(self, ref: str) -> str:
        if ref == "host":
            return f"/run/netns/{self.host}"
        if ref == "outside":
            return f"/run/netns/{self.outside}"
        if ref == "lan":
            return f"/run/netns/{self.lan}"
        return str(self.d.call("GET", f"/sandboxes/{ref}")["Netns"])

    def ip(self, ref: str) -> str:
        sb = self.d.call("GET", f"/sandboxes/{ref}")
        nets = sb["Networks"]
        return str(next(iter(nets.values()))["IPAddress"])

    def listen(self, ns_path: str, ip: str, port: int) -> None:
        self.procs.append(
            subprocess.Popen(
                ["nsenter", f"--net={ns_path}", PY, "-c", LISTEN.format(ip=ip, port=port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )

    def connects(self, src: str, ip: str, port: int) -> bool:
        p = subprocess.run(
            ["nsenter", f"--net={self.netns(src)}", PY, "-c", CONNECT, ip, str(port)],
            capture_output=True,
            timeout=30,
        )
        return p.returncode == 0

    def explain(self, src: str, dst: str) -> dict[str, Any]:
        p = self.d.k("explain", "-f", "json", src, dst, check=False)
        assert p.returncode in (0, 1), p.stderr
        answer: dict[str, Any] = json.loads(p.stdout)
        assert (p.returncode == 0) == answer["Reachable"]
        return answer


def _sandbox(d: PrivateNetnsDaemon, name: str, network: str, *extra: str) -> None:
    d.k("run", "-d", "--name", name, "--network", network, *extra, "--", PY, "-c",
        LISTEN.format(ip="0.0.0.0", port=80))  # fmt: skip


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    from tests.helpers import create_netns, delete_netns

    tmp: Path = tmp_path_factory.mktemp("explain")
    host, outside, lan = (create_netns(unique(p, 30)) for p in ("kxh", "kxo", "kxl"))
    gen = None
    lab = None
    try:
        nsexec(host, "ip", "link", "set", "lo", "up")
        nsexec(host, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        nsexec(host, "ip", "link", "add", "up0", "type", "veth", "peer", "name", "eth0",
               "netns", outside)  # fmt: skip
        nsexec(host, "ip", "addr", "add", "198.51.100.1/24", "dev", "up0")
        nsexec(host, "ip", "link", "set", "up0", "up")
        nsexec(outside, "ip", "addr", "add", "198.51.100.2/24", "dev", "eth0")
        nsexec(outside, "ip", "link", "set", "eth0", "up")
        nsexec(outside, "ip", "link", "set", "lo", "up")
        nsexec(outside, "ip", "route", "add", "default", "via", "198.51.100.1")
        nsexec(host, "ip", "link", "add", "mvp0", "type", "veth", "peer", "name", "eth0",
               "netns", lan)  # fmt: skip
        nsexec(host, "ip", "link", "set", "mvp0", "up")
        nsexec(lan, "ip", "addr", "add", "192.0.2.1/24", "dev", "eth0")
        nsexec(lan, "ip", "link", "set", "eth0", "up")
        gen = private_daemon(host, tmp)
        d = next(gen)
        d.k("network", "create", "--subnet", "10.81.0.0/24", "front")
        d.k("network", "create", "--subnet", "10.82.0.0/24", "other")
        d.k("network", "create", "--subnet", "10.83.0.0/24", "--internal", "back")
        d.k("network", "create", "--subnet", "10.84.0.0/24", "-o",
            "com.docker.network.bridge.enable_icc=false", "noicc")  # fmt: skip
        d.k("network", "create", "-d", "macvlan", "-o", "parent=mvp0", "--subnet",
            "192.0.2.0/24", "--gateway", "192.0.2.1", "mv")  # fmt: skip
        _sandbox(d, "a1", "front", "-p", "8080:80")
        _sandbox(d, "a2", "front")
        _sandbox(d, "o1", "other")
        _sandbox(d, "b1", "back")
        _sandbox(d, "b2", "back")
        _sandbox(d, "n1", "noicc")
        _sandbox(d, "n2", "noicc")
        _sandbox(d, "m1", "mv")
        _sandbox(d, "m2", "mv")
        lab = Lab(d, host, outside, lan)
        lab.listen(f"/run/netns/{outside}", "0.0.0.0", 80)
        lab.listen(f"/run/netns/{lan}", "0.0.0.0", 80)
        lab.listen(f"/run/netns/{host}", "0.0.0.0", 9090)
        yield lab
    finally:
        if lab is not None:
            for p in lab.procs:
                p.kill()
        if gen is not None:
            for _ in gen:
                pass
        for ns in (host, outside, lan):
            delete_netns(ns)


# (source, destination as `kanal explain` takes it, where the test connects, expected)
# A destination "@a1" is a1's address; "host" is the host's address as seen from the source.
SCENARIOS: list[tuple[str, str, str, int, bool]] = [
    ("a1", "a2:80", "@a2", 80, True),  # same network: switched by the bridge
    ("a1", "o1:80", "@o1", 80, False),  # another network: isolation
    ("o1", "a1:80", "@a1", 80, False),
    ("b1", "b2:80", "@b2", 80, True),  # inside an internal network
    ("b1", "a1:80", "@a1", 80, False),  # out of an internal network
    ("a1", "b1:80", "@b1", 80, False),  # into an internal network
    ("n1", "n2:80", "@n2", 80, False),  # ICC off
    ("a1", "host:9090", "10.81.0.1", 9090, True),  # sandbox to the host
    ("b1", "host:9090", "10.83.0.1", 9090, True),  # internal network to the host
    ("host", "a1:80", "@a1", 80, True),
    ("host", "b1:80", "@b1", 80, True),
    ("host", "n1:80", "@n1", 80, True),
    ("a1", "198.51.100.2:80", "198.51.100.2", 80, True),  # out, masqueraded
    ("b1", "198.51.100.2:80", "198.51.100.2", 80, False),  # internal: no way out
    ("outside", "198.51.100.1:8080", "198.51.100.1", 8080, True),  # published port
    ("outside", "198.51.100.1:9090", "198.51.100.1", 9090, True),  # not published: the host
    ("a2", "10.81.0.1:8080", "10.81.0.1", 8080, True),  # hairpin through the host
    ("o1", "10.82.0.1:8080", "10.82.0.1", 8080, False),  # published, but another network
    ("outside", "10.83.0.2:80", "@b1", 80, False),  # straight into an internal network
    ("m1", "m2:80", "@m2", 80, True),  # macvlan, bridge mode
    ("m1", "192.0.2.1:80", "192.0.2.1", 80, True),  # macvlan to its segment
    ("host", "m1:80", "@m1", 80, False),  # the parent cannot reach its macvlans
]


@pytest.mark.parametrize(
    ("src", "dst", "connect_to", "port", "expected"),
    SCENARIOS,
    ids=[f"{s}->{d}" for s, d, *_ in SCENARIOS],
)
def test_explain_agrees_with_a_real_connection(
    lab: Lab, src: str, dst: str, connect_to: str, port: int, expected: bool
) -> None:
    ip = lab.ip(connect_to[1:]) if connect_to.startswith("@") else connect_to
    src_ref = {"outside": "198.51.100.2"}.get(src, src)
    answer = lab.explain(src_ref, dst)
    really = lab.connects(src, ip, port)
    assert really == expected, f"the network itself changed: {src} -> {ip}:{port}"
    assert answer["Reachable"] == really, json.dumps(answer, indent=2)
    # Every verdict names what decided it; a refusal names the step that refused.
    drops = [s for s in answer["Steps"] if s["Verdict"] == "drop"]
    assert (len(drops) == 1) == (not really), answer["Steps"]
    assert all(s["Text"] for s in answer["Steps"])


def test_explain_names_the_kernel_objects(lab: Lab) -> None:
    isolated = lab.explain("a1", "o1:80")
    assert any("handle" in s["Evidence"] and "@net_brs" in s["Evidence"] for s in isolated["Steps"])
    icc = lab.explain("n1", "n2:80")
    assert any("isolated on" in s["Evidence"] for s in icc["Steps"])
    out = lab.explain("a1", "198.51.100.2:80")
    assert any(s["Stage"] == "nat" and "masq4" in s["Evidence"] for s in out["Steps"])
    pub = lab.explain("198.51.100.2", "198.51.100.1:8080")
    assert any(s["Stage"] == "nat" and "DNAT to" in s["Text"] for s in pub["Steps"])


def test_explain_refuses_bad_references(lab: Lab) -> None:
    p = lab.d.k("explain", "a1", "nosuchsandbox:80", check=False)
    assert p.returncode == 1 and "nosuchsandbox" in p.stderr and p.stdout == ""
    p = lab.d.k("explain", "a1", "a2:99999", check=False)
    assert p.returncode == 1 and "invalid port" in p.stderr


def test_the_hosts_own_firewall_is_seen(lab: Lab) -> None:
    """A forward chain that is not kanal's: empty with policy drop, it drops for sure
    (and the connection fails); with rules, explain names it without judging it."""
    table = unique("hostfw", 20)
    nsexec(lab.host, "nft", "add", "table", "inet", table)
    try:
        nsexec(lab.host, "nft", "add", "chain", "inet", table, "filt",
               "{ type filter hook forward priority 10 ; policy drop ; }")  # fmt: skip
        got = lab.explain("a1", "198.51.100.2:80")
        assert not lab.connects("a1", "198.51.100.2", 80)
        assert not got["Reachable"] and table in got["Steps"][-1]["Text"], got["Steps"]
        nsexec(lab.host, "nft", "add", "rule", "inet", table, "filt", "accept")
        got = lab.explain("a1", "198.51.100.2:80")
        assert lab.connects("a1", "198.51.100.2", 80)
        assert got["Reachable"]
        assert any(table in s["Text"] and "does not judge" in s["Text"] for s in got["Steps"])
    finally:
        nsexec(lab.host, "nft", "delete", "table", "inet", table, check=False)
