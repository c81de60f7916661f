"""containerd 1.6's CRI runs pod sandboxes on kanal's plugins (through kanald).

containerd, its shims and kanald run inside a host namespace made here, with
every directory (root, state, runc root, sockets, CNI bin/conf) under the test's
tmp dir; the sandbox image is built here from busybox-static and imported
offline. Two pods get addresses, reach each other, and after StopPodSandbox
(DEL with the netns) and RemovePodSandbox (DEL again, with an empty CNI_NETNS)
nothing is left.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from kanal.fastpath.install import install_plugins
from tests.helpers import ip_json, kanal_nft_leftovers, nft_json, unique

VENV = Path(__file__).resolve().parents[2] / ".venv" / "bin"
IMAGE = "kanal.test/pause:1"
CNI_CACHE = Path("/var/lib/cni/results")  # libcni's default, containerd 1.6 keeps it

pytestmark = [
    pytest.mark.runtime,
    pytest.mark.skipif(shutil.which("containerd") is None, reason="containerd is not installed"),
    pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="busybox-static missing"),
]


def build_image(path: Path) -> None:
    """A docker-archive with one layer: /bin/busybox, running ``sleep``."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as t:
        info = tarfile.TarInfo("bin")
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        t.addfile(info)
        t.add("/bin/busybox", arcname="bin/busybox")
    data = layer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(data).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": ["/bin/busybox", "sleep", "100000"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
    ).encode()
    cfg_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps(
        [{"Config": cfg_name, "RepoTags": [IMAGE], "Layers": ["layer/layer.tar"]}]
    ).encode()
    with tarfile.open(path, "w") as t:
        for name, blob in (
            (cfg_name, config),
            ("layer/layer.tar", data),
            ("manifest.json", manifest),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            t.addfile(info, io.BytesIO(blob))


class Containerd:
    def __init__(self, host: str, tmp: Path, chain: list[dict[str, Any]] | None = None) -> None:
        """``chain``: the conflist's plugins (default: bridge, portmap, firewall, tuning)."""
        self.host = host
        self.tmp = tmp
        self.sock = tmp / "containerd.sock"
        self.bindir, self.confdir = tmp / "bin", tmp / "net.d"
        self.confdir.mkdir()
        self.kanald_sock = tmp / "kanald.sock"
        self.bridge = unique("kcd", 15)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.pod_ids: list[str] = []
        install_plugins(str(self.bindir), socket_path=str(self.kanald_sock))
        octet = 100 + os.getpid() % 100
        self.subnet_prefix = f"10.{octet}.9."
        self.ipam_dir, self.tuning_dir = tmp / "ipam", tmp / "tuning"
        conflist = {
            "cniVersion": "1.0.0",
            "name": "kanalcri",
            "plugins": chain
            if chain is not None
            else [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": True,
                    "ipMasq": True,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": f"10.{octet}.9.0/24"}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(tmp / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
                {"type": "firewall"},
                {"type": "tuning", "dataDir": str(tmp / "tuning")},
            ],
        }
        if chain is not None:
            for plugin in chain:
                if "ipam" in plugin:
                    plugin["ipam"]["ranges"] = [[{"subnet": f"10.{octet}.9.0/24"}]]
                    plugin["ipam"]["dataDir"] = str(self.ipam_dir)
                if plugin.get("type") == "bridge":
                    plugin["bridge"] = self.bridge
        (self.confdir / "10-kanal.conflist").write_text(json.dumps(conflist))
        (tmp / "containerd.toml").write_text(
            f"""version = 2
root = "{tmp}/root"
state = "{tmp}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{self.sock}"
[ttrpc]
  address = "{tmp}/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{IMAGE}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{self.bindir}"
    conf_dir = "{self.confdir}"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "{tmp}/runc"
        SystemdCgroup = false
"""
        )

    def spawn(self, name: str, *argv: str) -> None:
        with open(self.tmp / f"{name}.log", "ab") as log:
            self.procs.append(
                subprocess.Popen(
                    ["nsenter", f"--net=/run/netns/{self.host}", *argv],
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                )
            )

    def start(self) -> None:
        self.spawn(
            "kanald",
            str(VENV / "kanald"),
            "--no-engine",
            "--socket",
            str(self.kanald_sock),
            "--log-level",
            "info",
        )
        self.spawn("containerd", "containerd", "--config", str(self.tmp / "containerd.toml"))
        for _ in range(500):
            if self.sock.exists() and self.kanald_sock.exists():
                break
            time.sleep(0.05)
        else:
            raise AssertionError("containerd or kanald did not start")
        image = self.tmp / "image.tar"
        build_image(image)
        subprocess.run(
            ["ctr", "--address", str(self.sock), "-n", "k8s.io", "images", "import",
             "--snapshotter", "native", str(image)],
            check=True,
            capture_output=True,
            timeout=120,
        )  # fmt: skip

    def stop(self) -> None:
        # The shims (one per sandbox) outlive containerd: find them by our socket.
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if str(self.sock).encode() in cmd and b"containerd-shim" in cmd:
                try:
                    os.killpg(int(pid), signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    os.kill(int(pid), signal.SIGKILL)
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(10)
        # Mounts containerd left under its root/state (rootfs, shm), deepest first.
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4] for line in f]
        for mp in sorted((m for m in points if m.startswith(str(self.tmp))), key=len, reverse=True):
            subprocess.run(["umount", "-l", mp], capture_output=True)
        # containerd's libcni caches results in the machine's default dir: drop ours.
        for pod in self.pod_ids:
            for cached in CNI_CACHE.glob(f"kanalcri-{pod}-*"):
                cached.unlink(missing_ok=True)


