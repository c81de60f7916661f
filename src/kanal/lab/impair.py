"""Link impairments (netem's delay, jitter, loss, reorder, duplicate) in user space.

Why user space: the kernel kanal is developed on has no ``sch_netem`` (nor any
other delaying qdisc), and a lab must be able to show a slow, lossy underlay. A
member whose link is impaired is spliced through this relay, which runs in the
lab's underlay namespace::

    ul0 (member) ── veth ── X  ⇄ relay ⇄  Xi ── veth ── Xb ── bridge "ul"

The relay reads every frame arriving on ``X`` or ``Xi`` from an ``AF_PACKET``
socket and writes it out of the other one when its time comes, applying the
member's :class:`Impairment` in both directions (so between two impaired
members a frame meets both impairments, as it would crossing two slow cables).
Sockets use ``PACKET_VNET_HDR``: segmentation-offloaded frames and frames whose
checksum is still to be filled in cross the relay as they are, and the kernel
finishes them on the way out (no offload has to be turned off anywhere).

Semantics follow ``tc-netem``: ``delay`` ± ``jitter`` (uniform, per frame, so
jitter reorders), ``loss`` % dropped, ``duplicate`` % sent twice, ``reorder`` %
sent at once (not delayed) while the others wait. At most ``LIMIT`` frames wait
at a time (netem's ``limit``; further frames are dropped).

Run as ``python -m kanal.lab.impair CONFIG`` (the lab does that); CONFIG is JSON
``{"links": [{"a": "h1", "b": "h1i", "impairment": {...}}, ...]}``, read again on
SIGHUP (links added, changed or dropped without touching the others); once a
config is in force its ``generation`` is written to ``CONFIG.ack``.
"""

from __future__ import annotations

import heapq
import json
import os
import random
import select
import signal
import socket
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

from kanal.errors import InvalidConfig

__all__ = ["LIMIT", "Impairment", "Relay", "main", "schedule"]

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_VNET_HDR = 15
PACKET_IGNORE_OUTGOING = 23
LIMIT = 20000
BUF = 1 << 18  # a GSO frame is at most 64 KiB, plus the virtio header


