"""Calling a C library function, without importing :mod:`ctypes`.

``import ctypes`` costs ~3 ms (its ``__init__`` defines a hundred types; its
``util`` runs ``ldconfig``); a plugin exec needs one function (``setns``) and,
for nftables, a handful from libnftables. This uses ctypes' own engine
(``_ctypes``) directly, with only the C types those functions take.
"""

# No `from __future__ import annotations`: the lean loopback path (kanal.fastpath.
# lean_loopback) imports this module and nothing else of kanal; every annotation here
# is valid at run time.
import _ctypes

__all__ = ["Library", "c_char_p", "c_int", "c_uint", "c_void_p", "get_errno"]


class c_int(_ctypes._SimpleCData):  # type: ignore[type-arg]  # ctypes' names
    _type_ = "i"


class c_uint(_ctypes._SimpleCData):  # type: ignore[type-arg]
    _type_ = "I"


class c_void_p(_ctypes._SimpleCData):  # type: ignore[type-arg]
    _type_ = "P"


class c_char_p(_ctypes._SimpleCData):  # type: ignore[type-arg]
    _type_ = "z"


class _Function(_ctypes.CFuncPtr):
    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = c_int


get_errno = _ctypes.get_errno

_RTLD_NOW = 2


class Library:
    """A shared library (``None``: the program itself and what it links, libc)."""

    def __init__(self, name: str | None) -> None:
        # Raises OSError when the library cannot be loaded.
        self._handle = _ctypes.dlopen(name, _RTLD_NOW)  # type: ignore[attr-defined]

    def function(
        self, name: str, restype: type = c_int, argtypes: tuple[type, ...] = ()
    ) -> _Function:
        """The C function ``name``; AttributeError if the library has none."""
        f = _Function((name, self))  # type: ignore[arg-type]  # ctypes wants ._handle only
        f.restype = restype
        f.argtypes = argtypes
        return f
