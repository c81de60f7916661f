"""The loopback plugin's ADD and DEL for the common case, at an interpreter's start-up cost.

A runtime execs loopback for every sandbox (containerd, podman, kubelet), and Go's
loopback takes ~3 ms: the general exec path (the dispatcher, the config decoder,
the result model) costs a standalone exec ~10 ms of imports on top of the
interpreter's own start. This module answers the plain requests runtimes send —
``{"cniVersion": V, "name": N, "type": T}`` with valid ``CNI_*`` variables — with
builtins, a few lines of JSON reading and one netlink socket, and *declines* everything
else: an unusual key, a duplicate, CNI_COMMAND other than ADD/DEL, a namespace it
cannot enter, an address that is not a loopback one. A declined request goes to
the full plugin (:mod:`kanal.plugins.loopback`) unchanged, so errors, messages and
corner cases stay the full plugin's; what this module does before it declines is
undone (the namespace) or idempotent (``lo`` up/down). Its output is the full
plugin's byte for byte (tests/netns/test_lean_loopback.py runs both on the same
inputs).

See docs/fastpath.md ("the lean loopback").
"""

# No `from __future__ import annotations` (the __future__ module costs this path
# ~0.2 ms): the annotations that need it are strings.
import _socket
import posix
import sys

from kanal._ffi import Library, c_int

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["answer", "render"]

_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
_KEYS = frozenset({"cniVersion", "name", "type"})
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_ID_REST = _ALNUM | frozenset("_.-")
# Characters a netns path may hold here: they print the same in Go's and our JSON.
_PATH_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/_.-+=:@,~%")
_MAX_ID = 234  # kanal.spec.args.MAX_CONTAINER_ID_LEN
_MAX_STDIN = 65536

_CLONE_NEWNET = 0x40000000
_O_CLOEXEC = 0o2000000  # Linux (typeshed's posix has no O_CLOEXEC)
_RTM_NEWLINK, _RTM_GETLINK, _RTM_NEWADDR, _RTM_GETADDR = 16, 18, 20, 22
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_F_REQUEST, _F_ACK, _F_DUMP = 1, 4, 0x300
_IFLA_IFNAME, _IFA_ADDRESS, _IFA_LOCAL = 3, 1, 2
_IFF_UP = 1
_AF_INET, _AF_INET6 = 2, 10
_BO = sys.byteorder


class _Decline(Exception):
    """Not a case for this module: the full plugin answers."""


def answer(env: "Mapping[bytes, bytes]", stdin: bytes) -> "bytes | None":
    """The result to print for this request (b"" for a DEL), or None to decline."""
    try:
        command, netns, version = _request(env, stdin)
        sock = _socket_in(netns)
        try:
            ips = _set_lo(sock, up=command == "ADD")
        finally:
            sock.close()
    except (_Decline, OSError, ValueError):
        return None
    if command == "DEL":
        return b""
    return render(version, netns, ips).encode()


def _request(env: "Mapping[bytes, bytes]", stdin: bytes) -> tuple[str, str, str]:
    """(command, netns, cniVersion) of a request this module takes, or _Decline."""
    command = env.get(b"CNI_COMMAND", b"").decode()
    if command not in ("ADD", "DEL"):
        raise _Decline
    cid = env.get(b"CNI_CONTAINERID", b"").decode()
    if not (cid[:1] in _ALNUM and len(cid) <= _MAX_ID and all(c in _ID_REST for c in cid)):
        raise _Decline
    ifname = env.get(b"CNI_IFNAME", b"").decode()
    if not (0 < len(ifname) <= 15 and ifname.isascii() and ifname.isalnum()):
        # Stricter than the rules (any of the valid names would do): kept simple on purpose.
        raise _Decline
    netns = env.get(b"CNI_NETNS", b"").decode()
    if not (netns[:1] == "/" and all(c in _PATH_CHARS for c in netns)):
        raise _Decline
    if not env.get(b"CNI_PATH"):
        raise _Decline
    if len(stdin) > _MAX_STDIN or stdin[:1] != b"{":
        raise _Decline
    conf = _parse(stdin.decode("ascii"))
    if not conf.keys() <= _KEYS:
        raise _Decline
    version, name = conf.get("cniVersion"), conf.get("name")
    if version not in _VERSIONS:
        raise _Decline
    if not (isinstance(name, str) and name[:1] in _ALNUM and all(c in _ID_REST for c in name)):
        raise _Decline
    return command, netns, version


