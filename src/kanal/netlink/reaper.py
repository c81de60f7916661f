"""Deleting a container's veth, now or just after the reply.

The kernel needs ~20 ms to unregister a veth pair (an RCU grace period), which is
most of a DEL's cost. In kanald the interface is first made inert — the container
end set down, the host end taken off its bridge, set down and tagged
``kanal:reap`` — and the unregister then runs on a background thread after DEL has
answered. An ADD that needs the same interface name in the same namespace waits
for it. If kanald dies first, :func:`reap_leftovers` (run at start-up) removes
every tagged host end, which takes its peer with it.

Without a daemon (a plugin run as its own process) deletion is synchronous.
"""

from __future__ import annotations

import os
from _socket import if_nametoindex

from kanal.errors import KanalError
from kanal.netlink.batch import Batch, raw_socket
from kanal.netlink.handle import Netlink
from kanal.netlink.ns import netns_id, run_in_netns, start_in_netns

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ipaddress
    import queue
    import threading
    from collections.abc import Callable

__all__ = [
    "REAP_ALIAS",
    "Reaper",
    "delete_container_link",
    "delete_host_link",
    "enable",
    "reap_leftovers",
    "start_container_link_delete",
    "wait_for_host",
]

REAP_ALIAS = "kanal:reap"

if TYPE_CHECKING:
    IP = ipaddress.IPv4Address | ipaddress.IPv6Address


class Reaper:
    """One background thread deleting links queued by DEL (kanald only: a plugin
    process deletes synchronously and never imports what this needs)."""

    def __init__(self) -> None:
        # lazy: kanald only; a plugin process deletes synchronously
        import queue

        # lazy: kanald only; a plugin process deletes synchronously
        import threading

        self._q: queue.Queue[tuple[int, tuple[tuple[int, int], str]]] = queue.Queue()
        self._pending: dict[tuple[tuple[int, int], str], threading.Event] = {}
        self._lock = threading.Lock()
        self._new_event = threading.Event
        threading.Thread(target=self._run, name="kanal-reaper", daemon=True).start()

    def submit(self, host_index: int, key: tuple[tuple[int, int], str]) -> None:
        with self._lock:
            self._pending[key] = self._new_event()
        self._q.put((host_index, key))

    def wait(self, key: tuple[tuple[int, int], str], timeout: float = 5.0) -> None:
        with self._lock:
            ev = self._pending.get(key)
        if ev is not None:
            ev.wait(timeout)

    def _run(self) -> None:
        # lazy: kanald only; a plugin process deletes synchronously
        import logging

        log = logging.getLogger("kanal.reaper")
        with raw_socket() as s:
            while True:
                index, key = self._q.get()
                b = Batch(s)
                b.del_link(index=index)
                try:
                    b.commit()
                except KanalError as e:
                    log.warning("deferred delete of link %d failed: %s", index, e)
                with self._lock:
                    ev = self._pending.pop(key, None)
                if ev is not None:
                    ev.set()


_REAPER: Reaper | None = None


def enable() -> Reaper:
    """Turn on deferred deletion for this process (kanald calls this once)."""
    global _REAPER
    if _REAPER is None:
        _REAPER = Reaper()
    return _REAPER


def wait_for(netns_path: str, ifname: str) -> None:
    """Before creating ``ifname`` in a namespace: let a pending delete of it finish."""
    if _REAPER is not None:
        try:
            _REAPER.wait((netns_id(netns_path), ifname))
        except OSError:
            pass


def delete_container_link(
    netns_fd: int, netns_path: str, ifname: str, addrs: list[IP] | None = None
) -> bool:
    """Delete ``ifname`` (a veth) in the namespace; False if it does not exist.

    Synchronous unless :func:`enable` was called; then the link is made inert
    now and unregistered in the background. ``addrs``, when given, receives the
    link's global unicast addresses, read before it goes (what Go's DEL reads to
    find its masquerade rules when the runtime sent no prevResult).
    """
    if _REAPER is None:
        return run_in_netns(netns_fd, lambda: _delete_named(ifname, addrs))

    found = run_in_netns(netns_fd, lambda: _inert_container_end(ifname, addrs, rename=False))
    if found is None:
        return False
    index, peer = found
    peer = _inert_host_end(peer)
    if not peer:  # the peer is not in our namespace: delete the container end instead
        run_in_netns(netns_fd, lambda: _delete_now(index))
        return True
    _REAPER.submit(peer, (netns_id(netns_path) if os.path.exists(netns_path) else (0, 0), ifname))
    return True


def start_container_link_delete(
    netns_fd: int,
    netns_path: str,
    ifname: str,
    *,
    detach: bool = False,
    addrs: list[IP] | None = None,
) -> Callable[[], bool]:
    """:func:`delete_container_link` begun now; the returned function waits for it
    and answers as that does (``netns_fd`` must stay open until then).

    In kanald the link is made inert now and unregistered after the reply. In a
    plugin process that ends after its answer (``detach``) the same: the link is
    made inert now (the container end down and renamed, so that its name is free
    at once; the host end down, off its bridge, tagged ``kanal:reap``) and a
    detached child process unregisters it. Otherwise the kernel unregisters it on a
    thread while the caller tears down the rest (the firewall's state, with that
    code's imports): the ~15-20 ms overlap with that work instead of adding to it.
    ``addrs``: as for :func:`delete_container_link`, filled before this returns.
    """
    if _REAPER is not None:
        found = delete_container_link(netns_fd, netns_path, ifname, addrs)
        return lambda: found
    if detach:
        found = _delete_detached(netns_fd, ifname, addrs)
        return lambda: found
    if addrs is not None:
        run_in_netns(netns_fd, lambda: _read_addrs(ifname, addrs))
    return start_in_netns(netns_fd, lambda: _delete_named(ifname))


