"""Multi-host overlay networks: three kanald hosts on a 3-member etcd, all in namespaces.

See tests/e2e/overlay_hosts.py for the topology. Everything is driven with the
installed ``kanal`` command against each host's kanald; the kernel is checked
with ``ip``/``bridge`` and etcd through kanal's own view. Slow parts (a host's
death, etcd down and back) wait for leases and grace periods of a few seconds.

The module runs twice: over plain etcd, and over a secured one (TLS between
everything, client certificates required, etcd users; tests/multihost.py), where
hosts that etcd must refuse — a certificate from another CA, no certificate, a
read-only user — are also tried. Each run is its own xdist group (in parallel
under ``--dist loadgroup``), its tests in order on one worker.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.overlay_hosts import Hosts, available
from tests.helpers import delete_netns, nsexec
from tests.multihost import wait_for

pytestmark = [
    pytest.mark.skipif(bool(available()), reason=available() or "-"),
    # One cluster per run of the module, its tests in order on one worker (make test:
    # --dist loadgroup); the parameters' own groups below take precedence.
    pytest.mark.xdist_group("overlay"),
]


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("plain", marks=pytest.mark.xdist_group("overlay")),
        pytest.param("tls", marks=pytest.mark.xdist_group("overlay-tls")),
    ],
)
def hosts(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Hosts]:
    h = Hosts(tmp_path_factory.mktemp("overlay"), tls=request.param == "tls")
    try:
        h.setup()
        yield h
    finally:
        h.close()


def run(h: Hosts, i: int, name: str, *nets: str) -> None:
    args = [a for n in nets for a in ("--network", n)]
    h.kanal(i, "run", "-d", "--name", name, *args, "--", "sleep", "600")


def ping(h: Hosts, i: int, sandbox: str, target: str) -> bool:
    p = h.kanal(i, "exec", sandbox, "ping", "-c", "1", "-W", "1", target, check=False)
    return p.returncode == 0


def networks(h: Hosts, i: int) -> dict[str, dict[str, Any]]:
    out = h.kanal(i, "network", "ls", "--format", "json").stdout
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    return {r["Name"]: r for r in rows}


def test_overlay_across_hosts_by_ip_and_name(hosts: Hosts) -> None:
    h = hosts
    h.kanal(1, "network", "create", "-d", "overlay", "--subnet", "10.99.0.0/24", "ov1")
    for i in (1, 2, 3):  # a global network: every host sees it
        assert networks(h, i)["ov1"]["Scope"] == "global"
    nodes = h.kanal(2, "node", "ls", "--format", "json").stdout.splitlines()
    assert sorted(json.loads(n)["Name"] for n in nodes) == ["h1", "h2", "h3"]
    for i in (1, 2, 3):
        run(h, i, f"s{i}", "ov1")
    ips = {i: h.ip_of(i, f"s{i}", "ov1") for i in (1, 2, 3)}
    assert len(set(ips.values())) == 3 and all(ip.startswith("10.99.0.") for ip in ips.values())
    for a in (1, 2, 3):
        for b in (1, 2, 3):
            if a != b:
                assert wait_for(f"s{a} -> s{b}", partial(ping, h, a, f"s{a}", ips[b]))
    # Names resolve across hosts (kanald's embedded DNS, from the other hosts' records).
    assert wait_for("s1 resolves s3", lambda: ping(h, 1, "s1", "s3"))
    got = h.kanal(2, "exec", "s2", "getent", "hosts", "s1").stdout.split()
    assert got[0] == ips[1]
    # inspect lists this host's containers, and the other hosts' endpoints as Peers
    info = json.loads(h.kanal(1, "network", "inspect", "ov1").stdout)[0]
    assert [c["Name"] for c in info["Containers"].values()] == ["s1"]

    def peers() -> list[dict[str, str]] | None:
        got = json.loads(h.kanal(1, "network", "inspect", "ov1").stdout)[0]["Peers"]
        return got if len(got) == 2 else None

    wait_for("h1 sees both peers", peers)
    peers_now = peers() or []
    assert sorted((p["Name"], p["Host"], p["IP"]) for p in peers_now) == [
        ("s2", "h2", ips[2]),
        ("s3", "h3", ips[3]),
    ]
    # One VXLAN device on the network's bridge per host, device learning off.
    vx = [
        ln
        for ln in json.loads(nsexec(h.ns[1], "ip", "-j", "-d", "link", "show").stdout)
        if ln.get("linkinfo", {}).get("info_kind") == "vxlan"
    ]
    assert len(vx) == 1 and vx[0]["linkinfo"]["info_data"]["port"] == 4789
    assert vx[0]["linkinfo"]["info_data"].get("learning") is False


def test_graph_shows_the_remote_vteps(hosts: Hosts) -> None:
    """kanal graph on h1 (issue 15): ov1's VXLAN device and the other two hosts as
    remote VTEPs, from the FDB, agreeing with the cluster's records (not red)."""
    from tests.e2e.test_graph import parse_dot

    h = hosts
    addrs = {
        json.loads(n)["Name"]: json.loads(n)["Addr"]
        for n in h.kanal(1, "node", "ls", "--format", "json").stdout.splitlines()
    }

    def vteps() -> dict[str, dict[str, str]] | None:
        nodes, _, _ = parse_dot(h.kanal(1, "graph", "--network", "ov1").stdout)
        got = {n: a for n, a in nodes.items() if n.startswith("vtep_")}
        return got if len(got) == 2 and all(a.get("color") != "red" for a in got.values()) else None

    got = wait_for("h1's graph has both VTEPs", vteps) or {}
    for name in ("h2", "h3"):
        label = got[f"vtep_{addrs[name].replace(':', '_')}"]["label"].splitlines()
        assert label == [f"VTEP {addrs[name]}", name]
    nodes, edges, eattrs = parse_dot(h.kanal(1, "graph", "--network", "ov1").stdout)
    [vx] = [n for n, a in nodes.items() if a["label"].startswith("vxlan ")]
    for n in got:
        assert frozenset((vx, n)) in edges and eattrs[frozenset((vx, n))]["label"] == "1 MAC"
    assert "drift" not in nodes


