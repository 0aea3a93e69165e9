"""`chatapp config show|check` and `chatapp locate`: effective settings, where files live."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from chatapp import locations

LOCATIONS: dict[str, tuple[Callable[[], Path], str]] = {
    "config": (locations.config_file, "the config file (TOML)"),
    "themes": (locations.user_themes_dir, "your theme folder (*.toml)"),
    "data": (locations.data_dir, "the data folder"),
    "database": (locations.database_file, "the sessions database (SQLite)"),
    "models": (locations.models_dir, "pulled and converted models (a cache)"),
    "user-models": (locations.user_models_dir, "models you add by hand"),
    "state": (locations.state_file, "remembered UI state (JSON)"),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    config = subparsers.add_parser(
        "config",
        help="show or check the effective settings",
        description="The effective settings: defaults, then the config file, then CHATAPP_*.",
    )
    config.set_defaults(func=lambda args: _usage(config))
    actions = config.add_subparsers(title="actions", metavar="ACTION")
    show = actions.add_parser(
        "show", help="print the effective settings as TOML (problems go to stderr)"
    )
    show.add_argument("--file", type=Path, help="read this config file instead of the usual one")
    show.set_defaults(func=show_config)
    check = actions.add_parser("check", help="report config problems; exit 1 if there are any")
    check.add_argument("--file", type=Path, help="read this config file instead of the usual one")
    check.set_defaults(func=check_config)

    listing = "\n".join(f"  {name:<12} {text}" for name, (_, text) in LOCATIONS.items())
    locate = subparsers.add_parser(
        "locate",
        help="print where chatapp keeps a kind of file",
        description=f"Print a path chatapp uses.\n\n{listing}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    locate.add_argument(
        "what", nargs="?", choices=list(LOCATIONS), help="which path (all of them if absent)"
    )
    locate.set_defaults(func=locate_path)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _report(problems: list) -> None:
    for problem in problems:
        print(f"chatapp: {problem}", file=sys.stderr)


def show_config(args: argparse.Namespace) -> int:
    from chatapp.config import load_settings, settings_as_toml

    path = getattr(args, "file", None)
    settings, problems = load_settings(path)
    sys.stdout.write(settings_as_toml(settings))
    _report(problems)
    return 0


def check_config(args: argparse.Namespace) -> int:
    from chatapp.config import load_settings

    path = getattr(args, "file", None) or locations.config_file()
    _, problems = load_settings(path)
    _report(problems)
    if not problems:
        state = "no config file, using defaults" if not path.exists() else "no problems"
        print(f"{path}: {state}")
    return 1 if problems else 0


def locate_path(args: argparse.Namespace) -> int:
    what = getattr(args, "what", None)
    if what:
        print(LOCATIONS[what][0]())
    else:
        for name, (where, _) in LOCATIONS.items():
            print(f"{name:<12} {where()}")
    return 0
