"""Wire format between a plugin shim and kanald (one request per connection).

Request::

    b"KNL1" | u32 len(name) | u32 len(env) | u32 len(stdin) | u64 netns dev | u64 netns ino
          | u64 root dev | u64 root ino | u64 netns-path dev | u64 netns-path ino
          | name | env | stdin

``env`` is ``KEY=VALUE`` pairs joined by NUL. Reply::

    b"R" | u8 exit code | u32 len(stdout) | stdout | stderr...   (handled)
    b"F"                                                   (run it yourself)

``F`` tells the shim to fall back to running the plugin in its own process, e.g.
when it runs in another network namespace than the daemon, or sees another root
directory (a runtime in a container). The root is compared rather than the mount
namespace because ``ip netns exec`` gives every command a mount namespace of its
own with the same files. The identity of what ``CNI_NETNS`` names is compared too:
a namespace mounted in the runtime's mount namespace only is an empty file to
kanald.
"""

from __future__ import annotations

from kanal.fastpath.shim import FALLBACK, HANDLED, MAGIC, MAX_STDIN, encode_request

__all__ = [
    "FALLBACK",
    "HANDLED",
    "HEADER_LEN",
    "MAGIC",
    "MAX_REQUEST_STDIN",
    "decode_env",
    "decode_header",
    "encode_request",
]

HEADER_LEN = 4 + 4 * 3 + 8 * 6
MAX_NAME = 64
MAX_ENV = 1 << 20
# Why more than the dispatcher takes: a shim stops reading stdin somewhere past that
# bound, and the too-long config must reach the dispatcher, whose refusal (code 6)
# is the same as a plugin process's. Still a bound on what kanald buffers.
MAX_REQUEST_STDIN = 4 * MAX_STDIN


def decode_header(
    h: bytes,
) -> tuple[int, int, int, tuple[int, int], tuple[int, int], tuple[int, int]]:
    """(name len, env len, stdin len, netns id, root id, CNI_NETNS id); ValueError if bad."""
    if len(h) != HEADER_LEN or h[:4] != MAGIC:
        raise ValueError("bad magic")
    n, e, s = (int.from_bytes(h[i : i + 4], "big") for i in (4, 8, 12))
    ids = [int.from_bytes(h[i : i + 8], "big") for i in (16, 24, 32, 40, 48, 56)]
    if n > MAX_NAME or e > MAX_ENV or s > MAX_REQUEST_STDIN:
        raise ValueError("request too large")
    return n, e, s, (ids[0], ids[1]), (ids[2], ids[3]), (ids[4], ids[5])


def decode_env(blob: bytes) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in blob.split(b"\0"):
        k, sep, v = item.partition(b"=")
        if sep and k:
            env[k.decode(errors="surrogateescape")] = v.decode(errors="surrogateescape")
    return env
