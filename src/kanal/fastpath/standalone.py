"""A plugin run in its own process (no daemon): the shim's fallback."""

from __future__ import annotations


def main(name: str) -> None:
    from kanal.plugins.registry import load_plugin
    from kanal.skel.dispatcher import plugin_main

    plugin_main(load_plugin(name))
