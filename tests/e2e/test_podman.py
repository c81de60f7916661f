"""podman 4.3 with its CNI backend, driving kanal's installed plugins through kanald.

Everything podman touches is private to the test (its config, storage, the
network config and plugin directories); its "host" is a namespace made here,
entered with ``nsenter --net`` rather than ``ip netns exec`` so podman keeps the
machine's cgroup mounts (``ip netns exec`` remounts /sys) and shares kanald's
mount namespace.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kanal.fastpath.install import install_plugins
from kanal.ipam.diskfiles import INDEX_NAME
from tests.helpers import busybox_tar, ip_json, kanal_nft_leftovers, nft_json, unique

pytestmark = [
    pytest.mark.runtime,
    pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed"),
    pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="busybox-static missing"),
]

VENV = Path(__file__).resolve().parents[2] / ".venv" / "bin"


@dataclass
class Podman:
    host: str
    env: dict[str, str]
    dirs: Path
    bridge: str
    subnet_prefix: str

    def __call__(
        self,
        *args: str,
        check: bool = True,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        p = subprocess.run(
            ["nsenter", f"--net=/run/netns/{self.host}", "podman", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and p.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} failed: {p.stderr}")
        return p


@contextmanager
def running_podman(
    tmp_path: Path, host_ns: str, last: dict[str, Any] | None = None
) -> Iterator[Podman]:
    """podman with the kanalnet conflist; ``last`` replaces its last plugin (loopback)."""
    d = tmp_path
    bindir, netd = d / "bin", d / "net.d"
    netd.mkdir()
    sock = d / "kanald.sock"
    install_plugins(str(bindir), socket_path=str(sock))
    bridge = unique("kpm", 15)
    octet = 100 + os.getpid() % 100
    net: dict[str, Any] = {
        "cniVersion": "0.4.0",
        "name": "kanalnet",
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(d / "ipam"),
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "ranges": [[{"subnet": f"10.{octet}.7.0/24"}]],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "firewall", "backend": ""},  # what podman itself writes
            {
                "type": "tuning",
                "dataDir": str(d / "tuning"),
                "sysctl": {"net.ipv4.conf.IFNAME.arp_ignore": "1"},
            },
            last if last is not None else {"type": "loopback"},
        ],
    }
    (netd / "kanalnet.conflist").write_text(json.dumps(net))
    (d / "containers.conf").write_text(f"""[containers]
