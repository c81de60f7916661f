"""Running kanal's own plugins inside the calling process.

The engine inside ``kanald`` executes configuration lists through the libcni
runtime like any runtime would; when a plugin found on the search path is one of
the executables it installed, starting a process for it would only hand the
request back to this same daemon. :class:`InProcessExec` runs those through the
dispatcher directly (same stdin, env and stdout bytes as the exec), and anything
else (a third-party plugin in a CNI network) as a child process. Which
executables are kanal's is an explicit registry the engine gives, not something
read from the files.
"""

from __future__ import annotations

from collections.abc import Mapping

from kanal.plugins.registry import load_plugin
from kanal.runtime.invoke import SubprocessExec
from kanal.skel.delegate import InProcessRunner

__all__ = ["InProcessExec"]


class InProcessExec(SubprocessExec):
    """``plugins`` maps the path of each executable to run in-process to the kanal
    plugin it stands for; IPAM delegation from those plugins goes the same way."""

    def __init__(self, plugins: Mapping[str, str]) -> None:
        super().__init__()
        self.plugins = dict(plugins)
        self._runner = InProcessRunner(self.plugins.get, load_plugin, self._exec_child)

    def exec_plugin(
        self, path: str, stdin: bytes, env: Mapping[str, str], *, cwd: str | None = None
    ) -> bytes:
        return self._runner.run(path, stdin, env, cwd)

    def _exec_child(
        self, path: str, stdin: bytes, env: Mapping[str, str], cwd: str | None
    ) -> bytes:
        return super().exec_plugin(path, stdin, env, cwd=cwd)
