"""Seed 001 (a tour of libnetwork's CNM): none, host, bridge, container:, user-defined,
overlay across hosts, and a remote driver plugin.

The seed lists the networks Docker starts with, runs containers on ``none`` (only
``lo``), ``host`` (the host's interfaces and hostname), the default ``bridge``
(veths on ``docker0``, an address from 172.17.0.0/16, the gateway on the bridge),
``container:NAME`` (one network namespace for two containers, talking over ``lo``),
a user-defined network, an ``overlay`` network over a key-value store shared by
hosts (VXLAN, UDP 4789, static MAC tables), and a remote driver (kuryr) found
through the plugin discovery (``.sock``/``.spec``/``.json`` files) and driven by
CreateNetwork, CreateEndpoint, Join...

Here: three lab hosts on one etcd (``kanal lab up ex001 --hosts 3 --etcd 1``); the
remote driver is a minimal third-party plugin (the one kanal's own tests use),
listening on ``kuryr.sock`` in h1's plugin directory.

    sudo .venv/bin/python examples/001-cnm-tour/cnm_tour.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from seedlib import ROOT, Example, main_guard

PLUGIN = ROOT / "tests" / "fixtures" / "mini_docker_plugin.py"


def run(ex: Example) -> None:
    with ex.lab("ex001", hosts=3, etcd=1) as lab:
        k = ex.kanal

        ex.step("The networks every host starts with (docker network ls)")
        out = k(lab, "h1", "network", "ls")
        for n, d in (("bridge", "bridge"), ("host", "host"), ("none", "null")):
            ex.expect(f"{n}, driver {d}", out, rf"\s{n}\s+{d}\s")

        ex.step("1. none: nothing but lo")
        out = k(lab, "h1", "run", "--rm", "--network", "none", "--", "ip", "-o", "link")
        ex.check("only lo", [ln.split(":")[1].strip() for ln in out.splitlines()] == ["lo"], out)

        ex.step("2. host: the host's network stack and hostname")
        mine = k(lab, "h1", "run", "--rm", "--network", "host", "--", "ip", "-4", "-o", "addr")
        host = ex.sh(lab, "h1", "ip", "-4", "-o", "addr", show=False).stdout
        ex.check(
            "the same interfaces and addresses as the host",
            sorted(ln.split()[1:4] for ln in mine.splitlines())
            == sorted(ln.split()[1:4] for ln in host.splitlines()),
        )
        hn = k(lab, "h1", "run", "--rm", "--network", "host", "--", "hostname").strip()
        ex.check(
            "the host's hostname", hn == ex.sh(lab, "h1", "hostname", show=False).stdout.strip()
        )

        ex.step("3. bridge: veths on the default bridge (kanal0, docker0's role)")
        out = ex.sh(lab, "h1", "bridge", "link", "show", "master", "kanal0").stdout
        ex.check("no interface on the bridge yet", out.strip() == "", out)
        for n in ("b1", "b2"):
            k(lab, "h1", "run", "-d", "--name", n, "--", "sleep", "600")
        out = ex.sh(lab, "h1", "bridge", "link", "show", "master", "kanal0").stdout
        ex.check("two veths on it now", len([ln for ln in out.splitlines() if "veth" in ln]) == 2)
        out = k(lab, "h1", "exec", "b1", "ip", "a")
        ex.expect(
            "eth0 with an address from 172.17.0.0/16", out, r"inet 172\.17\.\d+\.\d+/16 .*eth0"
        )
        info = json.loads(k(lab, "h1", "network", "inspect", "bridge"))[0]
        cfg = info["IPAM"]["Config"][0]
        ex.check(
            "Subnet 172.17.0.0/16, Gateway 172.17.0.1",
            (cfg["Subnet"], cfg["Gateway"]) == ("172.17.0.0/16", "172.17.0.1"),
            str(cfg),
        )
        out = ex.sh(lab, "h1", "ip", "-4", "-br", "addr", "show", "dev", "kanal0").stdout
        ex.expect("the gateway is the bridge's address", out, r"172\.17\.0\.1/16")
        ex.check("b1 reaches b2", ex.ping(lab, "h1", "b1", ex.address(lab, "h1", "b2", "bridge")))

        ex.step("4. container:b1 — one network namespace, two containers, talking over lo")
        www = Path(ex.root) / "www"
        www.mkdir()
        (www / "index.html").write_text("hello over lo\n")
        k(
            lab,
            "h1",
            "run",
            "-d",
            "--name",
            "side",
            "--network",
            "container:b1",
            "--",
            "busybox",
            "httpd",
            "-f",
            "-p",
            "127.0.0.1:8080",
            "-h",
            str(www),
        )
        out = k(
            lab, "h1", "run", "--rm", "--network", "container:b1", "--", "ip", "-4", "-o", "addr"
        )
        ex.check("the same address as b1", ex.address(lab, "h1", "b1", "bridge") in out, out)
        ok = False
        for _ in range(50):
            p = ex.sh(
                lab,
                "h1",
                "kanal",
                "exec",
                "b1",
                "busybox",
                "wget",
                "-qO-",
                "http://127.0.0.1:8080/",
                check=False,
                show=False,
            )
            if p.returncode == 0:
                ok = "hello over lo" in p.stdout
                print(f"[h1]$ kanal exec b1 busybox wget -qO- http://127.0.0.1:8080/\n{p.stdout}")
                break
            time.sleep(0.1)
        ex.check("b1 reaches side's server on 127.0.0.1", ok)

        ex.step("5. user-defined: a network of its own, names, isolation")
        k(lab, "h1", "network", "create", "mynet")
        for n in ("u1", "u2"):
            k(lab, "h1", "run", "-d", "--name", n, "--network", "mynet", "--", "sleep", "600")
        ex.check("u1 reaches u2 by name", ex.ping(lab, "h1", "u1", "u2"))
        ex.check(
            "u1 cannot reach b1 (another network)",
            not ex.ping(lab, "h1", "u1", ex.address(lab, "h1", "b1", "bridge")),
        )

        ex.step("6. overlay: one network across the three hosts, VXLAN over the underlay")
        k(lab, "h1", "network", "create", "-d", "overlay", "overlaynet")
        for h in ("h1", "h2", "h3"):
            k(
                lab,
                h,
                "run",
                "-d",
                "--name",
                f"o{h}",
                "--network",
                "overlaynet",
                "--",
                "sleep",
                "600",
            )
        ex.wait("oh2 (on h2) reaches oh1 (on h1) by name", lambda: ex.ping(lab, "h2", "oh2", "oh1"))
        ex.wait("oh3 (on h3) reaches oh2 (on h2) by name", lambda: ex.ping(lab, "h3", "oh3", "oh2"))
        out = ex.sh(lab, "h1", "ip", "-d", "link", "show", "type", "vxlan").stdout
        ex.expect(
            "h1's VXLAN device: UDP 4789, learning off, proxy",
            out,
            r"dstport 4789 nolearning proxy",
        )
        dev = out.split(":")[1].strip().split("@")[0]
        fdb = ex.sh(lab, "h1", "bridge", "fdb", "show", "dev", dev).stdout
        ex.check(
            "the static MAC table points at h2 and h3",
            "dst 192.0.2.2" in fdb and "dst 192.0.2.3" in fdb,
            fdb,
        )
        out = k(lab, "h3", "network", "ls")
        ex.expect("every host sees it, scope global", out, r"overlaynet\s+overlay\s+global")

        ex.step("7. remote: a third-party driver found as kuryr.sock (plugin discovery)")
        sock = Path(lab.host_dir("h1")) / "plugins" / "kuryr.sock"
        log = Path(ex.root) / "kuryr.log"
        plugin = subprocess.Popen(
            lab.exec_argv("h1", [sys.executable, str(PLUGIN), str(sock), str(log)]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(100):
                if sock.exists():
                    break
                time.sleep(0.05)
            k(
                lab,
                "h1",
                "network",
                "create",
                "--driver=kuryr",
                "--subnet",
                "10.0.1.0/24",
                "--gateway",
                "10.0.1.1",
                "mykuryr",
            )
            out = k(lab, "h1", "network", "ls")
            ex.expect("mykuryr, driver kuryr", out, r"mykuryr\s+kuryr")
            cfg = json.loads(k(lab, "h1", "network", "inspect", "mykuryr"))[0]["IPAM"]["Config"][0]
            ex.check(
                "Subnet 10.0.1.0/24, Gateway 10.0.1.1",
                (cfg["Subnet"], cfg["Gateway"]) == ("10.0.1.0/24", "10.0.1.1"),
                str(cfg),
            )
            out = k(
                lab,
                "h1",
                "run",
                "--rm",
                "--network",
                "mykuryr",
                "--",
                "ip",
                "-4",
                "-o",
                "addr",
                "show",
                "eth0",
            )
            ex.expect("the container's eth0: 10.0.1.2", out, r"inet 10\.0\.1\.2/24")
            calls = [json.loads(ln)["path"] for ln in log.read_text().splitlines()]
            print("the plugin was called:", ", ".join(dict.fromkeys(c.strip("/") for c in calls)))
            want = [
                "/Plugin.Activate",
                "/NetworkDriver.CreateNetwork",
                "/NetworkDriver.CreateEndpoint",
                "/NetworkDriver.Join",
            ]
            ex.check(
                "Activate, CreateNetwork, CreateEndpoint, Join, in that order",
                [c for c in calls if c in want][:4] == want,
                str(calls),
            )
            k(lab, "h1", "network", "rm", "mykuryr")
        finally:
            plugin.terminate()
            plugin.wait(10)


if __name__ == "__main__":
    main_guard(run, "seed 001: a tour of the CNM")
