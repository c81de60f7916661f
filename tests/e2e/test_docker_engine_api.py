"""The real docker CLI and the docker SDK for Python against kanald's API socket.

kanald serves docker's Engine API for what kanal has (networks, kanal run's
sandboxes as containers, version, info, events): the docker CLI from the Debian
package (``DOCKER_HOST=unix://SOCKET``) and the ``docker`` SDK work unchanged,
negotiating API 1.47. What kanal does not have (images, volumes, docker run)
is refused with kanald's words. Each result is checked against the kernel
(``ip -j`` in the sandbox's namespace) or kanal's own CLI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_cli_run import RunDaemon
from tests.helpers import ip_json

DOCKER = "/usr/local/bin/docker" if os.path.exists("/usr/local/bin/docker") else "docker"

pytestmark = pytest.mark.skipif(
    shutil.which(DOCKER) is None, reason="the docker CLI is not installed"
)


class DockerOn(RunDaemon):
    """A kanald with sandboxes, and the docker CLI pointed at its API socket."""

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "DOCKER_HOST": f"unix://{self.api}",
            "DOCKER_CONFIG": str(self.tmp / "docker-config"),  # not the machine's
        }
        p = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=120, env=env)
        if check and p.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {p.stderr}")
        return p


@pytest.fixture
def dd(host_ns: str, tmp_path: Path) -> Iterator[DockerOn]:
    d = DockerOn(host_ns, tmp_path)
    d.start()
    try:
        yield d
    finally:
        d.remove_all_and_stop()


def addrs(netns_path: str) -> list[str]:
    """The IPv4 addresses in a sandbox's namespace, as the kernel has them."""
    return [
        a["local"]
        for link in ip_json(os.path.basename(netns_path), "addr", "show")
        for a in link["addr_info"]
        if a["family"] == "inet" and a["local"] != "127.0.0.1"
    ]


def test_ping_and_negotiation(dd: DockerOn) -> None:
    """/_ping as docker's: "OK" as text, Api-Version on GET and HEAD (what a client
    negotiates from); kanal's own client reads it too."""
    import http.client
    import socket

    from kanal.daemon.client import ApiClient

    assert ApiClient(str(dd.api)).request("GET", "/_ping") == "OK"
    for method in ("GET", "HEAD"):
        conn = http.client.HTTPConnection("localhost", timeout=60)
        conn.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.sock.connect(str(dd.api))
        conn.request(method, "/_ping")
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        assert resp.status == 200 and resp.getheader("Api-Version") == "1.47"
        assert resp.getheader("Ostype") == "linux"
        assert body == (b"OK" if method == "GET" else b"")
    too_new = ApiClient(str(dd.api))
    with pytest.raises(Exception, match="client version 1.99 is too new"):
        too_new.request("GET", "/v1.99/networks")


