"""kanald's side of the fast path: run CNI requests from plugin shims in-process.

Each connection is one plugin exec. It is served on its own thread through the
same :class:`~kanal.skel.dispatcher.Dispatcher` a standalone plugin uses, with
the shim's environment and stdin, so results are identical by construction.
The daemon only serves shims in its own network namespace that see the same
root directory (anything else is told to fall back), and only root (or its own uid) may connect.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from contextlib import suppress

from kanal.errors import NotFound
from kanal.fastpath import protocol as p
from kanal.fastpath.standalone import plugin_runner
from kanal.ipam.diskfiles import index_in_memory_only
from kanal.plugins.registry import load_plugin
from kanal.skel.dispatcher import Dispatcher
from kanal.unixsock import private_path

__all__ = ["FastPathServer"]

log = logging.getLogger("kanal.fastpath")


def _id(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _id_or_zero(path: str) -> tuple[int, int]:
    try:
        return _id(path)
    except OSError:
        return 0, 0


def _cwd_of(pid: int) -> str | None:
    """A process's working directory, or None (gone, or in a pid namespace we don't see)."""
    if pid <= 0:
        return None
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None
    if cwd.endswith(" (deleted)") and not os.path.isdir(cwd):
        return "/"  # as a plugin process started there sees it (kanal.skel.dispatcher)
    return cwd if cwd.startswith("/") else None


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = conn.recv(min(n - len(buf), 1 << 16))
        if not chunk:
            raise ConnectionError("short request")
        buf += chunk
    return bytes(buf)


class FastPathServer:
    """Serves plugin shims on a unix socket (mode 0600 unless configured)."""

    def __init__(self, socket_path: str, *, mode: int = 0o600) -> None:
        self.socket_path = socket_path
        self.mode = mode
        self._sock: socket.socket | None = None
        self._stop = threading.Event()
        self._netns = _id("/proc/self/ns/net")
        self._root = _id("/")
        self._uid = os.geteuid()
        self.served = 0
        #: told of each request served: (plugin, CNI_COMMAND, exit code, stdout,
        #: seconds); kanald's metrics set it (this module never imports them)
        self.observe: Callable[[str, str, int, bytes, float], None] | None = None
        self._runner = plugin_runner()
        # This process serves plugins for as long as it runs: host-local's indexes
        # stay in memory (kanal.ipam.diskfiles: the index file is for plugin processes).
        index_in_memory_only()

    def bind(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # Bound and listening under a private name first, then renamed into place:
        # a client that sees the socket file can connect at once.
        # (a short name: unix socket paths are limited to 107 bytes)
        tmp = os.path.join(os.path.dirname(os.path.abspath(self.socket_path)), f".{os.getpid()}.s")
        with private_path(self.socket_path, dir_mode=0o755):
            if os.path.exists(tmp):
                os.unlink(tmp)
            s.bind(tmp)
        os.chmod(tmp, self.mode)
        s.listen(512)
        os.rename(tmp, self.socket_path)
        self._sock = s

    def serve_forever(self) -> None:
        assert self._sock is not None, "bind() first"
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                if self._stop.is_set():
                    break
                raise
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def shutdown(self) -> None:
        self._stop.set()
        if self._sock is not None:
            with suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
        with suppress(FileNotFoundError):
            os.unlink(self.socket_path)

    def _peer(self, conn: socket.socket) -> tuple[int, bool]:
        """(the shim's pid, whether it may use the daemon)."""
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, _ = struct.unpack("3i", creds)
        return pid, uid in (0, self._uid)

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                pid, allowed = self._peer(conn)
                if not allowed:
                    return
                magic = _recv_exact(conn, len(p.MAGIC))
                if magic != p.MAGIC:
                    # A shim of another kanal version: it can still run the plugin itself.
                    with suppress(OSError):
                        conn.sendall(p.FALLBACK)
                    return
                name_len, env_len, stdin_len, netns, root, target = p.decode_header(
                    magic + _recv_exact(conn, p.HEADER_LEN - len(p.MAGIC))
                )
                body = _recv_exact(conn, name_len + env_len + stdin_len)
            except (ValueError, ConnectionError, OSError) as e:
                log.warning("bad fast-path request: %s", e)
                return
            name = body[:name_len].decode(errors="replace")
            env = p.decode_env(body[name_len : name_len + env_len])
            stdin = body[name_len + env_len :]
            reply = self.handle(name, env, stdin, netns, root, target, cwd=_cwd_of(pid))
            with suppress(OSError):
                conn.sendall(reply)

    def handle(
        self,
        name: str,
        env: dict[str, str],
        stdin: bytes,
        netns: tuple[int, int],
        root: tuple[int, int],
        target: tuple[int, int] = (0, 0),
        *,
        cwd: str | None = None,
    ) -> bytes:
        """Run one request; returns the encoded reply.

        ``cwd`` is the shim's working directory (the runtime's): relative paths in
        the request are resolved against it, as in a plugin process. Without it
        (unknown) the shim is told to run the plugin itself.
        """
        if netns != self._netns or root != self._root or cwd is None:
            return p.FALLBACK
        path = env.get("CNI_NETNS", "")
        if path and _id_or_zero(os.path.join(cwd, path)) != target:
            return p.FALLBACK
        try:
            funcs = load_plugin(name)
        except NotFound:
            return p.FALLBACK
        except Exception:  # a plugin that cannot even load: let the shim show why
            log.exception("cannot load plugin %s", name)
            return p.FALLBACK
        out, err = io.StringIO(), io.StringIO()
        t0 = time.perf_counter()
        code = Dispatcher(env, io.BytesIO(stdin), out, err, cwd, runner=self._runner).run(funcs)
        seconds = time.perf_counter() - t0
        self.served += 1
        log.info(
            "served %s %s (exit %d) in %.1f ms",
            name,
            env.get("CNI_COMMAND", "?"),
            code,
            seconds * 1e3,
        )
        stdout = out.getvalue().encode()
        if self.observe is not None:
            try:
                self.observe(name, env.get("CNI_COMMAND", ""), code, stdout, seconds)
            except Exception:  # counting must never fail a plugin request
                log.exception("fast-path observer")
        return b"".join(
            (
                p.HANDLED,
                bytes([code & 0xFF]),
                len(stdout).to_bytes(4, "big"),
                stdout,
                err.getvalue().encode(),
            )
        )
