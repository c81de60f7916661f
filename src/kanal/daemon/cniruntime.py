"""The CNI runtime the daemon hands its engine: kanal's plugins run in-process."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from kanal.fastpath.install import install_plugins
from kanal.runtime.inprocess import InProcessExec
from kanal.runtime.libcni import CNIConfig

if TYPE_CHECKING:
    from kanal.engine.context import EngineContext

__all__ = ["inprocess_cni"]


def inprocess_cni(ctx: EngineContext) -> CNIConfig:
    """A libcni runtime over ``ctx.bin_dir`` (kanal's plugins, installed there now)
    and then ``ctx.cni_paths``, running kanal's plugins in this process."""
    # The executables installed here run in this process (and so does IPAM
    # delegation from them): InProcessExec is told which they are. The socket
    # they name is never used by the engine.
    installed = install_plugins(ctx.bin_dir, socket_path=os.path.join(ctx.state_dir, "unused.sock"))
    return CNIConfig(
        [ctx.bin_dir, *ctx.cni_paths],
        cache_dir=ctx.cache_dir,
        exec=InProcessExec({path: os.path.basename(path) for path in installed}),
        base_env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")},
        # The store is the engine's record; a lost cache entry only means a
        # rejoin at reconcile. Saves two fsyncs (~1.5 ms) per connect.
        durable_cache=False,
    )