def test_node_ls_shows_how_each_host_reaches_etcd(hosts: Hosts) -> None:
    h = hosts
    rows = [
        json.loads(n) for n in h.kanal(1, "node", "ls", "--format", "json").stdout.split("\n") if n
    ]
    want = "mutual" if h.tls else "none"
    assert {(r["Name"], r["TLS"]) for r in rows} == {(f"h{i}", want) for i in (1, 2, 3)}
    table = h.kanal(3, "node", "ls").stdout.splitlines()
    assert table[0].split()[:5] == ["NAME", "ADDRESS", "STATUS", "TLS", "STARTED"]
    assert all(line.split()[-2] == want for line in table[1:])
    # A plain store is announced as such at start; a secured one is not.
    warned = "the cluster store is plain HTTP (unauthenticated)" in h.log(1)
    assert warned is not h.tls


def test_hosts_etcd_refuses_are_told_why_and_change_nothing(hosts: Hosts) -> None:
    """A host with a certificate from another CA, one with none, and one whose etcd user
    may only read: each kanald stops at start with one line saying why, and etcd holds
    exactly what it held before."""
    h = hosts
    if not h.tls:
        pytest.skip("the plain cluster refuses nobody")
    from tests.certs import Pki

    ns = h.ns.get(4) or h.host_ns(4)
    h.ns[4] = ns
    other = Pki(h.tmp / "other-ca", "another-ca").client("h4")
    ca = f"kv.cacertfile={h.pki.ca_file}"
    user = h.store_opts(4)[1]
    cases = {
        "another CA": ([f"{ca},kv.certfile={other.cert},kv.keyfile={other.key}", user],
                       "refused our client certificate"),
        "no certificate": ([ca, user], "wants a client certificate"),
        "read-only user": (h.store_opts(4, user="reader"), "etcd user 'reader' may not write"),
    }  # fmt: skip
    before = h.etcd_list("")
    for name, (opts, says) in cases.items():
        argv = h.kanald_argv(4, opts)
        p = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert p.returncode == 1, (name, p.stderr)
        last = p.stderr.strip().splitlines()[-1]
        assert last.startswith("kanald: ") and says in last, (name, p.stderr)
        assert "Traceback" not in p.stderr, name
    assert h.etcd_list("") == before
    assert "h4" not in h.kanal(1, "node", "ls", "-q").stdout.split()


def test_two_overlay_networks_are_isolated(hosts: Hosts) -> None:
    h = hosts
    h.kanal(2, "network", "create", "-d", "overlay", "--subnet", "10.98.0.0/24", "ov2")
    run(h, 3, "t3", "ov2")
    t3 = h.ip_of(3, "t3", "ov2")
    run(h, 1, "t1", "ov2")
    assert wait_for("t1 -> t3", lambda: ping(h, 1, "t1", t3))
    assert not ping(h, 1, "s1", t3)  # s1 is on ov1 only
    assert not ping(h, 3, "t3", h.ip_of(2, "s2", "ov1"))
    p = h.kanal(
        3, "network", "create", "-d", "overlay", "--subnet", "10.98.0.128/25", "ov3", check=False
    )
    assert p.returncode == 1 and "overlaps" in p.stderr  # cluster-wide subnet check
    p = h.kanal(3, "network", "create", "-d", "overlay", "ov1", check=False)
    assert p.returncode == 1 and "already exists" in p.stderr  # cluster-wide names
    p = h.kanal(3, "network", "rm", "ov2", check=False)
    assert p.returncode == 1 and "active endpoints" in p.stderr  # t1 is on h1


