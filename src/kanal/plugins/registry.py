"""Which CNI plugin names kanal provides, and where their code lives.

Every public module in ``kanal.plugins`` is a plugin: ``host_local.py`` serves the
CNI type ``host-local``. A plugin module defines ``PLUGIN: PluginFuncs`` and
``main()``. Private helpers start with ``_``.
"""

from __future__ import annotations

import os
import sys

from kanal.errors import NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from kanal.skel.cmdargs import PluginFuncs

__all__ = ["PLUGINS", "load_plugin"]

_NOT_PLUGINS = {"registry"}


def _discover() -> dict[str, str]:
    here = os.path.dirname(os.path.abspath(__file__))
    found = {}
    for entry in sorted(os.listdir(here)):
        mod, ext = os.path.splitext(entry)
        if ext == ".py" and not mod.startswith("_") and mod not in _NOT_PLUGINS:
            found[mod.replace("_", "-")] = f"kanal.plugins.{mod}"
    return found


# CNI type name -> module defining ``PLUGIN: PluginFuncs`` and ``main()``.
PLUGINS: dict[str, str] = _discover()


def load_plugin(name: str) -> PluginFuncs:
    module = PLUGINS.get(name)
    if module is None:
        raise NotFound(f"kanal has no plugin named {name!r}")
    __import__(module)  # importlib's own import costs more than the plugin lookup
    funcs: PluginFuncs = sys.modules[module].PLUGIN
    return funcs
