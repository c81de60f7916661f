"""kanald's Prometheus metrics (issue 15): scraped before and after known operations,
each counter must have moved by exactly what those operations did.

The daemon runs in a host namespace made by the test; ``/metrics`` is read over
its API socket (and once over ``--metrics-addr`` on the namespace's loopback).
"""

from __future__ import annotations

import http.client
import json
import random
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kanal.fastpath.install import install_plugins
from tests.e2e.private_kanald import PrivateNetnsDaemon, private_daemon
from tests.e2e.test_cli_network import VENV
from tests.helpers import nsexec

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

#: one DNS query per argument over UDP to 127.0.0.11; prints "name RCODE answers"
QUERY = (
    "import socket, sys\n"
    "from dnslib import DNSRecord, RCODE\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "s.settimeout(15)\n"
    "for name in sys.argv[1:]:\n"
    "    s.sendto(DNSRecord.question(name).pack(), ('127.0.0.11', 53))\n"
    "    r = DNSRecord.parse(s.recv(4096))\n"
    "    print(name, RCODE[r.header.rcode], len(r.rr))\n"
)


class _Unix(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self.path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(30)
        s.connect(self.path)
        self.sock = s


def scrape_text(api: Path, path: str = "/metrics") -> tuple[int, str, str]:
    conn = _Unix(str(api))
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.getheader("Content-Type") or "", r.read().decode()
    finally:
        conn.close()


def parse(text: str) -> Samples:
    out: Samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def scrape(api: Path) -> Samples:
    status, ctype, text = scrape_text(api)
    assert status == 200, text
    assert ctype.startswith("text/plain"), ctype
    return parse(text)


def val(s: Samples, name: str, **labels: str) -> float:
    return s.get((name, frozenset(labels.items())), 0.0)


def delta(a: Samples, b: Samples, name: str, **labels: str) -> float:
    return val(b, name, **labels) - val(a, name, **labels)


PORT = random.randint(20000, 60000)


@pytest.fixture
def md(host_ns: str, tmp_path: Path) -> Iterator[PrivateNetnsDaemon]:
    yield from private_daemon(host_ns, tmp_path, "--metrics-addr", f"127.0.0.1:{PORT}")


def test_engine_operations_move_their_counters_and_gauges(md: PrivateNetnsDaemon) -> None:
    s0 = scrape(md.api)
    assert val(s0, "process_resident_memory_bytes") > 0
    assert val(s0, "process_open_fds") > 0 and val(s0, "process_threads") >= 2
    md.kanal("create", "--subnet", "10.77.0.0/24", "obs")
    s1 = scrape(md.api)
    assert delta(s0, s1, "kanal_engine_operation_seconds_count", operation="network_create") == 1
    assert delta(s0, s1, "kanal_networks", driver="bridge", scope="local") == 1
    assert val(s1, "kanal_endpoints", network="obs") == 0
    assert val(s1, "kanal_network_addresses_used", network="obs", subnet="10.77.0.0/24") == 0
    # 256 addresses less network, broadcast and gateway
    assert val(s1, "kanal_network_addresses_size", network="obs", subnet="10.77.0.0/24") == 253

    md.k("run", "-d", "--name", "m1", "--network", "obs", "--", "sleep", "300")
    md.k("run", "-d", "--name", "m2", "--network", "obs", "--", "sleep", "300")
    from kanal.daemon.client import ApiClient  # a created sandbox, not started

    body = {"Name": "m3", "Cmd": ["sleep", "300"], "NetworkMode": "obs"}
    ApiClient(str(md.api)).request("POST", "/sandboxes/create", body)
    s2 = scrape(md.api)
    assert delta(s1, s2, "kanal_engine_operation_seconds_count", operation="sandbox_create") == 3
    assert delta(s1, s2, "kanal_engine_operation_seconds_count", operation="connect") == 3
    assert delta(s1, s2, "kanal_engine_operation_seconds_count", operation="network_create") == 0
    assert val(s2, "kanal_endpoints", network="obs") == 3
    assert val(s2, "kanal_network_addresses_used", network="obs", subnet="10.77.0.0/24") == 3
    assert (
        val(s2, "kanal_sandboxes", state="running") - val(s1, "kanal_sandboxes", state="running")
        == 2
    )
    assert (
        val(s2, "kanal_sandboxes", state="created") - val(s1, "kanal_sandboxes", state="created")
        == 1
    )
    # each connect ran the bridge network's plugin chain in kanald: one ADD of the
    # bridge plugin per sandbox
    assert (
        delta(s1, s2, "kanal_cni_execs_total", plugin="bridge", command="ADD", via="inprocess") == 3
    )
    assert (
        delta(
            s1, s2, "kanal_cni_exec_seconds_count", plugin="bridge", command="ADD", via="inprocess"
        )
        == 3
    )

    # a failing operation: counted as an operation and as an error, and nothing else
    bad = md.k("run", "-d", "--name", "m1", "--network", "obs", "--", "true", check=False)
    assert bad.returncode != 0
    md.kanal("rm", "nosuch", check=False)
    s3 = scrape(md.api)
    assert delta(s2, s3, "kanal_engine_operation_errors_total", operation="sandbox_create") == 1
    assert delta(s2, s3, "kanal_engine_operation_errors_total", operation="network_delete") == 1
    assert delta(s2, s3, "kanal_engine_operation_seconds_count", operation="connect") == 0
    assert val(s3, "kanal_endpoints", network="obs") == 3

    md.k("rm", "-f", "m1", "m2", "m3")
    md.kanal("rm", "obs")
    s4 = scrape(md.api)
    assert delta(s3, s4, "kanal_engine_operation_seconds_count", operation="sandbox_remove") == 3
    assert delta(s3, s4, "kanal_engine_operation_seconds_count", operation="network_delete") == 1
    assert delta(s3, s4, "kanal_engine_operation_errors_total", operation="network_delete") == 0
    assert delta(s3, s4, "kanal_networks", driver="bridge", scope="local") == -1
    assert (
        delta(s3, s4, "kanal_cni_execs_total", plugin="bridge", command="DEL", via="inprocess") == 3
    )
    assert ("kanal_endpoints", frozenset({("network", "obs")})) not in s4


def test_embedded_dns_counts_local_and_forwarded_answers(md: PrivateNetnsDaemon) -> None:
    md.kanal("create", "--subnet", "10.78.0.0/24", "dnsnet")
    md.k("run", "-d", "--name", "srv", "--network", "dnsnet", "--", "sleep", "300")
    # upstream 127.0.0.1: asked from kanald's (the test's) namespace, where nothing
    # listens on port 53 — the forward fails at once, SERVFAIL goes back
    md.k(
        "run", "-d", "--name", "cli", "--network", "dnsnet", "--dns", "127.0.0.1",
        "--", "sleep", "300",
    )  # fmt: skip
    s0 = scrape(md.api)
    out = md.k(
        "exec", "cli", sys.executable, "-c", QUERY, "srv", "srv", "nosuch.example",
    ).stdout.splitlines()  # fmt: skip
    assert out == ["srv NOERROR 1", "srv NOERROR 1", "nosuch.example SERVFAIL 0"]
    s1 = scrape(md.api)
    assert delta(s0, s1, "kanal_dns_queries_total") == 3
    assert delta(s0, s1, "kanal_dns_answers_total", source="local", rcode="NOERROR") == 2
    assert delta(s0, s1, "kanal_dns_cache_hits_total") == 1  # the second "srv"
    assert delta(s0, s1, "kanal_dns_answers_total", source="forwarded", rcode="SERVFAIL") == 1
    assert delta(s0, s1, "kanal_dns_forward_seconds_count") == 1
    assert delta(s0, s1, "kanal_dns_forward_seconds_bucket", le="+Inf") == 1
    assert delta(s0, s1, "kanal_dns_refused_total") == 0
    assert val(s1, "kanal_dns_forwards_in_flight") == 0


def test_fast_path_execs_and_errors_by_code(md: PrivateNetnsDaemon, make_netns) -> None:
    ct = make_netns("kmc")
    bindir = md.tmp / "shims"
    install_plugins(str(bindir), socket_path=str(md.tmp / "fp.sock"))
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "metrics1",
        "CNI_NETNS": f"/run/netns/{ct}",
        "CNI_IFNAME": "lo",
        "CNI_PATH": str(bindir),
    }
    # an extra key: the shim's lean loopback declines it and kanald serves it
    conf = {"cniVersion": "1.0.0", "name": "lo", "type": "loopback", "x": 1}
    s0 = scrape(md.api)

    def run(c: dict[str, object], **more: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            ["nsenter", f"--net=/run/netns/{md.host}", str(bindir / "loopback")],
            input=json.dumps(c).encode(),
            env={**env, **more},
            capture_output=True,
        )

    assert run(conf).returncode == 0
    assert run(conf, CNI_COMMAND="DEL").returncode == 0
    bad = run({**conf, "cniVersion": "9.9.9"})
    assert bad.returncode != 0 and json.loads(bad.stdout)["code"] == 1
    s1 = scrape(md.api)
    for cmd, n in (("ADD", 2), ("DEL", 1)):
        fp = {"plugin": "loopback", "command": cmd, "via": "fastpath"}
        assert delta(s0, s1, "kanal_cni_execs_total", **fp) == n
        assert delta(s0, s1, "kanal_cni_exec_seconds_count", **fp) == n
    assert delta(s0, s1, "kanal_cni_errors_total", plugin="loopback", command="ADD", code="1") == 1
    assert delta(s0, s1, "kanal_cni_errors_total", plugin="loopback", command="DEL", code="1") == 0


