"""kanald's process environment: root, one daemon per state, and its logs.

Each check fails with one line that says what to do (:class:`StartError`), never
a traceback: kanald as a user (it makes namespaces, links, firewall rules), a
second kanald on the same state directory or sockets (with the running one's
pid), a log file it cannot open.

Logs: one line per record with an RFC 3339 timestamp (``--log-format text``) or
one JSON object per line (``json``: ``time``, ``level``, ``logger``, ``msg``,
``exc`` when there is a traceback), on stderr or ``--log-file`` (0600).
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import time
from typing import IO

__all__ = [
    "LOCK_FILE",
    "JsonFormatter",
    "StartError",
    "check_socket_free",
    "hold_instance_lock",
    "require_root",
    "setup_logging",
]

LOCK_FILE = "kanald.pid"


class StartError(Exception):
    """kanald cannot start here; the message is the one line it prints."""


def require_root() -> None:
    """Raises StartError unless this process is root."""
    if os.geteuid() != 0:
        raise StartError(
            "must run as root (it makes network namespaces, links and firewall rules); "
            "start it with sudo or as a root service"
        )


def hold_instance_lock(path: str) -> IO[str]:
    """Take ``path`` (a lock file, written with this pid) for the process's life.

    Raises:
        StartError: another kanald holds it (its pid in the message).
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
    f = open(path, "a+")  # noqa: SIM115 - held open (locked) until the process ends
    os.chmod(path, 0o600)
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise
        f.seek(0)
        pid = f.read().strip() or "?"
        f.close()
        raise StartError(
            f"another kanald (pid {pid}) is already running on {os.path.dirname(path)}: "
            f"stop it first (kill {pid}), or give this one its own --state-dir, --socket "
            "and --api-socket"
        ) from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


def check_socket_free(path: str) -> None:
    """Raises StartError when a live server answers on the unix socket ``path``
    (checked before anything is made; a stale file is the server's to replace)."""
    import socket

    if not path or not os.path.exists(path):
        return
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError:
        return
    finally:
        s.close()
    raise StartError(
        f"another daemon is serving {path}: stop it first, or give this kanald another socket"
    )


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (RFC 3339, UTC), level, logger, msg[, exc]."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": _rfc3339(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def _rfc3339(t: float) -> str:
    ms = int((t % 1) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{ms:03d}Z"


class _TextFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _rfc3339(record.created)


def setup_logging(level: str, log_file: str = "", fmt: str = "text") -> None:
    """kanald's root logger: ``level`` (debug ... critical), to stderr or
    ``log_file`` (appended, 0600), as text or JSON lines.

    Raises:
        StartError: the file cannot be opened.
    """
    handler: logging.Handler
    if log_file:
        try:
            fd = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise StartError(f"cannot open --log-file {log_file}: {e.strerror}") from None
        handler = logging.StreamHandler(os.fdopen(fd, "a", buffering=1))
    else:
        handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            _TextFormatter("%(asctime)s kanald %(levelname)s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level.upper())
