"""docker's flag syntax on top of argparse (the CLI's parsers are :class:`Parser`).

docker's CLI (Go's pflag) differs from argparse where a user notices:

- a boolean flag never takes the next word: ``network create --ipv6 v6net`` is the
  flag and the name; a value goes only after ``=`` (``--ipv6=false``), read as Go's
  strconv.ParseBool reads it (:func:`add_bool`);
- an unknown flag is reported by itself (``unknown flag: --foo``), never as
  "unrecognized arguments" that swallow the words after it;
- no abbreviations: ``--ipv`` is not ``--ipv6``.

This module is imported to build the parser: stdlib ``argparse`` only.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

__all__ = ["EXIT_USAGE", "GoBool", "Parser", "add_bool", "parse_go_bool"]

EXIT_USAGE = 2

_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")

#: where the innermost parser that left words unparsed puts its name
_EXTRAS_PROG = "_kanal_extras_prog"


def parse_go_bool(value: str, flag: str) -> bool:
    """``value`` as Go's strconv.ParseBool reads it.

    Raises:
        argparse.ArgumentTypeError: pflag's message for anything else.
    """
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise argparse.ArgumentTypeError(
        f'invalid argument "{value}" for "{flag}" flag: '
        f'strconv.ParseBool: parsing "{value}": invalid syntax'
    )


class GoBool(argparse.Action):
    """A boolean flag as pflag's: alone it means true and takes no word after it;
    ``--flag=VALUE`` sets VALUE (see :meth:`Parser._parse_optional`)."""

    value = True

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        kwargs.setdefault("default", False)
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, self.value)


class _Set(GoBool):
    """``--flag=VALUE`` of a :class:`GoBool`: sets the value already read."""

    def __init__(self, of: GoBool, value: bool) -> None:
        super().__init__(of.option_strings, of.dest, default=of.default)
        self.value = value


def add_bool(parser: argparse.ArgumentParser, *names: str, **kwargs: Any) -> argparse.Action:
    """A pflag boolean flag (``--ipv6``, ``--ipv6=false``) on ``parser``."""
    return parser.add_argument(*names, action=GoBool, **kwargs)


def _one_line(text: str) -> str:
    return " ".join(text.split("\n")).strip()


_NEEDS_VALUE = re.compile(r"^argument ([^:]+): expected one argument$")


class Parser(argparse.ArgumentParser):
    """An ArgumentParser with docker's flag syntax whose usage errors are one line
    on stderr (exit status 2)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)  # pflag has none
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        m = _NEEDS_VALUE.match(message)
        if m:  # pflag's words
            message = f"flag needs an argument: {m.group(1).split('/')[-1]}"
        sys.stderr.write(f"kanal: {_one_line(message)} (see '{self.prog} --help')\n")
        sys.exit(EXIT_USAGE)

    def _parse_optional(self, arg_string: str) -> Any:
        found = super()._parse_optional(arg_string)
        # Python 3.11: (action, option_string, explicit_arg) or None
        if isinstance(found, tuple) and len(found) == 3:
            action, option_string, explicit = found
            if isinstance(action, GoBool) and explicit is not None:
                try:
                    value = parse_go_bool(explicit, option_string)
                except argparse.ArgumentTypeError as e:
                    self.error(str(e))
                return _Set(action, value), option_string, None
        return found

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        ns, extras = super().parse_known_args(args, namespace)
        if extras and not getattr(ns, _EXTRAS_PROG, ""):
            setattr(ns, _EXTRAS_PROG, self.prog)  # the innermost command's name
        return ns, extras

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        ns, extras = self.parse_known_args(args, namespace)
        if extras:
            prog = getattr(ns, _EXTRAS_PROG, "") or self.prog
            word = extras[0]
            if word.startswith("--"):
                msg = f"unknown flag: {word.split('=', 1)[0]}"
            elif word.startswith("-") and len(word) > 1:
                msg = f"unknown shorthand flag: {word[1]!r} in {word}"
            else:
                msg = f'"{prog}" accepts no argument "{word}" here'
            sys.stderr.write(f"kanal: {msg} (see '{prog} --help')\n")
            sys.exit(EXIT_USAGE)
        if hasattr(ns, _EXTRAS_PROG):
            delattr(ns, _EXTRAS_PROG)
        return ns
