"""The files of a host-local directory: reading them into an index, writing them safely.

:class:`~kanal.ipam.disk.DiskStore` decides when (under its lock, when its stamp says
the cached index is stale); this module only reads and writes. The layout and the
reasons for writing as it does are in :mod:`kanal.ipam.disk`'s docstring.
"""

from __future__ import annotations

import _thread
import binascii
import errno
import marshal
import os
from _socket import AF_INET, inet_pton

from kanal._dataclass import dataclass, field
from kanal.ipam.ranges import canonical_ip
from kanal.ipam.store import go_trim, name_ip, parse_owner

__all__ = [
    "INDEX_NAME",
    "LAST_IP_PREFIX",
    "LOCK_NAME",
    "TMP_PREFIX",
    "DirIndex",
    "address",
    "create_linked",
    "create_via_tmpfile",
    "index_in_memory_only",
    "load_index",
    "open_index",
    "read_entry",
    "save_index",
    "scan",
    "unlink_quiet",
    "write_last",
]

LOCK_NAME = "lock"
LAST_IP_PREFIX = "last_reserved_ip."
TMP_PREFIX = ".kanal-tmp."
INDEX_NAME = ".kanal-index"  # the directory's index, for the next process (kanal.ipam.disk)
_MAX_CONTENT = 4096
_LINK_UNSUPPORTED = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK, errno.EXDEV}


def address(name: str) -> tuple[int, int] | None:
    """(version, int) of the address an entry name stands for, or None.

    A plain dotted quad is read by ``inet_pton`` (C, and as strict as ipaddress:
    four decimal parts up to 255, no leading zeros): a process without kanald
    reads the whole directory on every ADD and DEL, and ipaddress objects for a
    thousand names cost ~3 ms. Anything else goes through
    :func:`~kanal.ipam.store.name_ip`.
    """
    try:
        return 4, int.from_bytes(inet_pton(AF_INET, name), "big")
    except (OSError, ValueError):
        pass
    ip = name_ip(name)
    if ip is None:
        return None
    ip = canonical_ip(ip)
    return ip.version, int(ip)


@dataclass
class DirIndex:
    """What the directory holds, as Go's matching sees it."""

    # name -> (container_id, ifname); (None, None) for an empty file
    entries: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    # Go's match key (trimmed content: "<id>\r\n<ifname>" or legacy "<id>") -> names
    by_key: dict[str, set[str]] = field(default_factory=dict)
    # version -> int of every address-named entry
    taken: dict[int, set[int]] = field(default_factory=lambda: {4: set(), 6: set()})
    empty: set[str] = field(default_factory=set)
    temps: set[str] = field(default_factory=set)

    def add(self, name: str, content: str) -> None:
        self.discard(name)
        cid, ifname = parse_owner(content)
        self.entries[name] = (cid, ifname)
        if cid is None:
            self.empty.add(name)
        else:
            self.by_key.setdefault(go_trim(content), set()).add(name)
        addr = address(name)
        if addr is not None:
            self.taken[addr[0]].add(addr[1])

    def discard(self, name: str) -> None:
        owner = self.entries.pop(name, None)
        if owner is None:
            return
        cid, ifname = owner
        self.empty.discard(name)
        if cid is not None:
            key = cid if ifname is None else cid + "\r\n" + ifname
            names = self.by_key.get(key)
            if names is not None:
                names.discard(name)
                if not names:
                    del self.by_key[key]
        addr = address(name)
        if addr is not None:
            self.taken[addr[0]].discard(addr[1])


