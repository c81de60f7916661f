"""What the engine's parts share: paths and the CNI runtime they run plugins with."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kanal.dockerplugin.remote import PluginRegistry
    from kanal.runtime.libcni import CNIConfig


@dataclass
class EngineContext:
    """Every path the engine uses, under one configurable state directory.

    ``cni_paths``: where CNI plugins are looked up for ``cni`` networks, after
    kanal's own (installed under ``state_dir/bin`` at start).
    """

    state_dir: str
    cni_paths: list[str] = field(default_factory=lambda: ["/opt/cni/bin", "/usr/lib/cni"])
    cni_conf_dir: str = "/etc/cni/net.d"
    #: where remote Docker plugins are discovered (None: dockerd's directories)
    plugin_dirs: list[str] | None = None
    #: the socket this daemon serves the Docker plugin on: never used as a remote
    #: plugin (calling ourselves through the controller's lock would deadlock)
    own_plugin_socket: str = ""
    #: this host's cluster membership (kanal.engine.cluster.Cluster), if any
    cluster: Any = None
    #: host sysctls changed for networks (kanal.engine.sysctls.SysctlLedger); set by
    #: the controller, None: written without a record (nothing restored)
    sysctls: Any = None

    @property
    def bin_dir(self) -> str:
        return os.path.join(self.state_dir, "bin")

    @property
    def cache_dir(self) -> str:
        return os.path.join(self.state_dir, "cni-cache")

    @cached_property
    def cni(self) -> CNIConfig:
        """A libcni runtime that runs kanal's plugins in this process."""
        from kanal.fastpath.install import install_plugins
        from kanal.runtime.inprocess import InProcessExec
        from kanal.runtime.libcni import CNIConfig

        # The executables installed here run in this process (and so does IPAM
        # delegation from them): InProcessExec is told which they are. The socket
        # they name is never used by the engine.
        installed = install_plugins(
            self.bin_dir, socket_path=os.path.join(self.state_dir, "unused.sock")
        )
        return CNIConfig(
            [self.bin_dir, *self.cni_paths],
            cache_dir=self.cache_dir,
            exec=InProcessExec({path: os.path.basename(path) for path in installed}),
            base_env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")},
            # The store is the engine's record; a lost cache entry only means a
            # rejoin at reconcile. Saves two fsyncs (~1.5 ms) per connect.
            durable_cache=False,
        )

    @cached_property
    def plugins(self) -> PluginRegistry:
        """Remote Docker plugins (network and IPAM drivers), activated on first use."""
        from kanal.dockerplugin.remote import PluginRegistry

        return PluginRegistry(self.plugin_dirs, exclude=self.own_plugin_socket)
