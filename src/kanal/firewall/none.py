"""The null firewall backend: accepts every intent and writes nothing."""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Sequence

from kanal.firewall.intents import Masquerade, Owner

__all__ = ["NullBackend"]


class NullBackend:
    name = "none"

    def available(self) -> bool:
        return True

    def add_masquerade(self, rules: Sequence[Masquerade]) -> None:
        return None

    def del_masquerade(
        self,
        owner: Owner,
        ips: Sequence[ipaddress.IPv4Address | ipaddress.IPv6Address] | None = None,
    ) -> None:
        return None

    def check_masquerade(self, rules: Sequence[Masquerade]) -> None:
        return None

    def gc_masquerade(self, network: str, valid: Collection[tuple[str, str]]) -> None:
        return None
