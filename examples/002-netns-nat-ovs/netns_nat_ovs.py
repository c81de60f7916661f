"""Seed 002 ("container networking without CNI plugins"): namespaces, veths, a bridge,
SNAT and DNAT by hand; then Open vSwitch with VXLAN across two hosts.

Part 1, on one host: ``ns1`` and ``ns2`` on bridge ``br3`` (170.19.0.3/24) through
veth pairs, and the seed's four problems — ns1 cannot ping its own address (``lo``
is down), cannot reach the host's NIC (no default route), cannot reach the outside
(no forwarding, no SNAT: a MASQUERADE rule), and the outside cannot reach a web
container (a DNAT rule from the host's port 90).

Part 2, OVS: containers with no network on an OVS bridge ``br1`` (same host: they
ping), then a VXLAN port (``type=vxlan options:remote_ip=… options:key=flow``) on
each host's ``br1``: one subnet across the two hosts, and a second subnet on the
same bridge of host 2, reached across hosts with a route in each container.

Here: two lab hosts with Open vSwitch (``kanal lab up ex002 --hosts 2 --etcd 0
--ovs``; each host's NIC is the OVS bridge ``kphy``, as OVS's userspace datapath
sends its tunnels that way). Host h2 plays "the outside" of part 1 (the seed
pings a public address: a lab never sends anything out of its namespaces). Part 2
uses kanal's ``ovs`` driver: ``-o ovs.bridge=br1 -o ovs.vxlan_remote=…`` does what
``ovs-docker add-port`` and ``ovs-vsctl add-port … type=vxlan`` do in the seed.

    sudo .venv/bin/python examples/002-netns-nat-ovs/netns_nat_ovs.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from seedlib import Example, main_guard

NIC = "kphy"  # the lab host's NIC (the seed's eth0)


def run(ex: Example) -> None:
    with ex.lab("ex002", hosts=2, etcd=0, ovs=True) as lab:

        def sh(*cmd: str, host: str = "h1", check: bool = True) -> str:
            return ex.sh(lab, host, *cmd, check=check).stdout

        def fails(*cmd: str, host: str = "h1") -> bool:
            return ex.sh(lab, host, *cmd, check=False).returncode != 0

        ex.step("Part 1: two namespaces on bridge br3, through veth pairs")
        sh("ip", "netns", "add", "ns1")
        sh("ip", "netns", "add", "ns2")
        sh("ip", "link", "add", "name", "br3", "type", "bridge")
        sh("ip", "addr", "add", "170.19.0.3/24", "dev", "br3")
        sh("ip", "link", "set", "dev", "br3", "up")
        for ns, a, b, ip in (
            ("ns1", "veth00", "veth01", "170.19.0.1"),
            ("ns2", "veth10", "veth11", "170.19.0.2"),
        ):
            sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
            sh("ip", "link", "set", b, "master", "br3")
            sh("ip", "link", "set", a, "netns", ns)
            sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{ip}/24", "dev", a)
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "dev", a, "up")
            sh("ip", "link", "set", "dev", b, "up")
        out = sh("ip", "netns", "exec", "ns1", "ping", "-c", "2", "170.19.0.2")
        ex.expect("ns1 reaches ns2", out, r"2 received")
        out = sh("ip", "netns", "exec", "ns1", "ip", "route")
        ex.check(
            "ns1's only route is its subnet",
            out.split()[:3] == ["170.19.0.0/24", "dev", "veth00"] and "default" not in out,
        )
        out = sh("ip", "route")
        ex.expect("the host routes 170.19.0.0/24 to br3", out, r"^170\.19\.0\.0/24 dev br3")

        ex.step("Problem 1: ns1 cannot ping its own address — lo is down")
        ex.check(
            "ping 170.19.0.1 fails",
            fails("ip", "netns", "exec", "ns1", "ping", "-c", "1", "-W", "1", "170.19.0.1"),
        )
        sh("ip", "netns", "exec", "ns1", "ip", "link", "set", "lo", "up")
        ex.check(
            "with lo up it works",
            not fails("ip", "netns", "exec", "ns1", "ping", "-c", "1", "170.19.0.1"),
        )

        ex.step("Problem 2: ns1 cannot reach the host's NIC — no default route")
        ex.check(
            "ping 192.0.2.1 fails",
            fails("ip", "netns", "exec", "ns1", "ping", "-c", "1", "-W", "1", "192.0.2.1"),
        )
        sh(
            "ip",
            "netns",
            "exec",
            "ns1",
            "ip",
            "route",
            "add",
            "default",
            "via",
            "170.19.0.3",
            "dev",
            "veth00",
        )
        ex.check(
            "with a default route via br3 it works",
            not fails("ip", "netns", "exec", "ns1", "ping", "-c", "1", "192.0.2.1"),
        )

        ex.step("Problem 3: ns1 cannot reach the outside (h2) — forwarding and SNAT")
        ex.check(
            "ping 192.0.2.2 fails",
            fails("ip", "netns", "exec", "ns1", "ping", "-c", "1", "-W", "1", "192.0.2.2"),
        )
        sh("sysctl", "-w", "net.ipv4.conf.all.forwarding=1")
        ex.check(
            "forwarding alone is not enough (h2 has no route back to 170.19.0.0/24)",
            fails("ip", "netns", "exec", "ns1", "ping", "-c", "1", "-W", "1", "192.0.2.2"),
        )
        sh(
            "iptables",
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-s",
            "170.19.0.0/24",
            "-o",
            NIC,
            "-j",
            "MASQUERADE",
        )
        ex.check(
            "with MASQUERADE it works",
            not fails("ip", "netns", "exec", "ns1", "ping", "-c", "1", "-W", "2", "192.0.2.2"),
        )
        server = subprocess.Popen(
            lab.exec_argv(
                "h2",
                [
                    sys.executable,
                    "-c",
                    "import socket; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,"
                    " socket.SO_REUSEADDR, 1); s.bind(('192.0.2.2', 8080)); s.listen(1);"
                    " c, a = s.accept(); print(a[0], flush=True)",
                ],
            ),
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(50):
            p = ex.sh(
                lab,
                "h1",
                "ip",
                "netns",
                "exec",
                "ns1",
                "python3",
                "-c",
                "import socket; socket.create_connection(('192.0.2.2', 8080), 2).close()",
                check=False,
                show=False,
            )
            if p.returncode == 0:
                break
            time.sleep(0.1)
        seen = (server.communicate(timeout=10)[0] or "").strip()
        print(f"h2 saw a connection from {seen}")
        ex.check("the outside sees the host's address, not 170.19.0.1", seen == "192.0.2.1", seen)

        ex.step("Problem 4: the outside cannot reach a web container — DNAT")
        www = Path(ex.root) / "www"
        www.mkdir()
        (www / "index.html").write_text("hello from the container\n")
        ex.kanal(
            lab,
            "h1",
            "run",
            "-d",
            "--name",
            "test",
            "--",
            "busybox",
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            str(www),
        )
        info = json.loads(ex.kanal(lab, "h1", "inspect", "test"))[0]
        cip = info["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
        curl = ["curl", "-sS", "--max-time", "3", "--retry", "10", "--retry-connrefused"]
        ex.check(
            "the host reaches it: curl CONTAINER:80", "hello" in sh(*curl, f"http://{cip}:80/")
        )
        ex.check(
            "the outside does not (no route to the container)",
            fails("curl", "-sS", "--max-time", "2", f"http://{cip}:80/", host="h2"),
        )
        sh("sysctl", "-w", "net.ipv4.ip_forward=1")
        sh(
            "iptables",
            "-t",
            "nat",
            "-A",
            "PREROUTING",
            "-p",
            "tcp",
            "-m",
            "tcp",
            "--dport",
            "90",
            "-j",
            "DNAT",
            "--to-destination",
            f"{cip}:80",
        )
        ex.check(
            "the outside reaches it at the host's port 90",
            "hello" in sh(*curl, "http://192.0.2.1:90/", host="h2"),
        )
        ex.kanal(lab, "h1", "rm", "-f", "test")
        for ns in ("ns1", "ns2"):
            sh("ip", "netns", "del", ns)
        sh("ip", "link", "del", "br3")

        ex.step("Part 2: Open vSwitch — br1 (userspace datapath here), containers on it")
        for h in ("h1", "h2"):
            sh(
                "ovs-vsctl",
                "add-br",
                "br1",
                "--",
                "set",
                "bridge",
                "br1",
                "datapath_type=netdev",
                host=h,
            )
        ex.kanal(
            lab,
            "h1",
            "network",
            "create",
            "-d",
            "ovs",
            "--subnet",
            "100.1.1.0/24",
            "--gateway",
            "100.1.1.254",
            "-o",
            "ovs.bridge=br1",
            "-o",
            "ovs.vxlan_remote=192.0.2.2",
            "net1",
        )
        for n, ip in (("c6", "100.1.1.6"), ("c7", "100.1.1.7")):
            ex.kanal(
                lab,
                "h1",
                "run",
                "-d",
                "--name",
                n,
                "--network",
                "net1",
                "--ip",
                ip,
                "--",
                "sleep",
                "600",
            )
        ex.wait(
            "same host: c6 pings c7",
            lambda: ex.sh(
                lab,
                "h1",
                "kanal",
                "exec",
                "c6",
                "ping",
                "-c",
                "1",
                "-W",
                "2",
                "100.1.1.7",
                check=False,
                show=False,
            ).returncode
            == 0,
        )
        sh("ovs-vsctl", "show")
        row = json.loads(
            sh(
                "ovs-vsctl",
                "--format=json",
                "--columns=type,options",
                "find",
                "Interface",
                "type=vxlan",
            )
        )["data"]
        ex.check(
            "br1 has a VXLAN port: remote_ip=192.0.2.2, key=flow",
            len(row) == 1 and dict(row[0][1][1]) == {"remote_ip": "192.0.2.2", "key": "flow"},
            str(row),
        )

        ex.step("VXLAN across hosts: one subnet on both; a second subnet on h2's br1")
        ex.kanal(
            lab,
            "h1",
            "run",
            "-d",
            "--name",
            "c1",
            "--network",
            "net1",
            "--ip",
            "100.1.1.1",
            "--",
            "sleep",
            "600",
        )
        ex.kanal(
            lab,
            "h2",
            "network",
            "create",
            "-d",
            "ovs",
            "--subnet",
            "100.1.1.0/24",
            "--gateway",
            "100.1.1.253",
            "-o",
            "ovs.bridge=br1",
            "-o",
            "ovs.vxlan_remote=192.0.2.1",
            "net1",
        )
        ex.kanal(
            lab,
            "h2",
            "network",
            "create",
            "-d",
            "ovs",
            "--subnet",
            "100.1.2.0/24",
            "--gateway",
            "100.1.2.254",
            "-o",
            "ovs.bridge=br1",
            "net2",
        )
        ex.kanal(
            lab,
            "h2",
            "run",
            "-d",
            "--name",
            "c1",
            "--network",
            "net1",
            "--ip",
            "100.1.1.2",
            "--",
            "sleep",
            "600",
        )
        ex.kanal(
            lab,
            "h2",
            "run",
            "-d",
            "--name",
            "c2",
            "--network",
            "net2",
            "--ip",
            "100.1.2.1",
            "--",
            "sleep",
            "600",
        )

        def reach(host: str, sandbox: str, ip: str) -> bool:
            return (
                ex.sh(
                    lab,
                    host,
                    "kanal",
                    "exec",
                    sandbox,
                    "ping",
                    "-c",
                    "1",
                    "-W",
                    "2",
                    ip,
                    check=False,
                    show=False,
                ).returncode
                == 0
            )

        ex.wait(
            "same subnet across hosts: h1's c1 pings h2's c1 (100.1.1.2)",
            lambda: reach("h1", "c1", "100.1.1.2"),
        )
        ex.check(
            "other subnet across hosts: not without a route", not reach("h1", "c1", "100.1.2.1")
        )
        ex.kanal(lab, "h1", "exec", "c1", "ip", "route", "add", "100.1.2.0/24", "dev", "eth0")
        ex.kanal(lab, "h2", "exec", "c2", "ip", "route", "add", "100.1.1.0/24", "dev", "eth0")
        ex.wait(
            "with a route in each: h1's c1 pings h2's c2 (100.1.2.1), over the VXLAN port",
            lambda: reach("h1", "c1", "100.1.2.1"),
        )

        ex.step("Clean up: containers, networks, the bridges made by hand")
        ex.kanal(lab, "h1", "rm", "-f", "c1", "c6", "c7")
        ex.kanal(lab, "h2", "rm", "-f", "c1", "c2")
        ex.kanal(lab, "h1", "network", "rm", "net1")
        ex.kanal(lab, "h2", "network", "rm", "net1", "net2")
        ports = sh("ovs-vsctl", "list-ports", "br1")
        ex.check("kanal removed only its own ports from br1", ports.strip() == "", ports)
        for h in ("h1", "h2"):
            sh("ovs-vsctl", "del-br", "br1", host=h)


if __name__ == "__main__":
    main_guard(run, "seed 002: netns, NAT and OVS by hand")
