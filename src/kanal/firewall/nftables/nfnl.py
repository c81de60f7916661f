"""nf_tables over raw netlink, for the few requests a plugin exec makes every time.

Adding a container's masquerade or forward entry is one set element; deleting it
too; a DEL also asks whether a few chains exist (other backends' leftovers).
Through libnftables each of these costs a library load (~1 ms), a parse and a
cache fetch (~0.3-1 ms); here they are a few packed messages (~0.1 ms). What the
kernel cannot take this way (a missing table, an unusual element) is left to
:mod:`kanal.firewall.nftables.libnft`, which callers fall back to.

Element keys are packed as nft packs them: addresses in network order, each part
of a concatenation padded to 4 bytes, an interval as key and key end; a comment
is the element's userdata (``nft list`` shows it: tests/netns/test_firewall.py).

One socket per network namespace, kept open (as libnftables keeps its context):
closing a netfilter netlink socket makes the kernel first finish freeing what
earlier transactions deleted, an RCU grace period (~10 ms) whenever any element
was deleted since.
"""

from __future__ import annotations

import _socket
import _thread
import errno
import os
import struct
from time import monotonic as _monotonic

from kanal._hash import sha256_hex
from kanal.netlink.wire import NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = [
    "TX_BUCKETS",
    "TX_STATS",
    "NfnlError",
    "TxStats",
    "chain_exists",
    "elements",
    "rule_comments",
    "usable",
]


#: upper bounds (seconds) of the transaction latency histogram's buckets
TX_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class TxStats:
    """nftables transactions this process ran, one way of running them (libnftables
    or packed netlink): plain numbers that kanald's metrics read at scrape time (a
    plugin process counts too, and nobody reads them)."""

    def __init__(self) -> None:
        self.count = 0
        self.errors = 0
        self.seconds = 0.0
        self.buckets = [0] * (len(TX_BUCKETS) + 1)
        self._lock = _thread.allocate_lock()

    def record(self, seconds: float, ok: bool) -> None:
        with self._lock:
            self.count += 1
            self.errors += 0 if ok else 1
            self.seconds += seconds
            i = 0
            while i < len(TX_BUCKETS) and seconds > TX_BUCKETS[i]:
                i += 1
            self.buckets[i] += 1


#: by way: "netlink" (element batches packed here), "libnftables" (everything else)
TX_STATS = {"netlink": TxStats(), "libnftables": TxStats()}

FAMILIES = {"inet": 1, "ip": 2, "ip6": 10, "bridge": 7}
_SUBSYS = 10  # NFNL_SUBSYS_NFTABLES
_BATCH_BEGIN, _BATCH_END = 0x10, 0x11
_GETCHAIN, _NEWRULE, _GETRULE = 4, 6, 7
_NEWSETELEM, _DELSETELEM = 12, 14
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_NESTED = 0x8000
# nf_tables.h attribute numbers
_CHAIN_TABLE, _CHAIN_NAME = 1, 3
_RULE_TABLE, _RULE_CHAIN, _RULE_USERDATA = 1, 2, 7
_LIST_TABLE, _LIST_SET, _LIST_ELEMENTS = 1, 2, 3
_LIST_ELEM = 1
_ELEM_KEY, _ELEM_USERDATA, _ELEM_KEY_END = 1, 6, 10
_DATA_VALUE = 1
_UDATA_COMMENT = 0  # NFTNL_UDATA_{RULE,SET_ELEM}_COMMENT


class NfnlError(Exception):
    """The kernel refused a request; ``errno`` says why (ENOENT: something named
    does not exist)."""

    def __init__(self, err: int) -> None:
        super().__init__(os.strerror(err))
        self.errno = err


def _attr(kind: int, payload: bytes) -> bytes:
    n = 4 + len(payload)
    return struct.pack("=HH", n, kind) + payload + b"\0" * (-n % 4)


def _str(kind: int, s: str) -> bytes:
    return _attr(kind, s.encode() + b"\0")


def _msg(mtype: int, flags: int, seq: int, family: int, body: bytes, res_id: int = 0) -> bytes:
    payload = struct.pack("=BBH", family, 0, _socket.htons(res_id)) + body
    return struct.pack("=LHHLL", 16 + len(payload), mtype, flags, seq, 0) + payload


def _open() -> _socket.socket:
    s = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC, 12)
    s.bind((0, 0))
    return s