def test_docker_cli(dd: DockerOn) -> None:
    v = dd.docker("version", "--format", "{{.Server.APIVersion}} {{.Client.APIVersion}}")
    assert v.stdout == "1.47 1.47\n"  # negotiated down from the client's newer version
    assert "kanal" in dd.docker("version", "--format", "{{.Server.Version}}").stdout
    assert dd.docker("info", "--format", "{{.Containers}} {{.Images}}").stdout == "0 0\n"

    # networks: create, ls, inspect, as kanal sees them
    nid = dd.docker("network", "create", "--subnet", "10.78.0.0/24", "dnet").stdout.strip()
    assert len(nid) == 64
    assert json.loads(dd.kanal("inspect", "dnet").stdout)[0]["Id"] == nid
    ls = dd.docker("network", "ls", "--format", "{{.Name}} {{.Driver}}").stdout.splitlines()
    assert "dnet bridge" in ls and "bridge bridge" in ls
    got = dd.docker("network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}}{{end}}", "dnet")
    assert got.stdout == "10.78.0.0/24\n"
    dd.docker("network", "create", "--subnet", "10.79.0.0/24", "other")

    # a sandbox made by kanal run is a container to docker ps / inspect
    sid = dd.k("run", "-d", "--name", "c1", "--network", "dnet", "--ip", "10.78.0.5",
               "--", "sleep", "86400.401").stdout.strip()  # fmt: skip
    ps = dd.docker("ps", "--format", "{{.ID}} {{.Names}} {{.Status}}").stdout
    assert ps.startswith(f"{sid[:12]} c1 Up ")
    assert dd.docker("ps", "-q", "--no-trunc").stdout == sid + "\n"
    tmpl = (
        "{{.State.Pid}} {{.NetworkSettings.Networks.dnet.IPAddress}} "
        "{{.NetworkSettings.SandboxKey}}"
    )
    pid, ip, key = dd.docker("inspect", "-f", tmpl, "c1").stdout.split()
    assert (pid, ip) == (dd.k("inspect", "-f", "{{.State.Pid}}", "c1").stdout.strip(), "10.78.0.5")
    assert addrs(key) == ["10.78.0.5"]
    assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(key).st_ino

    # connect / disconnect, seen in the sandbox's namespace
    dd.docker("network", "connect", "--ip", "10.79.0.9", "other", "c1")
    assert sorted(addrs(key)) == ["10.78.0.5", "10.79.0.9"]
    members = dd.docker(
        "network", "inspect", "-f", "{{range .Containers}}{{.Name}}{{end}}", "other"
    )
    assert members.stdout == "c1\n"
    dd.docker("network", "disconnect", "other", "c1")
    assert addrs(key) == ["10.78.0.5"]

    # the lifecycle: stop (143, addresses released), start (the same --ip), kill, wait, logs
    assert dd.docker("stop", "-t", "5", "c1").stdout == "c1\n"
    assert dd.docker("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "c1").stdout == (
        "exited 143\n"
    )
    assert addrs(key) == []
    exited = dd.docker("ps", "-a", "-f", "status=exited", "--format", "{{.Names}} {{.Status}}")
    assert exited.stdout.startswith("c1 Exited (143) ")
    assert dd.docker("ps", "-q").stdout == ""
    dd.docker("start", "c1")
    assert addrs(key) == ["10.78.0.5"]
    dd.docker("restart", "-t", "5", "c1")
    assert addrs(key) == ["10.78.0.5"]
    dd.docker("kill", "c1")
    assert dd.docker("wait", "c1").stdout == "137\n"
    dd.k("run", "-d", "--name", "talker", "--network", "dnet", "--", "sh", "-c",
         "echo out; echo err >&2; exec sleep 86400.402")  # fmt: skip
    for _ in range(100):
        logs = dd.docker("logs", "talker")
        if logs.stdout + logs.stderr == "out\nerr\n":
            break
        time.sleep(0.05)
    assert logs.stdout + logs.stderr == "out\nerr\n"  # one stream: both are in the log

    # prune removes the unused network only; rm; errors in kanald's words
    unused = dd.docker("network", "create", "--subnet", "10.80.0.0/24", "unused").stdout.strip()
    pruned = dd.docker("network", "prune", "-f").stdout
    assert "unused" in pruned and "dnet" not in pruned and "other" in pruned
    assert unused not in dd.docker("network", "ls", "-q", "--no-trunc").stdout
    dd.docker("rm", "-f", "c1", "talker")
    assert dd.k("ps", "-a", "-q").stdout == ""
    dd.docker("network", "rm", "dnet")
    assert "dnet" not in dd.kanal("ls").stdout
    for args in (
        ["run", "--rm", "busybox", "true"],
        ["images"],
        ["volume", "ls"],
        ["pull", "busybox"],
    ):
        p = dd.docker(*args, check=False)
        assert p.returncode != 0 and "not supported by kanal" in p.stderr, (args, p.stderr)
    p = dd.docker("inspect", "nosuch", check=False)
    assert p.returncode != 0 and "No such" in p.stderr