def test_dual_stack_overlay(hosts: Hosts) -> None:
    h = hosts
    h.kanal(3, "network", "create", "-d", "overlay", "--ipv6", "--subnet", "10.96.0.0/24",
            "--subnet", "fd00:96::/64", "ov6")  # fmt: skip
    run(h, 1, "d1", "ov6")
    run(h, 2, "d2", "ov6")
    info = json.loads(h.kanal(2, "network", "inspect", "ov6").stdout)[0]
    d2 = next(iter(info["Containers"].values()))
    v6 = d2["IPv6Address"].split("/")[0]
    assert v6.startswith("fd00:96::") and d2["IPv4Address"].startswith("10.96.0.")
    assert wait_for("d1 -> d2 over IPv6", partial(ping, h, 1, "d1", v6))
    got = h.kanal(1, "exec", "d1", "getent", "ahosts", "d2").stdout
    assert v6 in got and d2["IPv4Address"].split("/")[0] in got  # AAAA and A across hosts
    h.kanal(1, "rm", "-f", "d1")
    h.kanal(2, "rm", "-f", "d2")
    h.kanal(3, "network", "rm", "ov6")


def test_concurrent_runs_on_three_hosts_with_an_etcd_member_killed(hosts: Hosts) -> None:
    h = hosts
    h.kanal(1, "network", "create", "-d", "overlay", "--subnet", "10.97.0.0/24", "ovc")
    per_host = 50
    errors: list[str] = []

    def work(i: int) -> None:
        for k in range(per_host):
            p = h.kanal(
                i,
                "run",
                "-d",
                "--name",
                f"c{i}-{k}",
                "--network",
                "ovc",
                "--",
                "sleep",
                "600",
                check=False,
            )
            if p.returncode != 0:
                errors.append(f"h{i} c{k}: {p.stderr.strip()}")

    threads = [threading.Thread(target=work, args=(i,)) for i in (1, 2, 3)]
    for t in threads:
        t.start()
    # etcd member 3 dies (-9) while the hosts allocate addresses.
    wait_for("allocations under way", lambda: len(networks_ips(h, "ovc")) >= 20, 120)
    h.kill_etcd(3)
    for t in threads:
        t.join()
    assert errors == []
    ips = networks_ips(h, "ovc")
    assert len(ips) == 3 * per_host and len(set(ips)) == 3 * per_host  # no duplicate anywhere
    h.start_etcd(3, new=False)
    wait_for("etcd m3 back", lambda: h.etcd_ok(3), 60)
    for i in (1, 2, 3):
        names = [f"c{i}-{k}" for k in range(per_host)]
        h.kanal(i, "rm", "-f", *names)
    h.kanal(1, "network", "rm", "ovc")


def _no_fdb_to(ns: str, dst: str) -> bool:
    return dst not in nsexec(ns, "bridge", "fdb", "show").stdout.decode()


def networks_ips(h: Hosts, network: str) -> list[str]:
    out: list[str] = []
    for i in (1, 2, 3):
        p = h.kanal(i, "network", "inspect", network, check=False)
        if p.returncode == 0:
            out += [
                c["IPv4Address"].split("/")[0]
                for c in json.loads(p.stdout)[0]["Containers"].values()
            ]
    return out


def test_etcd_down_local_networks_work_and_the_overlay_resumes(hosts: Hosts) -> None:
    h = hosts
    for i in (1, 2, 3):
        h.kill_etcd(i)
    p = h.kanal(1, "network", "create", "-d", "overlay", "ovx", check=False)
    assert p.returncode == 1 and "etcd" in p.stderr and len(p.stderr.splitlines()) == 1
    h.kanal(1, "network", "create", "--subnet", "10.89.0.0/24", "local1")
    run(h, 1, "l1", "local1")
    run(h, 1, "l2", "local1")
    assert ping(h, 1, "l1", h.ip_of(1, "l2", "local1"))
    assert ping(h, 1, "s1", h.ip_of(2, "s2", "ov1"))  # programmed entries stay
    for i in (1, 2, 3):
        h.start_etcd(i, new=False)
    for i in (1, 2, 3):
        wait_for(f"etcd m{i} back", partial(h.etcd_ok, i), 60)
    run(h, 2, "r2", "ov1")  # the overlay works again
    r2 = h.ip_of(2, "r2", "ov1")
    assert wait_for("s1 -> r2", lambda: ping(h, 1, "s1", r2))
    h.kanal(1, "rm", "-f", "l1", "l2")
    h.kanal(1, "network", "rm", "local1")


