"""Network drivers: what turns a Network and its Endpoints into kernel objects.

Every driver implements :class:`NetworkDriver`; the controller owns the state
(store, IPAM, ports) and calls the driver only for kernel work, so a driver
holds nothing that a restart could lose. :func:`get_driver` is the factory the
daemon hands the controller (tests hand it a fake); the ``null`` driver
(docker's ``none``) is the null implementation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from kanal.errors import InvalidConfig

if TYPE_CHECKING:
    from kanal.engine.context import EngineContext
    from kanal.engine.model import Endpoint, Network

__all__ = ["DRIVERS", "DriverFactory", "NetworkDriver", "get_driver"]


class NetworkDriver(Protocol):
    """The kernel side of one kind of network.

    All methods run in the host's network namespace (the daemon's). ``join`` and
    ``leave`` may run concurrently for different endpoints.
    """

    name: str
    #: the controller allocates addresses from the network's subnets for endpoints
    needs_ipam: bool
    #: endpoints get their own interface in the sandbox (False: host, none)
    has_interface: bool

    def prepare(self, net: Network) -> None:
        """Validate ``net.options`` and fill ``net.driver_state``; no kernel change.

        Raises:
            InvalidConfig: an unknown or malformed option.
        """
        ...

    def reserve(self, net: Network) -> None:
        """Take what the network holds outside this host (a cluster-wide VNI), into
        ``net.driver_state``; undone by :meth:`delete_network`. Most drivers: nothing."""
        ...

    def create_network(self, net: Network) -> None:
        """Create (or re-create after a crash) the network's kernel objects; idempotent.

        Objects it creates carry the network's mark (a link alias, an OVS
        external id); an object of that name that exists without the mark is
        someone else's and is only added to, never taken over."""
        ...

    def delete_network(self, net: Network) -> None:
        """Remove what the network made (what carries its mark, and what it added
        to objects that are not its own); idempotent, best-effort. Also the undo of
        a create that failed or was interrupted at any step."""
        ...

    def idle(self, net: Network) -> None:
        """The network's last endpoint on this host left: drop what only endpoints
        needed (shared per-network firewall entries). Best-effort."""
        ...

    def join(self, net: Network, ep: Endpoint) -> None:
        """Give the sandbox at ``ep.netns`` its interface ``ep.ifname`` with ``ep``'s
        addresses and published ports; fills ``ep.mac`` and ``ep.driver_state``.

        Undoes its own partial work before raising.
        """
        ...

    def leave(self, net: Network, ep: Endpoint) -> None:
        """Undo ``join``; idempotent, works when the sandbox's netns is gone."""
        ...

    def endpoint_ok(self, net: Network, ep: Endpoint) -> bool:
        """Whether the kernel still has what ``join`` made (for reconciliation)."""
        ...


#: what the controller is given to make the driver of a name (:func:`get_driver`)
DriverFactory = Callable[[str, "EngineContext"], NetworkDriver]


def _drivers() -> dict[str, type]:
    # lazy: each driver pulls in its kernel layers; only the ones in use are loaded
    from kanal.engine.drivers.bridge import BridgeDriver
    from kanal.engine.drivers.cni import CniDriver
    from kanal.engine.drivers.macvlan import MacvlanDriver
    from kanal.engine.drivers.overlay import OverlayDriver
    from kanal.engine.drivers.ovs import OvsDriver
    from kanal.engine.drivers.simple import HostDriver, NullDriver

    return {
        "bridge": BridgeDriver,
        "cni": CniDriver,
        "host": HostDriver,
        "macvlan": MacvlanDriver,
        "null": NullDriver,
        "overlay": OverlayDriver,
        "ovs": OvsDriver,
    }


DRIVERS = ("bridge", "cni", "host", "macvlan", "null", "overlay", "ovs")


def get_driver(name: str, ctx: EngineContext) -> NetworkDriver:
    """The driver called ``name`` (docker's names; ``none`` is ``null``).

    Raises:
        InvalidConfig: no such driver.
    """
    name = "null" if name == "none" else name
    cls = _drivers().get(name)
    if cls is None:
        # Not built in: a remote Docker plugin of that name, found as dockerd finds it.
        if ctx.plugins.available(name):
            from kanal.engine.drivers.remote import RemoteNetworkDriver  # lazy: as above

            return RemoteNetworkDriver(name, ctx)
        raise InvalidConfig(f"plugin {name!r} not found: unknown network driver")
    driver: NetworkDriver = cls(ctx)
    return driver
