"""The Docker plugin protocol's one dispatcher: ``POST /<Iface>.<Method>`` → a handler.

:class:`Dispatcher` knows the wire (docs/cnm.md, "Transport and errors") and nothing of networks:
it parses the body (0 bytes is an empty object, as dockerd sends for
Activate/GetCapabilities), builds the typed message, calls the handler, and maps
kanal errors to docker's error bodies at this single boundary:

- NetworkDriver: failure → HTTP 500 ``{"Err": msg}`` (dockerd reads ``Err`` from
  any non-200 reply); malformed request → 400 ``{"Err": msg}``.
- IpamDriver: failure → HTTP 200 ``{"Error": msg}`` (libnetwork's remote IPAM
  reads ``Error`` from the reply object); malformed request → 400 with both keys.
- A method the handlers do not implement → 404, which dockerd takes as "not
  implemented" (tolerated for the external-connectivity calls).

Handlers are the :class:`NetworkHandlers` / :class:`IpamHandlers` Protocols;
either may be absent and ``Plugin.Activate`` lists what is present.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from kanal import validate
from kanal.dockerplugin import messages as m
from kanal.errors import DecodeError, KanalError

__all__ = ["CONTENT_TYPE", "Dispatcher", "IpamHandlers", "NetworkHandlers"]

log = logging.getLogger("kanal.dockerplugin")
CONTENT_TYPE = "application/vnd.docker.plugins.v1.2+json"
Reply = dict[str, Any]


class NetworkHandlers(Protocol):
    """A libnetwork remote NetworkDriver (replies are the wire's JSON objects)."""

    def get_capabilities(self) -> Reply: ...
    def create_network(self, req: m.CreateNetwork) -> Reply: ...
    def delete_network(self, req: m.NetworkRef) -> Reply: ...
    def create_endpoint(self, req: m.CreateEndpoint) -> Reply: ...
    def endpoint_oper_info(self, req: m.EndpointRef) -> Reply: ...
    def delete_endpoint(self, req: m.EndpointRef) -> Reply: ...
    def join(self, req: m.Join) -> Reply: ...
    def leave(self, req: m.EndpointRef) -> Reply: ...
    def program_external_connectivity(self, req: m.ProgramExternalConnectivity) -> Reply: ...
    def revoke_external_connectivity(self, req: m.EndpointRef) -> Reply: ...


class IpamHandlers(Protocol):
    """A libnetwork remote IpamDriver."""

    def get_capabilities(self) -> Reply: ...
    def get_default_address_spaces(self) -> Reply: ...
    def request_pool(self, req: m.RequestPool) -> Reply: ...
    def release_pool(self, req: m.ReleasePool) -> Reply: ...
    def request_address(self, req: m.RequestAddress) -> Reply: ...
    def release_address(self, req: m.ReleaseAddress) -> Reply: ...


# wire method → (handler attribute, request parser or None for no argument)
NETWORK_METHODS: dict[str, tuple[str, Callable[[Any], Any] | None]] = {
    "GetCapabilities": ("get_capabilities", None),
    "CreateNetwork": ("create_network", m.CreateNetwork.parse),
    "DeleteNetwork": ("delete_network", m.NetworkRef.parse),
    "CreateEndpoint": ("create_endpoint", m.CreateEndpoint.parse),
    "EndpointOperInfo": ("endpoint_oper_info", m.EndpointRef.parse),
    "DeleteEndpoint": ("delete_endpoint", m.EndpointRef.parse),
    "Join": ("join", m.Join.parse),
    "Leave": ("leave", m.EndpointRef.parse),
    "ProgramExternalConnectivity": (
        "program_external_connectivity",
        m.ProgramExternalConnectivity.parse,
    ),
    "RevokeExternalConnectivity": ("revoke_external_connectivity", m.EndpointRef.parse),
    # Node discovery (swarm-era): nothing to do for a local-scope driver.
    "DiscoverNew": ("", None),
    "DiscoverDelete": ("", None),
}
IPAM_METHODS: dict[str, tuple[str, Callable[[Any], Any] | None]] = {
    "GetCapabilities": ("get_capabilities", None),
    "GetDefaultAddressSpaces": ("get_default_address_spaces", None),
    "RequestPool": ("request_pool", m.RequestPool.parse),
    "ReleasePool": ("release_pool", m.ReleasePool.parse),
    "RequestAddress": ("request_address", m.RequestAddress.parse),
    "ReleaseAddress": ("release_address", m.ReleaseAddress.parse),
}


class Dispatcher:
    """Routes one request; thread-safe as long as the handlers are."""

    def __init__(
        self, network: NetworkHandlers | None = None, ipam: IpamHandlers | None = None
    ) -> None:
        self.network = network
        self.ipam = ipam

    def implements(self) -> list[str]:
        out = []
        if self.network is not None:
            out.append("NetworkDriver")
        if self.ipam is not None:
            out.append("IpamDriver")
        return out

    def handle(self, path: str, raw: bytes) -> tuple[int, Reply]:
        """(HTTP status, JSON reply) for ``POST path`` with body ``raw``."""
        name = path.strip("/")
        if name == "Plugin.Activate":
            return 200, {"Implements": self.implements()}
        iface, _, method = name.partition(".")
        if iface == "NetworkDriver" and self.network is not None:
            return self._call(self.network, NETWORK_METHODS, method, raw, "Err", 500)
        if iface == "IpamDriver" and self.ipam is not None:
            return self._call(self.ipam, IPAM_METHODS, method, raw, "Error", 200)
        return 404, {"Err": f"{name}: not implemented"}

    def _call(
        self,
        handlers: object,
        table: dict[str, tuple[str, Callable[[Any], Any] | None]],
        method: str,
        raw: bytes,
        err_key: str,
        fail_status: int,
    ) -> tuple[int, Reply]:
        entry = table.get(method)
        if entry is None:
            return 404, {"Err": f"{method}: not implemented"}
        attr, parse = entry
        try:
            body = _decode(raw)
            if not attr:
                return 200, {}
            fn = getattr(handlers, attr)
            reply = fn(parse(body)) if parse is not None else fn()
            return 200, reply
        except DecodeError as e:
            return 400, {"Err": str(e), err_key: str(e)}
        except KanalError as e:
            log.info("%s failed: %s", method, e)
            return fail_status, {err_key: str(e)}
        except Exception as e:  # a bug must still answer JSON, never drop the call
            log.exception("%s", method)
            return fail_status, {err_key: f"internal error: {e}"}


def _decode(raw: bytes) -> Any:
    # Strict UTF-8, no NaN, bounded nesting: a malformed body is a 400, never a 500.
    return validate.decode_json(raw)
