"""Running nftables commands: in-process through libnftables, else the ``nft`` binary.

libnftables opens its netlink socket when a context is created, so a context
belongs to the network namespace of the thread that made it: contexts are cached
per namespace. A context is not thread-safe; each is used under its own lock.
The library is called through :mod:`kanal._ffi` (not ctypes, whose import alone
costs a plugin exec ~3 ms).
"""

from __future__ import annotations

import _thread
import os
from time import monotonic as _monotonic

from kanal import _json
from kanal._ffi import Library, c_char_p, c_int, c_uint, c_void_p
from kanal.errors import Internal, Unavailable
from kanal.firewall.nftables import nfnl

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["NftError", "Skeleton", "available", "elements", "run"]

_OUTPUT_HANDLE = 1 << 3
_OUTPUT_JSON = 1 << 4


class NftError(Internal):
    """nft refused a command; ``enoent`` when something named does not exist."""

    @property
    def enoent(self) -> bool:
        return "No such file or directory" in self.details

    @property
    def interrupted(self) -> bool:
        """A lookup (``get element``) whose netlink answer a concurrent commit made
        inconsistent: nothing was applied, asking again is right."""
        return "Interrupted system call" in self.details


def _load() -> Library:
    try:
        return Library("libnftables.so.1")
    except OSError:
        import ctypes.util  # lazy: another soname only (ctypes ~3 ms; this runs ldconfig)

        name = ctypes.util.find_library("nftables")
        if name is None:
            raise
        return Library(name)


class _Lib:
    def __init__(self) -> None:
        lib = _load()
        self.ctx_new = lib.function("nft_ctx_new", c_void_p, (c_uint,))
        self.buffer_output = lib.function("nft_ctx_buffer_output", c_int, (c_void_p,))
        self.buffer_error = lib.function("nft_ctx_buffer_error", c_int, (c_void_p,))
        self.set_flags = lib.function("nft_ctx_output_set_flags", c_int, (c_void_p, c_uint))
        self.run = lib.function("nft_run_cmd_from_buffer", c_int, (c_void_p, c_char_p))
        self.output = lib.function("nft_ctx_get_output_buffer", c_char_p, (c_void_p,))
        self.error = lib.function("nft_ctx_get_error_buffer", c_char_p, (c_void_p,))


class _Ctx:
    def __init__(self, lib: _Lib) -> None:
        self.lib = lib
        self.ctx = lib.ctx_new(0)
        if not self.ctx:
            raise Unavailable("libnftables: cannot create a context")
        lib.buffer_output(self.ctx)
        lib.buffer_error(self.ctx)
        self.lock = _thread.allocate_lock()

    def run(self, cmds: str, json_out: bool) -> str:
        lib = self.lib
        with self.lock:
            lib.set_flags(self.ctx, _OUTPUT_JSON if json_out else 0)
            rc = lib.run(self.ctx, cmds.encode())
            out = (lib.output(self.ctx) or b"").decode()
            err = (lib.error(self.ctx) or b"").decode()
        if rc != 0:
            raise NftError("nftables command failed", err.strip() or f"exit {rc}")
        return out


_LIB: _Lib | None = None
_LIB_FAILED = False
_CTXS: dict[tuple[int, int], _Ctx] = {}
_CTXS_LOCK = _thread.allocate_lock()


def _netns_key() -> tuple[int, int]:
    st = os.stat(f"/proc/self/task/{_thread.get_native_id()}/ns/net")
    return st.st_dev, st.st_ino


def _ctx() -> _Ctx | None:
    global _LIB, _LIB_FAILED
    if _LIB_FAILED:
        return None
    key = _netns_key()
    ctx = _CTXS.get(key)
    if ctx is not None:
        return ctx
    with _CTXS_LOCK:
        if _LIB is None:
            try:
                _LIB = _Lib()
            except OSError:
                _LIB_FAILED = True
                return None
        ctx = _CTXS.get(key) or _Ctx(_LIB)
        _CTXS[key] = ctx
        return ctx


_EINTR_TRIES = 5


def run(cmds: str, *, json_out: bool = False) -> str:
    """Run nft commands (one atomic transaction) in the caller's namespace."""
    start, ok = _monotonic(), False
    try:
        for attempt in range(1, _EINTR_TRIES + 1):
            try:
                out = _run(cmds, json_out)
                break
            except NftError as e:
                if not e.interrupted or attempt == _EINTR_TRIES:
                    raise
        ok = True
        return out
    finally:
        nfnl.TX_STATS["libnftables"].record(_monotonic() - start, ok)


