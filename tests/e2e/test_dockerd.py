"""A real dockerd 20.10 uses kanal as its network and IPAM plugin (libnetwork's remote driver).

dockerd and kanald run inside a host namespace made here (see tests/e2e/dockerd.py);
containers are busybox from an offline image. Asserted with docker's own
commands, ``ip -j`` / ``iptables -S`` in the host namespace and kanal's view.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.dockerd import Dockerd, available
from tests.helpers import ip_json, nsexec, unique

pytestmark = [
    pytest.mark.runtime,
    pytest.mark.skipif(bool(available()), reason=available() or "-"),
]


@pytest.fixture
def dk(tmp_path: Path, host_ns: str) -> Iterator[Dockerd]:
    d = Dockerd(host_ns, tmp_path)
    try:
        d.start()
        yield d
    finally:
        d.stop()


def _get(dk: Dockerd, container: str, target: str, tries: int = 30) -> str:
    """An HTTP GET from inside a container (busybox nc: its wget is unreliable here)."""
    out = ""
    for _ in range(tries):  # httpd may need a moment to listen
        p = dk.docker(
            "exec",
            container,
            "sh",
            "-c",
            f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {target} 80",
            check=False,
        )
        out = p.stdout
        if "hello from kanal" in out:
            break
        time.sleep(0.1)
    return out


def _host_get(dk: Dockerd, url: str) -> str:
    code = (
        "import urllib.request,sys\n"
        f"print(urllib.request.urlopen('{url}', timeout=3).read().decode())\n"
    )
    for _ in range(30):
        p = nsexec(dk.host, sys.executable, "-c", code, check=False)
        if p.returncode == 0:
            return p.stdout.decode()
        time.sleep(0.1)
    return ""


def _kanal_ls(dk: Dockerd) -> list[dict[str, str]]:
    out = dk.kanal("network", "ls", "--format", "json").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _kanal_links(dk: Dockerd) -> list[str]:
    return [ln["ifname"] for ln in ip_json(dk.host, "link", "show") if ln["ifname"][:3] == "kvh"]


def test_dockerd_runs_containers_on_kanal(dk: Dockerd) -> None:
    br = unique("kdb", 15)
    dk.docker(
        "network", "create", "-d", dk.plugin, "-o", f"com.docker.network.bridge.name={br}", "kn1"
    )
    nid = dk.docker("network", "inspect", "kn1", "-f", "{{.Id}}").stdout.strip()
    # kanal made the bridge, and sees the network as one of its own.
    assert ip_json(dk.host, "-d", "link", "show", br)[0]["linkinfo"]["info_kind"] == "bridge"
    listed = _kanal_ls(dk)
    assert any(n["Name"] == f"docker-{nid[:12]}" for n in listed)
    port = 21000 + int(nid[:4], 16) % 5000
    web = ["httpd", "-f", "-p", "80", "-h", "/www"]
    dk.docker(
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "kn1",
        "-p",
        f"127.0.0.1:{port}:80",
        dk.IMAGE,
        *web,
    )
    dk.docker("run", "-d", "--name", "c2", "--network", "kn1", dk.IMAGE, "sleep", "600")
    web_ip = dk.docker(
        "inspect", "web", "-f", "{{.NetworkSettings.Networks.kn1.IPAddress}}"
    ).stdout.strip()
    assert web_ip
    assert "hello from kanal" in _get(dk, "c2", web_ip)  # by IP
    assert "hello from kanal" in _get(dk, "c2", "web")  # by name: dockerd's DNS
    assert "hello from kanal" in _host_get(dk, f"http://127.0.0.1:{port}/")  # -p 127.0.0.1
    assert len(_kanal_links(dk)) == 2

    # The plugin dies (-9) and comes back: existing containers keep working, new
    # ones attach, and kanal still knows every network and endpoint.
    dk.kill_kanald()
    dk.start_kanald()
    dk.docker("run", "-d", "--name", "c3", "--network", "kn1", dk.IMAGE, "sleep", "600")
    assert "hello from kanal" in _get(dk, "c3", "web")
    assert "hello from kanal" in _host_get(dk, f"http://127.0.0.1:{port}/")
    eps = json.loads(dk.kanal("network", "inspect", f"docker-{nid[:12]}").stdout)[0]
    assert len(eps["Containers"]) == 3

    # A network on kanal's IPAM too (--ipam-driver), with and without --subnet.
    dk.docker("network", "create", "-d", dk.plugin, "--ipam-driver", dk.plugin, "kn2")
    dk.docker(
        "network",
        "create",
        "-d",
        dk.plugin,
        "--ipam-driver",
        dk.plugin,
        "--subnet",
        "10.85.3.0/24",
        "--ip-range",
        "10.85.3.128/25",
        "kn3",
    )
    ipam = json.loads(dk.docker("network", "inspect", "kn2", "-f", "{{json .IPAM}}").stdout)
    assert ipam["Driver"] == dk.plugin and ipam["Config"][0]["Subnet"]
    dk.docker("run", "-d", "--name", "w3", "--network", "kn3", dk.IMAGE, *web)
    dk.docker("run", "-d", "--name", "c4", "--network", "kn3", dk.IMAGE, "sleep", "600")
    w3 = dk.docker(
        "inspect", "w3", "-f", "{{.NetworkSettings.Networks.kn3.IPAddress}}"
    ).stdout.strip()
    assert w3.startswith("10.85.3.") and int(w3.rsplit(".", 1)[1]) >= 128
    assert "hello from kanal" in _get(dk, "c4", "w3")
    # Networks are isolated from each other.
    assert "hello from kanal" not in _get(dk, "c4", web_ip, tries=1)
    # docker network connect / disconnect on a running container: a second interface
    # from kanal's Join, then gone again.
    dk.docker("network", "connect", "kn1", "c4")
    assert "hello from kanal" in _get(dk, "c4", "web")
    assert "eth1" in dk.docker("exec", "c4", "ip", "-o", "link").stdout
    dk.docker("network", "disconnect", "kn1", "c4")
    assert "hello from kanal" not in _get(dk, "c4", web_ip, tries=1)
    assert "eth1" not in dk.docker("exec", "c4", "ip", "-o", "link").stdout

    # docker rm -f and network rm leave nothing behind.
    dk.docker("rm", "-f", "web", "c2", "c3", "w3", "c4")
    for n in ("kn1", "kn2", "kn3"):
        dk.docker("network", "rm", n)
    assert _kanal_links(dk) == []
    assert not [ln for ln in ip_json(dk.host, "link", "show") if ln["ifname"] == br]
    listed = _kanal_ls(dk)
    assert not [n for n in listed if n["Name"].startswith("docker-")]
    rules = nsexec(dk.host, "iptables", "-S").stdout.decode()
    assert "KANAL-FORWARD -" not in rules
    nft = nsexec(dk.host, "nft", "list", "table", "inet", "kanal").stdout.decode()
    assert str(port) not in nft


def test_dockerd_shows_kanal_errors_and_nothing_changes(dk: Dockerd) -> None:
    p = dk.docker("network", "create", "-d", dk.plugin, "-o", "bogus=1", "bad1", check=False)
    assert p.returncode != 0 and "unknown option 'bogus'" in p.stderr
    p = dk.docker(
        "network",
        "create",
        "-d",
        dk.plugin,
        "-o",
        "com.docker.network.driver.mtu=9",
        "bad2",
        check=False,
    )
    assert p.returncode != 0 and "invalid MTU" in p.stderr
    names = dk.docker("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert "bad1" not in names and "bad2" not in names
    # kanald never consumes the plugin it serves itself (that would deadlock).
    p = dk.kanal("network", "create", "-d", dk.plugin, "selfish", check=False)
    assert p.returncode == 1 and "not found" in p.stderr
    listed = _kanal_ls(dk)
    assert not [n for n in listed if n["Name"].startswith("docker-")]
