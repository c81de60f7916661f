"""What a CNI plugin's command functions receive and return (the plugin contract).

A plugin module defines ``cmd_add/cmd_del/cmd_check`` (and optionally
``cmd_status``/``cmd_gc``) taking a :class:`CmdArgs` and exposes them as a
:class:`PluginFuncs`. The dispatcher validates the environment and stdin before
calling them, renders a returned result at the config's ``cniVersion`` and maps
any :class:`kanal.errors.KanalError` to the CNI error object.
"""

from __future__ import annotations

from kanal._dataclass import dataclass, field

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    from kanal.spec.types import Result

    AddFunc = Callable[["CmdArgs"], Result]
    VoidFunc = Callable[["CmdArgs"], None]

__all__ = ["CmdArgs", "PluginFuncs"]


@dataclass(frozen=True)
class CmdArgs:
    """One plugin invocation.

    ``conf`` is stdin parsed as a JSON object (the dispatcher has already checked
    ``cniVersion`` against the plugin's supported versions). ``netns`` may be ""
    on DEL. ``env`` is the whole environment of the invocation, passed on
    unchanged when delegating to an IPAM plugin.
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

    def cni_args(self) -> dict[str, str]:
        """CNI_ARGS as a dict (``K=V;K2=V2``); later keys win, malformed pairs ignored."""
        out: dict[str, str] = {}
        for pair in self.args.split(";"):
            key, sep, value = pair.partition("=")
            if sep and key:
                out[key] = value
        return out


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