@dataclass(frozen=True)
class Impairment:
    """Milliseconds and percentages, as ``tc qdisc ... netem`` takes them."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0

    def check(self) -> Impairment:
        for name in ("delay_ms", "jitter_ms"):
            v = getattr(self, name)
            if not isinstance(v, int | float) or isinstance(v, bool) or not 0 <= v <= 60000:
                raise InvalidConfig(f"invalid {name.removesuffix('_ms')} {v!r}: want 0-60000 ms")
        if self.jitter_ms > self.delay_ms:
            raise InvalidConfig(f"jitter {self.jitter_ms} ms is larger than the delay")
        for name in ("loss", "duplicate", "reorder"):
            v = getattr(self, name)
            if not isinstance(v, int | float) or isinstance(v, bool) or not 0 <= v <= 100:
                raise InvalidConfig(f"invalid {name} {v!r}: want 0-100 (%)")
        return self

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Impairment:
        known = set(Impairment.__dataclass_fields__)
        try:
            return Impairment(**{k: float(v) for k, v in d.items() if k in known}).check()
        except (TypeError, ValueError) as e:
            raise InvalidConfig("invalid impairment", str(e)) from None

    def __str__(self) -> str:
        parts = []
        if self.delay_ms:
            parts.append(
                f"delay {self.delay_ms:g}ms" + (f" ±{self.jitter_ms:g}ms" * bool(self.jitter_ms))
            )
        for name in ("loss", "duplicate", "reorder"):
            if getattr(self, name):
                parts.append(f"{name} {getattr(self, name):g}%")
        return " ".join(parts) or "none"


def schedule(imp: Impairment, rng: random.Random) -> list[float]:
    """When (seconds from now) to send one frame's copies: [] drops it. Pure but
    for ``rng``."""
    if imp.loss and rng.random() * 100 < imp.loss:
        return []
    copies = 2 if imp.duplicate and rng.random() * 100 < imp.duplicate else 1
    out = []
    for _ in range(copies):
        if imp.reorder and rng.random() * 100 < imp.reorder:
            out.append(0.0)
            continue
        d = imp.delay_ms
        if imp.jitter_ms:
            d += rng.uniform(-imp.jitter_ms, imp.jitter_ms)
        out.append(max(0.0, d) / 1000)
    return out


def _packet_socket(ifname: str) -> socket.socket:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    try:
        s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
        s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        s.bind((ifname, ETH_P_ALL))
        s.setblocking(False)
    except OSError:
        s.close()
        raise
    return s


class Relay:
    """The relay's loop; ``configure`` (re)sets its links from a config dict."""

    def __init__(self, seed: int | None = None) -> None:
        self.rng = random.Random(seed)
        self.ep = select.epoll()
        # fd -> (its socket, the socket frames go out of, the link's key)
        self.socks: dict[int, tuple[socket.socket, socket.socket, str]] = {}
        self.links: dict[str, tuple[socket.socket, socket.socket]] = {}
        self.imp: dict[str, Impairment] = {}
        self.heap: list[tuple[float, int, socket.socket, bytes]] = []
        self.seq = 0
        self.reload = False
        self.stop = False
        self.stats = {"relayed": 0, "dropped": 0, "duplicated": 0, "overflow": 0}

    def configure(self, cfg: dict[str, Any]) -> None:
        want: dict[str, tuple[str, str, Impairment]] = {}
        for link in cfg.get("links", []):
            a, b = str(link["a"]), str(link["b"])
            want[f"{a}|{b}"] = (a, b, Impairment.from_dict(link.get("impairment", {})))
        for key in [k for k in self.links if k not in want]:
            for s in self.links.pop(key):
                self.ep.unregister(s.fileno())
                self.socks.pop(s.fileno(), None)
                s.close()
            self.imp.pop(key, None)
        for key, (a, b, imp) in want.items():
            self.imp[key] = imp
            if key in self.links:
                continue
            sa = _packet_socket(a)
            try:
                sb = _packet_socket(b)
            except OSError:
                sa.close()
                raise
            self.links[key] = (sa, sb)
            for s, out in ((sa, sb), (sb, sa)):
                self.socks[s.fileno()] = (s, out, key)
                self.ep.register(s.fileno(), select.EPOLLIN)

    def _take(self, fd: int, now: float) -> None:
        s, out, key = self.socks[fd]
        imp = self.imp[key]
        for _ in range(256):  # then give the other sockets a turn
            try:
                frame = s.recv(BUF)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            when = schedule(imp, self.rng)
            if not when:
                self.stats["dropped"] += 1
                continue
            if len(when) > 1:
                self.stats["duplicated"] += 1
            for w in when:
                if len(self.heap) >= LIMIT:
                    self.stats["overflow"] += 1
                    break
                self.seq += 1
                heapq.heappush(self.heap, (now + w, self.seq, out, frame))

    def _send_due(self, now: float) -> None:
        while self.heap and self.heap[0][0] <= now:
            _, _, out, frame = heapq.heappop(self.heap)
            if out.fileno() < 0:
                continue  # its link went away
            try:
                out.send(frame)
                self.stats["relayed"] += 1
            except OSError:
                self.stats["dropped"] += 1

    def load(self, cfg_path: str) -> None:
        with open(cfg_path) as f:
            cfg = json.load(f)
        self.configure(cfg)
        tmp = f"{cfg_path}.ack.tmp"
        with open(tmp, "w") as f:
            f.write(str(cfg.get("generation", 0)))
        os.replace(tmp, f"{cfg_path}.ack")

    def run(self, cfg_path: str) -> None:
        while not self.stop:
            if self.reload:
                self.reload = False
                self.load(cfg_path)
            now = time.monotonic()
            timeout = max(0.0, self.heap[0][0] - now) if self.heap else 0.05
            try:
                events = self.ep.poll(timeout)
            except InterruptedError:
                continue
            now = time.monotonic()
            for fd, _ in events:
                if fd in self.socks:
                    self._take(fd, now)
            self._send_due(time.monotonic())


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.exit("usage: python -m kanal.lab.impair CONFIG")
    relay = Relay()
    relay.load(args[0])

    def hup(signum: int, frame: object) -> None:
        relay.reload = True

    def term(signum: int, frame: object) -> None:
        relay.stop = True

    signal.signal(signal.SIGHUP, hup)
    signal.signal(signal.SIGTERM, term)
    print("kanal lab: relaying", ", ".join(relay.links) or "nothing", file=sys.stderr, flush=True)
    relay.run(args[0])


if __name__ == "__main__":
    main()
