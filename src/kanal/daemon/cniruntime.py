"""The CNI runtime the daemon hands its engine: kanal's plugins run in-process."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from kanal.errors import KanalError
from kanal.fastpath.install import install_plugins
from kanal.runtime.inprocess import InProcessExec
from kanal.runtime.libcni import CNIConfig

if TYPE_CHECKING:
    from kanal.engine.context import EngineContext

__all__ = ["ObservedExec", "inprocess_cni"]

#: (plugin, CNI_COMMAND, seconds, CNI error code or 0)
ExecObserver = Callable[[str, str, float, int], None]


class ObservedExec(InProcessExec):
    """InProcessExec that tells ``observe`` of each plugin it runs in this process
    and ``observe_child`` of each it starts as a process (IPAM delegation inside a
    plugin is part of that plugin's exec, not counted apart)."""

    def __init__(
        self,
        plugins: Mapping[str, str],
        observe: ExecObserver | None,
        observe_child: ExecObserver | None = None,
    ) -> None:
        super().__init__(plugins)
        self.observe = observe
        self.observe_child = observe_child

    def exec_plugin(
        self, path: str, stdin: bytes, env: Mapping[str, str], *, cwd: str | None = None
    ) -> bytes:
        name = self.plugins.get(path)
        fn = self.observe if name is not None else self.observe_child
        if fn is None:
            return super().exec_plugin(path, stdin, env, cwd=cwd)
        t0, code = time.perf_counter(), 0
        try:
            return super().exec_plugin(path, stdin, env, cwd=cwd)
        except KanalError as e:
            code = e.code
            raise
        except Exception:
            code = 999
            raise
        finally:
            fn(
                name or os.path.basename(path),
                env.get("CNI_COMMAND", ""),
                time.perf_counter() - t0,
                code,
            )


def inprocess_cni(ctx: EngineContext) -> CNIConfig:
    """A libcni runtime over ``ctx.bin_dir`` (kanal's plugins, installed there now)
    and then ``ctx.cni_paths``, running kanal's plugins in this process; each exec
    is reported to ``ctx.on_cni_exec`` / ``ctx.on_cni_child_exec`` when set."""
    # The executables installed here run in this process (and so does IPAM
    # delegation from them): InProcessExec is told which they are. The socket
    # they name is never used by the engine.
    installed = install_plugins(ctx.bin_dir, socket_path=os.path.join(ctx.state_dir, "unused.sock"))
    return CNIConfig(
        [ctx.bin_dir, *ctx.cni_paths],
        cache_dir=ctx.cache_dir,
        exec=ObservedExec(
            {path: os.path.basename(path) for path in installed},
            ctx.on_cni_exec,
            ctx.on_cni_child_exec,
        ),
        base_env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")},
        # The store is the engine's record; a lost cache entry only means a
        # rejoin at reconcile. Saves two fsyncs (~1.5 ms) per connect.
        durable_cache=False,
    )