@contextmanager
def running(
    host_ns: str, tmp_path: Path, chain: list[dict[str, Any]] | None = None
) -> Iterator[tuple[Containerd, Any]]:
    pytest.importorskip("grpc", reason="grpcio (a dev dependency) is not installed")
    from tests.e2e.cri_client import CriClient

    c = Containerd(host_ns, tmp_path, chain)
    try:
        c.start()
        client = CriClient(str(c.sock))
        try:
            yield c, client
        finally:
            client.close()
    finally:
        c.stop()


@pytest.fixture
def cri(host_ns: str, tmp_path: Path) -> Iterator[tuple[Containerd, Any]]:
    with running(host_ns, tmp_path) as got:
        yield got


def test_two_pods_on_kanal_then_double_del_leaves_nothing(cri: tuple[Containerd, Any]) -> None:
    c, client = cri
    pods = []
    for i in range(2):
        pid = client.run_pod_sandbox(
            f"kpod{i}", f"uid-{i}-{os.getpid()}", "kanaltest", str(c.tmp / f"logs{i}")
        )
        c.pod_ids.append(pid)
        state, ip, netns = client.pod_sandbox_status(pid)
        assert state == "SANDBOX_READY" and ip.startswith(c.subnet_prefix), (state, ip)
        assert netns.startswith("/var/run/netns/") or netns.startswith("/run/netns/"), netns
        pods.append((pid, ip, netns))
    assert pods[0][1] != pods[1][1]
    assert all(list(CNI_CACHE.glob(f"kanalcri-{p}-eth0")) for p, _, _ in pods)
    ping = nsexec_path(pods[0][2], "ping", "-c", "1", "-W", "2", pods[1][1])
    assert ping.returncode == 0, ping.stderr
    fw = nft_json(c.host, "list", "set", "inet", "kanal", "fw_ips4") or {}
    assert pods[0][1] in json.dumps(fw)  # the firewall plugin ran in the chain
    log = (c.tmp / "kanald.log").read_text()
    assert "served bridge ADD (exit 0)" in log and "served tuning ADD (exit 0)" in log

    for pid, _, _ in pods:
        client.stop_pod_sandbox(pid)  # DEL with CNI_NETNS set
        client.remove_pod_sandbox(pid)  # DEL again, CNI_NETNS empty
    log = (c.tmp / "kanald.log").read_text()
    assert log.count("served bridge DEL (exit 0)") >= 4  # two DELs per pod, all answered
    nothing_left(c)
    for pid, _, netns in pods:
        assert not os.path.exists(netns)
        assert list(CNI_CACHE.glob(f"kanalcri-{pid}-*")) == []  # libcni's result cache
        tuning = c.tmp / "tuning"
        assert not tuning.exists() or [f for f in tuning.rglob("*") if pid in f.name] == []


def nsexec_path(path: str, *cmd: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["nsenter", f"--net={path}", *cmd], capture_output=True, timeout=30)


