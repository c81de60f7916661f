"""The ``host`` and ``null`` drivers: no interface of their own.

A sandbox on ``host`` uses the host's namespace; one on ``none`` (driver
``null``) has only its loopback. Neither allocates addresses nor touches the
kernel; they exist so that the built-in networks behave like docker's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kanal.errors import InvalidConfig

if TYPE_CHECKING:
    from kanal.engine.context import EngineContext
    from kanal.engine.model import Endpoint, Network


class _NoInterface:
    name = ""
    needs_ipam = False
    has_interface = False

    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx

    def prepare(self, net: Network) -> None:
        if not net.builtin:
            raise InvalidConfig(
                f"only one instance of {self.name!r} network is allowed"
                if self.name == "host"
                else f"only one instance of {net.driver!r} network is allowed"
            )
        if net.options:
            raise InvalidConfig(f"the {self.name} driver takes no options")

    def reserve(self, net: Network) -> None:
        pass

    def idle(self, net: Network) -> None:
        pass

    def create_network(self, net: Network) -> None:
        pass

    def delete_network(self, net: Network) -> None:
        pass

    def join(self, net: Network, ep: Endpoint) -> None:
        pass

    def leave(self, net: Network, ep: Endpoint) -> None:
        pass

    def endpoint_ok(self, net: Network, ep: Endpoint) -> bool:
        return True


class HostDriver(_NoInterface):
    name = "host"


class NullDriver(_NoInterface):
    name = "null"
