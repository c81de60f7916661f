"""The ``kanal`` command: a small router over subcommand modules.

Each module listed in ``_COMMANDS`` has ``register(subparsers)``, which adds its
parser and sets ``handler`` (``handler(args) -> int``) as a default. Those modules
are imported to build the parser, so at module level they may import only light
stdlib modules; everything heavy is imported inside the handlers, which keeps
``kanal --help`` quick.

Errors from kanal (:class:`kanal.errors.KanalError`) and the operating system end
as one line on stderr, ``kanal: <message>``, and exit status 1; usage errors as one
line and exit status 2 (docker's flag syntax: :mod:`kanal.cli.flags`); output into
a closed pipe ends quietly with 141. No tracebacks.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from kanal.cli.flags import EXIT_USAGE, Parser
from kanal.errors import KanalError

__all__ = ["EXIT_USAGE", "Parser", "build_parser", "main"]

_COMMANDS = (
    "kanal.cli.cni",
    "kanal.cli.network",
    "kanal.cli.run",
    "kanal.cli.node",
    "kanal.cli.system",
    "kanal.cli.dhcp",
    "kanal.cli.lab",
    "kanal.cli.inspect",
    "kanal.cli.events",
    "kanal.cli.graph",
    "kanal.cli.explain",
    "kanal.cli.lifecycle",
)

EXIT_ERROR = 1


def _one_line(text: str) -> str:
    return " ".join(text.split("\n")).strip()


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
        code = int(args.handler(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not at the interpreter's exit
        return code
    except BrokenPipeError:
        return _closed_pipe()
    except KanalError as e:
        sys.stderr.write(f"kanal: {_one_line(str(e))}\n")
    except OSError as e:
        sys.stderr.write(f"kanal: {_one_line(str(e))}\n")
    except KeyboardInterrupt:
        sys.stderr.write("kanal: interrupted\n")
        return 130
    return EXIT_ERROR


def _closed_pipe() -> int:
    """The reader of our output went away (``kanal ps | head``): quiet, as docker's
    CLI is, with the status of a process SIGPIPE ended (what a shell reports for
    one)."""
    import os

    # What is still buffered can go nowhere: stdout becomes /dev/null, so that
    # the interpreter's final flush does not fail again.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + 13


if __name__ == "__main__":
    sys.exit(main())