def test_metrics_addr_serves_the_same_registry(md: PrivateNetnsDaemon) -> None:
    md.kanal("create", "--subnet", "10.79.0.0/24", "httpnet")
    text = nsexec(md.host, "curl", "-sf", "-m", "10", f"http://127.0.0.1:{PORT}/metrics")
    s = parse(text.stdout.decode())
    assert val(s, "kanal_endpoints", network="httpnet") == 0
    assert val(s, "kanal_engine_operation_seconds_count", operation="network_create") >= 1
    assert val(scrape(md.api), "kanal_networks", driver="bridge", scope="local") == val(
        s, "kanal_networks", driver="bridge", scope="local"
    )
    # the versioned path too, as every route; other methods are not metrics
    status, _, body = scrape_text(md.api, "/v1.44/metrics")
    assert status == 200 and "kanal_networks" in body
    conn = _Unix(str(md.api))
    conn.request("POST", "/metrics")
    r = conn.getresponse()
    assert r.status == 404 and "message" in json.loads(r.read())
    conn.close()


@pytest.mark.parametrize("addr", ["nonsense", "127.0.0.1:0", "127.0.0.1:99999", "host:80"])
def test_bad_metrics_addr_is_one_line_and_exit_1(host_ns: str, tmp_path: Path, addr: str) -> None:
    p = subprocess.run(
        [
            "nsenter", f"--net=/run/netns/{host_ns}", str(VENV / "kanald"),
            "--socket", str(tmp_path / "fp.sock"), "--no-engine", "--metrics-addr", addr,
        ],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert p.returncode == 1
    assert p.stderr.strip().splitlines()[-1].startswith("kanald: invalid metrics address")


def test_nftables_transactions_and_set_elements(md: PrivateNetnsDaemon) -> None:
    """A published port's sandbox adds exactly one masquerade and one port-map element,
    and its programming runs nftables transactions; removing it takes them away."""
    md.kanal("create", "--subnet", "10.78.0.0/24", "fwm")
    s0 = scrape(md.api)
    md.k("run", "-d", "--name", "f1", "--network", "fwm", "-p", "18080:80", "--", "sleep", "300")
    s1 = scrape(md.api)
    assert delta(s0, s1, "kanal_nft_set_elements", set="masq4") == 1
    assert delta(s0, s1, "kanal_nft_set_elements", set="pm_any4") == 1
    ran = sum(
        delta(s0, s1, "kanal_nft_transactions_total", way=w) for w in ("netlink", "libnftables")
    )
    assert ran >= 1
    assert (
        sum(
            delta(s0, s1, "kanal_nft_transaction_seconds_count", way=w)
            for w in ("netlink", "libnftables")
        )
        == ran
    )
    md.k("rm", "-f", "f1")
    s2 = scrape(md.api)
    assert delta(s1, s2, "kanal_nft_set_elements", set="masq4") == -1
    assert delta(s1, s2, "kanal_nft_set_elements", set="pm_any4") == -1
    assert val(s2, "kanal_nft_transaction_errors_total", way="netlink") == 0
    md.kanal("rm", "fwm")