def _run(cmds: str, json_out: bool) -> str:
    ctx = _ctx()
    if ctx is not None:
        return ctx.run(cmds, json_out)
    import subprocess  # lazy: no libnftables only (subprocess costs an exec ~9 ms)

    argv = ["nft", *(["-j"] if json_out else []), "-f", "-"]
    try:
        p = subprocess.run(argv, input=cmds.encode(), capture_output=True, timeout=60)
    except FileNotFoundError as e:
        raise Unavailable("nftables is not available (no libnftables, no nft)") from e
    if p.returncode != 0:
        raise NftError("nftables command failed", p.stderr.decode().strip())
    return p.stdout.decode()


_AVAILABLE: set[tuple[int, int]] = set()


def _have_nft_binary() -> bool:
    path = os.environ.get("PATH", os.defpath)
    return any(os.access(os.path.join(d or ".", "nft"), os.X_OK) for d in path.split(":"))


def available() -> bool:
    """Whether nftables works here: libnftables (or the nft command) and a kernel that
    answers. A yes is remembered per namespace."""
    key = _netns_key()
    if key in _AVAILABLE:
        return True
    # The binary first: finding it is a few stat calls, loading the library ~1 ms.
    if not nfnl.kernel_answers() or not (_have_nft_binary() or _ctx() is not None):
        return False
    _AVAILABLE.add(key)
    return True


class Skeleton:
    """The fixed part of a table (sets, maps, chains, base rules): applied once per
    namespace, and again when someone removed it (``nft flush ruleset``).

    With ``marked`` (family, table, chain), the text's ``{marker}`` is replaced by
    a hash of the text (put it in a comment on that chain's first rule): a process
    that finds the marker there knows the skeleton current without applying it
    (:meth:`current`), and can write elements over raw netlink
    (:mod:`kanal.firewall.nftables.nfnl`) instead of loading libnftables.
    """

    def __init__(
        self, text: Callable[[], str], *, marked: tuple[str, str, str] | None = None
    ) -> None:
        self._text = text
        self._marked = marked
        self._marker = ""
        self._ready: set[tuple[int, int]] = set()
        self._lock = _thread.allocate_lock()

    @property
    def marker(self) -> str:
        if not self._marker:
            self._marker = nfnl.marker(self._text())
        return self._marker

    def text(self) -> str:
        t = self._text()
        return t.replace("{marker}", self.marker) if self._marked else t

    def ensure(self, *, force: bool = False) -> None:
        key = _netns_key()
        if key in self._ready and not force:
            return
        with self._lock:
            run(self.text())
            self._ready.add(key)

    def current(self) -> bool:
        """Whether the skeleton is in place in this namespace, as this version
        writes it (applied by this process, or carrying this text's marker)."""
        key = _netns_key()
        if key in self._ready:
            return True
        if self._marked is None:
            return False
        if nfnl.has_marker(*self._marked, self.marker):
            self._ready.add(key)
            return True
        return False

    def forget(self) -> None:
        """Not current any more in this namespace (something under it is gone)."""
        self._ready.discard(_netns_key())

    def run(self, cmds: str) -> str:
        """``cmds`` in one transaction, the skeleton made again first if it is gone.

        The skeleton's first use in a namespace (every use, for a plugin run
        without kanald) puts both in the same transaction: one parse, one commit.
        """
        key = _netns_key()
        if key not in self._ready:
            with self._lock:
                out = run(self.text() + "\n" + cmds)
                self._ready.add(key)
            return out
        try:
            return run(cmds)
        except NftError as e:
            if not e.enoent:
                raise
        self.ensure(force=True)
        return run(cmds)


def elements(
    family: str, table: str, name: str, *, kind: str = "set"
) -> list[tuple[Any, str]] | None:
    """(key as nft's JSON has it, comment) of every element of a set or map (``kind``);
    a map entry's key is its first half. None when the table or the set is absent."""
    try:
        out = run(f"list {kind} {family} {table} {name}", json_out=True)
    except NftError as e:
        if e.enoent:
            return None
        raise
    found: list[tuple[Any, str]] = []
    for obj in _json.loads(out).get("nftables", []):
        for el in (obj.get(kind) or {}).get("elem") or []:
            if isinstance(el, list):  # a map entry: [key, value]
                el = el[0]
            if isinstance(el, dict) and "elem" in el:
                found.append((el["elem"]["val"], str(el["elem"].get("comment", ""))))
            else:
                found.append((el, ""))
    return found
