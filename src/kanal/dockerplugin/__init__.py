"""kanal and the Docker plugin protocol (libnetwork's remote network and IPAM drivers).

Served side (dockerd uses kanal): :mod:`.protocol` (one dispatcher, wire errors),
:mod:`.messages` (typed requests), :mod:`.netdriver` and :mod:`.ipamdriver` (the
handlers, on the engine's controller), :mod:`.server` (HTTP on a unix socket).
The consumer side (kanal uses third-party plugins) is the engine's:
:mod:`kanal.engine.remoteplugins` (discovery and the HTTP client),
:mod:`kanal.engine.drivers.remote` and :mod:`kanal.engine.remoteipam`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kanal.dockerplugin.ipamdriver import ServedIpamDriver
from kanal.dockerplugin.netdriver import ServedNetworkDriver
from kanal.dockerplugin.protocol import Dispatcher
from kanal.dockerplugin.server import PluginServer

if TYPE_CHECKING:
    from kanal.engine.controller import Controller

__all__ = ["serve"]


def serve(controller: Controller, path: str, *, mode: int = 0o600) -> PluginServer:
    """A started-to-be server answering as NetworkDriver + IpamDriver on ``path``."""
    dispatcher = Dispatcher(ServedNetworkDriver(controller), ServedIpamDriver(controller))
    return PluginServer(path, dispatcher, mode=mode)
