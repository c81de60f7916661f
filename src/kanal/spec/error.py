"""The CNI error object on the wire (SPEC §Error; Go ``types.Error``, ``invoke.RawExec``)."""

from __future__ import annotations

from collections.abc import Mapping

from kanal.errors import (
    DecodeError,
    Degraded,
    IncompatibleVersion,
    Internal,
    InvalidConfig,
    InvalidEnv,
    IOFailure,
    KanalError,
    NotFound,
    TryAgain,
    Unavailable,
    UnsupportedField,
)
from kanal.spec._go import loads, quote

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["error_from_wire", "error_to_wire"]

_BY_CODE: dict[int, type[KanalError]] = {
    1: IncompatibleVersion,
    2: UnsupportedField,
    3: NotFound,
    4: InvalidEnv,
    5: IOFailure,
    6: DecodeError,
    7: InvalidConfig,
    11: TryAgain,
    50: Unavailable,
    51: Degraded,
    999: Internal,
}


def error_to_wire(err: KanalError, cni_version: str) -> dict[str, Any]:
    """``{"cniVersion", "code", "msg", "details"?}``; ``details`` omitted when empty.

    (Go's ``types.Error`` prints no ``cniVersion``; the spec's error object has one.)
    """
    out: dict[str, Any] = {"cniVersion": cni_version, "code": err.code, "msg": err.msg}
    if err.details:
        out["details"] = err.details
    return out


def _exit_suffix(exit_code: int | None) -> str:
    return "" if exit_code is None else f": exit status {exit_code}"


def error_from_wire(
    data: bytes | str | Mapping[str, Any],
    stderr: bytes = b"",
    *,
    exit_code: int | None = None,
) -> KanalError:
    """Runtime side: the error of a plugin that exited non-zero (Go ``RawExec.pluginErr``).

    ``data`` is the plugin's stdout. The code is kept and mapped to the matching
    kanal error class (other codes: a plain KanalError with that code). Empty stdout
    gives ``netplugin failed: "<stderr>"`` (or ``netplugin failed with no error
    message``), unparsable stdout gives ``netplugin failed but error parsing its
    diagnostic message "<stdout>": <reason>``; both with code 0 as in Go.
    ``exit_code`` appends Go's ``: exit status N``.
    """
    if isinstance(data, bytes | str) and len(data) == 0:
        if stderr:
            msg = f"netplugin failed: {quote(stderr)}{_exit_suffix(exit_code)}"
        else:
            msg = f"netplugin failed with no error message{_exit_suffix(exit_code)}"
        return KanalError(msg, code=0)
    try:
        obj = data if isinstance(data, Mapping) else loads(data, "error parsing")
        if obj is None:  # Go: "null" decodes to the zero Error
            obj = {}
        if not isinstance(obj, Mapping):
            raise DecodeError("error parsing", "json: cannot unmarshal into types.Error")
        code, msg, details = obj.get("code", 0), obj.get("msg", ""), obj.get("details", "")
        code = 0 if code is None else code
        msg = "" if msg is None else msg
        details = "" if details is None else details
        if isinstance(code, bool) or not isinstance(code, int) or code < 0:
            raise DecodeError("error parsing", f"bad code {code!r}")
        if not isinstance(msg, str) or not isinstance(details, str):
            raise DecodeError("error parsing", "msg and details must be strings")
    except DecodeError as e:
        shown = data if isinstance(data, bytes | str) else repr(data)
        return KanalError(
            f"netplugin failed but error parsing its diagnostic message {quote(shown)}: "
            f"{e.details or e.msg}",
            code=0,
        )
    cls = _BY_CODE.get(code, KanalError)
    return cls(msg, details, code=code)
