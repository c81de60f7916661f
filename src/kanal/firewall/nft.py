"""Running nftables commands: in-process through libnftables, else the ``nft`` binary.

libnftables opens its netlink socket when a context is created, so a context
belongs to the network namespace of the thread that made it: contexts are cached
per namespace. A context is not thread-safe; each is used under its own lock.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
import threading
from collections.abc import Callable

from kanal.errors import Internal, Unavailable

__all__ = ["NftError", "Skeleton", "available", "run"]

_OUTPUT_HANDLE = 1 << 3
_OUTPUT_JSON = 1 << 4


class NftError(Internal):
    """nft refused a command; ``enoent`` when something named does not exist."""

    @property
    def enoent(self) -> bool:
        return "No such file or directory" in self.details


class _Lib:
    def __init__(self) -> None:
        name = ctypes.util.find_library("nftables") or "libnftables.so.1"
        lib = ctypes.CDLL(name, use_errno=True)
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        for fn in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
            getattr(lib, fn).argtypes = [ctypes.c_void_p]
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        for fn in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
            getattr(lib, fn).argtypes = [ctypes.c_void_p]
            getattr(lib, fn).restype = ctypes.c_char_p
        self.lib = lib


class _Ctx:
    def __init__(self, lib: _Lib) -> None:
        self.lib = lib.lib
        self.ctx = self.lib.nft_ctx_new(0)
        if not self.ctx:
            raise Unavailable("libnftables: cannot create a context")
        self.lib.nft_ctx_buffer_output(self.ctx)
        self.lib.nft_ctx_buffer_error(self.ctx)
        self.lock = threading.Lock()

    def run(self, cmds: str, json_out: bool) -> str:
        with self.lock:
            self.lib.nft_ctx_output_set_flags(self.ctx, _OUTPUT_JSON if json_out else 0)
            rc = self.lib.nft_run_cmd_from_buffer(self.ctx, cmds.encode())
            out = (self.lib.nft_ctx_get_output_buffer(self.ctx) or b"").decode()
            err = (self.lib.nft_ctx_get_error_buffer(self.ctx) or b"").decode()
        if rc != 0:
            raise NftError("nftables command failed", err.strip() or f"exit {rc}")
        return out


_LIB: _Lib | None = None
_LIB_FAILED = False
_CTXS: dict[tuple[int, int], _Ctx] = {}
_CTXS_LOCK = threading.Lock()


def _netns_key() -> tuple[int, int]:
    st = os.stat(f"/proc/self/task/{threading.get_native_id()}/ns/net")
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


def run(cmds: str, *, json_out: bool = False) -> str:
    """Run nft commands (one atomic transaction) in the caller's namespace."""
    ctx = _ctx()
    if ctx is not None:
        return ctx.run(cmds, json_out)
    argv = ["nft", *(["-j"] if json_out else []), "-f", "-"]
    try:
        p = subprocess.run(argv, input=cmds.encode(), capture_output=True, timeout=60)
    except FileNotFoundError as e:
        raise Unavailable("nftables is not available (no libnftables, no nft)") from e
    if p.returncode != 0:
        raise NftError("nftables command failed", p.stderr.decode().strip())
    return p.stdout.decode()


_AVAILABLE: set[tuple[int, int]] = set()


def available() -> bool:
    """Whether nftables works here; a yes is remembered per namespace (~1 ms a probe)."""
    key = _netns_key()
    if key in _AVAILABLE:
        return True
    try:
        run("list tables")
    except (Unavailable, NftError):
        return False
    _AVAILABLE.add(key)
    return True


class Skeleton:
    """The fixed part of a table (sets, maps, chains, base rules): applied once per
    namespace, and again when someone removed it (``nft flush ruleset``)."""

    def __init__(self, text: Callable[[], str]) -> None:
        self._text = text
        self._ready: set[tuple[int, int]] = set()
        self._lock = threading.Lock()

    def ensure(self, *, force: bool = False) -> None:
        key = _netns_key()
        if key in self._ready and not force:
            return
        with self._lock:
            run(self._text())
            self._ready.add(key)

    def run(self, cmds: str) -> str:
        """``cmds`` in one transaction, the skeleton made again first if it is gone."""
        self.ensure()
        try:
            return run(cmds)
        except NftError as e:
            if not e.enoent:
                raise
        self.ensure(force=True)
        return run(cmds)
