"""What a request's ``Container`` field can name: kanal's sandboxes, named namespaces."""

from __future__ import annotations

import hashlib
import os
from typing import Protocol

from kanal.engine.model import SandboxRef, validate_name
from kanal.errors import NotFound

__all__ = ["ChainedSandboxes", "NetnsSandboxes", "NoSandboxes", "SandboxResolver"]


class SandboxResolver(Protocol):
    """Finds the sandbox a ``Container`` field names (id, id prefix or name)."""

    def resolve(self, ref: str) -> SandboxRef: ...

    def names(self) -> dict[str, str]:
        """sandbox id -> name, for inspect output."""
        ...


class NoSandboxes:
    """The null resolver: an engine without sandboxes."""

    def resolve(self, ref: str) -> SandboxRef:
        raise NotFound(f"No such container: {ref}")

    def names(self) -> dict[str, str]:
        return {}


class NetnsSandboxes:
    """Named network namespaces (``ip netns add X``) as sandboxes: ``X`` or its path.

    Lets kanal manage networks for namespaces made by hand or by another tool:
    the id is derived from the path, so it is stable across daemon restarts; the
    name is the namespace's name.
    """

    def __init__(self, netns_dir: str = "/run/netns") -> None:
        self.netns_dir = netns_dir

    def resolve(self, ref: str) -> SandboxRef:
        if ref.startswith("/"):
            path = os.path.normpath(ref)
            if os.path.dirname(path) != os.path.normpath(self.netns_dir):
                raise NotFound(f"No such container: {ref}")
            name = os.path.basename(path)
        else:
            name = ref
            path = os.path.join(self.netns_dir, name)
        validate_name(name, "container")
        if not os.path.exists(path):
            raise NotFound(f"No such container: {ref}")
        sid = hashlib.sha256(f"netns:{path}".encode()).hexdigest()
        return SandboxRef(sid, name, path)

    def names(self) -> dict[str, str]:
        return {}


class ChainedSandboxes:
    """Asks each resolver in turn (kanal's own sandboxes first, then named netns)."""

    def __init__(self, *resolvers: SandboxResolver) -> None:
        self.resolvers = resolvers

    def resolve(self, ref: str) -> SandboxRef:
        err: NotFound | None = None
        for r in self.resolvers:
            try:
                return r.resolve(ref)
            except NotFound as e:
                err = e
        raise err or NotFound(f"No such container: {ref}")

    def names(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for r in reversed(self.resolvers):
            out.update(r.names())
        return out
