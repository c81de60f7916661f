"""SHA-2 hex digests without importing :mod:`hashlib`.

hashlib loads OpenSSL (~3 ms at every plugin exec); CPython's own SHA-2 modules
are built in. The digests are the same.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from hashlib import sha256, sha512
else:
    import sys

    try:
        if sys.version_info >= (3, 12):
            from _sha2 import sha256, sha512
        else:
            from _sha256 import sha256
            from _sha512 import sha512
    except ImportError:  # a build without them
        from hashlib import sha256, sha512

__all__ = ["sha256_hex", "sha512_hex"]


def sha256_hex(data: bytes) -> str:
    return sha256(data).hexdigest()


def sha512_hex(data: bytes) -> str:
    return sha512(data).hexdigest()
