"""``kanal network ...`` against a real kanald (engine on), in a host namespace made here."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ip_json, nsexec, unique

VENV = Path(__file__).resolve().parents[2] / ".venv" / "bin"


class Daemon:
    """A kanald in the test's host namespace; subclasses change ``netns_dir``,
    ``plugin_sock`` and ``extra`` (more options) rather than the command line."""

    def __init__(self, host: str, tmp: Path) -> None:
        self.host = host
        self.tmp = tmp
        self.api = tmp / "api.sock"
        self.proc: subprocess.Popen[bytes] | None = None
        self.bridge = unique("kd", 15)
        self.state = tmp / "state"
        self.netns_dir: Path | str = "/run/netns"
        self.plugin_sock: Path | None = None
        self.extra: tuple[str, ...] = ()

    def start(self) -> None:
        self.api.unlink(missing_ok=True)  # a killed daemon leaves its socket file
        with open(self.tmp / "kanald.log", "ab") as log:
            self.proc = self._spawn(log)
        for _ in range(500):
            if self.api.exists() and self._answers():
                return
            time.sleep(0.02)
        raise AssertionError("kanald's API did not come up")

    def _answers(self) -> bool:
        # The socket file appears at bind(); connecting also needs listen().
        import socket

        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            try:
                s.connect(str(self.api))
            except OSError:
                return False
        return True

    def _spawn(self, log: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                "nsenter",
                f"--net=/run/netns/{self.host}",
                str(VENV / "kanald"),
                "--socket",
                str(self.tmp / "fp.sock"),
                "--state-dir",
                str(self.state),
                "--api-socket",
                str(self.api),
                "--default-bridge",
                self.bridge,
                "--default-subnet",
                "10.70.0.0/24",
                "--default-address-pool",
                "base=10.71.0.0/16,size=24",
                "--cni-conf-dir",
                str(self.tmp / "net.d"),
                "--netns-dir",
                str(self.netns_dir),
                "--docker-plugin-socket",
                str(self.plugin_sock) if self.plugin_sock else "none",
                *self.extra,
            ],
            stderr=log,
        )

    def stop(self, kill: bool = False) -> None:
        if self.proc is not None:
            self.proc.kill() if kill else self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def kanal(
        self, *args: str, check: bool = True, input: str = ""
    ) -> subprocess.CompletedProcess[str]:
        p = subprocess.run(
            [str(VENV / "kanal"), "network", "-H", str(self.api), *args],
            capture_output=True,
            text=True,
            input=input,
            timeout=60,
        )
        if check and p.returncode != 0:
            raise AssertionError(f"kanal network {' '.join(args)}: {p.stderr}")
        return p


@pytest.fixture
def daemon(host_ns: str, tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon(host_ns, tmp_path)
    d.start()
    try:
        yield d
    finally:
        d.stop(kill=True)


def test_create_ls_inspect_rm_prune(daemon: Daemon) -> None:
    ls = daemon.kanal("ls").stdout.splitlines()
    assert ls[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    assert [line.split()[1:] for line in ls[1:]] == [
        ["bridge", "bridge", "local"],
        ["host", "host", "local"],
        ["none", "null", "local"],
    ]
    assert (daemon.tmp / "api.sock").stat().st_mode & 0o777 == 0o600
    nid = daemon.kanal(
        "create",
        "--subnet",
        "10.72.0.0/24",
        "--gateway",
        "10.72.0.254",
        "--ip-range",
        "10.72.0.128/25",
        "--aux-address",
        "router=10.72.0.2",
        "--label",
        "team=web",
        "-o",
        "com.docker.network.bridge.enable_icc=false",
        "web",
    ).stdout.strip()
    assert len(nid) == 64
    auto = daemon.kanal("create", "--internal", "back").stdout.strip()
    (web,) = json.loads(daemon.kanal("inspect", "web").stdout)
    assert web["Id"] == nid and web["Driver"] == "bridge" and web["Labels"] == {"team": "web"}
    assert web["IPAM"]["Config"] == [
        {
            "Subnet": "10.72.0.0/24",
            "IPRange": "10.72.0.128/25",
            "Gateway": "10.72.0.254",
            "AuxiliaryAddresses": {"router": "10.72.0.2"},
        }
    ]
    assert daemon.kanal(
        "inspect", "-f", "{{.Internal}} {{json .Labels}}", "back"
    ).stdout.strip() == ("true {}")
    (back,) = json.loads(daemon.kanal("inspect", auto[:10]).stdout)
    assert back["IPAM"]["Config"][0]["Subnet"] == "10.71.0.0/24"  # from the configured pool
    br = f"br-{nid[:12]}"
    got = ip_json(daemon.host, "addr", "show", "dev", br)[0]
    assert [a["local"] for a in got["addr_info"] if a["family"] == "inet"] == ["10.72.0.254"]

    assert daemon.kanal("ls", "-q", "-f", "label=team=web").stdout.split() == [nid[:12]]
    assert daemon.kanal("ls", "-f", "type=custom", "--format", "{{.Name}}").stdout.split() == [
        "back",
        "web",
    ]
    rows = [json.loads(x) for x in daemon.kanal("ls", "--format", "json").stdout.splitlines()]
    assert {r["Name"] for r in rows} == {"bridge", "host", "none", "web", "back"}
    table = daemon.kanal("ls", "-f", "name=we", "--format", "table {{.Name}}\t{{.Internal}}").stdout
    assert table.splitlines()[0].split() == ["NAME", "INTERNAL"] and "web" in table

    # bad input: one line, non-zero exit, nothing changed
    before = daemon.kanal("ls", "-q", "--no-trunc").stdout
    for bad in (
        ["create", "web"],
        ["create", "a/b"],
        ["create", "--subnet", "10.72.0.0/16", "over"],
        ["create", "--subnet", "10.80.0.0/24", "--gateway", "10.81.0.1", "gw"],
        ["create", "-d", "nosuch", "drv"],
        ["create", "-o", "com.docker.network.driver.mtu=abc", "mtu"],
        ["rm", "bridge"],
        ["rm", "nosuch"],
        ["inspect", "nosuch"],
        ["ls", "-f", "bogus=1"],
    ):
        p = daemon.kanal(*bad, check=False)
        assert p.returncode != 0, bad
        assert len(p.stderr.strip().splitlines()) == 1 and p.stderr.startswith("kanal: "), p.stderr
    assert daemon.kanal("ls", "-q", "--no-trunc").stdout == before
    assert daemon.kanal("rm", "-f", "nosuch").returncode == 0

    assert daemon.kanal("rm", "web").stdout.strip() == "web"
    assert not [x for x in ip_json(daemon.host, "link") if x["ifname"] == br]
    assert "kn_" + nid[:12] not in nsexec(daemon.host, "nft", "list", "ruleset").stdout.decode()
    out = daemon.kanal("prune", "-f").stdout
    assert out.split() == ["Deleted", "Networks:", "back"]
    assert daemon.kanal("ls", "-f", "type=custom", "-q").stdout == ""


def test_state_survives_a_killed_daemon(daemon: Daemon) -> None:
    nid = daemon.kanal("create", "keep").stdout.strip()
    br = f"br-{nid[:12]}"
    daemon.stop(kill=True)
    nsexec(daemon.host, "ip", "link", "del", br)  # lost while the daemon was down
    daemon.start()
    (keep,) = json.loads(daemon.kanal("inspect", "keep").stdout)
    assert keep["Id"] == nid
    assert ip_json(daemon.host, "link", "show", "dev", br)  # recreated by reconcile
    assert daemon.kanal("create", "keep", check=False).returncode == 1


def test_no_daemon_is_one_clear_line(tmp_path: Path) -> None:
    p = subprocess.run(
        [str(VENV / "kanal"), "network", "-H", str(tmp_path / "none.sock"), "ls"],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 1 and p.stderr.startswith("kanal: cannot connect to kanald")
    assert len(p.stderr.strip().splitlines()) == 1


def test_connect_named_namespaces_and_survive_kill(
    daemon: Daemon, make_netns: Callable[[str], str]
) -> None:
    daemon.kanal("create", "--subnet", "10.73.0.0/24", "--ip-range", "10.73.0.64/26", "app")
    a, b = make_netns("kca"), make_netns("kcb")
    daemon.kanal("connect", "--ip", "10.73.0.10", "--alias", "db", "app", a)
    daemon.kanal("connect", "app", f"/run/netns/{b}")
    (app,) = json.loads(daemon.kanal("inspect", "app").stdout)
    got = {c["Name"]: c["IPv4Address"] for c in app["Containers"].values()}
    assert got == {a: "10.73.0.10/24", b: "10.73.0.64/24"}
    assert nsexec(a, "ping", "-c", "1", "-W", "2", "10.73.0.64", check=False).returncode == 0
    bad = daemon.kanal("connect", "app", a, check=False)
    assert bad.returncode == 1 and "already exists" in bad.stderr
    assert daemon.kanal("connect", "app", "nosuch", check=False).returncode == 1
    assert "active endpoints" in daemon.kanal("rm", "app", check=False).stderr

    daemon.stop(kill=True)  # -9: no chance to clean up
    daemon.start()
    assert nsexec(a, "ping", "-c", "1", "-W", "2", "10.73.0.64", check=False).returncode == 0
    c = make_netns("kcc")
    daemon.kanal("connect", "app", c)
    (app,) = json.loads(daemon.kanal("inspect", "app").stdout)
    addrs = [x["IPv4Address"] for x in app["Containers"].values()]
    assert len(addrs) == 3 and len(set(addrs)) == 3  # no duplicate after the restart
    for ns in (a, b, c):
        daemon.kanal("disconnect", "app", ns)
    assert not [x for x in ip_json(a, "link") if x["ifname"] == "eth0"]
    daemon.kanal("rm", "app")


def test_events_stream(daemon: Daemon) -> None:
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(str(daemon.api))
    s.sendall(b"GET /events HTTP/1.1\r\nHost: kanald\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    assert buf.startswith(b"HTTP/1.1 200") and b"chunked" in buf.lower()
    daemon.kanal("create", "evnet")
    daemon.kanal("rm", "evnet")
    events: list[dict[str, object]] = []
    while len(events) < 2:
        buf += s.recv(4096)
        body = buf.split(b"\r\n\r\n", 1)[1]
        events = [json.loads(line) for line in body.split(b"\r\n") if line.startswith(b"{")]
    s.close()
    assert [(e["Type"], e["Action"]) for e in events] == [
        ("network", "create"),
        ("network", "destroy"),
    ]
    assert all(e["Actor"]["Attributes"]["name"] == "evnet" for e in events)  # type: ignore[index]
