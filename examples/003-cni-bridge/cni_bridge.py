"""Seed 003 ("Understanding CNI"): the bridge plugin run by hand on a named namespace.

The seed writes ``mybridge.conf`` (cniVersion 0.2.0, bridge ``cni_bridge0``, gateway,
masquerade, host-local 10.15.20.0/24 with a default route and 1.1.1.1/32 via
10.15.20.1), makes ``ip netns add 1234567890``, runs ``./bridge`` with
``CNI_COMMAND=ADD CNI_CONTAINERID=1234567890 CNI_NETNS=/var/run/netns/1234567890
CNI_IFNAME=eth12 CNI_PATH=`pwd```, and shows the 0.2.0 result (``ip4``: 10.15.20.2/24,
gateway 10.15.20.1, both routes), the bridge with 10.15.20.1, the masquerade
rules, and eth12 with its address and routes inside the namespace.

Here the machine is a lab host: the namespace really is called ``1234567890`` (a
lab host has its own ``ip netns`` names and its own /var/lib/cni, where host-local
keeps its state as in the seed). The masquerade is kanal's nftables entry; with
``"ipMasqBackend": "iptables"`` the plugin writes the seed's iptables rules instead
(shown too).

    sudo .venv/bin/python examples/003-cni-bridge/cni_bridge.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from seedlib import Example, ip_json, main_guard

CONF = {
    "cniVersion": "0.2.0",
    "name": "mybridge",
    "type": "bridge",
    "bridge": "cni_bridge0",
    "isGateway": True,
    "ipMasq": True,
    "ipam": {
        "type": "host-local",
        "subnet": "10.15.20.0/24",
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "1.1.1.1/32", "gw": "10.15.20.1"}],
    },
}


def run(ex: Example) -> None:
    with ex.lab("ex003", hosts=1, etcd=0) as lab:
        cni = Path(ex.root) / "cni"
        ex.step("The plugins (the seed untars cni-amd64-v0.4.0.tgz into ~/cni)")
        ex.kanal(lab, "h1", "cni", "install", "--dir", str(cni))
        (cni / "mybridge.conf").write_text(json.dumps(CONF, indent=4) + "\n")
        ex.step("mybridge.conf")
        print((cni / "mybridge.conf").read_text())

        ex.step("A network namespace for the 'container'")
        ex.sh(lab, "h1", "ip", "netns", "add", "1234567890")
        env = {
            "CNI_COMMAND": "ADD",
            "CNI_CONTAINERID": "1234567890",
            "CNI_NETNS": "/var/run/netns/1234567890",
            "CNI_IFNAME": "eth12",
            "CNI_PATH": str(cni),
        }
        ex.step("ADD")
        p = ex.sh(
            lab,
            "h1",
            str(cni / "bridge"),
            input=json.dumps(CONF),
            env=env,
            shown="./bridge < mybridge.conf",
        )
        res = json.loads(p.stdout)
        res.pop("cniVersion", None)  # today's 0.2.0 results name their version too
        ex.check(
            "a 0.2.0 result: ip4 10.15.20.2/24, gateway 10.15.20.1, both routes, dns {}",
            res
            == {
                "ip4": {
                    "ip": "10.15.20.2/24",
                    "gateway": "10.15.20.1",
                    "routes": [{"dst": "0.0.0.0/0"}, {"dst": "1.1.1.1/32", "gw": "10.15.20.1"}],
                },
                "dns": {},
            },
            json.dumps(res),
        )

        ex.step("What it did on the host: cni_bridge0 with the gateway address, a veth")
        ex.sh(lab, "h1", "ip", "-br", "addr", "show", "dev", "cni_bridge0")
        addrs = [
            a["local"]
            for a in ip_json(ex, lab, "h1", "addr", "show", "dev", "cni_bridge0")[0]["addr_info"]
            if a["family"] == "inet"
        ]
        ex.check("cni_bridge0 holds 10.15.20.1", addrs == ["10.15.20.1"], str(addrs))
        ports = ex.sh(lab, "h1", "ip", "-br", "link", "show", "master", "cni_bridge0").stdout
        ex.expect("one veth on the bridge", ports, r"^veth[0-9a-f]+@")
        ex.step("The masquerade for the container (kanal's nftables table)")
        out = ex.sh(lab, "h1", "nft", "list", "table", "inet", "kanal").stdout
        ex.expect("10.15.20.2 is masqueraded", out, r"10\.15\.20\.2")

        ex.step("Inside the namespace: eth12 and the routes")
        out = ex.sh(lab, "h1", "ip", "netns", "exec", "1234567890", "ip", "addr").stdout
        ex.expect("eth12 holds 10.15.20.2/24", out, r"inet 10\.15\.20\.2/24 .*eth12")
        out = ex.sh(lab, "h1", "ip", "netns", "exec", "1234567890", "ip", "route").stdout
        ex.expect("default via 10.15.20.1 dev eth12", out, r"^default via 10\.15\.20\.1 dev eth12")
        ex.expect(
            "1.1.1.1 via 10.15.20.1 dev eth12", out, r"^1\.1\.1\.1 via 10\.15\.20\.1 dev eth12"
        )
        ex.expect(
            "10.15.20.0/24 dev eth12 proto kernel scope link src 10.15.20.2",
            out,
            r"^10\.15\.20\.0/24 dev eth12 proto kernel scope link src 10\.15\.20\.2",
        )
        out = ex.sh(lab, "h1", "ping", "-c", "1", "-W", "5", "10.15.20.2", check=False).stdout
        ex.expect("the host reaches it", out, r"1 packets transmitted, 1 received")

        ex.step('The same with "ipMasqBackend": "iptables": the seed\'s iptables rules')
        ipt = {**CONF, "ipMasqBackend": "iptables"}
        ex.sh(lab, "h1", "ip", "netns", "add", "1234567891")
        env2 = {**env, "CNI_CONTAINERID": "1234567891", "CNI_NETNS": "/var/run/netns/1234567891"}
        ex.sh(
            lab,
            "h1",
            str(cni / "bridge"),
            input=json.dumps(ipt),
            env=env2,
            shown="./bridge < mybridge.conf",
            show=False,
        )
        rules = [
            ln
            for ln in ex.sh(lab, "h1", "iptables-save", show=False).stdout.splitlines()
            if "mybridge" in ln
        ]
        print("\n".join(rules))
        ex.check(
            "POSTROUTING -s 10.15.20.3 to a CNI- chain; ACCEPT 10.15.20.0/24, MASQUERADE the rest",
            any(r.startswith("-A POSTROUTING -s 10.15.20.3/32") and "-j CNI-" in r for r in rules)
            and any("-d 10.15.20.0/24" in r and r.endswith("-j ACCEPT") for r in rules)
            and any("! -d 224.0.0.0/4" in r and r.endswith("-j MASQUERADE") for r in rules),
        )

        ex.step("DEL both: the host is as before")
        for e in (env, env2):
            ex.sh(
                lab,
                "h1",
                str(cni / "bridge"),
                input=json.dumps(ipt),
                show=False,
                env={**e, "CNI_COMMAND": "DEL"},
            )
        ports = ex.sh(lab, "h1", "ip", "-br", "link", "show", "master", "cni_bridge0").stdout
        ex.check("no veth left on the bridge", ports.strip() == "", ports)
        rules = [
            ln
            for ln in ex.sh(lab, "h1", "iptables-save", show=False).stdout.splitlines()
            if "mybridge" in ln
        ]
        ex.check("no iptables rule left", rules == [], str(rules))
        out = ex.sh(lab, "h1", "nft", "list", "table", "inet", "kanal", show=False).stdout
        ex.check("no masquerade entry left", "10.15.20.2" not in out)
        for ns in ("1234567890", "1234567891"):
            ex.sh(lab, "h1", "ip", "netns", "del", ns)


if __name__ == "__main__":
    main_guard(run, "seed 003: the CNI bridge plugin by hand")
