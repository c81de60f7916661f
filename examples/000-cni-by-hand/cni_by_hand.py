"""Seed 000: give a network-less container an interface and an address with CNI, by hand.

The seed starts a Docker container with ``--net=none`` (only ``lo``), downloads the
CNI plugins, writes ``mybridge.conf`` (bridge ``cni_br0``, gateway, masquerade,
host-local 10.0.1.0/24, a default route), reads the container's network namespace
and id from ``docker inspect``, runs ``./bridge`` with the ``CNI_*`` variables and the
config on stdin, and shows the result, ``ip add`` in the container and a ping.

Here the machine is a lab host (``kanal lab up ex000 --hosts 1 --etcd 0``), the
container a kanal sandbox (``kanal run --network none``), and the plugins kanal's,
installed under the reference names. One change: the seed's ``dataDir``
(/tmp/container-ipam-state) would be the machine's /tmp, so it is the example's
own directory instead.

    sudo .venv/bin/python examples/000-cni-by-hand/cni_by_hand.py
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from seedlib import Example, main_guard


def run(ex: Example) -> None:
    with ex.lab("ex000", hosts=1, etcd=0) as lab:
        work = Path(ex.root) / "cni"
        work.mkdir()
        ex.step("A container with --net=none: only lo (docker run --net=none -d ...)")
        ex.kanal(
            lab, "h1", "run", "-d", "--name", "cnitest", "--network", "none", "--", "sleep", "3600"
        )
        out = ex.sh(lab, "h1", "kanal", "exec", "cnitest", "ip", "add").stdout
        ex.check(
            "the container has lo and nothing else",
            "lo:" in out and "eth" not in out and out.count(": <") == 1,
        )

        ex.step("The CNI plugins (the seed downloads them; here kanal's, reference names)")
        ex.kanal(lab, "h1", "cni", "install", "--dir", str(work))
        names = set(os.listdir(work))
        want = {"bridge", "dhcp", "host-local", "loopback", "macvlan", "ptp", "tuning"}
        ex.check(f"{', '.join(sorted(want))} are there", want <= names, str(sorted(names)))

        ex.step("mybridge.conf, as the seed writes it")
        conf = {
            "cniVersion": "0.3.1",
            "name": "mybridge",
            "type": "bridge",
            "bridge": "cni_br0",
            "isGateway": True,
            "ipMasq": True,
            "ipam": {
                "type": "host-local",
                "subnet": "10.0.1.0/24",
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": str(work / "container-ipam-state"),
            },
        }
        (work / "mybridge.conf").write_text(json.dumps(conf, indent=2) + "\n")
        print((work / "mybridge.conf").read_text())

        ex.step("The container's network namespace and id (docker inspect | grep ...)")
        fmt = "{{.Id}} {{.NetworkSettings.SandboxKey}}"
        cid, netns = ex.kanal(lab, "h1", "inspect", "-f", fmt, "cnitest").split()

        ex.step("ADD: the bridge plugin with the CNI_* variables, the config on stdin")
        env = {
            "CNI_COMMAND": "ADD",
            "CNI_CONTAINERID": cid,
            "CNI_NETNS": netns,
            "CNI_IFNAME": "em1",
            "CNI_PATH": str(work),
        }
        p = ex.sh(
            lab,
            "h1",
            str(work / "bridge"),
            input=json.dumps(conf),
            env=env,
            shown="./bridge < mybridge.conf",
        )
        res = json.loads(p.stdout)
        names_ = [i["name"] for i in res.get("interfaces", [])]
        ex.check(
            "interfaces: cni_br0, a veth, em1 in the container",
            len(names_) == 3
            and names_[0] == "cni_br0"
            and names_[1].startswith("veth")
            and names_[2] == "em1"
            and res["interfaces"][2].get("sandbox") == netns,
            str(names_),
        )
        ip = res["ips"][0]
        ex.check(
            "ips: version 4, interface 2, 10.0.1.x/24, gateway 10.0.1.1",
            ip.get("version") == "4"
            and ip.get("interface") == 2
            and ip["address"].startswith("10.0.1.")
            and ip["address"].endswith("/24")
            and ip.get("gateway") == "10.0.1.1",
            str(ip),
        )
        ex.check(
            "routes: 0.0.0.0/0; dns: {}",
            res.get("routes") == [{"dst": "0.0.0.0/0"}] and res.get("dns") == {},
        )
        addr = ip["address"].split("/")[0]

        ex.step("Inside the container: em1 with its address")
        out = ex.sh(lab, "h1", "kanal", "exec", "cnitest", "ip", "add").stdout
        ex.expect("em1 holds the address", out, rf"inet {addr}/24 .*em1")
        ex.step("The host reaches the container")
        out = ex.sh(lab, "h1", "ping", "-c", "1", "-W", "5", addr, check=False).stdout
        ex.expect("1 packets transmitted, 1 received", out, r"1 packets transmitted, 1 received")

        ex.step("Clean up: DEL, then the container")
        ex.sh(
            lab,
            "h1",
            str(work / "bridge"),
            input=json.dumps(conf),
            env={**env, "CNI_COMMAND": "DEL"},
            shown="./bridge < mybridge.conf",
        )
        left = os.listdir(work / "container-ipam-state" / "mybridge")
        ex.check("no address reserved any more", [f for f in left if f[0].isdigit()] == [])
        ex.kanal(lab, "h1", "rm", "-f", "cnitest")


if __name__ == "__main__":
    main_guard(run, "seed 000: CNI by hand")
