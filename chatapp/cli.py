"""The `chatapp` command: the TUI by default, and `ask`, `models`, `sessions`, `config`."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from chatapp import __version__

# Subcommand modules, imported only when their command runs.
COMMAND_MODULES = ("models", "sessions", "config", "ask")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatapp",
        description="A local-first terminal chat app. With no command, opens the chat TUI.",
    )
    parser.add_argument("--version", action="version", version=f"chatapp {__version__}")
    parser.add_argument("-m", "--model", help="model name from `chatapp models list`, or a path")
    parser.add_argument("-s", "--system", help="system prompt for a new conversation")
    parser.add_argument(
        "-c",
        "--continue",
        dest="continue_last",
        action="store_true",
        help="continue the last session",
    )
    parser.add_argument("--session", help="open the session with this id")
    parser.set_defaults(func=run_tui)
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"chatapp.commands.{name}")
        module.register(subparsers)
    return parser


def run_tui(args: argparse.Namespace) -> int:
    from chatapp.launch import launch_tui

    return launch_tui(args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
