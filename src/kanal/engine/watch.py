"""Noticing outside changes to kanal's kernel objects as they happen.

One thread listens to three kernel notification sources in kanald's namespace:

- rtnetlink (link and address groups): a deleted link or address whose link is
  one kanald watches (a network's bridge, an endpoint's veth);
- nfnetlink's nftables group: a table, chain, set or rule of kanal's table
  deleted (``nft flush ruleset``, a firewall manager's reload);
- ``/proc/self/mountinfo`` (readable for ``POLLPRI`` on every mount change): a
  watched sandbox namespace no longer mounted.

A relevant change wakes a repair pass (kanal.engine.repair) once things have
been quiet for ``quiet`` seconds (at most ``max_delay`` after the first change);
a pass also runs every ``interval`` seconds whatever happened, which catches
what no notification reports (a single set element deleted by hand).
"""

from __future__ import annotations

import logging
import select
import socket
import struct
import threading
import time
from collections.abc import Callable

from kanal.engine.repair import Watched

__all__ = ["KernelWatch"]

log = logging.getLogger("kanal.watch")

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV6_IFADDR = 0x100
RTM_DELLINK = 17
RTM_DELADDR = 21
NFNLGRP_NFTABLES = 7
NFNL_SUBSYS_NFTABLES = 10
# NFT_MSG_DELTABLE, _DELCHAIN, _DELRULE, _DELSET: what a flush or a reload sends.
NFT_DELETES = {2, 5, 8, 11}
# NFT_MSG_DELSETELEM: every DEL's daily work too; it counts only when the element
# carries the tag of a live endpoint no operation is working on.
NFT_DELSETELEM = 14
NFTA_SET_ELEM_LIST_ELEMENTS = 3
NFTA_LIST_ELEM = 1
NFTA_SET_ELEM_USERDATA = 6
IFLA_IFNAME = 3
IFA_LABEL = 3
NFTA_TABLE = 1  # the first attribute of table, chain, rule and set messages
TABLE = b"kanal"


def _attrs(data: bytes, off: int, end: int) -> dict[int, bytes]:
    out = {}
    while off + 4 <= end:
        length, kind = struct.unpack_from("=HH", data, off)
        if length < 4:
            break
        out[kind & 0x7FFF] = data[off + 4 : off + length]
        off += (length + 3) & ~3
    return out


def _messages(data: bytes) -> list[tuple[int, int, int]]:
    """(type, payload offset, end) of each netlink message in ``data``."""
    out, off = [], 0
    while off + 16 <= len(data):
        length, mtype = struct.unpack_from("=LH", data, off)
        if length < 16:
            break
        out.append((mtype, off + 16, off + length))
        off += (length + 3) & ~3
    return out


