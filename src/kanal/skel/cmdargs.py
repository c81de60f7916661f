"""What a CNI plugin's command functions receive and return (the plugin contract).

A plugin module defines ``cmd_add/cmd_del/cmd_check`` (and optionally
``cmd_status``/``cmd_gc``) taking a :class:`CmdArgs` and exposes them as a
:class:`PluginFuncs`. The dispatcher validates the environment and stdin before
calling them, renders a returned result at the config's ``cniVersion`` and maps
any :class:`kanal.errors.KanalError` to the CNI error object.
"""

from __future__ import annotations

import os

from kanal._dataclass import dataclass, field

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any, Protocol

    from kanal.spec.types import Result

    class PluginRunner(Protocol):
        def run(
            self, path: str, stdin: bytes, env: Mapping[str, str], cwd: str | None
        ) -> bytes: ...

    AddFunc = Callable[["CmdArgs"], Result]
    VoidFunc = Callable[["CmdArgs"], None]

__all__ = ["CmdArgs", "PluginFuncs"]


@dataclass(frozen=True)
class CmdArgs:
    """One plugin invocation.

    ``conf`` is stdin parsed as a JSON object (a :class:`kanal.spec.gojson.GoObject`:
    read it through a gojson spec, which applies Go's decoding rules; the dispatcher
    has already checked ``cniVersion`` against the plugin's supported versions).
    ``netns`` may be "" on DEL; it is the path as the runtime gave it (results name
    it so), :attr:`netns_path` is where to open it. ``env`` is the whole environment
    of the invocation, passed on unchanged when delegating to an IPAM plugin.
    ``cwd`` is the runtime's working directory: relative paths in the environment
    and the config are the runtime's, in kanald as in a plugin process.
    ``runner`` runs the plugins this one delegates to (see :mod:`kanal.skel.delegate`;
    None: delegating is an error). ``process_exits``: this process ends right after
    it answers (a plugin process, not kanald), so kernel work the answer need not
    wait for may be left to a detached child (see :mod:`kanal.netlink.reaper`).
    """

    command: str
    container_id: str
    netns: str
    ifname: str
    args: str
    path: tuple[str, ...]
    stdin_data: bytes
    conf: Mapping[str, Any]
    cni_version: str
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str = "/"
    runner: PluginRunner | None = None
    process_exits: bool = False

    def abspath(self, path: str) -> str:
        """``path`` resolved against the runtime's working directory ("" stays "")."""
        if not path or path.startswith("/"):
            return path
        return os.path.join(self.cwd, path)

    @property
    def netns_path(self) -> str:
        """CNI_NETNS resolved against the runtime's working directory."""
        return self.abspath(self.netns)


@dataclass(frozen=True)
class PluginFuncs:
    """The commands one plugin implements.

    ``status`` and ``gc`` default to None: the dispatcher then answers STATUS with
    success and GC with success (nothing held), as the spec allows.
    """

    about: str
    versions: tuple[str, ...]
    add: AddFunc
    delete: VoidFunc
    check: VoidFunc
    status: VoidFunc | None = None
    gc: VoidFunc | None = None
