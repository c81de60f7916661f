"""Small helpers shared by the runtime modules."""

from __future__ import annotations

from kanal.errors import KanalError

__all__ = ["prefixed"]


def prefixed(err: KanalError, prefix: str) -> KanalError:
    """A copy of ``err`` (same class, code and details) whose message starts with ``prefix``.

    The way Go's ``fmt.Errorf("context: %w", err)`` adds context while callers can
    still match the type and the CNI code.
    """
    cls = type(err)
    new = cls.__new__(cls)
    new.__dict__.update(err.__dict__)
    new.msg = f"{prefix}{err.msg}"
    new.args = (new.msg,)
    return new
