"""`make demo`, part 2: seed 004 ("Docker network management") walked with kanal.

kanald runs with its engine inside a "host" namespace made here; `kanal network`
and `kanal run` do what the seed does with `docker network` and `docker run`: a
user-defined bridge with --subnet --gateway --ip-range -o bridge.name, sandboxes
that reach each other by name, a published port reached from an "outside"
namespace, --ip, connect/disconnect, --internal, and a macvlan on the host's link;
`kanal graph` draws what was built (docs/demo-topology.svg). Everything is removed at
the end and the host is shown clean.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import create_netns, delete_netns, unique  # noqa: E402

VENV = ROOT / ".venv" / "bin"
#: the README's picture of this demo's topology, drawn by kanal graph on every run
TOPOLOGY = ROOT / "docs" / "demo-topology.svg"
BOLD, DIM, END = ("\033[1m", "\033[2m", "\033[0m") if sys.stdout.isatty() else ("", "", "")


def say(text: str) -> None:
    print(f"\n{BOLD}## {text}{END}", flush=True)


def echo(prompt: str, p: subprocess.CompletedProcess[Any]) -> str:
    """Show a command as typed (dimmed) and what it printed; returns its stdout."""
    print(f"{DIM}{prompt}{END}", flush=True)
    out = p.stdout + p.stderr
    text = (out.decode(errors="replace") if isinstance(out, bytes) else out).rstrip()
    if text:
        print(text, flush=True)
    stdout = p.stdout
    return stdout.decode() if isinstance(stdout, bytes) else str(stdout)


class Demo:
    def __init__(self, host: str, outside: str, work: Path) -> None:
        self.host, self.outside, self.work = host, outside, work
        self.api = work / "kanal.sock"

    def sh(self, *cmd: str, check: bool = True, show: bool = True) -> str:
        p = subprocess.run(list(cmd), capture_output=True, text=True, timeout=120)
        if show:
            echo(f"$ {shlex.join(cmd)}", p)
        if check and p.returncode != 0:
            raise SystemExit(f"demo: command failed: {shlex.join(cmd)}")
        return p.stdout

    def kanal(self, *args: str, check: bool = True) -> str:
        # Shown as the user types it; run against this demo's kanald.
        p = subprocess.run(
            [str(VENV / "kanal"), args[0], "-H", str(self.api), *args[1:]],
            capture_output=True,
            text=True,
            timeout=120,
        )
        echo(f"$ kanal {shlex.join(args)}", p)
        if check and p.returncode != 0:
            raise SystemExit(f"demo: kanal {' '.join(args)} failed")
        return p.stdout

    def in_host(self, *cmd: str, check: bool = True) -> str:
        return self.sh("ip", "netns", "exec", self.host, *cmd, check=check)


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("demo: needs root (it creates network namespaces)")
    host = create_netns(unique("kdemo2-host", 30))
    outside = create_netns(unique("kdemo2-out", 30))
    work = Path(tempfile.mkdtemp(prefix="kanal-demo2-"))
    d = Demo(host, outside, work)
    daemon: subprocess.Popen[bytes] | None = None
    try:
        say("The 'outside world' (198.51.100.2) behind the host's link to-out")
        d.sh(
            "ip",
            "-n",
            host,
            "link",
            "add",
            "to-out",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            outside,
        )
        d.sh("ip", "-n", host, "addr", "add", "198.51.100.1/24", "dev", "to-out")
        d.sh("ip", "-n", host, "link", "set", "to-out", "up")
        d.sh("ip", "-n", outside, "addr", "add", "198.51.100.2/24", "dev", "eth0")
        d.sh("ip", "-n", outside, "link", "set", "eth0", "up")
        say("Start kanald (CNI fast path + network manager + embedded DNS) in the host namespace")
        with open(work / "kanald.log", "ab") as log:
            daemon = subprocess.Popen(
                ["nsenter", f"--net=/run/netns/{host}", str(VENV / "kanald"),
                 "--socket", str(work / "fp.sock"), "--state-dir", str(work / "state"),
                 "--api-socket", str(d.api), "--cni-conf-dir", str(work / "net.d"),
                 "--default-bridge", unique("kd0", 15), "--docker-plugin-socket", "none"],
                stderr=log,
            )  # fmt: skip
        for _ in range(500):
            if d.api.exists():
                break
            time.sleep(0.02)
        say("docker network ls: the built-in networks bridge, host and none")
        d.kanal("network", "ls")
        say("The seed's user-defined bridge: --gateway --subnet -o bridge.name (+ --ip-range)")
        d.kanal(
            "network", "create", "--driver=bridge", "--gateway=192.168.1.1",
            "--subnet=192.168.1.0/24", "--ip-range=192.168.1.128/25",
            "--opt", "com.docker.network.bridge.name=br0", "br0",
        )  # fmt: skip
        d.kanal("network", "inspect", "-f", "{{json .IPAM}}", "br0")
        d.in_host("ip", "-br", "addr", "show", "dev", "br0")
        www = work / "www"
        www.mkdir()
        (www / "index.html").write_text("hello from web, a kanal sandbox\n")
        say("A web server sandbox with a fixed --ip, publishing its port 80 on the host's 8080")
        d.kanal(
            "run", "-d", "--name", "web", "--network", "br0", "--ip", "192.168.1.10",
            "-p", "8080:80", "--", "busybox", "httpd", "-f", "-p", "80", "-h", str(www),
        )  # fmt: skip
        time.sleep(0.3)
        say("Another sandbox reaches it by name (embedded DNS on 127.0.0.11)")
        d.kanal(
            "run", "--rm", "--name", "client", "--network", "br0", "--", "sh", "-c",
            "cat /etc/resolv.conf; curl -s -m 3 http://web/",
        )  # fmt: skip
        say("The outside world reaches the published port on the host's address")
        d.sh("ip", "netns", "exec", outside, "curl", "-s", "-m", "3", "--retry", "5",
             "--retry-connrefused", "http://198.51.100.1:8080/")  # fmt: skip
        d.kanal("ps")
        say("--internal: a network that reaches nothing but itself")
        d.kanal("network", "create", "--internal", "--subnet", "10.30.0.0/24", "back")
        d.kanal("network", "connect", "--alias", "api", "back", "web")
        d.kanal("network", "inspect", "-f", "{{json .Containers}}", "back")
        d.kanal(
            "run", "--rm", "--network", "back", "--", "sh", "-c",
            "curl -s -m 3 http://api/ && echo 'internal network: web answers by its alias';"
            " curl -s -m 2 http://198.51.100.2/ || echo 'internal network: no way out'",
        )  # fmt: skip
        d.kanal("network", "disconnect", "back", "web")
        say("macvlan on the host's link, as the seed does with eth1")
        d.kanal(
            "network", "create", "-d", "macvlan", "--subnet=198.51.100.0/24",
            "--gateway=198.51.100.2", "--ip-range=198.51.100.64/26", "-o", "parent=to-out", "lan0",
        )  # fmt: skip
        d.kanal(
            "run", "--rm", "--network", "lan0", "--", "ping", "-c", "1", "-W", "2", "198.51.100.2"
        )
        say("State while running: kanal's nftables table (isolation chains, port map, masquerade)")
        d.in_host("nft", "list", "table", "inet", "kanal")
        say("What was built, as the store and the kernel hold it: kanal graph")
        d.kanal("run", "-d", "--name", "lanbox", "--network", "lan0", "--", "sleep", "300")
        d.kanal("graph", "--network", "br0", "--network", "lan0", "-o", str(TOPOLOGY))
        print(f"drawn into {TOPOLOGY.relative_to(ROOT)}", flush=True)
        d.kanal("rm", "-f", "lanbox")
        say("Clean up: stop and remove the sandbox, remove the networks")
        d.kanal("stop", "-t", "2", "web")
        d.kanal("rm", "web")
        d.kanal("network", "rm", "br0", "back", "lan0")
        d.kanal("network", "ls")
        say("The host afterwards: no bridge but kanal's default, no sandbox namespace left")
        d.in_host("ip", "-br", "link")
        left = [n for n in os.listdir("/run/netns") if n.startswith("kanal-")]
        print("sandbox namespaces left:", left, flush=True)
    finally:
        if daemon is not None:
            # Whatever a failure half-way left: sandboxes (their namespaces) first.
            k = [str(VENV / "kanal"), "ps", "-H", str(d.api), "-a", "-q"]
            ids = subprocess.run(k, capture_output=True, text=True).stdout.split()
            for sid in ids:
                subprocess.run(
                    [str(VENV / "kanal"), "rm", "-H", str(d.api), "-f", sid], capture_output=True
                )
            daemon.terminate()
            daemon.wait(10)
        delete_netns(outside)
        delete_netns(host)
        subprocess.run(["rm", "-rf", str(work)], check=False)
    print("\ndemo part 2: every namespace deleted; the machine's own namespace was never touched.")


if __name__ == "__main__":
    main()