def scan(directory: str) -> DirIndex:
    """Read every reservation file of ``directory`` (lock, last-IP files, other
    kinds of entries skipped; temporary files only noted).

    A process without kanald reads the whole directory on every ADD and DEL, so
    this is written for speed (a thousand entries in ~4 ms): files opened relative
    to the directory, each content trimmed once, dotted-quad names read inline.
    What it builds is what :meth:`DirIndex.add` builds.

    Raises:
        OSError: the directory cannot be read.
    """
    idx = DirIndex()
    entries, by_key, empty, temps = idx.entries, idx.by_key, idx.empty, idx.temps
    taken4, taken6 = idx.taken[4], idx.taken[6]
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with os.scandir(dfd) as it:
            for entry in it:
                name = entry.name
                if name in (LOCK_NAME, INDEX_NAME) or name.startswith(LAST_IP_PREFIX):
                    continue
                try:
                    if not entry.is_file(follow_symlinks=False):
                        continue
                except OSError:
                    continue
                if name.startswith(TMP_PREFIX):
                    temps.add(name)
                    continue
                try:
                    fd = os.open(name, flags, dir_fd=dfd)
                except OSError:
                    continue
                try:
                    data = os.read(fd, _MAX_CONTENT)
                except OSError:
                    continue
                finally:
                    os.close(fd)
                text = go_trim(data.decode("utf-8", "surrogateescape"))
                if not text:
                    entries[name] = (None, None)
                    empty.add(name)
                else:
                    cid, sep, ifname = text.partition("\r\n")
                    entries[name] = (cid, ifname) if sep else (text, None)
                    names = by_key.get(text)
                    if names is None:
                        by_key[text] = {name}
                    else:
                        names.add(name)
                addr = address(name)
                if addr is not None:
                    (taken4 if addr[0] == 4 else taken6).add(addr[1])
    finally:
        os.close(dfd)
    return idx