default_ulimits = ["nofile=20000:20000", "nproc=20000:20000"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{d}/events.log"
tmp_dir = "{d}/libpod-tmp"
[network]
network_backend = "cni"
cni_plugin_dirs = ["{bindir}"]
network_config_dir = "{netd}"
""")
    (d / "storage.conf").write_text(f"""[storage]
driver = "vfs"
graphroot = "{d}/store"
runroot = "{d}/run"
""")
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(d),
        "CONTAINERS_CONF": str(d / "containers.conf"),
        "CONTAINERS_STORAGE_CONF": str(d / "storage.conf"),
    }
    argv = [
        "nsenter",
        f"--net=/run/netns/{host_ns}",
        str(VENV / "kanald"),
        "--no-engine",
        "--socket",
        str(sock),
        "--log-level",
        "info",
    ]
    with open(d / "kanald.log", "wb") as log:
        daemon = subprocess.Popen(argv, stderr=log)
    try:
        for _ in range(500):
            if sock.exists():
                break
            time.sleep(0.02)
        pm = Podman(host_ns, env, d, bridge, f"10.{octet}.7.")
        pm("import", "--change", "ENV PATH=/bin", str(busybox_tar(d)), "localhost/kbusybox")
        yield pm
    finally:
        p = Podman(host_ns, env, d, bridge, "")
        p("rm", "-fa", "-t", "0", check=False)
        daemon.terminate()
        daemon.wait(10)
        shutil.rmtree(d / "store", ignore_errors=True)


@pytest.fixture
def podman(tmp_path: Path, host_ns: str) -> Iterator[Podman]:
    with running_podman(tmp_path, host_ns) as pm:
        yield pm


def test_two_containers_talk_and_rm_leaves_nothing(podman: Podman) -> None:
    port = 20000 + os.getpid() % 10000
    podman(
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "kanalnet",
        "-p",
        f"127.0.0.1:{port}:80",
        "localhost/kbusybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/www",
    )
    info = json.loads(podman("inspect", "web").stdout)[0]
    ip = info["NetworkSettings"]["Networks"]["kanalnet"]["IPAddress"]
    assert ip.startswith(podman.subnet_prefix)
    out = ""
    for _ in range(20):  # httpd may need a moment to listen
        r = podman(
            "run",
            "--rm",
            "--network",
            "kanalnet",
            "localhost/kbusybox",
            "wget",
            "-qO-",
            f"http://{ip}/",
            check=False,
        )
        out = r.stdout
        if "hello" in out:
            break
        time.sleep(0.2)
    assert "hello from kanal" in out
    # The published port answers on the host's 127.0.0.1 (portmap, chained).
    page = ""
    for _ in range(20):
        p = subprocess.run(
            [
                "nsenter",
                f"--net=/run/netns/{podman.host}",
                sys.executable,
                "-c",
                "import urllib.request, sys; print(urllib.request.urlopen("
                f"'http://127.0.0.1:{port}/', timeout=3).read().decode())",
            ],
            capture_output=True,
            text=True,
        )
        page = p.stdout
        if "hello" in page:
            break
        time.sleep(0.2)
    assert "hello from kanal" in page
    # tuning ran in the chain: its sysctl is set in the container.
    pid = json.loads(podman("inspect", "web").stdout)[0]["State"]["Pid"]
    sysctl = subprocess.run(
        ["nsenter", f"--net=/proc/{pid}/ns/net", "sysctl", "-n", "net.ipv4.conf.eth0.arp_ignore"],
        capture_output=True,
        text=True,
    )
    assert sysctl.stdout.strip() == "1"
    # The plugins were served by kanald, not by standalone processes.
    log = (podman.dirs / "kanald.log").read_text()
    assert "served bridge ADD (exit 0)" in log
    assert "served firewall ADD (exit 0)" in log
    fw = nft_json(podman.host, "list", "set", "inet", "kanal", "fw_ips4") or {}
    assert ip in json.dumps(fw)  # the firewall plugin let the container's traffic through
    podman("rm", "-f", "-t", "0", "web")
    ports = [x["ifname"] for x in ip_json(podman.host, "link", "show", "master", podman.bridge)]
    assert ports == []
    left = sorted(
        p.name
        for p in (podman.dirs / "ipam" / "kanalnet").iterdir()
        if p.name not in ("lock", INDEX_NAME) and not p.name.startswith("last_reserved_ip")
    )
    assert left == []
    ruleset = nft_json(podman.host, "list", "table", "inet", "kanal") or {}
    assert ip not in json.dumps(ruleset)  # no masquerade, no port mapping left
    assert str(port) not in json.dumps(ruleset)


def test_failed_add_leaves_nothing(tmp_path: Path, host_ns: str) -> None:
    """The chain's last plugin fails after bridge, portmap, firewall and tuning worked:
    podman tears the network down and nothing of the container's remains."""
    failing = {"type": "sbr", "table": -1}  # refused: a table must be positive
    with running_podman(tmp_path, host_ns, failing) as pm:
        port = 20000 + os.getpid() % 10000
        r = pm(
            "run", "-d", "--name", "broken", "--network", "kanalnet",
            "-p", f"127.0.0.1:{port}:80", "localhost/kbusybox", "sleep", "1000",
            check=False,
        )  # fmt: skip
        assert r.returncode != 0 and "sbr" in r.stderr, r.stderr
        log = (pm.dirs / "kanald.log").read_text()
        assert "served sbr ADD (exit 1)" in log
        for plugin in ("bridge", "portmap", "firewall", "tuning", "sbr"):
            assert f"served {plugin} DEL (exit 0)" in log, plugin
        assert "DEL (exit 1)" not in log
        ports = [x["ifname"] for x in ip_json(pm.host, "link", "show", "master", pm.bridge)]
        assert ports == []
        ipam = pm.dirs / "ipam" / "kanalnet"
        assert not ipam.exists() or [p.name for p in ipam.iterdir() if p.name[0].isdigit()] == []
        assert kanal_nft_leftovers(pm.host, [pm.subnet_prefix, str(port)]) == []
        tuning = pm.dirs / "tuning"
        assert not tuning.exists() or list(tuning.iterdir()) == []
