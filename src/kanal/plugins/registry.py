"""Which CNI plugin names kanal provides, and where their code lives."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from kanal.errors import NotFound

if TYPE_CHECKING:
    from kanal.skel.cmdargs import PluginFuncs

__all__ = ["PLUGINS", "load_plugin"]

# CNI type name -> module defining ``PLUGIN: PluginFuncs`` and ``main()``.
PLUGINS: dict[str, str] = {
    "bridge": "kanal.plugins.bridge",
    "host-local": "kanal.plugins.host_local",
    "loopback": "kanal.plugins.loopback",
    "ptp": "kanal.plugins.ptp",
    "static": "kanal.plugins.static",
}


def load_plugin(name: str) -> PluginFuncs:
    module = PLUGINS.get(name)
    if module is None:
        raise NotFound(f"kanal has no plugin named {name!r}")
    funcs: PluginFuncs = importlib.import_module(module).PLUGIN
    return funcs
