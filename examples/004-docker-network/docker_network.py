"""Seed 004 ("Docker network management"): docker network's commands, with kanal.

The seed lists the networks, runs containers with ``--network bridge|host|none``,
creates bridge networks (``--gateway --subnet -o com.docker.network.bridge.name=br0``,
a ``docker_gwbridge`` with ``--ip-range`` and options), uses ``--ip``,
``network connect/disconnect``, notes that a bridge network does not span hosts
while an overlay network (``--attachable --driver=overlay``) does — reachable from
containers by name, not from the hosts — and makes a macvlan network on ``eth1``
in promiscuous mode.

Here: two lab hosts on one etcd (``kanal lab up ex004 --hosts 2 --etcd 1``), a
"cable" ``eth1`` between them for the macvlan networks. ``kanal network`` and
``kanal run`` take docker's options as they are.

    sudo .venv/bin/python examples/004-docker-network/docker_network.py
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from seedlib import Example, main_guard


def ipv4(ex: Example, lab: object, host: str, sandbox: str, network: str) -> str:
    info = json.loads(ex.sh(lab, host, "kanal", "inspect", sandbox, show=False).stdout)[0]  # type: ignore[arg-type]
    return str(info["NetworkSettings"]["Networks"][network]["IPAddress"])


def run(ex: Example) -> None:
    with ex.lab("ex004", hosts=2, etcd=1) as lab:
        k = ex.kanal

        ex.step("docker network ls: the three networks every host starts with")
        out = k(lab, "h1", "network", "ls")
        for n, d in (("bridge", "bridge"), ("host", "host"), ("none", "null")):
            ex.expect(f"{n} ({d})", out, rf"\s{n}\s+{d}\s+local")

        ex.step("docker run --network bridge | host | none")
        out = k(
            lab,
            "h1",
            "run",
            "--rm",
            "--network",
            "bridge",
            "--",
            "ip",
            "-4",
            "-o",
            "addr",
            "show",
            "eth0",
        )
        ex.expect("bridge: an address from 172.17.0.0/16", out, r"inet 172\.17\.\d+\.\d+/16")
        out = k(
            lab,
            "h1",
            "run",
            "--rm",
            "--network",
            "host",
            "--",
            "ip",
            "-4",
            "-o",
            "addr",
            "show",
            "ul0",
        )
        ex.expect("host: the host's own address", out, r"inet 192\.0\.2\.1/24")
        out = k(lab, "h1", "run", "--rm", "--network", "none", "--", "ip", "-o", "link")
        ex.check("none: lo only", out.count(": ") >= 1 and "lo:" in out and "eth0" not in out)

        ex.step(
            "docker network create --driver=bridge --gateway --subnet -o ...bridge.name=br0 br0"
        )
        k(
            lab,
            "h1",
            "network",
            "create",
            "--driver=bridge",
            "--gateway=192.168.1.1",
            "--subnet=192.168.1.0/24",
            "--opt",
            "com.docker.network.bridge.name=br0",
            "br0",
        )
        out = ex.sh(lab, "h1", "ip", "-br", "addr", "show", "dev", "br0").stdout
        ex.expect("bridge br0 holds the gateway 192.168.1.1/24", out, r"192\.168\.1\.1/24")
        ex.step("docker run --network br0 --ip 192.168.1.10")
        k(
            lab,
            "h1",
            "run",
            "-d",
            "--name",
            "web",
            "--network",
            "br0",
            "--ip",
            "192.168.1.10",
            "--",
            "sleep",
            "600",
        )
        ex.check("web has 192.168.1.10", ipv4(ex, lab, "h1", "web", "br0") == "192.168.1.10")
        k(lab, "h1", "run", "-d", "--name", "app", "--network", "br0", "--", "sleep", "600")
        ex.check(
            "app reaches web by name on the user-defined network", ex.ping(lab, "h1", "app", "web")
        )

        ex.step("docker_gwbridge: --subnet 172.18.0.0/16 --ip-range 172.18.0.0/24 and options")
        k(
            lab,
            "h1",
            "network",
            "create",
            "--subnet",
            "172.18.0.0/16",
            "--ip-range",
            "172.18.0.0/24",
            "--opt",
            "com.docker.network.bridge.name=docker_gwbridge",
            "--opt",
            "com.docker.network.bridge.enable_icc=true",
            "--opt",
            "com.docker.network.bridge.enable_ip_masquerade=true",
            "docker_gwbridge",
        )
        ex.step("docker network connect / disconnect")
        k(lab, "h1", "network", "connect", "docker_gwbridge", "web")
        gw = ipv4(ex, lab, "h1", "web", "docker_gwbridge")
        ex.check(
            "web got an address from the ip-range 172.18.0.0/24", gw.startswith("172.18.0."), gw
        )
        out = k(lab, "h1", "exec", "web", "ip", "-4", "-o", "addr")
        ex.check("web has two interfaces now", "192.168.1.10/24" in out and f"{gw}/16" in out)
        k(lab, "h1", "network", "disconnect", "docker_gwbridge", "web")
        out = k(lab, "h1", "exec", "web", "ip", "-4", "-o", "addr")
        ex.check("and one again after disconnect", gw not in out and "192.168.1.10/24" in out)

        ex.step("A bridge network does not span hosts: h2's containers cannot reach web")
        k(lab, "h2", "run", "-d", "--name", "far", "--", "sleep", "600")
        ex.check(
            "far (on h2) cannot reach web (on h1)", not ex.ping(lab, "h2", "far", "192.168.1.10")
        )
        k(lab, "h1", "rm", "-f", "web", "app")
        k(lab, "h1", "network", "rm", "br0", "docker_gwbridge")

        ex.step("docker network create --attachable --driver=overlay ... vlan0: across hosts")
        k(
            lab,
            "h1",
            "network",
            "create",
            "--attachable",
            "--driver=overlay",
            "--gateway=192.168.1.1",
            "--subnet=192.168.1.0/24",
            "--opt",
            "com.docker.network.bridge.name=vlan0",
            "vlan0",
        )
        k(lab, "h1", "run", "-d", "--name", "o1", "--network", "vlan0", "--", "sleep", "600")
        k(lab, "h2", "run", "-d", "--name", "o2", "--network", "vlan0", "--", "sleep", "600")
        ex.wait("o2 (on h2) reaches o1 (on h1) by name", lambda: ex.ping(lab, "h2", "o2", "o1"))
        o1 = ipv4(ex, lab, "h1", "o1", "vlan0")
        ex.check(
            "the overlay's bridge on h1 is vlan0",
            "vlan0" in ex.sh(lab, "h1", "ip", "-br", "link", "show", "type", "bridge").stdout,
        )
        p = ex.sh(lab, "h2", "ping", "-c", "1", "-W", "2", o1, check=False)
        ex.check("the host h2 itself cannot reach o1's overlay address", p.returncode != 0)
        k(lab, "h1", "rm", "-f", "o1")
        k(lab, "h2", "rm", "-f", "o2", "far")
        k(lab, "h1", "network", "rm", "vlan0")

        ex.step("macvlan on eth1 (a cable between h1 and h2), promiscuous")
        ex.note("# wiring the cable: a veth named eth1 on both hosts")
        subprocess.run(
            [
                "ip",
                "-n",
                lab.ns("h1"),
                "link",
                "add",
                "eth1",
                "type",
                "veth",
                "peer",
                "name",
                "eth1",
                "netns",
                lab.ns("h2"),
            ],
            check=True,
        )
        for h, rng in (("h1", "192.168.100.0/25"), ("h2", "192.168.100.128/25")):
            ex.sh(lab, h, "ip", "link", "set", "eth1", "promisc", "on", "up")
            k(
                lab,
                h,
                "network",
                "create",
                "-d",
                "macvlan",
                "--subnet=192.168.100.0/24",
                "--gateway=192.168.100.1",
                "--ip-range",
                rng,
                "-o",
                "parent=eth1",
                "lan0",
            )
            k(lab, h, "run", "-d", "--name", f"m{h}", "--network", "lan0", "--", "sleep", "600")
        m2 = ipv4(ex, lab, "h2", "mh2", "lan0")
        ex.check("the containers are on 192.168.100.0/24", m2.startswith("192.168.100."), m2)
        ex.wait("mh1 (on h1) reaches mh2 (on h2) over eth1", lambda: ex.ping(lab, "h1", "mh1", m2))
        for h in ("h1", "h2"):
            k(lab, h, "rm", "-f", f"m{h}")
            k(lab, h, "network", "rm", "lan0")


if __name__ == "__main__":
    main_guard(run, "seed 004: docker network management")
