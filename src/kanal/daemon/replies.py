"""What a REST handler may return besides a body: another status, or a stream."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["Reply", "Stream"]


@dataclass(frozen=True)
class Reply:
    """An answer with a status other than 200 (``body`` None: no body)."""

    status: int
    body: Any = None


@dataclass(frozen=True)
class Stream:
    """An answer sent in chunks as they come (``chunks`` runs after the request's
    work is done; an empty chunk sends nothing, only checks the client is there)."""

    content_type: str
    chunks: Iterable[bytes]
