"""`make demo`: seed 003 ("Understanding CNI") walked with kanal.

A "host" namespace stands in for the machine; two containers get addresses on a
bridge from host-local, reach each other and an "outside" namespace (198.51.100.0/24)
through masquerade; the second one publishes a port (bridge → portmap → firewall →
tuning) that the outside namespace and the host reach; the state files and firewall
entries are shown before and after DEL, which leaves the host clean. Everything
runs inside namespaces made here and deleted at the end.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import create_netns, delete_netns, unique  # noqa: E402

VENV = ROOT / ".venv" / "bin"
BOLD, DIM, END = ("\033[1m", "\033[2m", "\033[0m") if sys.stdout.isatty() else ("", "", "")


def say(text: str) -> None:
    print(f"\n{BOLD}## {text}{END}", flush=True)


def sh(
    cmd: list[str],
    *,
    input: bytes | None = None,
    env: dict[str, str] | None = None,
    show: bool = True,
    check: bool = True,
) -> str:
    if show:
        prefix = " ".join(f"{k}={v}" for k, v in (env or {}).items() if k.startswith("CNI_"))
        print(f"{DIM}$ {prefix + ' ' if prefix else ''}{shlex.join(cmd)}{END}", flush=True)
    p = subprocess.run(cmd, input=input, capture_output=True, env={**os.environ, **(env or {})})
    out = (p.stdout + p.stderr).decode()
    if show and out.strip():
        print(out.rstrip(), flush=True)
    if check and p.returncode != 0:
        raise SystemExit(f"demo: command failed: {shlex.join(cmd)}")
    return p.stdout.decode()


def inside(host: str, c1: str, c2: str, outside: str) -> None:
    """Runs in the host namespace."""
    work = Path(tempfile.mkdtemp(prefix="kanal-demo-"))
    bindir, confdir, cache = work / "bin", work / "net.d", work / "cache"
    confdir.mkdir()
    sock = str(work / "kanald.sock")
    say("Install kanal's CNI plugins under the reference names, start kanald (the fast path)")
    sh([str(VENV / "kanal"), "cni", "install", "--dir", str(bindir), "--socket", sock])
    daemon = subprocess.Popen([str(VENV / "kanald"), "--no-engine", "--socket", sock])
    try:
        for _ in range(500):
            if os.path.exists(sock):
                break
            time.sleep(0.02)
        run_seed(host, c1, c2, outside, work, bindir, confdir, cache)
    finally:
        daemon.terminate()
        daemon.wait(10)
        subprocess.run(["rm", "-rf", str(work)], check=False)


def run_seed(
    host: str, c1: str, c2: str, outside: str, work: Path, bindir: Path, confdir: Path, cache: Path
) -> None:
    conf = {
        "cniVersion": "0.2.0",
        "name": "mybridge",
        "type": "bridge",
        "bridge": "cni_bridge0",
        "isGateway": True,
        "ipMasq": True,
        "ipam": {
            "type": "host-local",
            "subnet": "10.15.20.0/24",
            "dataDir": str(work / "networks"),
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "1.1.1.1/32", "gw": "10.15.20.1"}],
        },
    }
    conf_path = work / "mybridge.conf"
    conf_path.write_text(json.dumps(conf, indent=4))
    say("The seed's network config (cniVersion 0.2.0, bridge + host-local + ipMasq)")
    print(conf_path.read_text())
    say("ADD the first container exactly as the seed does: env vars + config on stdin")
    env = {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "1234567890",
        "CNI_NETNS": f"/run/netns/{c1}",
        "CNI_IFNAME": "eth12",
        "CNI_PATH": str(bindir),
    }
    print(f"{DIM}$ {' '.join(f'{k}={v}' for k, v in env.items())} ./bridge < mybridge.conf{END}")
    out = subprocess.run(
        [str(bindir / "bridge")],
        input=conf_path.read_bytes(),
        env={**os.environ, **env},
        capture_output=True,
    )
    print(out.stdout.decode())
    if out.returncode != 0:
        raise SystemExit("demo: bridge ADD failed")

    say(
        "ADD the second container with the cnitool-compatible CLI (result cached as libcni),"
        " through a chain: bridge, then portmap publishing its port 80 on the host's 8080,"
        " then firewall and tuning"
    )
    conflist = {
        "cniVersion": "1.0.0",
        "name": "mybridge",
        "plugins": [
            {k: v for k, v in conf.items() if k not in ("cniVersion", "name")},
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "firewall"},
            {"type": "tuning", "sysctl": {"net.ipv4.conf.IFNAME.arp_notify": "1"}},
        ],
    }
    (confdir / "mybridge.conflist").write_text(json.dumps(conflist, indent=2))
    print((confdir / "mybridge.conflist").read_text())
    caps = {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}
    cli_env = {
        "NETCONFPATH": str(confdir),
        "CNI_PATH": str(bindir),
        "CAP_ARGS": json.dumps(caps),
    }
    print(f"{DIM}$ export CAP_ARGS='{cli_env['CAP_ARGS']}'{END}")
    sh(
        [
            str(VENV / "kanal"),
            "cni",
            "add",
            "--cache-dir",
            str(cache),
            "mybridge",
            f"/run/netns/{c2}",
        ],
        env=cli_env,
    )

    say("The host side: the bridge with the gateway address, the two veth ends")
    sh(["ip", "-br", "addr", "show", "dev", "cni_bridge0"])
    sh(["ip", "-br", "link", "show", "master", "cni_bridge0"])
    say("Inside container 1: eth12, the default route and the seed's 1.1.1.1/32 route")
    sh(["ip", "netns", "exec", c1, "ip", "-br", "addr"])
    sh(["ip", "netns", "exec", c1, "ip", "route"])

    say("The 'outside world' is another namespace (198.51.100.2) behind the host")
    sh(["ip", "link", "add", "to-out", "type", "veth", "peer", "name", "eth0", "netns", outside])
    sh(["ip", "addr", "add", "198.51.100.1/24", "dev", "to-out"])
    sh(["ip", "link", "set", "to-out", "up"])
    sh(["ip", "netns", "exec", outside, "ip", "addr", "add", "198.51.100.2/24", "dev", "eth0"])
    sh(["ip", "netns", "exec", outside, "ip", "link", "set", "eth0", "up"])

    say("Container 1 reaches container 2 across the bridge")
    sh(["ip", "netns", "exec", c1, "ping", "-c", "2", "-W", "2", "10.15.20.3"])
    say(
        "Container 1 reaches the outside; the outside has no route to 10.15.20.0/24, "
        "so it sees the host's address: masquerade"
    )
    server = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            outside,
            sys.executable,
            "-c",
            "import socket; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,"
            " socket.SO_REUSEADDR, 1); s.bind(('198.51.100.2', 8080)); s.listen(1);"
            " c, a = s.accept(); print('outside saw a connection from', a[0], flush=True)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.3)
    sh(
        [
            "ip",
            "netns",
            "exec",
            c1,
            sys.executable,
            "-c",
            "import socket; socket.create_connection(('198.51.100.2', 8080), timeout=3).close()",
        ]
    )
    print((server.communicate(timeout=10)[0] or "").strip())

    say(
        "Container 2 serves HTTP on port 80; the outside reaches it at the host's "
        "198.51.100.1:8080 (portmap's DNAT)"
    )
    www = work / "www"
    www.mkdir()
    (www / "index.html").write_text("hello from container 2\n")
    web = subprocess.Popen(
        ["ip", "netns", "exec", c2, "busybox", "httpd", "-f", "-p", "80", "-h", str(www)]
    )
    try:
        time.sleep(0.3)
        curl = ["curl", "-sS", "-m", "3", "--retry", "5", "--retry-connrefused"]
        sh(["ip", "netns", "exec", outside, *curl, "http://198.51.100.1:8080/"])
        say("...and from the host itself, at 127.0.0.1:8080 (route_localnet + SNAT)")
        sh([*curl, "http://127.0.0.1:8080/"])
    finally:
        web.terminate()
        web.wait(10)

    say("State: host-local's reservation files (same format as the Go plugin)")
    for f in sorted((work / "networks" / "mybridge").iterdir()):
        print(f"{f.name:20s} {f.read_bytes()!r}")
    say(
        "State: kanal's nftables table — masquerade entries in sets, one per container IP;"
        " the published port in map pm_any4; the firewall's accept entries"
    )
    sh(["nft", "list", "table", "inet", "kanal"], check=False)
    say("State: the libcni-format result cache of the CLI's ADD")
    for f in sorted((cache / "results").iterdir()):
        print(f.name)

    say("DEL both containers (the first as the seed would, the second through the CLI)")
    env["CNI_COMMAND"] = "DEL"
    out = subprocess.run(
        [str(bindir / "bridge")],
        input=conf_path.read_bytes(),
        env={**os.environ, **env},
        capture_output=True,
    )
    print(f"bridge DEL exit {out.returncode} {out.stdout.decode().strip()}")
    sh(
        [
            str(VENV / "kanal"),
            "cni",
            "del",
            "--cache-dir",
            str(cache),
            "mybridge",
            f"/run/netns/{c2}",
        ],
        env=cli_env,
    )
    say(
        "After DEL: no veth on the bridge, no reservation, no masquerade entry, no published"
        " port, no cache"
    )
    sh(["ip", "-br", "link", "show", "master", "cni_bridge0"])
    left = sorted(p.name for p in (work / "networks" / "mybridge").iterdir())
    print("host-local dir:", left)
    sh(["nft", "list", "table", "inet", "kanal"], check=False)
    print("result cache:", sorted(p.name for p in (cache / "results").iterdir()))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--inside":
        inside(*sys.argv[2:6])
        return
    if os.geteuid() != 0:
        sys.exit("demo: needs root (it creates network namespaces)")
    names = [
        create_netns(unique(p, 30)) for p in ("kdemo-host", "kdemo-c1", "kdemo-c2", "kdemo-out")
    ]
    try:
        print(f"namespaces: host={names[0]} containers={names[1]},{names[2]} outside={names[3]}")
        rc = subprocess.run(
            ["ip", "netns", "exec", names[0], sys.executable, __file__, "--inside", *names]
        ).returncode
    finally:
        for n in names:
            delete_netns(n)
    print("\ndemo: every namespace deleted; the machine's own namespace was never touched.")
    if rc != 0:
        sys.exit(f"demo: failed (exit {rc})")


if __name__ == "__main__":
    main()