_WS = " \t\n\r"


def _parse(text: str) -> "dict[str, str]":
    """The object ``text`` holds when it is a flat object of plain strings (no
    escape, no control character, no duplicate key), else _Decline: anything more is
    the full plugin's to read, and to report in its own words when it is bad JSON.

    A few lines instead of json's C scanner: that module is a shared library whose
    load costs this path ~0.3 ms.
    """
    n = len(text)
    i = _skip(text, 0)
    if text[i : i + 1] != "{":
        raise _Decline
    out: dict[str, str] = {}
    i = _skip(text, i + 1)
    if text[i : i + 1] == "}":
        i += 1
    else:
        while True:
            key, i = _string(text, i)
            i = _skip(text, i)
            if text[i : i + 1] != ":":
                raise _Decline
            value, i = _string(text, _skip(text, i + 1))
            if key in out:
                raise _Decline  # Go keeps the last one: the full decoder's business
            out[key] = value
            i = _skip(text, i)
            sep = text[i : i + 1]
            i += 1
            if sep == "}":
                break
            if sep != ",":
                raise _Decline
            i = _skip(text, i)
    if _skip(text, i) != n:
        raise _Decline
    return out


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WS:
        i += 1
    return i


def _string(text: str, i: int) -> tuple[str, int]:
    if text[i : i + 1] != '"':
        raise _Decline
    end = text.find('"', i + 1)
    if end < 0:
        raise _Decline
    s = text[i + 1 : end]
    if "\\" in s or not all(c >= " " for c in s):
        raise _Decline
    return s, end + 1


def _socket_in(netns: str) -> _socket.socket:
    """A netlink socket in ``netns``; this process's own namespace is left as it was."""
    setns = Library(None).function("setns", c_int, (c_int, c_int))
    target = posix.open(netns, posix.O_RDONLY | _O_CLOEXEC)
    try:
        home = posix.open("/proc/self/ns/net", posix.O_RDONLY | _O_CLOEXEC)
        try:
            if setns(target, _CLONE_NEWNET) != 0:
                raise _Decline  # not a network namespace
            try:
                return _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW, 0)
            finally:
                if setns(home, _CLONE_NEWNET) != 0:
                    # Cannot happen for our own namespace; never go on in the wrong one.
                    posix._exit(70)
        finally:
            posix.close(home)
    finally:
        posix.close(target)


def _set_lo(sock: _socket.socket, *, up: bool) -> list[tuple[int, bytes, int]]:
    """Set ``lo`` up (or down); on the way up, its first IPv4 and IPv6 addresses."""
    name = b"lo\0"
    attr = _attr(_IFLA_IFNAME, name)
    reply = _ask(sock, _RTM_GETLINK, _F_REQUEST, _ifinfo(0, 0, 0) + attr)
    if reply[0][0] != _RTM_NEWLINK:
        raise _Decline
    index = int.from_bytes(reply[0][1][4:8], _BO, signed=True)
    flags = _IFF_UP if up else 0
    ack = _ask(sock, _RTM_NEWLINK, _F_REQUEST | _F_ACK, _ifinfo(index, flags, _IFF_UP))
    if ack[0][0] != _NLMSG_ERROR or ack[0][1][:4] != b"\0\0\0\0":
        raise _Decline
    if not up:
        return []
    found: dict[int, tuple[int, bytes, int]] = {}
    for kind, body in _ask(sock, _RTM_GETADDR, _F_REQUEST | _F_DUMP, bytes(8)):
        if kind != _RTM_NEWADDR or int.from_bytes(body[4:8], _BO) != index:
            continue
        family, plen = body[0], body[1]
        attrs = _attrs(body[8:])
        addr = attrs.get(_IFA_LOCAL) or attrs.get(_IFA_ADDRESS)
        if addr is not None and family not in found:
            found[family] = (family, addr, plen)
    v4, v6 = found.get(_AF_INET), found.get(_AF_INET6)
    if v4 is None or v4[1][:1] != b"\x7f":
        raise _Decline  # no address, or not a loopback one: the full plugin says so
    if v6 is not None and v6[1] != bytes(15) + b"\x01":
        raise _Decline
    return [v4] if v6 is None else [v4, v6]


