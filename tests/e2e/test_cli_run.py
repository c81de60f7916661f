"""``kanal run / ps / exec / stop / rm`` against a real kanald, in a host namespace made here."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_cli_network import VENV, Daemon
from tests.helpers import nsexec


class RunDaemon(Daemon):
    def remove_all_and_stop(self) -> None:
        """A fixture's teardown: every sandbox removed (stopped ones too), then kanald."""
        for sid in self.k("ps", "-a", "-q", "--no-trunc", check=False).stdout.split():
            self.k("rm", "-f", sid, check=False)
        self.stop(kill=True)

    def k(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        p = subprocess.run(
            [str(VENV / "kanal"), args[0], "-H", str(self.api), *args[1:]],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and p.returncode != 0:
            raise AssertionError(f"kanal {' '.join(args)}: {p.stderr}")
        return p


@pytest.fixture
def rd(host_ns: str, tmp_path: Path) -> Iterator[RunDaemon]:
    d = RunDaemon(host_ns, tmp_path)
    d.start()
    try:
        yield d
    finally:
        if d.proc is None:
            d.start()
        for sid in d.k("ps", "-a", "-q", check=False).stdout.split():
            d.k("rm", "-f", sid, check=False)
        d.stop(kill=True)


def curl(ns: str, url: str) -> str:
    for _ in range(50):
        p = nsexec(ns, "curl", "-s", "-m", "2", url, check=False)
        if p.returncode == 0:
            return p.stdout.decode()
        time.sleep(0.1)
    return ""


def test_run_ps_exec_stop_rm_and_restart(rd: RunDaemon) -> None:
    www = rd.tmp / "www"
    www.mkdir()
    (www / "index.html").write_text("hello from a kanal sandbox\n")
    rd.kanal("create", "--subnet", "10.74.0.0/24", "app")
    sid = rd.k(
        "run", "-d", "--name", "web", "--network", "app", "--ip", "10.74.0.10", "--alias", "www",
        "-p", "127.0.0.1:18090:80", "--", "busybox", "httpd", "-f", "-p", "80", "-h", str(www),
    ).stdout.strip()  # fmt: skip
    assert len(sid) == 64
    ps = rd.k("ps").stdout
    assert "web" in ps and "running" in ps and "app=10.74.0.10" in ps
    from kanal.daemon.client import ApiClient

    (ep,) = ApiClient(str(rd.api)).request("GET", "/endpoints")
    assert ep["Network"] == "app" and ep["IPv4Address"] == "10.74.0.10/24"
    assert ep["Aliases"] == ["www"] and ep["Ports"][0]["HostPort"] == 18090
    # published on the host's 127.0.0.1 (the test's host namespace)
    assert curl(rd.host, "http://127.0.0.1:18090/") == "hello from a kanal sandbox\n"
    # an attached run: its own resolv.conf and hosts, its hostname, its exit status, --rm
    out = rd.k(
        "run", "--rm", "--name", "c1", "--network", "app", "--dns", "192.0.2.53",
        "--add-host", "db:192.0.2.7", "--", "sh", "-c",
        "cat /etc/resolv.conf /etc/hosts; hostname; curl -s -m 3 http://10.74.0.10/; exit 3",
    check=False)  # fmt: skip
    assert out.returncode == 3, out.stderr
    # on a user-defined network: kanald's embedded DNS, --dns becomes its upstream
    assert "nameserver 127.0.0.11" in out.stdout and "ndots:0" in out.stdout
    assert "192.0.2.7\tdb" in out.stdout and "\tc1" in out.stdout
    assert "hello from a kanal sandbox" in out.stdout  # sandbox to sandbox on the network
    names = [line.split()[1] for line in rd.k("ps", "-a").stdout.splitlines()[1:]]
    assert "c1" not in names  # --rm (a name, not a substring: ids are random hex)
    # exec runs in the sandbox's namespaces (its /etc/hostname, its address)
    assert rd.k("exec", "web", "cat", "/etc/hostname").stdout.strip() == "web"
    assert "10.74.0.10" in rd.k("exec", "web", "ip", "-br", "addr").stdout
    # bad input: one line, non-zero, nothing changed
    before = rd.k("ps", "-a", "-q").stdout
    for bad in (
        ["run", "-d", "--name", "web", "--network", "app", "--", "true"],
        ["run", "-d", "--name", "a/b", "--", "true"],
        ["run", "-d", "--network", "nosuch", "--", "true"],
        ["run", "-d", "--network", "app", "-p", "127.0.0.1:18090:80", "--", "true"],
        ["run", "-d", "--network", "app", "--ip", "10.74.0.10", "--", "true"],
        ["rm", "nosuch"],
        ["rm", "web"],
    ):
        p = rd.k(*bad, check=False)
        assert p.returncode != 0, bad
        assert len(p.stderr.strip().splitlines()) == 1 and p.stderr.startswith("kanal: "), p.stderr
    assert rd.k("ps", "-a", "-q").stdout == before
    netns_before = sorted(os.listdir("/run/netns"))

    # kanald killed with -9 and restarted: the sandbox still runs and is still served
    rd.stop(kill=True)
    rd.start()
    assert "running" in rd.k("ps").stdout
    assert curl(rd.host, "http://127.0.0.1:18090/") == "hello from a kanal sandbox\n"

    rd.k("stop", "-t", "2", "web")
    assert "exited" in rd.k("ps", "-a").stdout
    rd.k("rm", "web")
    assert rd.k("ps", "-a", "-q").stdout == ""
    netns_after = sorted(os.listdir("/run/netns"))
    assert [n for n in netns_before if n.startswith("kanal-") and n not in netns_after]
    assert not [n for n in netns_after if n == f"kanal-{sid[:12]}"]
    rd.kanal("rm", "app")


def test_network_modes(rd: RunDaemon) -> None:
    rd.kanal("create", "app2")
    rd.k("run", "-d", "--name", "base", "--network", "app2", "--", "sleep", "300")
    shared = rd.k("run", "--rm", "--network", "container:base", "--", "ip", "-br", "addr").stdout
    base_addr = rd.k("exec", "base", "ip", "-br", "addr").stdout

    def links(text: str) -> list[list[str]]:
        # name and addresses; not the state, which the kernel's link watch settles
        # (UNKNOWN -> UP) on its own time, maybe between the two reads
        return [[f for i, f in enumerate(line.split()) if i != 1] for line in text.splitlines()]

    assert links(shared) == links(base_addr)  # the same namespace
    none = rd.k("run", "--rm", "--network", "none", "--", "ip", "-br", "link").stdout
    assert [line.split()[0] for line in none.splitlines()] == ["lo"]
    host = rd.k("run", "--rm", "--network", "host", "--", "ip", "-br", "link").stdout
    assert "lo" in host and any(line.startswith("br-") for line in host.splitlines())
    bad = rd.k("run", "--rm", "--network", "container:base", "-p", "80", "--", "true", check=False)
    assert bad.returncode == 1 and "conflicting options" in bad.stderr
    rd.k("rm", "-f", "base")
    rd.kanal("rm", "app2")


RESOLVE = (
    "import socket, sys\n"
    "for name in sys.argv[1:]:\n"
    "    try:\n"
    "        print(name, sorted({a[4][0] for a in socket.getaddrinfo(name, 80, socket.AF_INET)}))\n"
    "    except socket.gaierror:\n"
    "        print(name, 'unresolved')\n"
)


def test_embedded_dns_names_aliases_and_isolation(rd: RunDaemon) -> None:
    import sys

    rd.kanal("create", "--subnet", "10.75.0.0/24", "front")
    rd.kanal("create", "--subnet", "10.76.0.0/24", "back")
    rd.k(
        "run",
        "-d",
        "--name",
        "api",
        "--network",
        "front",
        "--ip",
        "10.75.0.5",
        "--alias",
        "svc",
        "--",
        "sleep",
        "300",
    )
    rd.k(
        "run",
        "-d",
        "--name",
        "api2",
        "--network",
        "front",
        "--ip",
        "10.75.0.6",
        "--alias",
        "svc",
        "--",
        "sleep",
        "300",
    )
    rd.k("run", "-d", "--name", "db", "--network", "back", "--", "sleep", "300")
    out = rd.k(
        "run", "--rm", "--network", "front", "--", sys.executable, "-c", RESOLVE,
        "api", "API", "svc", "db", "nosuchname.invalid",
    ).stdout.splitlines()  # fmt: skip
    assert out[0] == "api ['10.75.0.5']"
    assert out[1] == "API ['10.75.0.5']"  # case-insensitive
    assert out[2] == "svc ['10.75.0.5', '10.75.0.6']"  # a shared alias: both
    assert out[3] == "db unresolved"  # on another network: not found
    assert out[4] == "nosuchname.invalid unresolved"
    # PTR: an address back to docker's "name.network"
    ptr = rd.k("run", "--rm", "--network", "front", "--", "getent", "hosts", "10.75.0.6").stdout
    assert ptr.split() == ["10.75.0.6", "api2.front"]
    resolv = rd.k("run", "--rm", "--network", "front", "--", "cat", "/etc/resolv.conf").stdout
    assert "nameserver 127.0.0.11" in resolv and "ndots:0" in resolv
    # connect db to front too: now it resolves there
    rd.kanal("connect", "front", "db")
    again = rd.k(
        "run", "--rm", "--network", "front", "--", sys.executable, "-c", RESOLVE, "db"
    ).stdout
    assert again.startswith("db ['10.75.0.")
    # the default bridge has no embedded DNS (as docker's)
    plain = rd.k("run", "--rm", "--", "cat", "/etc/resolv.conf").stdout
    assert "127.0.0.11" not in plain
    # DNS survives a kanald restart (sockets re-opened in the sandboxes)
    rd.stop(kill=True)
    rd.start()
    after = rd.k("exec", "api2", sys.executable, "-c", RESOLVE, "api").stdout
    assert after.strip() == "api ['10.75.0.5']"
