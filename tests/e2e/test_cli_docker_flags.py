"""docker's networking flags of ``kanal run`` and ``kanal network`` against a real
kanald in a host namespace made here: what each does in the kernel, /etc/hosts,
embedded DNS, ``ps`` and the API."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from tests.e2e import test_cli_run
from tests.e2e.test_cli_run import RunDaemon
from tests.helpers import ip_json, nsexec

rd = test_cli_run.rd  # the same fixture: a kanald with sandboxes, cleaned up after


def api(rd: RunDaemon, method: str, path: str) -> Any:
    from kanal.daemon.client import ApiClient

    return ApiClient(str(rd.api)).request(method, path)


def one_line_error(p: subprocess.CompletedProcess[str]) -> str:
    assert p.returncode != 0, p.stdout
    assert len(p.stderr.strip().splitlines()) == 1 and p.stderr.startswith("kanal: "), p.stderr
    return p.stderr.strip()


def test_link_mac_add_host_and_host_mode_warning(rd: RunDaemon) -> None:
    rd.kanal("create", "--subnet", "10.77.0.0/24", "app")
    rd.k(
        "run", "-d", "--name", "db", "--network", "app", "--ip", "10.77.0.20", "--", "sleep", "300"
    )
    out = rd.k(
        "run", "--rm", "--network", "app", "--link", "db:database",
        "--mac-address", "02:42:0a:4d:00:99", "--add-host", "hg:host-gateway", "--",
        "sh", "-c", "getent hosts database; cat /etc/hosts; ip -j link show eth0",
    ).stdout  # fmt: skip
    lines = out.splitlines()
    assert lines[0].split() == ["10.77.0.20", "database"]  # the link, by embedded DNS
    assert "10.77.0.1\thg" in lines  # host-gateway: the gateway of its first network
    (link,) = json.loads(lines[-1])
    assert link["address"] == "02:42:0a:4d:00:99"
    # the alias is the linking sandbox's own: another one does not resolve it
    other = rd.k(
        "run", "--rm", "--network", "app", "--", "getent", "hosts", "database", check=False
    )
    assert other.returncode == 2 and other.stdout == ""

    # the default bridge: legacy links are /etc/hosts lines; host-gateway its gateway
    rd.k("run", "-d", "--name", "b1", "--", "sleep", "300")
    b1_ip = api(rd, "GET", "/sandboxes/b1")["Networks"]["bridge"]["IPAddress"]
    hosts = rd.k(
        "run", "--rm", "--link", "b1:bee", "--add-host", "gw:host-gateway", "--", "cat",
        "/etc/hosts",
    ).stdout.splitlines()  # fmt: skip
    assert f"{b1_ip}\tbee b1" in hosts and "10.70.0.1\tgw" in hosts

    # --network host -p: docker's warning, and no port published
    p = rd.k("run", "--rm", "--network", "host", "-p", "18097:80", "--", "true")
    assert p.stderr == "WARNING: Published ports are discarded when using host network mode\n"
    assert "18097" not in nsexec(rd.host, "nft", "list", "ruleset").stdout.decode()

    # bad input: one line, nothing left behind
    before = rd.k("ps", "-a", "-q", "--no-trunc").stdout
    for bad, want in (
        (["--link", "nosuch:x"], "could not get container for nosuch: No such container: nosuch"),
        (["--mac-address", "02:42:zz:00:00:01"], "is not a valid mac address"),
        (["--network", "host", "--mac-address", "02:42:00:00:00:01"], "conflicting options"),
        (["--network", "none", "--add-host", "h:host-gateway"], "--host-gateway-ip"),
        (["--add-host", "h:nowhere"], "want NAME:IP or NAME:host-gateway"),
    ):
        err = one_line_error(rd.k("run", "-d", *bad, "--", "true", check=False))
        assert want in err, err
    assert rd.k("ps", "-a", "-q", "--no-trunc").stdout == before


def test_publish_all_expose_and_two_bindings_of_one_port(rd: RunDaemon) -> None:
    rd.kanal("create", "--subnet", "10.78.0.0/24", "pub")
    rd.k(
        "run", "-d", "--name", "web", "--network", "pub", "-P", "--expose", "80",
        "--expose", "5353/udp", "-p", "127.0.0.1:18095:81", "-p", "127.0.0.1:18096:81",
        "--", "sleep", "300",
    )  # fmt: skip
    ports = api(rd, "GET", "/sandboxes/web")["Ports"]
    assert ports["81/tcp"] == [
        {"HostIp": "127.0.0.1", "HostPort": "18095"},
        {"HostIp": "127.0.0.1", "HostPort": "18096"},
    ]
    (b80,) = ports["80/tcp"]
    (b53,) = ports["5353/udp"]
    random80, random53 = int(b80["HostPort"]), int(b53["HostPort"])
    lo, hi = (int(x) for x in nsexec(rd.host, "cat", "/proc/sys/net/ipv4/ip_local_port_range")
              .stdout.split())  # fmt: skip
    assert lo <= random80 <= hi and lo <= random53 <= hi
    ps = rd.k("ps").stdout
    assert "127.0.0.1:18095->81/tcp, 127.0.0.1:18096->81/tcp" in ps
    assert f"0.0.0.0:{random80}->80/tcp" in ps
    # every binding is in the kernel's port maps (DNAT), with its container port
    import re

    rules = nsexec(rd.host, "nft", "list", "ruleset").stdout.decode()
    for proto, port, cport in (
        ("tcp", 18095, 81), ("tcp", 18096, 81), ("tcp", random80, 80), ("udp", random53, 5353)
    ):  # fmt: skip
        want = rf'{proto} \. {port} comment "[^"]*" : 10\.78\.0\.\d+ \. {cport}\b'
        assert re.search(want, rules), port
    # --expose without -P: exposed, not published
    rd.k("run", "-d", "--name", "quiet", "--network", "pub", "--expose", "7000-7001", "--", "sleep",
         "300")  # fmt: skip
    assert api(rd, "GET", "/sandboxes/quiet")["Ports"] == {"7000/tcp": None, "7001/tcp": None}
    row = [r for r in rd.k("ps").stdout.splitlines() if " quiet " in f" {r} "]
    assert row and row[0].rstrip().endswith("7000/tcp, 7001/tcp")


def test_network_flags(rd: RunDaemon) -> None:
    # --ipv6 is a boolean flag: the next word is the name (docker's syntax)
    nid = rd.kanal("create", "--ipv6", "v6net").stdout.strip()
    (v6,) = json.loads(rd.kanal("inspect", "v6net").stdout)
    assert v6["Id"] == nid and v6["EnableIPv6"] is True
    assert any(":" in c["Subnet"] for c in v6["IPAM"]["Config"])
    # flags after the name
    rd.kanal("create", "late", "--internal", "--subnet", "10.79.5.0/24")
    (late,) = json.loads(rd.kanal("inspect", "late").stdout)
    assert late["Internal"] is True and late["IPAM"]["Config"][0]["Subnet"] == "10.79.5.0/24"

    # --config-only: a configuration, no bridge; --config-from makes the real one
    links_before = {x["ifname"] for x in ip_json(rd.host, "link")}
    rd.kanal("create", "--config-only", "--subnet", "10.79.0.0/24", "--gateway", "10.79.0.254",
             "conf")  # fmt: skip
    assert {x["ifname"] for x in ip_json(rd.host, "link")} == links_before
    real = rd.kanal("create", "--config-from", "conf", "real").stdout.strip()
    got = ip_json(rd.host, "addr", "show", "dev", f"br-{real[:12]}")[0]
    assert [a["local"] for a in got["addr_info"] if a["family"] == "inet"] == ["10.79.0.254"]
    assert "configuration-only" in one_line_error(
        rd.k("run", "-d", "--network", "conf", "--", "true", check=False)
    )
    assert "in use by real" in one_line_error(rd.kanal("rm", "conf", check=False))
    ls = rd.kanal("ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}}").stdout.splitlines()
    assert "conf null local" in ls and "real bridge local" in ls
    assert "swarm mode" in one_line_error(rd.kanal("create", "--scope", "swarm", "s", check=False))
    rd.kanal("create", "--scope", "local", "scoped")

    # connect --link --link-local-ip --driver-opt
    rd.k("run", "-d", "--name", "box", "--network", "real", "--", "sleep", "300")
    rd.k("run", "-d", "--name", "peer", "--network", "real", "--ip", "10.79.0.9", "--", "sleep",
         "300")  # fmt: skip
    rd.kanal("connect", "--link", "peer:pp", "--link-local-ip", "169.254.7.7",
             "--driver-opt", "com.example.k=v", "late", "box")  # fmt: skip
    addrs = json.loads(rd.k("exec", "box", "ip", "-j", "addr", "show", "eth1").stdout)
    locals_ = {(a["local"], a["prefixlen"]) for a in addrs[0]["addr_info"] if a["family"] == "inet"}
    assert ("169.254.7.7", 16) in locals_ and any(a.startswith("10.79.5.") for a, _ in locals_)
    (ep,) = [e for e in api(rd, "GET", "/endpoints") if e["Network"] == "late"]
    assert ep["Links"] == ["peer:pp"] and ep["DriverOpts"] == {"com.example.k": "v"}
    assert ep["LinkLocalIPs"] == ["169.254.7.7"]
    for bad in (
        ["--link-local-ip", "10.0.0.1", "late", "peer"],
        ["--link", "nosuch", "late", "peer"],
    ):
        one_line_error(rd.kanal("connect", *bad, check=False))
    peer_eps = [e["Network"] for e in api(rd, "GET", "/endpoints") if e["Name"] == "peer"]
    assert peer_eps == ["real"]

    # inspect --verbose; prune --filter until=
    (verbose,) = json.loads(rd.kanal("inspect", "--verbose", "scoped").stdout)
    assert verbose["Name"] == "scoped"
    assert rd.kanal("prune", "-f", "--filter", "until=24h").stdout == ""
    out = rd.kanal("prune", "-f", "--filter", "until=-1m").stdout.split()
    assert out[:2] == ["Deleted", "Networks:"] and "scoped" in out and "v6net" in out
    assert "real" not in out and "conf" not in out  # in use / a configuration in use

    # --subnet without a prefix: said so, nothing made
    err = one_line_error(rd.kanal("create", "--subnet", "10.90.0.0", "noprefix", check=False))
    assert "no prefix length" in err and "CIDR" in err
    assert "noprefix" not in rd.kanal("ls").stdout


def test_macvlan_without_parent_is_refused_never_the_uplink(rd: RunDaemon) -> None:
    import os

    # the test's host has an uplink with the default route: the link the old
    # behaviour would have taken
    nsexec(rd.host, "ip", "link", "add", "up0", "type", "veth", "peer", "name", "up0p")
    nsexec(rd.host, "ip", "addr", "add", "10.82.0.5/24", "dev", "up0")
    nsexec(rd.host, "ip", "link", "set", "up0", "up")
    nsexec(rd.host, "ip", "link", "set", "up0p", "up")
    nsexec(rd.host, "ip", "route", "add", "default", "via", "10.82.0.1")
    links_before = ip_json(rd.host, "link")
    err = one_line_error(
        rd.kanal("create", "-d", "macvlan", "--subnet", "10.83.0.0/24", "mv", check=False)
    )
    assert "needs -o parent=IFACE" in err and "never picks the host's uplink" in err
    if not os.path.exists("/sys/module/dummy"):
        assert "this kernel has no dummy driver" in err
    assert "mv" not in rd.kanal("ls", "--format", "{{.Name}}").stdout.split()
    assert ip_json(rd.host, "link") == links_before
    # with a parent it is made, on that parent
    rd.kanal("create", "-d", "macvlan", "--subnet", "10.82.0.0/24", "-o", "parent=up0", "mv")
    rd.k("run", "-d", "--name", "m1", "--network", "mv", "--", "sleep", "300")
    (link,) = json.loads(rd.k("exec", "m1", "ip", "-j", "-d", "link", "show", "eth0").stdout)
    assert link["linkinfo"]["info_kind"] == "macvlan"
