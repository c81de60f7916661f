"""The on-disk reservation store, byte-compatible with Go's host-local.

Layout (Go ``plugins/ipam/host-local/backend/disk``), in ``<dataDir>/<network>/``
(created 0755):

- one file per reserved address, named by the address string, holding
  ``"<containerID>\\r\\n<ifname>"`` (mode 0600); legacy files hold the bare ID;
- ``last_reserved_ip.<rangeSetIndex>``: the last address reserved in that range set;
- ``lock``: every operation holds ``flock(LOCK_EX)`` on it, as Go does, so Go's
  plugin and kanal can share one directory concurrently.

What differs from Go, and why:

- **No directory walk per operation.** Go reads every file for the duplicate
  check, DEL and CHECK. Here each directory has an index (address -> owner, owner
  -> addresses) cached in the process (keyed by the directory's absolute path:
  :func:`disk_store`), trusted under the lock while the directory's stamp is
  unchanged: ``(st_dev, st_ino, st_mtime_ns)`` and a generation kept in ``lock``
  (Go never reads it; its text holds a space: no container ID can equal it). Any
  create or delete, Go's too, moves the mtime; kanal's also bump the generation.
- **Timestamp granularity.** mtimes come from a coarse clock (1-4 ms, or 1 s on
  some file systems): a change in the tick of the recorded mtime could keep it.
  A recent mtime is therefore "sealed" (set 1 ns back) and recorded so; every later
  change, stamped at or past the real value, differs. If the directory cannot be
  sealed, the index is not trusted (rebuilt next time: correct, slower).
- **No half-written reservation files.** Go creates the file with ``O_EXCL``, then
  writes it: a kill in between leaves an empty file Go never frees. kanal writes an
  unnamed file (``O_TMPFILE``; else a temporary ``.kanal-tmp.`` name, never an
  address nor an ID) and ``link()``s it to the address name, atomic and refused if
  the name exists. ``fsync`` first is off by default (only power loss needs it,
  and the empty files it can leave are swept as below).
- ``last_reserved_ip.N`` is rewritten in place (:meth:`DiskStore._write_last`);
  ``.kanal-index`` holds the index for the next process (kanal.ipam.diskfiles).
- **Empty files** (a crashed Go plugin's) belong to nobody: writers hold the lock
  from create to write, so one seen under the lock is a leftover;
  :meth:`DiskStore.sweep_empty` (DEL and GC, after a few seconds' grace against
  writers that ignore the lock) removes them. ADD never reuses them.
- Subdirectories and symlinks are ignored (Go's walk follows both).
"""

from __future__ import annotations

import _thread
import fcntl
import os
import time
from contextlib import contextmanager

from kanal.errors import IOFailure
from kanal.ipam import diskfiles as files
from kanal.ipam.diskfiles import LAST_IP_PREFIX, LOCK_NAME, TMP_PREFIX, DirIndex
from kanal.ipam.ranges import canonical_ip
from kanal.ipam.store import Reservation, StoreMissing, go_trim, name_ip, owner_key
from kanal.spec.types import IPAddr, parse_ip

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Set

__all__ = [
    "LAST_IP_PREFIX",
    "LOCK_NAME",
    "TMP_PREFIX",
    "DiskStore",
    "disk_store",
    "forget_stores",
]

# An mtime older than this is past any file system's timestamp granularity
# (FAT has 2 s), so changes made from now on cannot reproduce it: no need to seal.
_SETTLED_NS = 3_000_000_000

_GEN_PREFIX = b"kanal-gen "
_LOWER_HEX = frozenset(b"0123456789abcdef")


