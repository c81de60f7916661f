"""What the engine's parts share: paths, and the runtimes they are handed.

The engine does not build its outside collaborators itself: the CNI runtime
(kanal's plugins run in this process) and the registry of remote Docker plugins
are made by whoever starts the engine (the daemon, a test) and injected here, so
the engine imports neither the Docker plugin server nor the fast path.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from kanal.engine.remoteplugins import PluginRegistry

if TYPE_CHECKING:
    from kanal.runtime.libcni import CNIConfig

__all__ = ["EngineContext"]


@dataclass
class EngineContext:
    """Every path the engine uses, under one configurable state directory.

    ``cni_paths``: where CNI plugins are looked up for ``cni`` networks, after
    kanal's own (installed under ``state_dir/bin`` at start).
    """

    state_dir: str
    cni_paths: list[str] = field(default_factory=lambda: ["/opt/cni/bin", "/usr/lib/cni"])
    cni_conf_dir: str = "/etc/cni/net.d"
    #: builds the libcni runtime that runs kanal's plugins in this process (the
    #: daemon's :func:`kanal.daemon.cniruntime.inprocess_cni`); called once, on first use
    cni_runtime: Callable[[EngineContext], CNIConfig] | None = None
    #: remote Docker plugins (network and IPAM drivers), activated on first use;
    #: default: discovered in dockerd's directories
    plugins: PluginRegistry = field(default_factory=PluginRegistry)
    #: this host's cluster membership (kanal.engine.cluster.Cluster), if any
    cluster: Any = None
    #: host sysctls changed for networks (kanal.engine.sysctls.SysctlLedger); set by
    #: the controller, None: written without a record (nothing restored)
    sysctls: Any = None
    #: told of each timed engine operation (kanal.engine.observe.timed):
    #: (operation, seconds, ok); None: nobody listens
    on_operation: Callable[[str, float, bool], None] | None = None
    #: told of each CNI plugin exec the engine runs in this process:
    #: (plugin, command, seconds, CNI error code or 0); None: nobody listens
    on_cni_exec: Callable[[str, str, float, int], None] | None = None
    #: the same for plugins the engine starts as processes (not kanal's own)
    on_cni_child_exec: Callable[[str, str, float, int], None] | None = None

    @property
    def bin_dir(self) -> str:
        return os.path.join(self.state_dir, "bin")

    @property
    def cache_dir(self) -> str:
        return os.path.join(self.state_dir, "cni-cache")

    @cached_property
    def cni(self) -> CNIConfig:
        """The libcni runtime that runs kanal's plugins in this process.

        Raises:
            RuntimeError: no ``cni_runtime`` was injected (a wiring bug: falling back
            to whatever plugins are on the search path would run other code).
        """
        if self.cni_runtime is None:
            raise RuntimeError("EngineContext: no cni_runtime injected")
        return self.cni_runtime(self)