class KernelWatch:
    def __init__(
        self,
        wake: Callable[[], object],
        watched: Callable[[], Watched],
        *,
        interval: float = 10.0,
        quiet: float = 0.05,
        max_delay: float = 0.2,
    ) -> None:
        self.wake = wake
        self.watched = watched
        self.interval = interval
        self.quiet = quiet
        self.max_delay = max_delay
        self._stop = threading.Event()
        self._rt = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self._rt.bind((0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
        self._nf = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self._nf.bind((0, 0))
        self._nf.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, NFNLGRP_NFTABLES)
        for s in (self._rt, self._nf):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            s.setblocking(False)
        self._mounts = open("/proc/self/mountinfo", "rb")  # noqa: SIM115 (kept open: polled)
        self._mounts.read()
        self._thread = threading.Thread(target=self._run, name="kanal-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for f in (self._rt, self._nf, self._mounts):
            f.close()

    # --- what counts ---------------------------------------------------------------

    def _links_changed(self, data: bytes) -> bool:
        watched = self.watched().links
        for mtype, off, end in _messages(data):
            if mtype == RTM_DELLINK:
                name = _attrs(data, off + 16, end).get(IFLA_IFNAME, b"").rstrip(b"\0")
            elif mtype == RTM_DELADDR:
                (index,) = struct.unpack_from("=I", data, off + 4)
                name = _ifname(index).encode()
                if not name:  # the link went with it: its own DELLINK tells
                    continue
            else:
                continue
            if name.decode(errors="replace") in watched:
                return True
        return False

    def _nft_changed(self, data: bytes) -> bool:
        for mtype, off, end in _messages(data):
            kind = mtype & 0xFF
            if mtype >> 8 != NFNL_SUBSYS_NFTABLES:
                continue
            if kind not in NFT_DELETES and kind != NFT_DELSETELEM:
                continue
            attrs = _attrs(data, off + 4, end)
            if attrs.get(NFTA_TABLE, b"").rstrip(b"\0") != TABLE:
                continue
            if kind != NFT_DELSETELEM:
                return True
            watched = self.watched()
            if any(watched.tag_matters(c) for c in _element_comments(attrs)):
                return True
        return False

    def _mounts_changed(self) -> bool:
        self._mounts.seek(0)
        lines = self._mounts.read().split(b"\n")
        have = {ln.split()[4].decode(errors="replace") for ln in lines if len(ln.split()) > 4}
        return bool(self.watched().netns - have)

    # --- the loop ------------------------------------------------------------------

    def _run(self) -> None:
        poll = select.poll()
        poll.register(self._rt, select.POLLIN)
        poll.register(self._nf, select.POLLIN)
        poll.register(self._mounts, select.POLLPRI | select.POLLERR)
        fds = {self._rt.fileno(): self._rt, self._nf.fileno(): self._nf}
        next_pass = time.monotonic() + self.interval
        first = 0.0  # when the pending change was first seen (0: none pending)
        last = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if first:
                timeout = max(0.0, min(last + self.quiet, first + self.max_delay) - now)
            else:
                timeout = max(0.0, next_pass - now)
            events = poll.poll(timeout * 1000)
            changed = False
            for fd, ev in events:
                try:
                    if fd in fds:
                        data = b""
                        while True:
                            try:
                                chunk = fds[fd].recv(1 << 16)
                            except BlockingIOError:
                                break
                            except OSError:  # ENOBUFS: notifications lost: look anyway
                                changed = True
                                break
                            data += chunk
                        changed |= (
                            self._links_changed(data)
                            if fds[fd] is self._rt
                            else self._nft_changed(data)
                        )
                    elif ev & (select.POLLPRI | select.POLLERR):
                        changed |= self._mounts_changed()
                except Exception:  # a bad message must not end the watch
                    log.exception("kernel watch")
                    changed = True
            now = time.monotonic()
            if changed:
                first = first or now
                last = now
            due = first and (now >= last + self.quiet or now >= first + self.max_delay)
            if due or now >= next_pass:
                first = 0.0
                next_pass = now + self.interval
                try:
                    self.wake()
                except Exception:
                    log.exception("repair pass")


def _element_comments(attrs: dict[int, bytes]) -> list[str]:
    """The comments of the elements in a set-element message (libnftnl's user data:
    type 0, a NUL-terminated string)."""
    out = []
    elems = attrs.get(NFTA_SET_ELEM_LIST_ELEMENTS, b"")
    for kind, elem in _attrs_list(elems):
        if kind != NFTA_LIST_ELEM:
            continue
        udata = _attrs(elem, 0, len(elem)).get(NFTA_SET_ELEM_USERDATA, b"")
        i = 0
        while i + 2 <= len(udata):
            utype, ulen = udata[i], udata[i + 1]
            if utype == 0:
                out.append(udata[i + 2 : i + 2 + ulen].rstrip(b"\0").decode(errors="replace"))
            i += 2 + ulen
    return out


def _attrs_list(data: bytes) -> list[tuple[int, bytes]]:
    out, off = [], 0
    while off + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, off)
        if length < 4:
            break
        out.append((kind & 0x7FFF, data[off + 4 : off + length]))
        off += (length + 3) & ~3
    return out


def _ifname(index: int) -> str:
    try:
        return socket.if_indextoname(index)
    except OSError:
        return ""
