"""The ``CNI_*`` environment of one plugin invocation (Go ``skel.getCmdArgsFromEnv``)."""

from __future__ import annotations

from kanal._dataclass import dataclass
from kanal.errors import InvalidEnv
from kanal.spec.args import validate_container_id, validate_ifname

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["COMMANDS", "CmdEnv", "parse_env", "required_vars"]

COMMANDS: tuple[str, ...] = ("ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION")

_ALL_BUT_VERSION = frozenset({"ADD", "CHECK", "DEL", "GC", "STATUS"})
_ATTACHMENT_CMDS = frozenset({"ADD", "CHECK", "DEL"})

# (variable, commands that require it, validator applied when it is required and set),
# in Go skel's order, which is also the order of the "missing" list.
_VARS: tuple[tuple[str, frozenset[str], Callable[[str], None] | None], ...] = (
    ("CNI_COMMAND", _ALL_BUT_VERSION, None),
    ("CNI_CONTAINERID", _ATTACHMENT_CMDS, validate_container_id),
    ("CNI_NETNS", frozenset({"ADD", "CHECK"}), None),  # optional on DEL (cni#548)
    ("CNI_IFNAME", _ATTACHMENT_CMDS, validate_ifname),
    ("CNI_ARGS", frozenset(), None),
    ("CNI_PATH", _ALL_BUT_VERSION, None),
    ("CNI_NETNS_OVERRIDE", frozenset(), None),
)


@dataclass(frozen=True, slots=True)
class CmdEnv:
    """The parsed variables. Unset ones are "" (``path`` is empty)."""

    command: str
    container_id: str
    netns: str
    ifname: str
    args: str
    path: tuple[str, ...]
    netns_override: bool


def required_vars(command: str) -> tuple[str, ...]:
    """The variables Go skel requires for ``command`` (CNI_COMMAND always)."""
    return tuple(name for name, req, _ in _VARS if command in req or name == "CNI_COMMAND")


def parse_env(env: Mapping[str, str]) -> CmdEnv:
    """Read and validate the ``CNI_*`` variables for the command in ``CNI_COMMAND``.

    Required per command (Go skel): ADD/CHECK: CONTAINERID, NETNS, IFNAME, PATH;
    DEL: CONTAINERID, IFNAME, PATH; GC/STATUS: PATH; VERSION: nothing else. An empty
    variable counts as missing. Variables are checked in Go's order; a required one
    that is set but invalid fails at once, otherwise every missing one is named.
    Only required variables are validated.

    Raises:
        InvalidEnv: code 4 ``required env variables [CNI_NETNS,CNI_PATH] missing``;
            code 3/4 from container ID validation; code 4 for a bad interface name;
            code 4 ``unknown CNI_COMMAND: X``.
    """
    command = env.get("CNI_COMMAND", "")
    missing: list[str] = []
    for name, required_for, validate in _VARS:
        value = env.get(name, "")
        if value == "":
            if command in required_for or name == "CNI_COMMAND":
                missing.append(name)
        elif validate is not None and command in required_for:
            validate(value)
    if missing:
        raise InvalidEnv(f"required env variables [{','.join(missing)}] missing")
    if command not in COMMANDS:
        raise InvalidEnv(f"unknown CNI_COMMAND: {command}")
    override = env.get("CNI_NETNS_OVERRIDE", "")
    return CmdEnv(
        command=command,
        container_id=env.get("CNI_CONTAINERID", ""),
        netns=env.get("CNI_NETNS", ""),
        ifname=env.get("CNI_IFNAME", ""),
        args=env.get("CNI_ARGS", ""),
        path=tuple(p for p in env.get("CNI_PATH", "").split(":") if p),
        netns_override=override.upper() == "TRUE" or override == "1",
    )