def _global_addrs(nl: Netlink, index: int) -> list[IP]:
    """Go's ``IsGlobalUnicast`` addresses of link ``index`` (private ones included)."""
    out = []
    for a in nl.addrs(index):
        ip = a.interface.ip
        if not (ip.is_link_local or ip.is_loopback or ip.is_multicast or ip.is_unspecified):
            out.append(ip)
    return out


def _read_addrs(ifname: str, addrs: list[IP]) -> None:
    try:
        index = if_nametoindex(ifname)
    except OSError:
        return
    with Netlink() as nl:
        addrs.extend(_global_addrs(nl, index))


def _inert_container_end(
    ifname: str, addrs: list[IP] | None, *, rename: bool
) -> tuple[int, int] | None:
    """In the container's namespace: ``ifname`` set down (and renamed, freeing its
    name); its (index, peer index), None if it does not exist."""
    try:
        index = if_nametoindex(ifname)
    except OSError:
        return None
    with Netlink() as nl:
        link = nl.get_link_by_index(index)
        if addrs is not None:
            addrs.extend(_global_addrs(nl, index))
    with raw_socket() as s:
        b = Batch(s)
        # Tagged as the host end is: a DEL retried after a kill -9 here finds it again.
        b.set_link(index=index, up=False, alias=REAP_ALIAS if rename else None)
        if rename:
            b.rename_link(index, f"{_TOMBSTONE}{os.urandom(5).hex()}")
        b.commit()
    return index, link.peer_index


_TOMBSTONE = "kreap"  # + 10 hex: a container end a plugin process made inert


def _sweep_tombstones() -> None:
    """Delete the container ends a plugin process made inert and never unregistered
    (killed before its child ran): renamed ``kreap…`` and tagged ``kanal:reap`` by
    :func:`_inert_container_end`, nothing else (the pair goes with them)."""
    with Netlink() as nl:
        dead = [
            ln.index
            for ln in nl.links()
            if ln.name.startswith(_TOMBSTONE) and ln.alias == REAP_ALIAS
        ]
    for index in dead:
        try:
            _delete_now(index)
        except KanalError:
            pass  # gone meanwhile


def _inert_host_end(peer: int) -> int:
    """The host end down, off its bridge and tagged; 0 if it is not in this namespace."""
    try:
        with raw_socket() as s:
            b = Batch(s)
            b.set_link(index=peer, up=False, master=0, alias=REAP_ALIAS)
            b.commit()
    except KanalError:
        return 0
    return peer


def _delete_detached(netns_fd: int, ifname: str, addrs: list[IP] | None) -> bool:
    found = run_in_netns(netns_fd, lambda: _inert_container_end(ifname, addrs, rename=True))
    if found is None:
        # Not there (a repeated DEL): what an earlier, killed DEL left goes now.
        run_in_netns(netns_fd, _sweep_tombstones)
        return False
    index, peer = found
    peer = _inert_host_end(peer)
    if not peer:
        # The host end is not in this namespace: delete the container end now.
        run_in_netns(netns_fd, lambda: _delete_now(index))
        return True
    try:
        pid = os.fork()
    except OSError:  # no process to spare (EAGAIN, ENOMEM): unregister it here, now
        _delete_now(peer)
        return True
    if pid == 0:  # pragma: no cover - the child's exit is checked by the tests
        # The child: out of the runtime's process group and off its pipes (a runtime
        # reads the plugin's stdout until every writer has closed it).
        try:
            os.setsid()
            null = os.open("/dev/null", os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.closerange(3, 1 << 16)  # a lock file's flock must not outlive the parent
            _delete_now(peer)  # the pair goes with its host end
        finally:
            os._exit(0)
    return True


def _delete_named(ifname: str, addrs: list[IP] | None = None) -> bool:
    """Delete ``ifname`` of this thread's namespace now; False if it does not exist.
    ``addrs`` receives its global addresses first."""
    try:
        index = if_nametoindex(ifname)
    except OSError:
        return False
    if addrs is not None:
        with Netlink() as nl:
            addrs.extend(_global_addrs(nl, index))
    with raw_socket() as s:
        b = Batch(s)
        b.del_link(index=index)
        b.commit()
    return True


def delete_host_link(name: str) -> bool:
    """Delete link ``name`` of this namespace (a veth: its peer goes too); False if absent.

    With :func:`enable`, it is made inert (down, off its bridge, tagged) now and
    unregistered in the background; :func:`wait_for_host` lets a later creation
    of the same name wait for it.
    """
    try:
        index = if_nametoindex(name)
    except OSError:
        return False
    if _REAPER is None:
        _delete_now(index)
        return True
    with raw_socket() as s:
        b = Batch(s)
        b.set_link(index=index, up=False, master=0, alias=REAP_ALIAS)
        b.commit()
    _REAPER.submit(index, (netns_id("/proc/thread-self/ns/net"), name))
    return True


def wait_for_host(name: str) -> None:
    """Before creating link ``name`` here: let a pending delete of it finish."""
    if _REAPER is not None:
        _REAPER.wait((netns_id("/proc/thread-self/ns/net"), name))


def _delete_now(index: int) -> None:
    with raw_socket() as s:
        b = Batch(s)
        b.del_link(index=index)
        b.commit()


def reap_leftovers() -> int:
    """Delete host-side links a previous kanald left tagged; returns how many."""
    n = 0
    with Netlink() as nl:
        for link in nl.links():
            if link.alias == REAP_ALIAS:
                nl.del_link(index=link.index)
                n += 1
    return n