def test_a_dead_host_is_forgotten_and_its_addresses_freed(hosts: Hosts) -> None:
    h = hosts
    s3 = h.ip_of(3, "s3", "ov1")
    since = f"{time.time():.9f}"
    h.kill_kanald(3)
    delete_netns(h.ns[3])  # the host is gone: its namespace (and underlay link) removed
    # After the lease: no FDB entry towards h3 on the others.
    for i in (1, 2):
        wait_for(f"h{i} forgets h3", partial(_no_fdb_to, h.ns[i], h.addr(3)), 60)
    assert not ping(h, 1, "s1", s3)
    # After the grace period its address block, addresses and endpoint records
    # are freed in etcd, and it is no longer a node.
    nid = json.loads(h.kanal(1, "network", "inspect", "ov1").stdout)[0]["Id"]

    def freed() -> bool:
        nodes = [
            json.loads(n)["Name"]
            for n in h.kanal(1, "node", "ls", "--format", "json").stdout.splitlines()
        ]
        ipam = h.etcd_list(f"ipam/{nid}/")
        eps = h.etcd_list(f"overlay/{nid}/endpoints/")
        held = [v for v in list(ipam.values()) + list(eps.values()) if v.get("host") == "h3"]
        return "h3" not in nodes and not held

    wait_for("h3's blocks, addresses and records freed", freed, 60)
    # h1 told it as an event (issue 15): h3's node key went with its lease
    ev = h.kanal(1, "events", "--since", since, "--until", f"{time.time():.9f}", "-f", "type=node")
    assert ev.stdout.split("\n")[0].split()[1:] == [
        "node",
        "leave",
        "h3",
        f"(addr={h.addr(3)},",
        "name=h3)",
    ]
    # The others keep working.
    run(h, 1, "n1", "ov1")
    n1 = h.ip_of(1, "n1", "ov1")
    assert wait_for("s2 -> n1", lambda: ping(h, 2, "s2", n1))


def test_a_host_cut_off_past_the_grace_drops_the_addresses_it_lost(hosts: Hosts) -> None:
    """kanald on h2 is frozen (SIGSTOP) past its lease and the grace period: the others
    free its blocks; when it wakes it registers again and disconnects its sandbox from
    the overlay, since that address may now be someone else's."""
    h = hosts
    run(h, 2, "z2", "ov1")
    z2 = h.ip_of(2, "z2", "ov1")
    nid = json.loads(h.kanal(1, "network", "inspect", "ov1").stdout)[0]["Id"]
    h.freeze(2)
    try:

        def freed() -> bool:
            ipam = h.etcd_list(f"ipam/{nid}/")
            return not [k for k, v in ipam.items() if v.get("host") == "h2"]

        wait_for("h2's blocks freed while it is frozen", freed, 60)
    finally:
        h.thaw(2)

    def dropped() -> bool:
        p = h.kanal(2, "network", "inspect", "ov1", check=False)
        return p.returncode == 0 and "z2" not in p.stdout

    wait_for("h2 drops z2 from the overlay", dropped, 60)
    nodes = h.kanal(1, "node", "ls", "-q").stdout.split()
    assert "h2" in nodes  # registered again
    assert not ping(h, 2, "z2", h.ip_of(1, "s1", "ov1"))
    assert z2  # (the address may be handed out again from now on)


def test_explain_follows_an_overlay_packet_to_its_vtep(hosts: Hosts) -> None:
    """``kanal explain`` on h1 names the VTEP a packet to a sandbox on h2 is tunnelled
    to; for an overlay address nobody holds it says no VTEP is known. Each verdict
    agrees with a real ping."""
    h = hosts
    h.kanal(1, "network", "create", "-d", "overlay", "--subnet", "10.97.0.0/24", "ovx")
    run(h, 1, "x1", "ovx")
    run(h, 2, "x2", "ovx")
    ip2 = h.ip_of(2, "x2", "ovx")
    assert wait_for("x1 -> x2", partial(ping, h, 1, "x1", ip2))
    got = json.loads(h.kanal(1, "explain", "-f", "json", "x1", ip2).stdout)
    assert got["Reachable"] is True
    tunnel = [s for s in got["Steps"] if s["Stage"] == "tunnel"]
    assert tunnel and "192.0.2.2" in tunnel[0]["Text"], got["Steps"]
    nobody = "10.97.0.250"
    p = h.kanal(1, "explain", "-f", "json", "x1", nobody, check=False)
    assert p.returncode == 1 and json.loads(p.stdout)["Reachable"] is False
    assert not ping(h, 1, "x1", nobody)


