"""The ``kanal`` command: a small router over subcommand modules.

Each module listed in ``_COMMANDS`` has ``register(subparsers)``, which adds its
parser and sets ``handler`` (``handler(args) -> int``) as a default. Those modules
are imported to build the parser, so at module level they may import only light
stdlib modules; everything heavy is imported inside the handlers, which keeps
``kanal --help`` quick.

Errors from kanal (:class:`kanal.errors.KanalError`) and the operating system end
as one line on stderr, ``kanal: <message>``, and exit status 1; usage errors as one
line and exit status 2. No tracebacks.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from kanal.errors import KanalError

__all__ = ["build_parser", "main"]

_COMMANDS = (
    "kanal.cli.cni",
    "kanal.cli.network",
    "kanal.cli.run",
    "kanal.cli.node",
    "kanal.cli.system",
    "kanal.cli.dhcp",
    "kanal.cli.lab",
    "kanal.cli.inspect",
    "kanal.cli.lifecycle",
)

EXIT_ERROR = 1
EXIT_USAGE = 2


def _one_line(text: str) -> str:
    return " ".join(text.split("\n")).strip()


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"kanal: {_one_line(message)} (see '{self.prog} --help')\n")
        sys.exit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="kanal",
        description="Container networking: CNI plugins and runtime.",
    )
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=Parser)
    for name in _COMMANDS:
        importlib.import_module(name).register(subparsers)
    parser.set_defaults(handler=None, _parser=parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``kanal ARGV``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.handler is None:
        args._parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.handler(args) or 0)
    except KanalError as e:
        sys.stderr.write(f"kanal: {_one_line(str(e))}\n")
    except OSError as e:
        sys.stderr.write(f"kanal: {_one_line(str(e))}\n")
    except KeyboardInterrupt:
        sys.stderr.write("kanal: interrupted\n")
        return 130
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