def _replies(s: _socket.socket, seqs: range, dump: bool = False) -> list[tuple[int, int, bytes]]:
    """The replies to the messages numbered ``seqs``: (type, seq, payload).
    nf_tables handles a request (a batch too) within the send, so its answers are
    all queued when the send returns; a dump is produced as it is read, up to
    NLMSG_DONE (or an error)."""
    out: list[tuple[int, int, bytes]] = []
    while True:
        try:
            data = s.recv(1 << 16, 0 if dump else _socket.MSG_DONTWAIT)
        except BlockingIOError:
            return out
        off = 0
        while off + 16 <= len(data):
            length, mtype, _flags, seq, _pid = struct.unpack_from("=LHHLL", data, off)
            if length < 16:
                break
            start, off = off, off + ((length + 3) & ~3)
            if seq not in seqs:
                continue  # left over from a request that failed half-way
            out.append((mtype, seq, data[start + 16 : start + length]))
            if dump and mtype in (_NLMSG_ERROR, _NLMSG_DONE):
                return out


def _check(replies: list[tuple[int, int, bytes]]) -> None:
    for mtype, _seq, payload in replies:
        if mtype == _NLMSG_ERROR:
            (err,) = struct.unpack_from("=i", payload)
            if err:
                raise NfnlError(-err)


def usable() -> bool:
    """Whether a netfilter netlink socket can be had in this namespace."""
    try:
        _conn()
    except OSError:
        return False
    return True


class _Conn:
    def __init__(self) -> None:
        self.sock = _open()
        self.lock = _thread.allocate_lock()
        self.seq = int.from_bytes(os.urandom(2), "big") << 8


_CONNS: dict[tuple[int, int], _Conn] = {}
_CONNS_LOCK = _thread.allocate_lock()


def _conn() -> _Conn:
    """This thread's namespace's socket (never closed: see the module docstring)."""
    st = os.stat(f"/proc/self/task/{_thread.get_native_id()}/ns/net")
    key = (st.st_dev, st.st_ino)
    c = _CONNS.get(key)
    if c is None:
        with _CONNS_LOCK:
            c = _CONNS.get(key) or _Conn()
            _CONNS[key] = c
    return c


def _talk(
    build: Callable[[int], tuple[bytes, int]], dump: bool = False
) -> list[tuple[int, int, bytes]]:
    """Send what ``build(first sequence number)`` packs (bytes, how many numbers
    it used); the replies, errors raised."""
    c = _conn()
    with c.lock:
        first = c.seq
        data, used = build(first)
        c.seq = (c.seq + used) & 0xFFFFFFF
        c.sock.sendall(data)
        replies = _replies(c.sock, range(first, first + used), dump)
    _check(replies)
    return replies


def _request(mtype: int, flags: int, family: str, body: bytes) -> list[tuple[int, int, bytes]]:
    flags |= NLM_F_REQUEST | NLM_F_ACK
    return _talk(
        lambda seq: (_msg((_SUBSYS << 8) | mtype, flags, seq, FAMILIES[family], body), 1),
        dump=bool(flags & NLM_F_DUMP),
    )


_NFT_MSG_GETGEN = 16


def kernel_answers() -> bool:
    """Whether this namespace's kernel answers nf_tables requests from us: one
    NFT_MSG_GETGEN (~0.1 ms; a "list tables" through libnftables costs ~1.5 ms)."""
    try:
        _request(_NFT_MSG_GETGEN, 0, "inet", b"")
    except (OSError, NfnlError):
        return False
    return True


def chain_exists(family: str, table: str, chain: str) -> bool:
    """Whether ``family table chain`` exists (a missing table is a missing chain)."""
    try:
        _request(_GETCHAIN, 0, family, _str(_CHAIN_TABLE, table) + _str(_CHAIN_NAME, chain))
    except NfnlError as e:
        if e.errno == errno.ENOENT:
            return False
        raise
    return True


def _attrs(buf: bytes, off: int = 0) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    while off + 4 <= len(buf):
        length, kind = struct.unpack_from("=HH", buf, off)
        if length < 4:
            break
        out[kind & 0x3FFF] = buf[off + 4 : off + length]
        off += (length + 3) & ~3
    return out


def _comment(udata: bytes) -> str | None:
    off = 0
    while off + 2 <= len(udata):
        kind, n = udata[off], udata[off + 1]
        if kind == _UDATA_COMMENT:
            return udata[off + 2 : off + 2 + n].split(b"\0", 1)[0].decode(errors="replace")
        off += 2 + n
    return None


