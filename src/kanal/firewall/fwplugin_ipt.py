"""The ``firewall`` plugin's iptables backend: exactly the Go plugin's rules.

For each IP family with container addresses (Go ``plugins/meta/firewall``)::

    -N CNI-FORWARD ; -N CNI-ADMIN (or iptablesAdminChainName)
    -I FORWARD 1 -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD
    -I CNI-FORWARD 1 -m comment --comment "CNI firewall plugin admin overrides" -j CNI-ADMIN
    -A CNI-FORWARD -d <ip>/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
    -A CNI-FORWARD -s <ip>/32 -j ACCEPT

and for ingressPolicy same-bridge the isolation chains of Go's ingresspolicy.go
(CNI-ISOLATION-STAGE-1/2, comment "CNI firewall plugin rules (ingressPolicy:
same-bridge)"). Rules are found by their full text, so the Go plugin's DEL
removes what kanal added and the other way round. Go's rules name no owner:
DEL without prevResult and GC cannot find them, as with Go.
"""

from __future__ import annotations

from kanal.errors import Internal, InvalidConfig, NotFound
from kanal.firewall.iptables import run_iptables

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ipaddress
    import subprocess
    from collections.abc import Sequence

    Addr = ipaddress.IPv4Address | ipaddress.IPv6Address

__all__ = ["add_rules", "check_rules", "del_rules", "isolate_bridge"]

FORWARD_CHAIN = "CNI-FORWARD"
_FILTER_COMMENT = "CNI firewall plugin rules"
_ADMIN_COMMENT = "CNI firewall plugin admin overrides"
_ISO_COMMENT = "CNI firewall plugin rules (ingressPolicy: same-bridge)"
STAGE1, STAGE2 = "CNI-ISOLATION-STAGE-1", "CNI-ISOLATION-STAGE-2"


def _ipt(version: int, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run_iptables(version, *args, table="filter", check=check)


def _exists(v: int, chain: str, rule: Sequence[str]) -> bool:
    return _ipt(v, "-C", chain, *rule, check=False).returncode == 0


def _ensure_chain(v: int, chain: str) -> None:
    if _ipt(v, "-n", "-L", chain, check=False).returncode != 0:
        p = _ipt(v, "-N", chain, check=False)
        if p.returncode != 0 and "exists" not in p.stderr:
            raise Internal(f"cannot create chain {chain}", p.stderr.strip())


def _insert_first(v: int, chain: str, rule: Sequence[str]) -> None:
    if not _exists(v, chain, rule):
        _ipt(v, "-I", chain, "1", *rule)


def _append_unique(v: int, chain: str, rule: Sequence[str]) -> None:
    if not _exists(v, chain, rule):
        _ipt(v, "-A", chain, *rule)


def _ip_rules(ip: Addr) -> list[list[str]]:
    cidr = f"{ip}/{32 if ip.version == 4 else 128}"
    return [
        ["-d", cidr, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"],
        ["-s", cidr, "-j", "ACCEPT"],
    ]


def _filter_rule() -> list[str]:
    return ["-m", "comment", "--comment", _FILTER_COMMENT, "-j", FORWARD_CHAIN]


def _admin_rule(admin: str) -> list[str]:
    return ["-m", "comment", "--comment", _ADMIN_COMMENT, "-j", admin]


def check_admin_chain(admin: str) -> str:
    if not admin or len(admin) > 28 or any(ch.isspace() or ch in "!'\"" for ch in admin):
        raise InvalidConfig(f"invalid iptablesAdminChainName {admin!r}")
    return admin


def add_rules(ips: Sequence[Addr], admin: str) -> None:
    """Accept the containers' forwarded traffic; undoes its own rules if one fails."""
    for v in (4, 6):
        mine = [ip for ip in ips if ip.version == v]
        if not mine:
            continue
        _ensure_chain(v, FORWARD_CHAIN)
        _ensure_chain(v, admin)
        _insert_first(v, "FORWARD", _filter_rule())
        _insert_first(v, FORWARD_CHAIN, _admin_rule(admin))
        done: list[list[str]] = []
        try:
            for ip in mine:
                for rule in _ip_rules(ip):
                    _append_unique(v, FORWARD_CHAIN, rule)
                    done.append(rule)
        except Exception:
            for rule in done:
                _ipt(v, "-D", FORWARD_CHAIN, *rule, check=False)
            raise


def del_rules(ips: Sequence[Addr]) -> None:
    """Remove the containers' rules; rules already gone are fine."""
    for ip in ips:
        for rule in _ip_rules(ip):
            # Repeated deletes remove duplicates a crashed ADD may have left.
            for _ in range(4):
                if _ipt(ip.version, "-D", FORWARD_CHAIN, *rule, check=False).returncode != 0:
                    break


def check_rules(ips: Sequence[Addr], admin: str) -> None:
    for v in (4, 6):
        mine = [ip for ip in ips if ip.version == v]
        if not mine:
            continue
        if not _exists(v, "FORWARD", _filter_rule()):
            raise NotFound(f"expected FORWARD rule {_filter_rule()} not found")
        if not _exists(v, FORWARD_CHAIN, _admin_rule(admin)):
            raise NotFound(f"expected {FORWARD_CHAIN} rule {_admin_rule(admin)} not found")
        for ip in mine:
            for rule in _ip_rules(ip):
                if not _exists(v, FORWARD_CHAIN, rule):
                    raise NotFound(f"expected rule {rule} not found")


def _with_comment(rule: list[str]) -> list[str]:
    return [*rule, "-m", "comment", "--comment", _ISO_COMMENT]


def isolate_bridge(bridge: str, versions: Sequence[int]) -> None:
    """Go's setupIsolationChains for ``bridge`` in each IP family of ``versions``."""
    for v in versions:
        for chain in (STAGE1, STAGE2):
            _ensure_chain(v, chain)
        jump = _with_comment(["-j", STAGE1])
        if not _exists(v, "FORWARD", jump):
            _ipt(v, "-I", "FORWARD", "1", *jump)
        s1 = _with_comment(["-i", bridge, "!", "-o", bridge, "-j", STAGE2])
        if not _exists(v, STAGE1, s1):
            _ipt(v, "-I", STAGE1, "1", *s1)
        _append_unique(v, STAGE1, _with_comment(["-j", "RETURN"]))
        s2 = _with_comment(["-o", bridge, "-j", "DROP"])
        if not _exists(v, STAGE2, s2):
            _ipt(v, "-I", STAGE2, "1", *s2)
        _append_unique(v, STAGE2, _with_comment(["-j", "RETURN"]))
