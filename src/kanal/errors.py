"""The error taxonomy shared by every layer of kanal.

Every layer raises one of these. Each wire boundary maps them once:
the CNI dispatcher to the CNI error object (``code`` below), the REST/plugin
servers to an HTTP status and ``{"Err": msg}``, the CLI to one line and an exit code.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = [
    "Conflict",
    "DecodeError",
    "Degraded",
    "Forbidden",
    "IOFailure",
    "IncompatibleVersion",
    "Internal",
    "InvalidConfig",
    "InvalidEnv",
    "KanalError",
    "NotFound",
    "NotSupported",
    "TeardownError",
    "TooLarge",
    "TryAgain",
    "Unavailable",
    "UnsupportedField",
    "best_effort",
]


class KanalError(Exception):
    """Base of every kanal error.

    ``msg`` is short; ``details`` is optional longer context. ``code`` is the CNI
    error code (SPEC §Error): 0-99 are reserved by the spec, 999 is "internal"
    as in Go's skel.
    """

    code: int = 999
    http_status: int = 500

    def __init__(self, msg: str, details: str = "", *, code: int | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        self.details = details
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"{self.msg}: {self.details}" if self.details else self.msg


class IncompatibleVersion(KanalError):
    code = 1
    http_status = 400


class UnsupportedField(KanalError):
    code = 2
    http_status = 400


class NotFound(KanalError):
    """Something named does not exist (container, link, network, reservation)."""

    code = 3
    http_status = 404


class InvalidEnv(KanalError):
    code = 4
    http_status = 400


class IOFailure(KanalError):
    code = 5


class DecodeError(KanalError):
    code = 6
    http_status = 400


class TooLarge(DecodeError):
    """A request over a size limit (HTTP 413)."""

    http_status = 413


class InvalidConfig(KanalError):
    code = 7
    http_status = 400


class Conflict(KanalError):
    """The request collides with existing state (address taken, name in use)."""

    code = 999
    http_status = 409


class TryAgain(KanalError):
    code = 11
    http_status = 503


class Unavailable(KanalError):
    """STATUS: the plugin cannot serve ADD now."""

    code = 50
    http_status = 503


class Degraded(KanalError):
    """STATUS: not available, and existing containers may be affected."""

    code = 51
    http_status = 503


class Internal(KanalError):
    code = 999


class Forbidden(KanalError):
    """The operation is never allowed on this object (a built-in network, say)."""

    http_status = 403


class NotSupported(KanalError):
    """A Docker Engine API request for what kanal does not have (images, volumes,
    creating containers from images): HTTP 501."""

    http_status = 501


class TeardownError(KanalError):
    """Several best-effort teardown steps failed; every step was still attempted."""

    code = 999

    def __init__(self, msg: str, errors: Iterable[BaseException]) -> None:
        self.errors = list(errors)
        super().__init__(msg, "; ".join(str(e) for e in self.errors))


def best_effort(fn: Callable[..., object], *args: object) -> None:
    """Run a teardown step whose failure must not stop the next ones (logged, not raised)."""
    try:
        fn(*args)
    except KanalError as e:
        # lazy: only when it happens (logging costs a plugin exec ~3 ms)
        import logging

        logging.getLogger("kanal").warning("best-effort step failed: %s", e)
