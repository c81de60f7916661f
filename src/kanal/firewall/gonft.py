"""Cleaning up what the Go plugins wrote with ``ipMasqBackend: nftables``.

Go keeps one rule per container IP in ``inet cni_plugins_masquerade`` chain
``masq_checks``, commented ``<hash(net)>-<hash(ifname:cid)>, net: …``. kanal never
writes there; its DEL and GC remove this owner's rules so a switch from the Go
plugins to kanal leaves nothing behind.
"""

from __future__ import annotations

from kanal import _json
from kanal.firewall import nfnl, nft
from kanal.firewall.intents import Owner

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Collection

__all__ = ["gc_go_masquerade", "teardown_go_masquerade"]

_TABLE = "cni_plugins_masquerade"


def _rules() -> list[tuple[int, str]]:
    if nfnl.usable():
        try:
            if not nfnl.chain_exists("inet", _TABLE, "masq_checks"):
                return []  # the common case, told without libnftables
        except nfnl.NfnlError:
            pass
    try:
        out = nft.run(f"list chain inet {_TABLE} masq_checks", json_out=True)
    except nft.NftError as e:
        if e.enoent:
            return []
        raise
    rules = []
    for obj in _json.loads(out).get("nftables", []):
        r = obj.get("rule")
        if r and "comment" in r:
            rules.append((int(r["handle"]), str(r["comment"])))
    return rules


def _delete(handles: list[int]) -> None:
    if handles:
        nft.run("\n".join(f"delete rule inet {_TABLE} masq_checks handle {h}" for h in handles))


def teardown_go_masquerade(owner: Owner) -> None:
    prefix = owner.go_nft_prefix()
    _delete([h for h, c in _rules() if c.startswith(prefix)])


def gc_go_masquerade(network: str, valid: Collection[tuple[str, str]]) -> None:
    net_prefix = Owner(network, "x", "eth0").go_nft_prefix().split("-")[0]
    keep = {Owner(network, cid, ifn).go_nft_prefix() for cid, ifn in valid}
    _delete([h for h, c in _rules() if c.startswith(net_prefix + "-") and c[:33] not in keep])
