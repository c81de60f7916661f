"""``kanal events``: kanald's events as they happen, as ``docker events`` shows them.

Filters (``-f KEY=VALUE``, repeatable; values of one key OR'ed, keys AND'ed):
``type`` (container, network, node), ``event`` (create, start, die, stop, destroy,
connect, disconnect, join, leave), ``container``, ``network`` and ``node`` (an id,
an id prefix or a name), ``scope``. ``--since``/``--until`` take docker's forms: Unix seconds
(``1700000000.5``), an RFC 3339 date or time (``2024-05-01``,
``2024-05-01T10:00:00Z``; local time without a zone) or a Go duration before now
(``10m``, ``1h30m``). With ``--until`` the command ends when that time is reached;
without, it runs until interrupted. kanald keeps its last 1000 events for
``--since``.

Each event is a line: docker's default (time, type, action, actor id,
``(attributes)``), ``--format json`` (the event's JSON), or a Go template on the
event (``{{.Type}} {{.Action}} {{.Actor.Attributes.name}}``; fields as docker's:
Status, ID, From, Type, Action, Actor.ID, Actor.Attributes, Scope, Time, TimeNano).
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

from kanal.errors import InvalidConfig

__all__ = ["line", "register", "timestamp"]

_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_DURATION = re.compile(r"([+-]?)((?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+|0)")
_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIX = re.compile(r"\d{1,12}(\.\d{1,9})?")
_ISO = re.compile(
    r"(\d{4}-\d{2}-\d{2}(?:T\d{2}(?::\d{2}(?::\d{2}(\.\d{1,9})?)?)?)?)(Z|[+-]\d{2}:\d{2})?"
)


def _duration_ns(value: str) -> int | None:
    """Go's time.ParseDuration, in ns (None: not a duration)."""
    m = _DURATION.fullmatch(value)
    if m is None:
        return None
    total = 0.0
    for num, unit in _PART.findall(m.group(2)):
        total += float(num) * _UNIT_NS[unit]
    return int(-total if m.group(1) == "-" else total)


def timestamp(value: str, now_ns: int, what: str = "--since") -> str:
    """docker's GetTimestamp: ``value`` as the ``seconds.nanoseconds`` kanald wants.

    Raises InvalidConfig (one line naming the option)."""
    from datetime import datetime  # lazy: only --since/--until

    d = _duration_ns(value)
    if d is not None:
        t = now_ns - d
        return f"{t // 1_000_000_000}.{t % 1_000_000_000:09d}"
    if _UNIX.fullmatch(value):
        return value
    m = _ISO.fullmatch(value)
    if m is not None:
        base = m.group(1).removesuffix(m.group(2) or "")
        try:
            dt = datetime.fromisoformat(base + (m.group(3) or "").replace("Z", "+00:00"))
        except ValueError:
            m = None
        else:
            if dt.tzinfo is None:
                dt = dt.astimezone()  # no zone: local time, as docker
            frac = (m.group(2) or ".")[1:].ljust(9, "0")
            return f"{int(dt.timestamp())}.{frac}"
    raise InvalidConfig(
        f"invalid {what} {value!r}: want Unix seconds, an RFC 3339 time or a duration (10m)"
    )


def _time(ns: int) -> str:
    """Go's RFC3339NanoFixed in local time, as docker prints an event's time."""
    from datetime import datetime  # lazy: only when printing

    dt = datetime.fromtimestamp(ns // 1_000_000_000).astimezone()
    off = dt.strftime("%z")
    zone = "Z" if off in ("+0000", "") else f"{off[:3]}:{off[3:]}"
    return f"{dt.strftime('%Y-%m-%dT%H:%M:%S')}.{ns % 1_000_000_000:09d}{zone}"


def line(ev: dict[str, Any]) -> str:
    """docker's default line of one event."""
    actor = ev.get("Actor") or {}
    attrs = actor.get("Attributes") or {}
    out = f"{_time(int(ev.get('timeNano', 0)))} {ev.get('Type', '')} {ev.get('Action', '')} "
    out += str(actor.get("ID", ""))
    if attrs:
        out += " (" + ", ".join(f"{k}={attrs[k]}" for k in sorted(attrs)) + ")"
    return out


def _template_object(ev: dict[str, Any]) -> dict[str, Any]:
    """The event as docker's Go struct (events.Message): its field names."""
    from kanal.cli.gotemplate.values import GoMap  # lazy: only with a template

    actor = ev.get("Actor") or {}
    return {
        "Status": ev.get("status", ""),
        "ID": ev.get("id", ""),
        "From": ev.get("from", ""),
        "Type": ev.get("Type", ""),
        "Action": ev.get("Action", ""),
        "Actor": {"ID": actor.get("ID", ""), "Attributes": GoMap(actor.get("Attributes") or {})},
        "Scope": ev.get("scope", ""),
        "Time": ev.get("time", 0),
        "TimeNano": ev.get("timeNano", 0),
    }


def cmd_events(args: argparse.Namespace) -> int:
    import json
    import time

    # lazy: a kanal command loads only what it runs (the CLI starts for every call)
    from kanal.daemon.client import ApiClient

    filters: dict[str, list[str]] = {}
    for f in args.filter:
        key, eq, value = f.partition("=")
        if not eq or not key:
            raise InvalidConfig(f"bad format of filter {f!r} (expected name=value)")
        filters.setdefault(key, []).append(value)
    now = time.time_ns()
    query = {}
    if filters:
        query["filters"] = json.dumps(filters)
    if args.since:
        query["since"] = timestamp(args.since, now, "--since")
    if args.until:
        query["until"] = timestamp(args.until, now, "--until")
    fmt = args.format
    tmpl = None
    if fmt and fmt != "json":
        from kanal.cli.gotemplate import parse  # lazy: only with a template

        tmpl = parse(fmt.replace("\\t", "\t").replace("\\n", "\n"))  # bad: fails before streaming
    for ev in ApiClient(args.host).stream_json("/events", query):
        if fmt == "json":
            out = json.dumps(ev, separators=(",", ":"))
        elif tmpl is not None:
            out = tmpl.execute(_template_object(ev))
        else:
            out = line(ev)
        sys.stdout.write(out + "\n")
        sys.stdout.flush()
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("events", help="kanald's events as they happen (docker events)")
    p.add_argument("-H", "--host", default=None, help="kanald's API socket (or $KANAL_HOST)")
    p.add_argument(
        "-f",
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="type, event, container, network, node, scope (repeatable)",
    )
    p.add_argument("--since", default="", help="show events since this time (and then live)")
    p.add_argument("--until", default="", help="stop at this time")
    p.add_argument("--format", default="", help="json or a Go template per event")
    p.set_defaults(handler=cmd_events)