class DiskStore:
    """Reservations of one network in ``directory``; see the module docstring.

    Use :func:`disk_store` to get the process-wide instance for a directory, so
    that every caller in a long-lived process shares one cached index.
    """

    def __init__(self, directory: str, *, fsync: bool = False) -> None:
        self.dir = directory
        self.fsync = fsync
        self._mutex = _thread.allocate_lock()
        self._pid = os.getpid()
        self._fd: int | None = None
        self._dirfd: int | None = None
        self._tmpfile_ok = hasattr(os, "O_TMPFILE")
        self._gen_writable = False
        self._gen: int | None = None
        self._index: DirIndex | None = None
        self._stamp: tuple[int, int, int, int] | None = None
        self._ixfd: int | None = None  # the index file (diskfiles.INDEX_NAME)
        self._held = False
        self._dirty = False
        self.scans = 0  # how many times the directory was read (tests, metrics)

    # -- locking and the index ------------------------------------------------

    @contextmanager
    def locked(self, create: bool = True) -> Iterator[None]:
        with self._mutex:
            if self._pid != os.getpid():
                self._reset_after_fork()
            fd = self._acquire(create)
            self._held = True
            self._dirty = False
            try:
                self._refresh()
                yield
            finally:
                try:
                    if self._dirty:
                        self._commit()
                finally:
                    self._held = False
                    fcntl.flock(fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Drop the lock file descriptor and the index."""
        with self._mutex:
            self._close_fd()
            self._index = None
            self._stamp = None

    def _reset_after_fork(self) -> None:
        # The inherited descriptor shares its flock with the parent: never use it.
        self._close_fd()
        self._index = None
        self._stamp = None
        self._pid = os.getpid()

    def _close_fd(self) -> None:
        for fd in (self._fd, self._dirfd, self._ixfd):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._fd = None
        self._dirfd = None
        self._ixfd = None

    def _open_lock(self, create: bool) -> int:
        path = os.path.join(self.dir, LOCK_NAME)
        if create:
            try:
                os.makedirs(self.dir, 0o755, exist_ok=True)
            except OSError as e:
                raise IOFailure(f"failed to create {self.dir}", e.strerror or str(e)) from e
        flags = os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            # 0750: what Go's go-filemutex creates it with.
            fd = os.open(path, os.O_RDWR | flags, 0o750)
            self._gen_writable = True
        except FileNotFoundError:
            raise StoreMissing(f"no IPAM state directory {self.dir}") from None
        except PermissionError:
            try:
                fd = os.open(path, os.O_RDONLY | flags, 0o750)
            except OSError as e:
                raise IOFailure(f"failed to open {path}", e.strerror or str(e)) from e
            self._gen_writable = False
        except OSError as e:
            raise IOFailure(f"failed to open {path}", e.strerror or str(e)) from e
        return fd

    def _acquire(self, create: bool) -> int:
        """Open (if needed) and flock the lock file; make sure it is still the live one."""
        path = os.path.join(self.dir, LOCK_NAME)
        for _ in range(8):
            if self._fd is None:
                self._fd = self._open_lock(create)
                self._index = None
                self._stamp = None
                try:
                    self._dirfd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                except OSError as e:
                    self._close_fd()
                    if isinstance(e, FileNotFoundError) and not create:
                        raise StoreMissing(f"no IPAM state directory {self.dir}") from None
                    raise IOFailure(f"failed to open {self.dir}", e.strerror or str(e)) from e
            fd = self._fd
            assert self._dirfd is not None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as e:
                raise IOFailure(f"failed to lock {path}", e.strerror or str(e)) from e
            # The directory may have been removed (and recreated) since we opened
            # the lock: a lock on an unlinked file excludes nobody.
            try:
                st = os.stat(path, follow_symlinks=False)
                fst = os.fstat(fd)
                dst = os.stat(self.dir)
                dfst = os.fstat(self._dirfd)
                if (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino) and (
                    dst.st_dev,
                    dst.st_ino,
                ) == (dfst.st_dev, dfst.st_ino):
                    return fd
            except FileNotFoundError:
                pass
            fcntl.flock(fd, fcntl.LOCK_UN)
            self._close_fd()
        raise IOFailure(f"failed to lock {path}", "lock file keeps being replaced")

    def _read_gen(self) -> int | None:
        assert self._fd is not None
        try:
            data = os.pread(self._fd, 64, 0)
        except OSError:
            return None
        if data == b"":
            return 0
        # b"kanal-gen <16 lower-case hex digits>\n" and nothing else
        digits = data[len(_GEN_PREFIX) : -1]
        if (
            len(data) == len(_GEN_PREFIX) + 17
            and data.startswith(_GEN_PREFIX)
            and data.endswith(b"\n")
            and all(c in _LOWER_HEX for c in digits)
        ):
            return int(digits, 16)
        return None

    def _dir_stat(self) -> os.stat_result:
        try:
            return os.stat(self.dir)
        except OSError as e:
            raise IOFailure(f"failed to stat {self.dir}", e.strerror or str(e)) from e

    def _refresh(self) -> None:
        self._gen = self._read_gen()
        if self._ixfd is None and self._gen_writable:
            # First: making the file changes the directory's mtime.
            assert self._dirfd is not None
            self._ixfd = files.open_index(self._dirfd)
        st = self._dir_stat()
        stamp = (st.st_dev, st.st_ino, st.st_mtime_ns, self._gen)
        if self._gen is not None and self._index is not None and self._stamp == stamp:
            return
        if self._gen is not None and self._index is None and self._ixfd is not None:
            # A new process (a plugin run without kanald): the index the last one left,
            # if the directory has not changed since (kanal.ipam.diskfiles).
            exact = (st.st_dev, st.st_ino, st.st_mtime_ns, self._gen)
            self._index = files.load_index(self._ixfd, exact)
            if self._index is not None:
                self._stamp = exact
                return
        self._index = self._scan()
        self._record(bump=False)
        self._save_index()

    def _commit(self) -> None:
        """After our own changes."""
        try:
            self._record(bump=True)
        except IOFailure:
            self._stamp = None
        self._save_index()

    def _save_index(self) -> None:
        if self._ixfd is not None and self._index is not None:
            files.save_index(self._ixfd, self._index, self._stamp)

    def _record(self, bump: bool) -> None:
        """Record the stamp under which the index is exact.

        A recent mtime is sealed (set 1 ns back) so that any later change, stamped
        at or past its real value, differs from it. Every seal also bumps the
        generation: another kanal process may have sealed the same value over a
        different directory content (a Go change in the same clock tick).
        """
        self._stamp = None
        st = self._dir_stat()
        recent = time.time_ns() - st.st_mtime_ns <= _SETTLED_NS
        if bump or recent:
            self._gen = self._bump_gen()
        if self._gen is None:
            return
        if recent:
            try:
                os.utime(self.dir, ns=(st.st_atime_ns, st.st_mtime_ns - 1))
                st2 = os.stat(self.dir)
            except OSError:
                return
            if not (st2.st_mtime_ns < st.st_mtime_ns and st2.st_ino == st.st_ino):
                return
            st = st2
        self._stamp = (st.st_dev, st.st_ino, st.st_mtime_ns, self._gen)

    def _bump_gen(self) -> int | None:
        assert self._fd is not None
        if not self._gen_writable:
            return None
        gen = ((self._gen or 0) + 1) & 0xFFFFFFFFFFFFFFFF
        try:
            os.pwrite(self._fd, b"kanal-gen %016x\n" % gen, 0)
        except OSError:
            return None
        return gen

    def _scan(self) -> DirIndex:
        self.scans += 1
        try:
            return files.scan(self.dir)
        except OSError as e:
            raise IOFailure(f"failed to read {self.dir}", e.strerror or str(e)) from e

    def _read(self, name: str) -> str | None:
        return files.read_entry(self.dir, name)

    def _ix(self) -> DirIndex:
        if not self._held or self._index is None:
            raise RuntimeError("DiskStore used outside 'with store.locked()'")
        return self._index

    # -- the Store protocol -----------------------------------------------------

    def is_reserved(self, ip: IPAddr) -> bool:
        ip = canonical_ip(ip)
        idx = self._ix()
        return int(ip) in idx.taken[ip.version] or str(ip) in idx.entries

    def reserved_ints(self, version: int) -> Set[int]:
        return self._ix().taken[version]

    def reserve(self, container_id: str, ifname: str, ip: IPAddr, range_id: str) -> bool:
        idx = self._ix()
        ip = canonical_ip(ip)
        name = str(ip)
        if int(ip) in idx.taken[ip.version] or name in idx.entries:
            return False
        content = owner_key(container_id, ifname)
        path = os.path.join(self.dir, name)
        try:
            created = self._create_exclusive(path, content.encode("utf-8", "surrogateescape"))
        except OSError as e:
            raise IOFailure(f"failed to reserve {name}", e.strerror or str(e)) from e
        if not created:
            # Someone holds it although the index said free: learn it, distrust the index.
            existing = self._read(name)
            idx.add(name, existing if existing is not None else "")
            self._stamp = None
            return False
        self._dirty = True
        idx.add(name, content)
        try:
            self._write_last(range_id, name)
        except OSError as e:
            files.unlink_quiet(path)
            idx.discard(name)
            why = e.strerror or str(e)
            raise IOFailure(f"failed to record last reserved IP {name}", why) from e
        return True

    def last_reserved_ip(self, range_id: str) -> IPAddr | None:
        self._ix()
        path = os.path.join(self.dir, LAST_IP_PREFIX + range_id)
        try:
            with open(path, "rb") as f:
                data = f.read(256)
        except OSError:
            return None
        try:
            # Go: net.ParseIP(string(data)), no trimming.
            return canonical_ip(parse_ip(data.decode("ascii")))
        except Exception:
            return None

    def release_by_id(self, container_id: str, ifname: str) -> bool:
        idx = self._ix()
        names = idx.by_key.get(owner_key(container_id, ifname))
        if not names:
            names = idx.by_key.get(go_trim(container_id))
        if not names:
            return False
        self._remove_all(sorted(names))
        return True

    def get_by_id(self, container_id: str, ifname: str) -> list[IPAddr]:
        idx = self._ix()
        names = idx.by_key.get(owner_key(container_id, ifname), set()) | idx.by_key.get(
            go_trim(container_id), set()
        )
        out = []
        for name in sorted(names):
            ip = name_ip(name)
            if ip is not None:
                out.append(canonical_ip(ip))
        return out

    def find_by_id(self, container_id: str, ifname: str) -> bool:
        idx = self._ix()
        return bool(
            idx.by_key.get(owner_key(container_id, ifname)) or idx.by_key.get(go_trim(container_id))
        )

    def reservations(self) -> Iterator[Reservation]:
        idx = self._ix()
        snapshot = sorted(idx.entries.items())
        for name, (cid, ifname) in snapshot:
            ip = name_ip(name)
            yield Reservation(name, canonical_ip(ip) if ip is not None else None, cid, ifname)

    def release(self, name: str) -> None:
        self._ix()
        self._remove_all([name])

    def sweep_empty(self, min_age: float) -> list[str]:
        idx = self._ix()
        now = time.time()
        removed: list[str] = []
        for name in sorted(idx.empty | idx.temps):
            path = os.path.join(self.dir, name)
            try:
                st = os.lstat(path)
            except OSError:
                st = None
            if st is not None:
                if now - st.st_mtime < min_age:
                    continue
                if name in idx.empty:
                    # Re-read: only what is still empty goes.
                    content = self._read(name)
                    if content is not None and go_trim(content):
                        idx.add(name, content)
                        continue
                if not files.unlink_quiet(path):
                    continue
                self._dirty = True
                removed.append(name)
            idx.discard(name)
            idx.temps.discard(name)
        return removed

    # -- file operations ------------------------------------------------------------

    def _remove_all(self, names: list[str]) -> None:
        idx = self._ix()
        failed: list[str] = []
        for name in names:
            try:
                os.unlink(os.path.join(self.dir, name))
            except FileNotFoundError:
                pass
            except OSError as e:
                failed.append(f"{name}: {e.strerror or e}")
                continue
            self._dirty = True
            idx.discard(name)
        if failed:
            raise IOFailure(f"failed to release reservations in {self.dir}", "; ".join(failed))

    def _create_exclusive(self, path: str, data: bytes) -> bool:
        """Create ``path`` with ``data``, atomically and only if it does not exist."""
        if self._tmpfile_ok:
            assert self._dirfd is not None
            created = files.create_via_tmpfile(self._dirfd, path, data, self.fsync)
            if created is not None:
                return created
            self._tmpfile_ok = False
        return files.create_linked(self.dir, path, data, self.fsync)

    def _write_last(self, range_id: str, name: str) -> None:
        files.write_last(self.dir, range_id, name)


_STORES: dict[str, DiskStore] = {}
_STORES_LOCK = _thread.allocate_lock()


def disk_store(data_dir: str, network: str) -> DiskStore:
    """The process-wide store of ``<data_dir>/<network>``.

    The caller validates ``network`` first (a single safe path component). The
    instance, and so its index, lives as long as the process: a long-lived daemon
    that routes every host-local call through here pays the directory scan once per
    network (and again only after another process changed the directory).
    """
    path = os.path.abspath(os.path.join(data_dir, network))
    with _STORES_LOCK:
        store = _STORES.get(path)
        if store is None:
            store = _STORES[path] = DiskStore(path)
        return store


def forget_stores() -> None:
    """Close and drop every cached store (tests; a daemon dropping all state)."""
    with _STORES_LOCK:
        stores = list(_STORES.values())
        _STORES.clear()
    for s in stores:
        s.close()
