"""The ``firewall`` plugin's nftables backend, in kanal's ``inet kanal`` table.

::

    set fw_ips4 { type ipv4_addr; }          # container addresses, one element each
    set fw_ips6 { type ipv6_addr; }          #   (comment = owner tag)
    chain fw_admin { }                        # the admin's own rules; never touched
    chain fw_forward { type filter hook forward priority filter; policy accept;
        jump fw_admin
        iifname vmap @fw_iso_from             # ingressPolicy same-bridge / isolated
        ip daddr @fw_ips4 ct state related,established accept
        ip saddr @fw_ips4 accept
        (the same for ip6) }
    set fw_iso { type ifname; }              # bridges under a same-bridge policy
    map fw_iso_from { type ifname : verdict; }   # bridge -> jump fw_iso_<hash>
    chain fw_iso_<hash> { oifname "<bridge>" return; oifname @fw_iso drop }

Adding or removing a container is two set elements: the cost does not grow with
the number of containers. As with the Go plugin's iptables rules, the per-bridge
isolation chains stay when a container leaves (other containers may use them).

nftables evaluates every base chain of a hook: the accepts here cannot undo a
drop in another table (an iptables FORWARD policy DROP set by Docker, say). On
such a host use ``"backend": "iptables"``, which writes the Go plugin's rules.
"""

from __future__ import annotations

from kanal import _json
from kanal._hash import sha256_hex
from kanal.errors import InvalidConfig, NotFound
from kanal.firewall import nfnl, nft
from kanal.firewall.intents import Owner
from kanal.firewall.nftables import TABLE

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ipaddress
    from collections.abc import Callable, Collection, Sequence

    Addr = ipaddress.IPv4Address | ipaddress.IPv6Address

__all__ = [
    "add_container",
    "check_container",
    "del_container",
    "gc_containers",
    "isolate_bridge",
]

_IFNAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:@-")


def _ifname_ok(name: str) -> bool:
    """``re.match(r"^[A-Za-z0-9_.:@-]{1,15}\\Z", name)``, by hand (importing re costs a
    plugin exec ~4 ms)."""
    return 1 <= len(name) <= 15 and all(c in _IFNAME_CHARS for c in name)


_SKELETON = f"""add table inet {TABLE}
add set inet {TABLE} fw_ips4 {{ type ipv4_addr; }}
add set inet {TABLE} fw_ips6 {{ type ipv6_addr; }}
add set inet {TABLE} fw_iso {{ type ifname; }}
add map inet {TABLE} fw_iso_from {{ type ifname : verdict; }}
add chain inet {TABLE} fw_admin
add chain inet {TABLE} fw_forward {{ type filter hook forward priority filter; policy accept; }}
flush chain inet {TABLE} fw_forward
add rule inet {TABLE} fw_forward jump fw_admin comment "{{marker}}"
add rule inet {TABLE} fw_forward iifname vmap @fw_iso_from
add rule inet {TABLE} fw_forward ip daddr @fw_ips4 ct state related,established accept
add rule inet {TABLE} fw_forward ip saddr @fw_ips4 accept
add rule inet {TABLE} fw_forward ip6 daddr @fw_ips6 ct state related,established accept
add rule inet {TABLE} fw_forward ip6 saddr @fw_ips6 accept
"""
# The first rule carries the skeleton's hash: see nft.Skeleton.
_TABLE = nft.Skeleton(lambda: _SKELETON, marked=("inet", TABLE, "fw_forward"))


def _ensure() -> None:
    _TABLE.ensure()


def _fam(ip: Addr) -> str:
    return "4" if ip.version == 4 else "6"


def add_container(owner: Owner, ips: Sequence[Addr]) -> None:
    """Accept forwarded traffic from, and answers to, ``ips``; one transaction."""
    if not ips:
        return
    tag = owner.tag
    if _TABLE.current():
        ops: list[nfnl.Op] = [
            ("add", f"fw_ips{_fam(ip)}", nfnl.ip_key(ip), None, tag) for ip in ips
        ]
        try:
            nfnl.elements("inet", TABLE, ops)  # packed here: no libnftables load and parse
            return
        except nfnl.NfnlError:
            _TABLE.forget()  # deleted under us? libnftables decides below
    _TABLE.run(
        "\n".join(
            f'add element inet {TABLE} fw_ips{_fam(ip)} {{ {ip} comment "{tag}" }}' for ip in ips
        )
    )


