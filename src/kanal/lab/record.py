"""What a lab made, on disk: ``<lab root>/<name>/lab.json``, so any later shell can
list it, change its faults and take it down.

The record is written before each thing it names is made (a namespace is
recorded, then added; a process is recorded as soon as it runs), so a ``lab up``
that fails or is killed half way leaves a record ``lab down`` can finish from.
Directories are 0700 and files 0600 (root's alone); commands that change a lab
hold an ``flock`` on ``<lab>/lock``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from kanal.errors import Conflict, DecodeError, NotFound
from kanal.lab.spec import LabSpec, validate_lab_name

__all__ = ["DEFAULT_ROOT", "LabRecord", "ProcEntry", "lab_root", "list_labs", "locked"]

DEFAULT_ROOT = "/run/kanal-lab"


def lab_root(root: str | None = None) -> str:
    """The directory holding every lab: ``root``, else ``$KANAL_LAB_DIR``, else
    /run/kanal-lab."""
    return root or os.environ.get("KANAL_LAB_DIR", "") or DEFAULT_ROOT


@dataclass
class ProcEntry:
    """A process the lab started: pid and start time (a recycled pid is never
    taken for it), what it runs, and where (a namespace name)."""

    pid: int
    start: str
    argv: list[str]
    netns: str
    log: str = ""


@dataclass
class LabRecord:
    name: str
    id: str
    dir: str
    spec: dict[str, Any]
    created: float = field(default_factory=time.time)
    state: str = "creating"  # creating | up | removing
    underlay: str = ""  # the underlay namespace
    namespaces: list[str] = field(default_factory=list)  # every one made, in order
    members: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> ns, addr, mac
    procs: dict[str, ProcEntry] = field(default_factory=dict)  # "kanald:h1", "etcd:e2", ...
    # faults in force: partition groups, impairments per member, frozen processes
    partition: list[list[str]] = field(default_factory=list)
    netem: dict[str, dict[str, float]] = field(default_factory=dict)
    frozen: list[str] = field(default_factory=list)

    @property
    def path(self) -> str:
        return os.path.join(self.dir, "lab.json")

    def lab_spec(self) -> LabSpec:
        return LabSpec.from_dict(self.spec)

    def save(self) -> None:
        d = asdict(self)
        tmp = f"{self.path}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(d, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    @staticmethod
    def load(name: str, root: str | None = None) -> LabRecord:
        """The record of lab ``name``. Raises NotFound, DecodeError."""
        validate_lab_name(name)
        d = os.path.join(lab_root(root), name)
        path = os.path.join(d, "lab.json")
        try:
            with open(path) as f:
                raw = json.load(f)
        except FileNotFoundError:
            raise NotFound(f"no lab named {name!r} (in {lab_root(root)})") from None
        except (OSError, ValueError) as e:
            raise DecodeError(f"lab {name!r}: unreadable record {path}", str(e)) from None
        try:
            raw["procs"] = {k: ProcEntry(**v) for k, v in raw.get("procs", {}).items()}
            rec = LabRecord(**raw)
        except TypeError as e:
            raise DecodeError(f"lab {name!r}: invalid record {path}", str(e)) from None
        rec.dir = d  # where it is now, whatever it says
        return rec


def make_root(root: str) -> None:
    os.makedirs(root, mode=0o700, exist_ok=True)
    os.chmod(root, 0o700)


def create_dir(name: str, root: str | None = None) -> str:
    """Make ``<root>/<name>`` (0700); Conflict if that lab exists."""
    validate_lab_name(name)
    r = lab_root(root)
    make_root(r)
    d = os.path.join(r, name)
    try:
        os.mkdir(d, 0o700)
    except FileExistsError:
        raise Conflict(f"lab {name!r} exists (kanal lab down {name} first)") from None
    return d


def list_labs(root: str | None = None) -> list[str]:
    r = lab_root(root)
    try:
        names = sorted(os.listdir(r))
    except FileNotFoundError:
        return []
    return [n for n in names if os.path.exists(os.path.join(r, n, "lab.json"))]


@contextlib.contextmanager
def locked(lab_dir: str) -> Iterator[None]:
    """Hold the lab's lock (one changing command at a time)."""
    fd = os.open(os.path.join(lab_dir, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
