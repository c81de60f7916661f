"""The body of every installed plugin executable (runs with ``python -I -S``).

Installed executables import this file as a top-level module ``shim`` from its
own directory, so a plugin exec imports no kanal package: only this one cached
module and builtins (posix, _socket, sys, marshal, and the import system). An
interpreter start is ~6 ms here and every module costs. The shim hands env and
stdin to kanald over a unix socket and relays its answer; if no daemon answers,
or the daemon asks it to, it runs the plugin itself, in this same process (no
second interpreter start): see :mod:`kanal.fastpath.standalone`, whose modules
come from the exec image when the installer wrote one (:mod:`kanal.fastpath.image`,
served by :class:`ImageFinder`). Keep it free of ``from __future__`` and of any
other import.
"""

import _socket
import marshal
import posix
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec
    from types import CodeType, ModuleType

# The import system's own spec class (already loaded: importing importlib costs ~0.7 ms).
_ModuleSpec = sys.modules["_frozen_importlib"].ModuleSpec

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


IMAGE_MAGIC = b"KNLIMG1 "  # kanal.fastpath.image.MAGIC


class ImageFinder:
    """Serves the modules of an exec image (see kanal.fastpath.image) from its file.

    First on ``sys.meta_path``: a module the image holds is read (one ``pread``) and
    unmarshalled while its source file still has the size and modification time
    recorded there; any other module, or a stale one, is left to the usual finders.
    """

    def __init__(
        self, index: "dict[str, tuple[bool, str, str, int, int, int, int]]", fd: int, base: int
    ) -> None:
        self.index = index
        self.fd = fd  # not inherited by an exec (PEP 446); open until the process ends
        self.base = base
        self.codes: dict[str, CodeType] = {}

    def find_spec(
        self, name: str, path: object = None, target: object = None
    ) -> "ModuleSpec | None":
        entry = self.index.get(name)
        if entry is None:
            return None
        try:
            is_pkg, origin, cached, mtime, size, offset, length = entry
            st = posix.stat(origin)
            if st.st_mtime_ns != mtime or st.st_size != size:
                return None
            blob = posix.pread(self.fd, length, self.base + offset)
            if len(blob) != length:
                return None
            # The image is as trusted as this executable: the installer wrote both.
            code = marshal.loads(blob)  # noqa: S302
        except (OSError, ValueError, EOFError, TypeError):
            return None
        self.codes[name] = code
        spec: ModuleSpec = _ModuleSpec(name, self, origin=origin, is_package=is_pkg)
        spec.has_location = True  # __file__ and __cached__, as a file's module has
        spec.cached = cached or None  # known: computing it costs ~20 us a module
        if is_pkg:
            spec.submodule_search_locations = [origin.rpartition("/")[0]]
        return spec

    def create_module(self, spec: "ModuleSpec") -> None:
        return None

    def exec_module(self, module: "ModuleType") -> None:
        exec(self.codes.pop(module.__name__), module.__dict__)  # noqa: S102


def _load_image(path: str) -> None:
    """Put the exec image at ``path`` first on sys.meta_path, if it is there and was
    built by this interpreter; otherwise do nothing (imports go the usual way)."""
    try:
        fd = posix.open(path, posix.O_RDONLY)  # close-on-exec, as every fd Python makes
    except OSError:
        return
    head = IMAGE_MAGIC + sys.version.encode() + b"\n"
    try:
        first = posix.pread(fd, 65536, 0)
        if not first.startswith(head):
            raise ValueError(path)
        start = len(head) + 8
        n = int.from_bytes(first[len(head) : start], "big")
        raw = first[start : start + n]
        if len(raw) < n:
            raw += posix.pread(fd, n - len(raw), start + len(raw))
        index = marshal.loads(raw)  # noqa: S302 - see find_spec
        if type(index) is not dict:
            raise ValueError(path)
    except (OSError, ValueError, EOFError, TypeError):
        posix.close(fd)
        return
    sys.meta_path.insert(0, ImageFinder(index, fd, start + n))


def fallback(
    name: str, src: str, stdin: "bytes | None", paths: "tuple[str, ...]" = (), image: str = ""
) -> None:
    """Run the plugin in this process (no daemon, or the daemon declined).

    ``src`` holds the kanal package; ``paths`` are the installing interpreter's
    site directories. They go after the standard library: this interpreter runs
    with ``-S``, which keeps site's start-up cost (and every .pth file) away from
    each exec, and the plugins' exec path needs nothing from there (what does,
    pyroute2 for the rarer operations, is found there). ``image`` is the exec
    image the installer wrote (kanal.fastpath.image), if any.
    """
    sys.path.insert(0, src)
    sys.path.extend(paths)
    if image:
        _load_image(image)
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


def run(
    name: str, socket_path: str, src: str, paths: "tuple[str, ...]" = (), image: str = ""
) -> None:
    """Entry of an installed shim: exits the process."""
    env = posix.environ
    path = env.get(b"KANAL_SOCKET", b"").decode() or socket_path
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError:
        s.close()
        fallback(name, src, None, paths, image)
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
        fallback(name, src, stdin, paths, image)
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
