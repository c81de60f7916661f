"""A private dockerd 20.10 (Debian docker.io) plus kanald, both inside a host namespace.

dockerd gets its own data-root, exec-root, API socket, containerd namespaces and
pid file; it runs in the namespace (``nsenter --net``, so it keeps the machine's
cgroup mounts), so its iptables changes die with the namespace. kanald serves
the Docker plugin as ``/run/docker/plugins/<name>.sock`` — dockerd's discovery
directory is fixed, so the plugin's name is unique per test instead.
Used by tests/e2e/test_dockerd.py and bench/docker_bench.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.helpers import busybox_tar, unique

VENV = Path(__file__).resolve().parents[2] / ".venv" / "bin"
DOCKERD = "/usr/sbin/dockerd"
DOCKER = "/usr/bin/docker"  # Debian's client (a newer one may sit earlier on PATH)
PLUGIN_DIR = Path("/run/docker/plugins")


def available() -> str:
    """Why this cannot run here, or '' when it can."""
    if not (os.path.exists(DOCKERD) and os.path.exists(DOCKER)):
        return "docker.io is not installed (apt-get install docker.io)"
    if not os.path.exists("/bin/busybox"):
        return "busybox-static is not installed"
    return ""


class Dockerd:
    """dockerd + kanald in namespace ``host``; ``self.plugin`` is the driver name."""

    IMAGE = "kbusybox:1"

    def __init__(self, host: str, tmp: Path, *, builtin_bridge: bool = False) -> None:
        self.host = host
        self.tmp = tmp
        self.plugin = unique("kanal", 20)
        # exec-root holds containerd's sockets: keep its path short (108-byte limit).
        self.run_dir = Path("/run") / unique("kdk", 12)
        self.builtin_bridge = builtin_bridge
        self.kanald: subprocess.Popen[bytes] | None = None
        self.dockerd: subprocess.Popen[bytes] | None = None
        self.api = tmp / "kanal-api.sock"

    # --- processes ---------------------------------------------------------------

    def _ns(self, *argv: str) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{self.host}", *argv]

    def start(self) -> None:
        self.run_dir.mkdir(mode=0o700)
        self.start_kanald()
        argv = [
            DOCKERD,
            "--data-root",
            str(self.tmp / "docker-data"),
            "--exec-root",
            str(self.run_dir / "exec"),
            "--pidfile",
            str(self.run_dir / "docker.pid"),
            "--host",
            f"unix://{self.run_dir}/docker.sock",
            "--containerd-namespace",
            self.run_dir.name,
            "--containerd-plugins-namespace",
            self.run_dir.name + "p",
            "--storage-driver",
            "overlay2",
        ]
        if not self.builtin_bridge:
            argv.append("--bridge=none")
        with open(self.tmp / "dockerd.log", "ab") as log:
            self.dockerd = subprocess.Popen(
                self._ns(*argv), stdout=log, stderr=log, start_new_session=True
            )
        for _ in range(600):
            if self.docker("version", check=False).returncode == 0:
                break
            if self.dockerd.poll() is not None:
                raise AssertionError(f"dockerd exited: {self.log('dockerd')[-2000:]}")
            time.sleep(0.05)
        else:
            raise AssertionError("dockerd did not come up")
        self.docker("import", "--change", "ENV PATH=/bin", str(busybox_tar(self.tmp)), self.IMAGE)

    def start_kanald(self) -> None:
        sock = PLUGIN_DIR / f"{self.plugin}.sock"
        sock.unlink(missing_ok=True)
        argv = [
            str(VENV / "kanald"),
            "--socket",
            str(self.tmp / "fp.sock"),
            "--state-dir",
            str(self.tmp / "kanal-state"),
            "--api-socket",
            str(self.api),
            "--default-bridge",
            unique("kd", 15),
            "--default-subnet",
            "10.83.0.0/24",
            "--default-address-pool",
            "base=10.84.0.0/16,size=24",
            "--cni-conf-dir",
            str(self.tmp / "net.d"),
            "--docker-plugin-socket",
            str(sock),
            "--log-level",
            "info",
        ]
        with open(self.tmp / "kanald.log", "ab") as log:
            self.kanald = subprocess.Popen(self._ns(*argv), stderr=log)
        for _ in range(500):
            if sock.exists() and self.api.exists():
                return
            if self.kanald.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"kanald did not come up: {self.log('kanald')[-2000:]}")

    def kill_kanald(self) -> None:
        if self.kanald is not None:
            self.kanald.kill()
            self.kanald.wait(10)
            self.kanald = None

    def stop(self) -> None:
        """Everything removed, even after a failure: containers, networks, daemons."""
        if self.dockerd is not None and self.dockerd.poll() is None:
            ids = self.docker("ps", "-aq", check=False).stdout.split()
            if ids:
                self.docker("rm", "-f", *ids, check=False)
            self.docker("network", "prune", "-f", check=False)
            self.dockerd.send_signal(signal.SIGTERM)
            try:
                self.dockerd.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.dockerd.pid, signal.SIGKILL)
                self.dockerd.wait(10)
        self.kill_kanald()
        # A managed containerd or shim that outlived dockerd.
        subprocess.run(["pkill", "-9", "-f", str(self.run_dir)], check=False)
        data = self.tmp / "docker-data"
        subprocess.run(["umount", "-R", "-l", str(data)], capture_output=True, check=False)
        for d in (self.run_dir, data):
            shutil.rmtree(d, ignore_errors=True)
        (PLUGIN_DIR / f"{self.plugin}.sock").unlink(missing_ok=True)

    def log(self, which: str) -> str:
        p = self.tmp / f"{which}.log"
        return p.read_text(errors="replace") if p.exists() else ""

    # --- commands ----------------------------------------------------------------

    def docker(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(self.tmp)}
        env["DOCKER_HOST"] = f"unix://{self.run_dir}/docker.sock"
        p = subprocess.run(
            [DOCKER, *args], env=env, capture_output=True, text=True, timeout=timeout
        )
        if check and p.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {p.stderr.strip()}")
        return p

    def kanal(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        p = subprocess.run(
            [str(VENV / "kanal"), *args[:1], "-H", str(self.api), *args[1:]],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and p.returncode != 0:
            raise AssertionError(f"kanal {' '.join(args)}: {p.stderr.strip()}")
        return p
