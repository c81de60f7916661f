"""`make demo`, part 3: seed 001's remote-driver walkthrough, with kanal in kuryr's place.

A private dockerd 20.10 and kanald run inside a "host" namespace made here.
dockerd discovers kanal as a remote plugin (a socket in /run/docker/plugins),
activates it on first use, and every network operation becomes a plugin call:
``docker network create --driver=<kanal> --subnet 10.0.1.0/24 --gateway 10.0.1.1``
makes a kanal network (its bridge, its isolation), containers get their veth
from kanal's Join, published ports come from kanal's firewall layer, and kanal's
own CLI shows the same network — as the seed looks at Neutron behind kuryr.
Skipped with a note when docker.io is not installed.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.dockerd import DOCKER, Dockerd, available  # noqa: E402
from tests.helpers import create_netns, delete_netns, unique  # noqa: E402

from demo.engine_demo import Demo, echo, say  # noqa: E402


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("demo: needs root (it creates network namespaces)")
    why = available()
    if why:
        print(f"demo part 3 (dockerd + kanal plugin) skipped: {why}")
        return
    host = create_netns(unique("kdemo3-host", 30))
    work = Path(tempfile.mkdtemp(prefix="kanal-demo3-"))
    d = Demo(host, host, work)
    dk = Dockerd(host, work)
    d.api = dk.api
    name = dk.plugin

    def docker(*args: str, check: bool = True) -> str:
        return echo(f"$ docker {' '.join(args)}", dk.docker(*args, check=check))

    try:
        say(f"kanald serves the Docker plugin protocol as '{name}'; dockerd starts (private)")
        dk.start()
        print(f"plugin socket: /run/docker/plugins/{name}.sock (dockerd finds it by name)")
        print(f"docker client: {DOCKER}; dockerd data in {work}")

        say("1. docker network create --driver=kanal --subnet 10.0.1.0/24 --gateway 10.0.1.1")
        docker(
            "network",
            "create",
            f"--driver={name}",
            "--subnet",
            "10.0.1.0/24",
            "--gateway",
            "10.0.1.1",
            "mykanal",
        )
        docker("network", "ls")
        nid = docker("network", "inspect", "mykanal", "-f", "{{.Id}}").strip()
        info = json.loads(docker("network", "inspect", "mykanal", "-f", "{{json .IPAM}}"))
        assert info["Config"][0]["Subnet"] == "10.0.1.0/24"

        say("2. behind the plugin: kanal's own view of that network (kuryr showed Neutron's)")
        d.kanal("network", "ls")
        d.kanal(
            "network",
            "inspect",
            f"docker-{nid[:12]}",
            "--format",
            "{{.Name}} {{.Driver}} {{json .IPAM.Config}} {{json .Options}}",
        )

        say("3. containers on it: kanal's Join hands dockerd a veth; dockerd moves it in")
        docker(
            "run",
            "-d",
            "--name",
            "web",
            "--network",
            "mykanal",
            "-p",
            "127.0.0.1:8080:80",
            dk.IMAGE,
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/www",
        )
        docker("run", "-d", "--name", "client", "--network", "mykanal", dk.IMAGE, "sleep", "300")
        docker("exec", "client", "ip", "-4", "addr", "show", "eth0")
        docker("exec", "client", "ping", "-c", "2", "web")
        page = ""
        for _ in range(30):
            page = dk.docker(
                "exec",
                "client",
                "sh",
                "-c",
                "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 web 80",
                check=False,
            ).stdout
            if "hello" in page:
                break
            time.sleep(0.1)
        print(page.strip().splitlines()[-1] if page.strip() else "(no answer)")
        assert "hello from kanal" in page

        say("4. the host side: veth ends on kanal's bridge, -p 127.0.0.1:8080 by kanal's nftables")
        d.in_host("ip", "-br", "link")
        d.in_host("curl", "-s", "http://127.0.0.1:8080/")

        say("5. clean up: containers and network removed, nothing left on the host")
        docker("rm", "-f", "web", "client")
        docker("network", "rm", "mykanal")
        d.kanal("network", "ls")
        d.in_host("ip", "-br", "link")
    finally:
        dk.stop()
        delete_netns(host)
    print("\ndemo part 3 done: the host namespace is gone.")


if __name__ == "__main__":
    main()
