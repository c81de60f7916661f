"""What kanal's nftables table holds, read back for the network manager's checks.

``kanal system check`` and kanald's repairer compare this with what the store says
should be there (docs/crash-safety.md): chains per network, the ``net_from`` map's
bridges, and how many elements each owner tag has in the masquerade and port-map
sets.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from kanal.firewall.nftables import TABLE
from kanal.firewall.nftables import libnft as nft

__all__ = ["BaseChain", "NftState", "available", "base_chains", "nft_table", "table_json"]


def available() -> bool:
    """nftables can be used here (the kernel and the library or binary)."""
    return nft.available()


_GROUPS = {
    "masq4": "masq",
    "masq6": "masq",
    "pm_any4": "ports",
    "pm_any6": "ports",
    "pm_ip4": "ports",
    "pm_ip6": "ports",
}


@dataclass
class NftState:
    chains: set[str]
    net_from: set[str]
    tags: set[str]  # every element comment
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (group, tag)

    def has(self, expect: list[tuple[str, str, int]]) -> bool:
        return all(self.counts[(group, tag)] >= n for group, tag, n in expect)


def nft_table() -> NftState | None:
    """What kanal's nftables table holds (None: no table at all)."""
    try:
        raw = nft.run(f"list table inet {TABLE}", json_out=True)
    except nft.NftError:
        return None
    t = NftState(set(), set(), set())
    for obj in json.loads(raw).get("nftables", []):
        if "chain" in obj:
            t.chains.add(str(obj["chain"].get("name")))
        body = obj.get("set") or obj.get("map")
        if not body:
            continue
        for el in body.get("elem", []):
            item = el[0] if isinstance(el, list) else el
            if not isinstance(item, dict) or "elem" not in item:
                if body.get("name") == "net_from" and isinstance(item, str):
                    t.net_from.add(item)
                continue
            comment = item["elem"].get("comment")
            if comment:
                t.tags.add(str(comment))
                group = _GROUPS.get(str(body.get("name")))
                if group:
                    t.counts[(group, str(comment))] += 1
            if body.get("name") == "net_from":
                t.net_from.add(str(item["elem"].get("val")))
    return t


def table_json() -> list[dict[str, Any]] | None:
    """``nft -j list table inet kanal``'s objects (None: no table), for ``kanal explain``."""
    try:
        raw = nft.run(f"list table inet {TABLE}", json_out=True)
    except nft.NftError:
        return None
    objects: list[dict[str, Any]] = json.loads(raw).get("nftables", [])
    return objects


@dataclass(frozen=True)
class BaseChain:
    """A base chain of any table on this host (kanal's or not)."""

    family: str
    table: str
    name: str
    hook: str
    policy: str
    rules: int


def base_chains(hook: str) -> list[BaseChain]:
    """Every base chain on ``hook`` in the whole ruleset, with its rule count: what
    ``kanal explain`` reports of the firewalls that are not kanal's."""
    try:
        raw = nft.run("list ruleset", json_out=True)
    except nft.NftError:
        return []
    chains: dict[tuple[str, str, str], dict[str, Any]] = {}
    counts: Counter[tuple[str, str, str]] = Counter()
    for obj in json.loads(raw).get("nftables", []):
        if "chain" in obj and obj["chain"].get("hook") == hook:
            c = obj["chain"]
            chains[(c["family"], c["table"], c["name"])] = c
        elif "rule" in obj:
            r = obj["rule"]
            counts[(r["family"], r["table"], r["chain"])] += 1
    return [
        BaseChain(f, t, n, hook, str(c.get("policy", "accept")), counts[(f, t, n)])
        for (f, t, n), c in chains.items()
    ]
