"""Traffic control for ``bandwidth``: tbf qdiscs, ingress + u32 mirred to ifb.

Runs iproute2's ``tc`` (argument lists, no shell) in the calling thread's
namespace; a bandwidth ADD is a handful of requests and not on any hot path.
The numbers are the Go plugin's (``bandwidth_linux.go``): rate and burst come in
bits; the tbf gets rate/8 bytes per second, a buffer of burst/8 bytes and a limit
of 25 ms of traffic plus the burst.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from kanal.errors import Internal, Unavailable

__all__ = ["add_egress_mirror", "add_tbf", "qdiscs", "tbf_values"]

LATENCY_MS = 25


def _tc(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        p = subprocess.run(["tc", *args], capture_output=True, text=True, timeout=30)
    except FileNotFoundError as e:
        raise Unavailable("tc (iproute2) is not installed") from e
    if check and p.returncode != 0:
        raise Internal(f"tc {' '.join(args)} failed", p.stderr.strip())
    return p


def tbf_values(rate_bits: int, burst_bits: int) -> tuple[int, int, int]:
    """(rate bytes/s, burst bytes, limit bytes) as Go computes them."""
    rate = rate_bits // 8
    burst = burst_bits // 8
    limit = int(rate * (LATENCY_MS * 1000) / 1_000_000) + burst
    return rate, burst, limit


def add_tbf(dev: str, rate_bits: int, burst_bits: int) -> None:
    """``tc qdisc add dev DEV root handle 1: tbf ...`` (Go's createTBF)."""
    rate, burst, limit = tbf_values(rate_bits, burst_bits)
    if rate <= 0 or burst <= 0:
        raise Internal(f"invalid rate {rate_bits} or burst {burst_bits}")
    _tc(
        "qdisc", "add", "dev", dev, "root", "handle", "1:", "tbf",
        "rate", f"{rate}bps", "burst", str(burst), "limit", str(limit),
    )  # fmt: skip


def add_egress_mirror(dev: str, ifb: str) -> None:
    """Redirect everything ``dev`` receives to ``ifb`` (ingress qdisc + u32 match all)."""
    _tc("qdisc", "add", "dev", dev, "handle", "ffff:", "ingress")
    _tc(
        "filter", "add", "dev", dev, "parent", "ffff:", "protocol", "all", "prio", "1",
        "u32", "match", "u32", "0", "0", "classid", "1:1",
        "action", "mirred", "egress", "redirect", "dev", ifb,
    )  # fmt: skip


def qdiscs(dev: str) -> list[dict[str, Any]]:
    p = _tc("-json", "qdisc", "show", "dev", dev, check=False)
    if p.returncode != 0 or not p.stdout.strip():
        return []
    out: list[dict[str, Any]] = json.loads(p.stdout)
    return out