class Lines:
    """Lines of a child's stdout, each waited for at most ``limit`` seconds (a hang
    guard, not a timing assertion: a missing event fails instead of blocking)."""

    def __init__(self, p: subprocess.Popen[bytes]) -> None:
        assert p.stdout is not None
        self.fd, self.buf = p.stdout.fileno(), b""

    def next(self, limit: float = 60.0) -> str:
        import select

        deadline = time.monotonic() + limit
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.fd], [], [], max(0.0, left))
            assert ready, "no line within the guard"
            chunk = os.read(self.fd, 4096)
            assert chunk, "the stream ended"
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode()


def test_docker_events(dd: DockerOn) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "DOCKER_HOST": f"unix://{dd.api}",
        "DOCKER_CONFIG": str(dd.tmp / "dc"),
    }
    ev = subprocess.Popen(
        [DOCKER, "events", "--format", "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}"],
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        lines = Lines(ev)
        # Subscribed once a probe's event arrives (networks made until one does).
        for i in range(50):
            dd.docker("network", "create", f"probe{i}")
            try:
                if lines.next(2.0) == f"network create probe{i}":
                    break
            except AssertionError:
                continue
        dd.docker("network", "create", "evnet")
        dd.k("run", "-d", "--name", "e1", "--network", "evnet", "--", "sleep", "86400.403")
        dd.docker("stop", "-t", "5", "e1")
        dd.docker("rm", "e1")
        dd.docker("network", "rm", "evnet")
        want = ["network create evnet", "network connect evnet", "network disconnect evnet",
                "container stop e1", "container destroy e1", "network destroy evnet"]  # fmt: skip
        seen: list[str] = []
        while not all(w in seen for w in want):
            seen.append(lines.next())
        assert [w for w in seen if w in want] == want  # in the order they happened
    finally:
        ev.kill()
        ev.wait()


def test_docker_sdk(dd: DockerOn) -> None:
    docker = pytest.importorskip("docker")
    client: Any = docker.DockerClient(base_url=f"unix://{dd.api}", version="auto")
    try:
        assert client.ping() is True
        assert client.api.api_version == "1.47"
        assert client.version()["ApiVersion"] == "1.47"
        assert client.info()["Containers"] == 0
        net = client.networks.create(
            "sdknet", driver="bridge",
            ipam=docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet="10.81.0.0/24")]),
        )  # fmt: skip
        assert net.name == "sdknet" and "sdknet" in [n.name for n in client.networks.list()]
        assert client.networks.list(names=["sdknet"])[0].id == net.id
        dd.k("run", "-d", "--name", "s1", "--network", "none", "--", "sleep", "86400.501")
        c = client.containers.get("s1")
        assert c.status == "running" and c.name == "s1"
        key = c.attrs["NetworkSettings"]["SandboxKey"]
        net.connect(c, ipv4_address="10.81.0.7")
        net.reload()
        assert list(net.attrs["Containers"]) == [c.id]
        assert addrs(key) == ["10.81.0.7"]
        c.reload()
        assert c.attrs["NetworkSettings"]["Networks"]["sdknet"]["IPAddress"] == "10.81.0.7"
        net.disconnect(c)
        assert addrs(key) == []
        assert [x.name for x in client.containers.list()] == ["s1"]
        c.stop(timeout=5)
        assert c.wait() == {"StatusCode": 143, "Error": None}
        assert client.containers.list() == []
        assert [x.name for x in client.containers.list(all=True, filters={"exited": 143})] == ["s1"]
        c.start()
        c.reload()
        assert c.status == "running"
        c.kill(signal="SIGTERM")
        assert c.wait()["StatusCode"] == 143
        assert c.logs() == b""
        c.remove(force=True)
        assert client.containers.list(all=True) == []
        with pytest.raises(docker.errors.NotFound):
            client.containers.get("s1")
        assert "sdknet" in client.networks.prune()["NetworksDeleted"]
        for name, args in (
            ("containers.run", ("busybox", "true")),
            ("images.list", ()),
            ("volumes.list", ()),
        ):
            group, method = name.split(".")
            with pytest.raises(docker.errors.APIError) as e:
                getattr(getattr(client, group), method)(*args)
            assert e.value.status_code == 501 and "not supported by kanal" in str(e.value)
    finally:
        client.close()