def rule_comments(family: str, table: str, chain: str) -> list[str] | None:
    """The comments of a chain's rules, in order ("" for none); None: no such chain."""
    body = _str(_RULE_TABLE, table) + _str(_RULE_CHAIN, chain)
    try:
        replies = _request(_GETRULE, NLM_F_DUMP, family, body)
    except NfnlError as e:
        if e.errno == errno.ENOENT:
            return None
        raise
    out = []
    for mtype, _seq, payload in replies:
        if mtype == (_SUBSYS << 8) | _NEWRULE:
            udata = _attrs(payload, 4).get(_RULE_USERDATA)
            out.append((_comment(udata) if udata else None) or "")
    return out


def _element(key: bytes, key_end: bytes | None, comment: str | None) -> bytes:
    body = _attr(_ELEM_KEY | _NESTED, _attr(_DATA_VALUE, key))
    if key_end is not None:
        body += _attr(_ELEM_KEY_END | _NESTED, _attr(_DATA_VALUE, key_end))
    if comment is not None:
        c = comment.encode() + b"\0"
        body += _attr(_ELEM_USERDATA, bytes((_UDATA_COMMENT, len(c))) + c)
    return _attr(_LIST_ELEM | _NESTED, body)


# One operation on one element: ("add" | "create" | "delete", set, key, key end, comment).
Op = tuple[str, str, bytes, "bytes | None", "str | None"]


def elements(family: str, table: str, ops: Sequence[Op]) -> None:
    """Apply ``ops`` in one transaction (all or nothing).

    Raises:
        NfnlError: the kernel's refusal (ENOENT: no such table, set or element;
            EEXIST: a ``create`` of an element that exists).
    """
    fam = FAMILIES[family]

    def build(seq: int) -> tuple[bytes, int]:
        msgs = [_msg(_BATCH_BEGIN, NLM_F_REQUEST, seq, 0, b"", _SUBSYS)]
        for i, (op, set_name, key, key_end, comment) in enumerate(ops, start=seq + 1):
            if op == "delete":
                mtype, flags = _DELSETELEM, 0
            else:
                mtype, flags = _NEWSETELEM, NLM_F_CREATE | (NLM_F_EXCL if op == "create" else 0)
            body = (
                _str(_LIST_TABLE, table)
                + _str(_LIST_SET, set_name)
                + _attr(_LIST_ELEMENTS | _NESTED, _element(key, key_end, comment))
            )
            flags |= NLM_F_REQUEST | NLM_F_ACK
            msgs.append(_msg((_SUBSYS << 8) | mtype, flags, i, fam, body))
        msgs.append(_msg(_BATCH_END, NLM_F_REQUEST, seq + len(ops) + 1, 0, b"", _SUBSYS))
        return b"".join(msgs), len(ops) + 2

    start, ok = _monotonic(), False
    try:
        _talk(build)
        ok = True
    finally:
        TX_STATS["netlink"].record(_monotonic() - start, ok)


def delete_elements(family: str, table: str, ops: Sequence[Op]) -> None:
    """Delete elements; those (or the table, the set) already gone are fine.

    One transaction; when something was missing (which fails it whole), one
    element at a time.
    """
    try:
        elements(family, table, ops)
        return
    except NfnlError as e:
        if e.errno != errno.ENOENT or len(ops) == 1:
            if e.errno == errno.ENOENT:
                return
            raise
    for op in ops:
        try:
            elements(family, table, [op])
        except NfnlError as e:
            if e.errno != errno.ENOENT:
                raise


def marker(skeleton: str) -> str:
    """The comment a table skeleton puts on its first rule: which text made the rules.
    A chain whose first rule carries it needs no new skeleton."""
    return "kanal:" + sha256_hex(skeleton.encode())[:16]


def has_marker(family: str, table: str, chain: str, mark: str) -> bool:
    """Whether ``chain``'s first rule carries ``mark`` (no: missing, older, or unreadable)."""
    if not usable():
        return False
    try:
        comments = rule_comments(family, table, chain)
    except NfnlError:
        return False
    return comments is not None and len(comments) > 0 and comments[0] == mark


def ip_key(ip: object) -> bytes:
    """An address as a set key (``ipaddress`` objects' packed form)."""
    packed: bytes = ip.packed  # type: ignore[attr-defined]
    return packed


def prefix_range(net: object) -> tuple[bytes, bytes]:
    """A network as an interval: (first address, last address), packed."""
    first: bytes = net.network_address.packed  # type: ignore[attr-defined]
    last: bytes = net.broadcast_address.packed  # type: ignore[attr-defined]
    return first, last
