"""Bridge ``macspoofchk``: frames from a container's port must carry its MAC.

In table ``bridge kanal`` (the Go plugin uses ``bridge nat`` with a chain per
container; kanal keeps per-container entries in sets)::

    set spoof_checked { type ifname; }                 # checked host ports
    set spoof_allowed { type ifname . ether_addr; }    # (port, allowed MAC)
    chain prerouting { type filter hook prerouting priority -300;
        iifname @spoof_checked iifname . ether saddr != @spoof_allowed drop }

Elements are commented with the attachment's unique id (``<cid>-<ifname>``).
"""

from __future__ import annotations

import re

from kanal.errors import InvalidConfig
from kanal.firewall.intents import MacSpoofCheck
from kanal.firewall.nftables import libnft

__all__ = ["apply_mac_spoof_check", "teardown_mac_spoof_check"]

_SKELETON = """add table bridge kanal
add set bridge kanal spoof_checked { type ifname; }
add set bridge kanal spoof_allowed { type ifname . ether_addr; }
add chain bridge kanal prerouting { type filter hook prerouting priority -300; policy accept; }
flush chain bridge kanal prerouting
add rule bridge kanal prerouting iifname @spoof_checked iifname . ether saddr != @spoof_allowed drop
"""
_SAFE = re.compile(r"^[A-Za-z0-9_.:\-]{1,127}\Z")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}\Z")


def apply_mac_spoof_check(chk: MacSpoofCheck) -> None:
    for v, what in ((chk.host_ifname, "interface"), (chk.unique_id, "id")):
        if not _SAFE.match(v):
            raise InvalidConfig(f"invalid {what} {v!r} for the MAC spoof check")
    mac = chk.mac.lower()
    if not _MAC.match(mac):
        raise InvalidConfig(f"invalid MAC {chk.mac!r} for the MAC spoof check")
    libnft.run(
        _SKELETON
        + "\n".join(
            (
                f'add element bridge kanal spoof_allowed {{ "{chk.host_ifname}" . {mac} '
                f'comment "{chk.unique_id}" }}',
                f'add element bridge kanal spoof_checked {{ "{chk.host_ifname}" '
                f'comment "{chk.unique_id}" }}',
            )
        )
    )


def teardown_mac_spoof_check(unique_id: str) -> None:
    """Remove the entries of ``unique_id``; nothing there is success."""
    cmds = []
    for set_name in ("spoof_checked", "spoof_allowed"):
        found = libnft.elements("bridge", "kanal", set_name)
        if found is None:
            return  # no table (or set): nothing there
        for val, comment in found:
            if comment != unique_id:
                continue
            text = (
                " . ".join(f'"{v}"' if i == 0 else str(v) for i, v in enumerate(val["concat"]))
                if isinstance(val, dict)
                else f'"{val}"'
            )
            cmds.append(f"delete element bridge kanal {set_name} {{ {text} }}")
    if cmds:
        libnft.run("\n".join(cmds))
