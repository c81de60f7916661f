"""A private kanald for e2e tests: in a host namespace made by the test, with its
state, sockets and sandbox namespaces under the test's own directory (so
``kanal system check`` sees this daemon's objects only)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.e2e.test_cli_network import VENV
from tests.e2e.test_cli_run import RunDaemon

__all__ = ["PrivateNetnsDaemon", "private_daemon"]


class PrivateNetnsDaemon(RunDaemon):
    """kanald with its sandboxes' namespaces in a directory of its own."""

    def __init__(self, host: str, tmp: Path) -> None:
        super().__init__(host, tmp)
        self.netns_dir = tmp / "netns"

    def cli(self, *args: str) -> list[str]:
        """The kanal command line for ``args`` (``network ...``, ``run ...``) on this daemon."""
        return [str(VENV / "kanal"), args[0], "-H", str(self.api), *args[1:]]

    def check(self) -> list[str]:
        """``kanal system check``'s findings ([] when it exits 0)."""
        p = self.k("system", "check", check=False)
        return [] if p.returncode == 0 else [*p.stdout.splitlines(), p.stderr]

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """One call to the daemon's REST API (its decoded answer)."""
        from kanal.daemon.client import ApiClient

        return ApiClient(str(self.api)).request(method, path, body)

    def names(self) -> set[str]:
        return {line.split()[1] for line in self.k("ps", "-a").stdout.splitlines()[1:]}


def private_daemon(host_ns: str, tmp_path: Path, *extra: str) -> Iterator[PrivateNetnsDaemon]:
    """Start one; at the end remove its sandboxes, stop it, unmount what is left."""
    d = PrivateNetnsDaemon(host_ns, tmp_path)
    d.extra = extra
    d.start()
    try:
        yield d
    finally:
        if d.proc is None:
            d.start()
        for sid in d.k("ps", "-a", "-q", check=False).stdout.split():
            d.k("rm", "-f", sid, check=False)
        d.stop(kill=True)
        netns = tmp_path / "netns"
        for f in netns.iterdir() if netns.exists() else ():
            subprocess.run(["umount", str(f)], capture_output=True)
