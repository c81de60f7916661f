"""The null firewall backend (``none``): accepts every intent and writes nothing.

For hosts whose firewall is someone else's business, and for tests of code that
takes a backend. Checks pass (there is nothing to miss), GC finds nothing.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ipaddress
    from collections.abc import Collection, Sequence

    from kanal.firewall.intents import ForwardAccept, Masquerade, Owner, PortMaps

    Addr = ipaddress.IPv4Address | ipaddress.IPv6Address

__all__ = ["NullBackend"]


class NullBackend:
    name = "none"

    def available(self) -> bool:
        return True

    def add_masquerade(self, rules: Sequence[Masquerade]) -> None:
        return None

    def del_masquerade(self, owner: Owner, ips: Sequence[Addr] | None = None) -> None:
        return None

    def check_masquerade(self, rules: Sequence[Masquerade]) -> None:
        return None

    def gc_masquerade(self, network: str, valid: Collection[tuple[str, str]]) -> None:
        return None

    def add_portmaps(self, pm: PortMaps) -> None:
        return None

    def del_portmaps(
        self, owner: Owner, known: PortMaps | None = None, *, leftovers: bool = False
    ) -> None:
        return None

    def check_portmaps(self, pm: PortMaps) -> None:
        return None

    def gc_portmaps(self, network: str, valid: Collection[tuple[str, str]]) -> None:
        return None

    def add_forward(self, rule: ForwardAccept) -> None:
        return None

    def del_forward(self, owner: Owner, ips: Sequence[Addr] | None = None) -> None:
        return None

    def check_forward(self, rule: ForwardAccept) -> None:
        return None

    def gc_forward(self, network: str, valid: Collection[tuple[str, str]]) -> None:
        return None

    def isolate_bridge(self, bridge: str, versions: Sequence[int]) -> None:
        return None