def fetch(host: str, url: str) -> str:
    """GET ``url`` from the host namespace ("" when nothing answers)."""
    p = subprocess.run(
        ["nsenter", f"--net=/run/netns/{host}", sys.executable, "-c",
         "import sys, urllib.request\n"
         "try:\n"
         f"    print(urllib.request.urlopen({url!r}, timeout=3).read().decode())\n"
         "except OSError as e:\n"
         "    print('ERR', e, file=sys.stderr)\n"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    return p.stdout


def nothing_left(c: Containerd, port: int | None = None) -> None:
    """No veth on the bridge, no reservation, no firewall or port entry, no backup."""
    ports = ["?"]
    for _ in range(300):  # kanald unregisters veths just after answering
        ports = [x["ifname"] for x in ip_json(c.host, "link", "show", "master", c.bridge)]
        if not ports:
            break
        time.sleep(0.1)
    assert ports == []
    ipam = c.ipam_dir / "kanalcri"
    assert not ipam.exists() or [p.name for p in ipam.iterdir() if p.name[0].isdigit()] == []
    needles = [c.subnet_prefix] + ([] if port is None else [str(port)])
    assert kanal_nft_leftovers(c.host, needles) == []
    assert not c.tuning_dir.exists() or list(c.tuning_dir.iterdir()) == []


def test_pod_port_mapping_answers_on_its_host_ip(
    cri: tuple[Containerd, Any], tmp_path: Path
) -> None:
    """Kubernetes hostPort on containerd: go-cni sends {"HostPort": …, "ContainerPort": …}."""
    c, client = cri
    port = 20000 + os.getpid() % 10000
    pid = client.run_pod_sandbox(
        "kweb", f"uid-web-{os.getpid()}", "kanaltest", str(c.tmp / "logsw"),
        port_mappings=[(80, port, "127.0.0.1")],
    )  # fmt: skip
    c.pod_ids.append(pid)
    state, ip, netns = client.pod_sandbox_status(pid)
    assert state == "SANDBOX_READY" and ip.startswith(c.subnet_prefix), (state, ip)
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("hello from the pod\n")
    server = subprocess.Popen(
        ["nsenter", f"--net={netns}", sys.executable, "-m", "http.server", "80",
         "--bind", "0.0.0.0", "--directory", str(www)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        page = ""
        for _ in range(50):  # the server needs a moment to listen
            page = fetch(c.host, f"http://127.0.0.1:{port}/")
            if "hello" in page:
                break
            time.sleep(0.1)
        assert "hello from the pod" in page
        # Only on its host IP: the mapping is not on the host's other addresses.
        nsexec_path(f"/run/netns/{c.host}", "ip", "addr", "add", "192.0.2.77/32", "dev", "lo")
        assert fetch(c.host, f"http://192.0.2.77:{port}/") == ""
    finally:
        server.kill()
        server.wait(10)
    log = (c.tmp / "kanald.log").read_text()
    assert "served portmap ADD (exit 0)" in log
    client.stop_pod_sandbox(pid)
    client.remove_pod_sandbox(pid)
    nothing_left(c, port)


FAILING_CHAINS: dict[str, list[dict[str, Any]]] = {
    # The chain's last plugin fails (a sysctl the kernel does not have), after
    # bridge, portmap and firewall have done their part.
    "last-plugin-fails": [
        {"type": "bridge", "isGateway": True, "ipMasq": True, "ipam": {"type": "host-local"}},
        {"type": "portmap", "capabilities": {"portMappings": True}},
        {"type": "firewall"},
        {"type": "tuning", "sysctl": {"net.ipv4.conf.IFNAME.kanal_no_such_key": "1"}},
    ],
    # portmap itself refuses its config (iptables matches without the iptables
    # backend): its DEL, run first, must still let the chain's DEL reach bridge.
    "portmap-refuses-its-config": [
        {"type": "bridge", "isGateway": True, "ipam": {"type": "host-local"}},
        {"type": "firewall"},
        {
            "type": "portmap",
            "capabilities": {"portMappings": True},
            "conditionsV4": ["-s", "10.0.0.0/8"],
        },
    ],
}


@pytest.mark.parametrize("chain", sorted(FAILING_CHAINS))
def test_failed_add_leaves_nothing(host_ns: str, tmp_path: Path, chain: str) -> None:
    with running(host_ns, tmp_path, copy.deepcopy(FAILING_CHAINS[chain])) as (c, client):
        port = 20000 + os.getpid() % 10000
        with pytest.raises(Exception, match="failed") as ei:
            client.run_pod_sandbox(
                "kfail", f"uid-fail-{os.getpid()}", "kanaltest", str(c.tmp / "logsf"),
                port_mappings=[(80, port, "127.0.0.1")],
            )  # fmt: skip
        assert "plugin type=" in str(ei.value)
        log = (c.tmp / "kanald.log").read_text()
        # containerd tore the chain down, every DEL answered with success
        for plugin in FAILING_CHAINS[chain]:
            assert f"served {plugin['type']} DEL (exit 0)" in log, plugin["type"]
        assert "DEL (exit 1)" not in log
        nothing_left(c, port)
        assert client.list_pod_sandboxes() == []
