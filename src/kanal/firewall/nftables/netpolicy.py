"""Network-level policy of the network manager's bridge networks, in ``inet kanal``.

Docker's rules, without a rule per container: traffic between two different
networks is dropped, and an ``--internal`` network talks to nothing but itself
and the host::

    map net_from { type ifname : verdict; }     # bridge -> jump kn_<id>
    set net_brs { type ifname; }                # every network's bridge
    set net_internal { type ifname; }           # bridges of internal networks
    chain net_fwd { type filter hook forward priority filter - 1; policy accept;
                    iifname vmap @net_from
                    oifname @net_internal drop }
    chain kn_<id> { oifname "<bridge>" accept    # routed back into itself
                    oifname @net_brs drop        # into another network
                    [drop] }                     # internal: nowhere else either

Traffic within one bridge is switched at layer 2 and never reaches these hooks;
ICC off is the bridge ports' ``isolated`` flag, not a firewall rule. Host ↔
container traffic is input/output, not forward, so it stays allowed, as docker's.
Cost: one chain per network; containers add nothing here.
"""

from __future__ import annotations

import re

from kanal.errors import InvalidConfig
from kanal.firewall.nftables import TABLE, libnft

__all__ = ["add_network_policy", "del_network_policy", "has_network_policy"]

_ID = re.compile(r"^[0-9a-f]{12}\Z")
_IFNAME = re.compile(r"^[A-Za-z0-9_.:-]{1,15}\Z")

_SKELETON = f"""add table inet {TABLE}
add map inet {TABLE} net_from {{ type ifname : verdict; }}
add set inet {TABLE} net_brs {{ type ifname; }}
add set inet {TABLE} net_internal {{ type ifname; }}
add chain inet {TABLE} net_fwd {{ type filter hook forward priority filter - 1; policy accept; }}
flush chain inet {TABLE} net_fwd
add rule inet {TABLE} net_fwd iifname vmap @net_from
add rule inet {TABLE} net_fwd oifname @net_internal drop
"""


def _check(net_id: str, bridge: str) -> str:
    if not _ID.match(net_id):
        raise InvalidConfig(f"invalid network id for a firewall chain: {net_id!r}")
    if not _IFNAME.match(bridge):
        raise InvalidConfig(f"invalid bridge name {bridge!r}")
    return f"kn_{net_id}"


def add_network_policy(net_id: str, bridge: str, *, internal: bool) -> None:
    """Isolate the network whose bridge is ``bridge`` (idempotent: re-applies its chain).

    ``net_id`` is the first 12 hex digits of the network id.
    """
    chain = _check(net_id, bridge)
    cmds = [
        _SKELETON,
        f"add chain inet {TABLE} {chain}",
        f"flush chain inet {TABLE} {chain}",
        f'add rule inet {TABLE} {chain} oifname "{bridge}" accept',
        f"add rule inet {TABLE} {chain} oifname @net_brs drop",
    ]
    if internal:
        cmds.append(f"add rule inet {TABLE} {chain} drop")
        cmds.append(f'add element inet {TABLE} net_internal {{ "{bridge}" }}')
    cmds += [
        f'add element inet {TABLE} net_brs {{ "{bridge}" }}',
        f'add element inet {TABLE} net_from {{ "{bridge}" : jump {chain} }}',
    ]
    # One transaction: the skeleton's flush and refill of net_fwd is atomic with the
    # rest, and keeps the base chain right after an upgrade; networks are rare.
    libnft.run("\n".join(cmds))


def del_network_policy(net_id: str, bridge: str) -> None:
    """Remove the network's chain, and the bridge's elements if they are this
    network's (another network may have taken over a bridge of that name); idempotent."""
    chain = _check(net_id, bridge)
    cmds = [f"delete chain inet {TABLE} {chain}"]
    try:
        out = libnft.run(f'get element inet {TABLE} net_from {{ "{bridge}" }}')
        mine = f"jump {chain}" in out
    except libnft.NftError:
        mine = False  # no element (or no table): nothing of ours to remove there
    if mine:
        cmds[:0] = [
            f'delete element inet {TABLE} net_from {{ "{bridge}" }}',
            f'delete element inet {TABLE} net_brs {{ "{bridge}" }}',
            f'delete element inet {TABLE} net_internal {{ "{bridge}" }}',
        ]
    for cmd in cmds:
        try:
            libnft.run(cmd)
        except libnft.NftError as e:
            if not e.enoent:
                raise


def has_network_policy(net_id: str, bridge: str) -> bool:
    chain = _check(net_id, bridge)
    try:
        libnft.run(f"list chain inet {TABLE} {chain}")
        libnft.run(f'get element inet {TABLE} net_brs {{ "{bridge}" }}')
    except libnft.NftError:
        return False
    return True