def read_entry(directory: str, name: str) -> str | None:
    """The content of one entry (its first 4 KiB), None when it cannot be read."""
    try:
        fd = os.open(os.path.join(directory, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, _MAX_CONTENT)
    except OSError:
        return None
    finally:
        os.close(fd)
    return data.decode("utf-8", "surrogateescape")


def unlink_quiet(path: str) -> bool:
    try:
        os.unlink(path)
        return True
    except OSError:
        return False


def _write_fd(fd: int, data: bytes, sync: bool) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
    if sync:
        os.fsync(fd)


def _write_file(path: str, data: bytes, flags: int, sync: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW | flags, 0o600)
    try:
        _write_fd(fd, data, sync)
    finally:
        os.close(fd)


def create_linked(directory: str, path: str, data: bytes, sync: bool) -> bool:
    """Create ``path`` with ``data``, atomically and only if it does not exist; False
    if it does.

    The content is written to a temporary name (never an address nor a container
    ID), then hard-linked to ``path``: link() fails if the name exists, and the name
    never appears without its content. Where hard links are not supported, Go's
    way: create exclusively, then write.

    Raises:
        OSError: any other failure.
    """
    tmp = os.path.join(directory, f"{TMP_PREFIX}ip.{os.getpid()}.{_thread.get_ident()}")
    _write_file(tmp, data, os.O_CREAT | os.O_TRUNC, sync)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError as e:
        if e.errno not in _LINK_UNSUPPORTED:
            raise
    finally:
        unlink_quiet(tmp)
    try:
        _write_file(path, data, os.O_CREAT | os.O_EXCL, sync)
    except FileExistsError:
        return False
    except OSError:
        unlink_quiet(path)
        raise
    return True


def create_via_tmpfile(dirfd: int, path: str, data: bytes, sync: bool) -> bool | None:
    """:func:`create_linked` in one directory operation: O_TMPFILE + linkat.

    None: not supported here (the caller falls back, and need not try again).
    """
    try:
        fd = os.open(".", os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o600, dir_fd=dirfd)
    except OSError:
        return None
    try:
        _write_fd(fd, data, sync)
        # A dir_fd argument makes Python use linkat(AT_SYMLINK_FOLLOW), which
        # links the open file itself rather than the /proc symlink.
        os.link(
            f"/proc/self/fd/{fd}",
            os.path.basename(path),
            dst_dir_fd=dirfd,
            follow_symlinks=True,
        )
        return True
    except FileExistsError:
        return False
    except OSError:
        return None
    finally:
        os.close(fd)


def write_last(directory: str, range_id: str, name: str) -> None:
    """Rewrite ``last_reserved_ip.N`` in place (pwrite, then trim).

    Neither Go's O_TRUNC rewrite nor a rename over the old file: on ext4 both
    make the kernel flush the new data at once (the auto_da_alloc heuristics),
    which costs more than the rest of an ADD. Readers hold the lock, so they
    never see a partial state; a crash mid-write can at worst leave an
    unparsable address, which only restarts round-robin at the range start,
    exactly what Go does with a missing or bad file.

    Raises:
        OSError: the file cannot be written.
    """
    data = name.encode("ascii")
    fd = os.open(
        os.path.join(directory, LAST_IP_PREFIX + range_id),
        os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
        0o600,
    )
    try:
        n = os.pwrite(fd, data, 0)
        if n != len(data):
            raise OSError(errno.EIO, "short write")
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


# -- the index file -------------------------------------------------------------------
#
# A plugin run without kanald would read every reservation file on every ADD and DEL
# (a thousand files: ~3-6 ms here). DiskStore therefore also keeps its index in
# INDEX_NAME, with the stamp it is exact under; a new process uses it when the stamp
# is the directory's: the same trust rule as the in-memory index of a long-lived
# process, which is what the file stands in for (kanal.ipam.disk: any change by Go's
# plugin moves the directory's mtime, any change by kanal also its generation).
# Written in place under the lock: no new directory entry, so the directory's mtime
# stays. A crash mid-write leaves a file whose checksum fails, and the directory is
# read again. Layout: INDEX_MAGIC, CRC-32 (4 bytes, big-endian) and length (8 bytes)
# of the data, then the data: marshal of
# (stamp, entries, by_key, taken4, taken6, empty, temps).

INDEX_MAGIC = b"KNLIDX1 "
INDEX_MAX_SIZE = 64 << 20  # a larger file is not read (that is a million entries)
_INDEX_HEAD = len(INDEX_MAGIC) + 12


#: Whether the index file is kept: a plugin process keeps it for the next one. A
#: long-lived process (kanald) keeps its indexes in memory and does not rewrite the
#: file at every request; the next plugin run without it finds the file stale, reads
#: the directory once and writes the file again.
_INDEX_FILE = [True]


def index_in_memory_only() -> None:
    """This process lives long and serves many requests: no index file (see above)."""
    _INDEX_FILE[0] = False


def open_index(dirfd: int) -> int | None:
    """The index file of the directory open at ``dirfd`` (made if missing), or None
    (none kept by this process, or it cannot be opened)."""
    if not _INDEX_FILE[0]:
        return None
    try:
        return os.open(
            INDEX_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600, dir_fd=dirfd
        )
    except OSError:
        return None  # no index file: the directory is read each time


def load_index(fd: int, stamp: tuple[int, int, int, int]) -> DirIndex | None:
    """The index in the file at ``fd`` if it is whole and exact under ``stamp``."""
    try:
        size = os.fstat(fd).st_size
        if not _INDEX_HEAD <= size <= INDEX_MAX_SIZE:
            return None
        raw = os.pread(fd, size, 0)
        n = int.from_bytes(raw[12:_INDEX_HEAD], "big")
        data = raw[_INDEX_HEAD : _INDEX_HEAD + n]
        if (
            raw[: len(INDEX_MAGIC)] != INDEX_MAGIC
            or len(data) != n
            or binascii.crc32(data) != int.from_bytes(raw[8:12], "big")
        ):
            return None
        # Written by save_index() under the lock, in a directory only its owner writes.
        saved, entries, by_key, taken4, taken6, empty, temps = marshal.loads(data)  # noqa: S302
    except (OSError, ValueError, EOFError, TypeError):
        return None
    if saved != stamp:
        return None
    return DirIndex(
        entries=entries, by_key=by_key, taken={4: taken4, 6: taken6}, empty=empty, temps=temps
    )


def save_index(fd: int, idx: DirIndex, stamp: tuple[int, int, int, int] | None) -> None:
    """Write ``idx`` as exact under ``stamp`` (None: under none, the file is emptied)."""
    try:
        if stamp is None:
            os.ftruncate(fd, 0)
            return
        data = marshal.dumps(
            (stamp, idx.entries, idx.by_key, idx.taken[4], idx.taken[6], idx.empty, idx.temps)
        )
        blob = INDEX_MAGIC + binascii.crc32(data).to_bytes(4, "big") + len(data).to_bytes(8, "big")
        whole = blob + data
        if os.pwrite(fd, whole, 0) != len(whole):
            os.ftruncate(fd, 0)  # a short write (a full disk): no index rather than half
            return
        os.ftruncate(fd, len(whole))
    except (OSError, ValueError):
        pass  # a cache: the next process reads the directory