def del_container(owner: Owner, ips: Sequence[Addr] | None) -> None:
    """Remove the owner's elements: by address when known, else by tag; idempotent."""
    if ips and nfnl.usable():
        ops: list[nfnl.Op] = [
            ("delete", f"fw_ips{_fam(ip)}", nfnl.ip_key(ip), None, None) for ip in ips
        ]
        try:
            nfnl.delete_elements("inet", TABLE, ops)
            return
        except nfnl.NfnlError:
            pass  # libnftables says what is wrong
    if ips:
        cmds = [f"delete element inet {TABLE} fw_ips{_fam(ip)} {{ {ip} }}" for ip in ips]
        try:
            nft.run("\n".join(cmds))
            return
        except nft.NftError:
            pass  # one of them is gone: fall through to one at a time
        for cmd in cmds:
            try:
                nft.run(cmd)
            except nft.NftError as e:
                if not e.enoent:
                    raise
        return
    for set_name, key in _owned(lambda tag: tag == owner.tag):
        try:
            nft.run(f"delete element inet {TABLE} {set_name} {{ {key} }}")
        except nft.NftError as e:
            if not e.enoent:
                raise


def _owned(fn: Callable[[str], bool]) -> list[tuple[str, str]]:
    """(set, element) of every address whose owner tag satisfies ``fn``."""
    out = []
    for f in ("4", "6"):
        try:
            got = _json.loads(nft.run(f"list set inet {TABLE} fw_ips{f}", json_out=True))
        except nft.NftError as e:
            if e.enoent:
                continue
            raise
        for obj in got.get("nftables", []):
            for el in (obj.get("set") or {}).get("elem", []):
                if isinstance(el, dict) and "elem" in el:
                    val, comment = el["elem"]["val"], str(el["elem"].get("comment", ""))
                else:
                    val, comment = el, ""
                if fn(comment):
                    out.append((f"fw_ips{f}", str(val)))
    return out


def check_container(owner: Owner, ips: Sequence[Addr]) -> None:
    for ip in ips:
        try:
            nft.run(f"get element inet {TABLE} fw_ips{_fam(ip)} {{ {ip} }}")
        except nft.NftError as e:
            raise NotFound(f"firewall entry for {ip} of {owner.container_id} is missing") from e


def gc_containers(network: str, valid: Collection[tuple[str, str]]) -> None:
    """Drop the elements of ``network``'s attachments that are not in ``valid``."""
    from kanal.firewall.intents import network_tag

    keep = {Owner(network, cid, ifn).tag for cid, ifn in valid}
    prefix = network_tag(network) + ":"
    for set_name, key in _owned(lambda tag: tag.startswith(prefix) and tag not in keep):
        try:
            nft.run(f"delete element inet {TABLE} {set_name} {{ {key} }}")
        except nft.NftError as e:
            if not e.enoent:
                raise


def isolate_bridge(bridge: str) -> None:
    """ingressPolicy same-bridge: traffic from ``bridge`` to another such bridge is dropped.

    Idempotent; the bridge's chain is re-written in the same transaction.
    """
    if not _ifname_ok(bridge):
        raise InvalidConfig(f"invalid bridge name {bridge!r}")
    _ensure()
    chain = "fw_iso_" + sha256_hex(bridge.encode())[:12]
    nft.run(
        "\n".join(
            (
                f"add chain inet {TABLE} {chain}",
                f"flush chain inet {TABLE} {chain}",
                f'add rule inet {TABLE} {chain} oifname "{bridge}" return',
                f"add rule inet {TABLE} {chain} oifname @fw_iso drop",
                f'add element inet {TABLE} fw_iso {{ "{bridge}" }}',
                f'add element inet {TABLE} fw_iso_from {{ "{bridge}" : jump {chain} }}',
            )
        )
    )
