"""The body of every installed plugin executable (runs with ``python -I -S``).

Installed executables import this file as a top-level module ``shim`` from its
own directory, so a plugin exec imports no kanal package: only this one cached
module and builtins (posix, _socket, sys). An
interpreter start is ~6 ms here and every module costs. The shim hands env and
stdin to kanald over a unix socket and relays its answer; if no daemon answers,
or the daemon asks it to, it runs the plugin itself, in this same process (no
second interpreter start): see :mod:`kanal.fastpath.standalone`. Keep it free
of ``from __future__`` and of any other import.
"""

import _socket
import posix
import sys

MAGIC = b"KNL2"  # bumped with every change of the request layout
HANDLED = b"R"
FALLBACK = b"F"
MAX_STDIN = (1 << 20) + 1  # one byte more than the dispatcher accepts, so it can refuse


def encode_request(
    name: bytes,
    env: bytes,
    stdin: bytes,
    netns: tuple[int, int],
    root: tuple[int, int],
    target: tuple[int, int] = (0, 0),
) -> bytes:
    """See kanal.fastpath.protocol for the layout."""
    return b"".join(
        (
            MAGIC,
            len(name).to_bytes(4, "big"),
            len(env).to_bytes(4, "big"),
            len(stdin).to_bytes(4, "big"),
            netns[0].to_bytes(8, "big"),
            netns[1].to_bytes(8, "big"),
            root[0].to_bytes(8, "big"),
            root[1].to_bytes(8, "big"),
            target[0].to_bytes(8, "big"),
            target[1].to_bytes(8, "big"),
            name,
            env,
            stdin,
        )
    )


def _read_stdin() -> bytes:
    chunks: list[bytes] = []
    total = 0
    while total < MAX_STDIN:
        b = posix.read(0, 65536)
        if not b:
            break
        chunks.append(b)
        total += len(b)
    return b"".join(chunks)


def _id(path: str) -> tuple[int, int]:
    try:
        st = posix.stat(path)
    except OSError:
        return 0, 0
    return st.st_dev, st.st_ino


def _recv_all(s: "_socket.socket") -> bytes:
    chunks: list[bytes] = []
    while True:
        b = s.recv(65536)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = posix.write(fd, view)
        view = view[n:]


def fallback(name: str, src: str, stdin: "bytes | None", paths: "tuple[str, ...]" = ()) -> None:
    """Run the plugin in this process (no daemon, or the daemon declined).

    ``src`` holds the kanal package; ``paths`` are the installing interpreter's
    site directories. They go after the standard library: this interpreter runs
    with ``-S``, which keeps site's start-up cost (and every .pth file) away from
    each exec, and the plugins' exec path needs nothing from there (what does,
    pyroute2 for the rarer operations, is found there).
    """
    sys.path.insert(0, src)
    sys.path.extend(paths)
    if name == "loopback":
        # Every sandbox's first plugin: its plain requests skip the general exec path.
        # lazy: kanal is importable only once sys.path is set above
        from kanal.fastpath.lean_loopback import answer

        if stdin is None:
            stdin = _read_stdin()
        out = answer(posix.environ, stdin)
        if out is not None:
            _write_all(1, out)
            posix._exit(0)
    # lazy: kanal is importable only once sys.path is set above
    from kanal.fastpath.standalone import main

    main(name, stdin)


def run(name: str, socket_path: str, src: str, paths: "tuple[str, ...]" = ()) -> None:
    """Entry of an installed shim: exits the process."""
    env = posix.environ
    path = env.get(b"KANAL_SOCKET", b"").decode() or socket_path
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError:
        s.close()
        fallback(name, src, None, paths)
        return
    stdin = _read_stdin()
    blob = b"\0".join(k + b"=" + v for k, v in env.items())
    try:
        # What CNI_NETNS names here: the daemon checks it sees the same namespace there
        # (a runtime in another mount namespace may have mounted it where kanald can't see).
        target = _id(env.get(b"CNI_NETNS", b"").decode()) if env.get(b"CNI_NETNS") else (0, 0)
        req = encode_request(name.encode(), blob, stdin, _id("/proc/self/ns/net"), _id("/"), target)
        s.sendall(req)
        reply = _recv_all(s)
    except OSError:
        reply = b""
    s.close()
    if reply[:1] == FALLBACK:
        fallback(name, src, stdin, paths)
        return
    if reply[:1] != HANDLED or len(reply) < 6:
        # The daemon died mid-request: it may have done part of the work, so do not
        # run it again here; the runtime retries (or DELs) on this transient error.
        _write_all(1, b'{"code": 11, "msg": "kanald closed the connection before answering"}')
        posix._exit(1)
    code = reply[1]
    n = int.from_bytes(reply[2:6], "big")
    _write_all(1, reply[6 : 6 + n])
    if len(reply) > 6 + n:
        _write_all(2, reply[6 + n :])
    posix._exit(code)