def _ifinfo(index: int, flags: int, change: int) -> bytes:
    return (
        bytes(4)
        + index.to_bytes(4, _BO, signed=True)
        + flags.to_bytes(4, _BO)
        + change.to_bytes(4, _BO)
    )


def _attr(kind: int, value: bytes) -> bytes:
    n = 4 + len(value)
    return n.to_bytes(2, _BO) + kind.to_bytes(2, _BO) + value + bytes(-n % 4)


def _attrs(data: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    i = 0
    while i + 4 <= len(data):
        n = int.from_bytes(data[i : i + 2], _BO)
        if n < 4:
            break
        out.setdefault(int.from_bytes(data[i + 2 : i + 4], _BO) & 0x3FFF, data[i + 4 : i + n])
        i += (n + 3) & ~3
    return out


def _ask(sock: _socket.socket, kind: int, flags: int, body: bytes) -> list[tuple[int, bytes]]:
    """Send one request; its replies as (type, payload) until the answer is complete."""
    seq = 1
    msg = (16 + len(body)).to_bytes(4, _BO) + kind.to_bytes(2, _BO) + flags.to_bytes(2, _BO)
    sock.send(msg + seq.to_bytes(4, _BO) + bytes(4) + body)
    out: list[tuple[int, bytes]] = []
    while True:
        data = sock.recv(65536)
        i = 0
        while i + 16 <= len(data):
            n = int.from_bytes(data[i : i + 4], _BO)
            t = int.from_bytes(data[i + 4 : i + 6], _BO)
            if n < 16:
                raise _Decline
            if t == _NLMSG_DONE:
                return out
            out.append((t, data[i + 16 : i + n]))
            if not flags & _F_DUMP:
                return out
            i += (n + 3) & ~3
        if not data:
            raise _Decline


def render(version: str, netns: str, ips: "list[tuple[int, bytes, int]]") -> str:
    """The loopback result at ``version`` as the full plugin prints it (Go's
    ``MarshalIndent`` layout; every string here is plain ASCII that needs no escape)."""
    texts = [(f, _text(f, a) + f"/{plen}") for f, a, plen in ips]
    if version in ("0.1.0", "0.2.0"):
        fields = [f'"cniVersion": "{version}"']
        for f, text in texts:
            key = "ip4" if f == _AF_INET else "ip6"
            fields.append(f'"{key}": {{\n        "ip": "{text}"\n    }}')
        fields.append('"dns": {}')
        return "{\n    " + ",\n    ".join(fields) + "\n}"
    old = version in ("0.3.0", "0.3.1", "0.4.0")
    entries = []
    for f, text in texts:
        ver = f'"version": "{4 if f == _AF_INET else 6}",\n            ' if old else ""
        entries.append(
            "{\n            " + ver + '"interface": 0,\n            '
            f'"address": "{text}"\n        }}'
        )
    fields = [
        f'"cniVersion": "{version}"',
        '"interfaces": [\n        {\n            "name": "lo",\n'
        '            "mac": "00:00:00:00:00:00",\n'
        f'            "sandbox": "{netns}"\n        }}\n    ]',
        '"ips": [\n        ' + ",\n        ".join(entries) + "\n    ]",
    ]
    if old:
        fields.append('"dns": {}')
    return "{\n    " + ",\n    ".join(fields) + "\n}"


def _text(family: int, addr: bytes) -> str:
    if family == _AF_INET:
        return ".".join(str(b) for b in addr)
    return "::1"  # the only IPv6 address _set_lo lets through
