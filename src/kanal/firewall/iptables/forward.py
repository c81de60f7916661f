"""Let a kanal bridge's traffic through an iptables ``filter FORWARD`` that drops.

dockerd sets the FORWARD policy to DROP and accepts only its own bridges; a
remote driver's bridge is not one of them (dockerd programs nothing for remote
networks), so the driver must accept its own traffic there, as other remote
drivers do. kanal's isolation (the nftables ``net_fwd`` chain, which runs
before iptables' filter chains) has already dropped what must not pass, so
accepting in and out of the bridge here changes nothing else::

    -N KANAL-FORWARD
    -I FORWARD 1 -m comment --comment "kanal bridges" -j KANAL-FORWARD
    -A KANAL-FORWARD -i <bridge> -j ACCEPT
    -A KANAL-FORWARD -o <bridge> -j ACCEPT

Both IPv4 and IPv6 (when ip6tables exists). Idempotent both ways.
"""

from __future__ import annotations

import re
import shutil
import subprocess

from kanal.errors import InvalidConfig
from kanal.firewall.iptables import run_iptables

__all__ = ["CHAIN", "allow_bridge", "allowed_bridges", "disallow_bridge"]

CHAIN = "KANAL-FORWARD"
_COMMENT = "kanal bridges"
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}\Z")


def _ipt(exe: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run_iptables(4 if exe == "iptables" else 6, *args, check=check)


def _tools() -> list[str]:
    return [t for t in ("iptables", "ip6tables") if shutil.which(t)]


def _check(bridge: str) -> None:
    if not _IFNAME.match(bridge):
        raise InvalidConfig(f"invalid bridge name {bridge!r}")


def allow_bridge(bridge: str) -> None:
    """Accept forwarding in and out of ``bridge`` in iptables' filter table."""
    _check(bridge)
    for exe in _tools():
        if _ipt(exe, "-S", CHAIN, check=False).returncode != 0:
            _ipt(exe, "-N", CHAIN, check=False)  # a concurrent creator is fine
        jump = ("FORWARD", "-m", "comment", "--comment", _COMMENT, "-j", CHAIN)
        if _ipt(exe, "-C", *jump, check=False).returncode != 0:
            _ipt(exe, "-I", jump[0], "1", *jump[1:])
        for flag in ("-i", "-o"):
            rule = (CHAIN, flag, bridge, "-j", "ACCEPT")
            if _ipt(exe, "-C", *rule, check=False).returncode != 0:
                _ipt(exe, "-A", *rule)


def disallow_bridge(bridge: str) -> None:
    """Remove ``bridge``'s rules (and the chain when it is empty); best-effort."""
    _check(bridge)
    for exe in _tools():
        for flag in ("-i", "-o"):
            while _ipt(exe, "-D", CHAIN, flag, bridge, "-j", "ACCEPT", check=False).returncode == 0:
                pass
        if not _rules(exe):
            jump = ("FORWARD", "-m", "comment", "--comment", _COMMENT, "-j", CHAIN)
            while _ipt(exe, "-D", *jump, check=False).returncode == 0:
                pass
            _ipt(exe, "-X", CHAIN, check=False)


def _rules(exe: str) -> list[str]:
    p = _ipt(exe, "-S", CHAIN, check=False)
    return [ln for ln in p.stdout.splitlines() if ln.startswith("-A ")] if p.returncode == 0 else []


def allowed_bridges() -> set[str]:
    """Bridges with rules in the IPv4 chain (for tests and GC)."""
    out = set()
    for ln in _rules("iptables") if shutil.which("iptables") else []:
        m = re.match(rf"^-A {CHAIN} -[io] (\S+) -j ACCEPT\Z", ln)
        if m:
            out.add(m.group(1))
    return out