def test_overlay_metrics_count_entries_latency_and_repaired_drift(hosts: Hosts) -> None:
    """h1's /metrics: its VXLAN device's entries for h2's sandbox (h3 may be gone:
    an earlier test of this module removes it),
    programming latency of watch batches, etcd request latency; an FDB entry deleted
    behind kanald's back is put back by the next reconcile and counted as drift."""
    from tests.e2e.test_metrics import scrape, val

    h = hosts
    h.kanal(1, "network", "create", "-d", "overlay", "--subnet", "10.93.0.0/24", "ovm")
    run(h, 1, "m1", "ovm")
    run(h, 2, "m2", "ovm")
    assert wait_for("m1 -> m2", partial(ping, h, 1, "m1", h.ip_of(2, "m2", "ovm")))
    api = Path(h.api(1))
    s = scrape(api)
    assert val(s, "kanal_overlay_fdb_entries", network="ovm") >= 1
    assert val(s, "kanal_overlay_neighbour_entries", network="ovm") >= 1
    assert val(s, "kanal_overlay_program_seconds_count") >= 1  # m2's record, at least
    assert val(s, "kanal_etcd_request_seconds_count", path="/v3/kv/range") >= 1
    before = val(s, "kanal_overlay_drift_repairs_total")
    vx = [
        ln["ifname"]
        for ln in json.loads(nsexec(h.ns[1], "ip", "-j", "-d", "link", "show").stdout)
        if ln.get("linkinfo", {}).get("info_kind") == "vxlan" and ln.get("master")
    ]
    entries = json.loads(nsexec(h.ns[1], "bridge", "-j", "fdb", "show").stdout)
    remote = [e for e in entries if e.get("dst") == "192.0.2.2" and e.get("ifname") in vx]
    assert remote, entries
    e = remote[0]
    nsexec(h.ns[1], "bridge", "fdb", "del", e["mac"], "dev", e["ifname"], "dst", e["dst"])

    def repaired() -> bool:
        now = scrape(api)
        back = json.loads(nsexec(h.ns[1], "bridge", "-j", "fdb", "show").stdout)
        restored = any(x.get("mac") == e["mac"] and x.get("dst") == e["dst"] for x in back)
        return restored and val(now, "kanal_overlay_drift_repairs_total") > before

    assert wait_for("the deleted entry is put back and counted", repaired)


@pytest.fixture(autouse=True)
def _no_devices_of_removed_networks(hosts: Hosts) -> Iterator[None]:
    """After each test, no host keeps an overlay bridge or VXLAN device marked for a
    network that no longer exists. Under load, a host's last leave once counted its
    own veth, made inert by DEL but not yet taken off the bridge, as a port and kept
    both devices (netlink's ``master=0`` was not sent). On failure the message
    carries the host's links and what its kanald logged about the network."""
    yield
    for i in (1, 2, 3):
        p = nsexec(hosts.ns[i], "ip", "-j", "-d", "link", "show", check=False)
        if p.returncode:
            continue  # a host an earlier test removed
        ls = hosts.kanal(i, "network", "ls", "--no-trunc", "-q", check=False)
        if ls.returncode:
            continue  # (its kanald stopped by the test)
        known = set(ls.stdout.split())
        left = [
            (ln["ifname"], ln.get("ifalias", ""))
            for ln in json.loads(p.stdout)
            if ln["ifname"].startswith(("kvx", "kov"))
            and ln.get("ifalias", "").removeprefix("kanal:net:") not in known
        ]
        detail = ""
        if left:
            links = [
                (
                    ln["ifname"],
                    ln.get("master", ""),
                    ln.get("linkinfo", {}).get("info_kind", ""),
                    ln.get("ifalias", ""),
                )
                for ln in json.loads(p.stdout)
            ]
            logged = [
                line
                for line in hosts.log(i).splitlines()
                if any(a.removeprefix("kanal:net:")[:12] in line for _n, a in left)
                or "WARNING" in line
                or "ERROR" in line
            ]
            detail = f"links: {links}\nlog:\n" + "\n".join(logged[-60:])
        assert left == [], f"h{i}: devices of removed networks: {left}\n{detail}"
