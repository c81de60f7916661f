"""The shim/daemon wire format and the daemon's decision to serve or decline."""

from __future__ import annotations

import os

import pytest

from kanal.fastpath import protocol as p
from kanal.fastpath.server import FastPathServer


def _id(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def test_round_trip() -> None:
    req = p.encode_request(b"bridge", b"A=1\0B=x=y", b"{}", (1, 2), (3, 4), (5, 6))
    n, e, s, netns, root, target = p.decode_header(req[: p.HEADER_LEN])
    assert (n, e, s) == (6, 9, 2) and (netns, root, target) == ((1, 2), (3, 4), (5, 6))
    body = req[p.HEADER_LEN :]
    assert p.decode_env(body[n : n + e]) == {"A": "1", "B": "x=y"}


@pytest.mark.parametrize("header", [b"", b"XXXX" + b"\0" * 60, b"KNL2" + b"\xff" * 60])
def test_bad_headers(header: bytes) -> None:
    with pytest.raises(ValueError):
        p.decode_header(header)


def test_daemon_declines_what_it_cannot_see_the_same_way(tmp_path) -> None:
    srv = FastPathServer(str(tmp_path / "s.sock"))
    me, root = _id("/proc/self/ns/net"), _id("/")
    ver = {"CNI_COMMAND": "VERSION"}
    cwd = str(tmp_path)
    assert srv.handle("loopback", ver, b"", me, root, cwd=cwd)[:1] == p.HANDLED
    assert srv.handle("loopback", ver, b"", (9, 9), root, cwd=cwd) == p.FALLBACK  # other netns
    assert srv.handle("loopback", ver, b"", me, (9, 9), cwd=cwd) == p.FALLBACK  # other root
    assert srv.handle("no-such-plugin", ver, b"", me, root, cwd=cwd) == p.FALLBACK
    # the shim's working directory is unknown (another pid namespace)
    assert srv.handle("loopback", ver, b"", me, root) == p.FALLBACK
    # CNI_NETNS names another object in the runtime's view than in the daemon's.
    env = {"CNI_COMMAND": "VERSION", "CNI_NETNS": "/proc/self/ns/net"}
    assert srv.handle("loopback", env, b"", me, root, (9, 9), cwd=cwd) == p.FALLBACK
    assert srv.handle("loopback", env, b"", me, root, me, cwd=cwd)[:1] == p.HANDLED
    # a relative CNI_NETNS is the runtime's: resolved against its working directory
    rel = {"CNI_COMMAND": "VERSION", "CNI_NETNS": "self/ns/net"}
    assert srv.handle("loopback", rel, b"", me, root, me, cwd="/proc")[:1] == p.HANDLED
    assert srv.handle("loopback", rel, b"", me, root, me, cwd=cwd) == p.FALLBACK


def test_oversized_stdin_reaches_the_dispatcher() -> None:
    # A shim stops reading past the dispatcher's bound; kanald takes what it sent
    # and lets the dispatcher refuse it, as a plugin process does.
    from kanal.fastpath.shim import MAX_STDIN

    req = p.encode_request(b"bridge", b"", b"x" * (MAX_STDIN + 65535), (0, 0), (0, 0))
    assert p.decode_header(req[: p.HEADER_LEN])[2] == MAX_STDIN + 65535
    with pytest.raises(ValueError):
        p.decode_header(
            p.encode_request(b"b", b"", b"x" * (p.MAX_REQUEST_STDIN + 1), (0, 0), (0, 0))[
                : p.HEADER_LEN
            ]
        )
