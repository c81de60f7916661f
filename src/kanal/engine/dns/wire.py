"""Pure helpers on DNS messages (dnslib's records and raw wire bytes)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

__all__ = [
    "REFUSED",
    "SERVFAIL",
    "question_end",
    "rcode",
    "reverse_pointer_ip",
    "send",
    "udp_size",
]

SERVFAIL, REFUSED = 2, 5


def send(reply: Callable[[bytes], object], data: bytes) -> None:
    try:
        reply(data)
    except OSError:  # the client went away
        pass


def rcode(q: Any, rcode: int) -> bytes:
    r = q.reply()
    r.header.rcode = rcode
    return bytes(r.pack())


def udp_size(q: Any) -> int:
    """The UDP answer size a client takes: its EDNS0 OPT record's, at least 512."""
    for rr in q.ar:
        if rr.rtype == 41:  # OPT: the class field carries the size
            return max(512, int(rr.rclass))
    return 512


def question_end(data: bytes) -> int:
    """Where the (single) question of a query ends; 0 if it is not a plain one."""
    if len(data) < 12 or data[4:6] != b"\x00\x01":
        return 0
    i = 12
    while i < len(data):
        n = data[i]
        if n == 0:
            end = i + 5  # the root label, then type and class
            return end if end <= len(data) else 0
        if n & 0xC0:  # a compression pointer in a query: do not guess
            return 0
        i += n + 1
    return 0


def reverse_pointer_ip(qname: str) -> str:
    """``4.3.2.1.in-addr.arpa`` -> ``1.2.3.4`` (and ip6.arpa nibbles); '' if not one."""
    if qname.endswith(".in-addr.arpa"):
        parts = qname[: -len(".in-addr.arpa")].split(".")
        text = ".".join(reversed(parts))
    elif qname.endswith(".ip6.arpa"):
        nibbles = qname[: -len(".ip6.arpa")].split(".")
        if len(nibbles) != 32:
            return ""
        h = "".join(reversed(nibbles))
        text = ":".join(h[i : i + 4] for i in range(0, 32, 4))
    else:
        return ""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return ""
