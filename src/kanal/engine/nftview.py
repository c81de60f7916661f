"""kanal's nftables table as ``kanal explain`` reads it: the sets, maps and rules that
decide a packet's fate, each with the handle a user can find in ``nft -a list ruleset``.

Built from ``nft -j list table inet kanal`` (:func:`kanal.firewall.nftables.state.table_json`);
the shapes are the ones :mod:`kanal.firewall.nftables` writes (docs/firewall.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["NftView", "Rule"]


@dataclass(frozen=True)
class Rule:
    chain: str
    handle: int
    text: str  # a compact rendering of its expressions

    def cite(self) -> str:
        return f"nft rule inet kanal {self.chain} handle {self.handle}: {self.text}"


@dataclass
class NftView:
    """What the table holds, indexed for lookups."""

    net_from: dict[str, str] = field(default_factory=dict)  # bridge -> kn_<id> chain
    net_brs: set[str] = field(default_factory=set)
    net_internal: set[str] = field(default_factory=set)
    masq: dict[str, str] = field(default_factory=dict)  # address -> owner tag
    skip: list[tuple[str, str]] = field(default_factory=list)  # (source net, destination net)
    # (proto, port) -> (address, port); (host address, proto, port) -> (address, port)
    ports_any: dict[tuple[str, int], tuple[str, int]] = field(default_factory=dict)
    ports_ip: dict[tuple[str, str, int], tuple[str, int]] = field(default_factory=dict)
    rules: dict[str, list[Rule]] = field(default_factory=dict)

    @classmethod
    def parse(cls, objects: list[dict[str, Any]]) -> NftView:
        v = cls()
        for obj in objects:
            if "rule" in obj:
                r = obj["rule"]
                text = _render(r.get("expr", []))
                v.rules.setdefault(r["chain"], []).append(Rule(r["chain"], int(r["handle"]), text))
                continue
            body = obj.get("set") or obj.get("map")
            if body:
                v._elements(str(body.get("name")), body.get("elem") or [])
        return v

    def _elements(self, name: str, elems: list[Any]) -> None:
        for el in elems:
            key, value = (el[0], el[1]) if isinstance(el, list) else (el, None)
            comment = ""
            if isinstance(key, dict) and "elem" in key:
                comment = str(key["elem"].get("comment", ""))
                key = key["elem"]["val"]
            if name == "net_from" and isinstance(value, dict):
                self.net_from[str(key)] = str(value.get("jump", {}).get("target", ""))
            elif name == "net_brs":
                self.net_brs.add(str(key))
            elif name == "net_internal":
                self.net_internal.add(str(key))
            elif name in ("masq4", "masq6"):
                self.masq[str(key)] = comment
            elif name in ("skip4", "skip6") and isinstance(key, dict):
                a, b = key["concat"]
                self.skip.append((_prefix(a), _prefix(b)))
            elif name in ("pm_any4", "pm_any6") and isinstance(value, dict):
                proto, port = key["concat"]
                addr, to_port = value["concat"]
                self.ports_any[(str(proto), int(port))] = (str(addr), int(to_port))
            elif name in ("pm_ip4", "pm_ip6") and isinstance(value, dict):
                host, proto, port = key["concat"]
                addr, to_port = value["concat"]
                self.ports_ip[(str(host), str(proto), int(port))] = (str(addr), int(to_port))

    def find(self, chain: str, *needles: str) -> Rule | None:
        """The first rule of ``chain`` whose rendering contains every needle."""
        for r in self.rules.get(chain, []):
            if all(n in r.text for n in needles):
                return r
        return None


def _prefix(v: Any) -> str:
    if isinstance(v, dict) and "prefix" in v:
        return f"{v['prefix']['addr']}/{v['prefix']['len']}"
    return str(v)


def _render(exprs: list[Any]) -> str:
    """A short, readable form of a rule's JSON expressions (nft's syntax where simple)."""
    parts = []
    for e in exprs:
        if not isinstance(e, dict) or len(e) != 1:
            parts.append(json.dumps(e, separators=(",", ":")))
            continue
        ((k, val),) = e.items()
        if k == "match":
            parts.append(f"{_term(val['left'])} {_term(val['right'])}")
        elif k in ("accept", "drop", "return", "masquerade"):
            parts.append(k)
        elif k in ("jump", "goto"):
            parts.append(f"{k} {val['target']}")
        elif k in ("dnat", "snat") and isinstance(val, dict):
            parts.append(
                f"{k} {val.get('family', '')} to {_term(val.get('addr'))}".replace("  ", " ")
            )
        elif k == "vmap":
            parts.append(f"{_term(val['key'])} vmap {_term(val['data'])}")
        else:
            parts.append(f"{k} {json.dumps(val, separators=(',', ':'))}")
    return " ".join(parts)


def _term(t: Any) -> str:
    if isinstance(t, dict):
        if "meta" in t:
            return str(t["meta"]["key"])
        if "payload" in t:
            return f"{t['payload']['protocol']} {t['payload']['field']}"
        if "prefix" in t:
            return _prefix(t)
        if "concat" in t:
            return " . ".join(_term(x) for x in t["concat"])
        if "fib" in t:
            return f"fib {' '.join(t['fib'].get('flags', []))} {t['fib']['result']}"
        if "map" in t:
            return f"{_term(t['map']['key'])} map {_term(t['map']['data'])}"
        if "ct" in t:
            return f"ct {t['ct']['key']}"
        return json.dumps(t, separators=(",", ":"))
    return str(t) if not isinstance(t, str) or t.startswith("@") else f'"{t}"'
