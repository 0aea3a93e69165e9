"""`chatapp sessions`: list, show, search, export, import, delete and rename saved sessions."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

Handler = Callable[[argparse.Namespace], int]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sessions",
        help="list, show, search, export, import, delete or rename saved sessions",
        description=__doc__,
    )
    parser.add_argument(
        "--database", type=Path, metavar="FILE", help="the database (default: the app's own)"
    )
    parser.set_defaults(func=_guarded(cmd_list), limit=50, offset=0)
    actions = parser.add_subparsers(title="actions", metavar="ACTION")

    p = actions.add_parser("list", help="the sessions, most recently updated first")
    p.add_argument("-n", "--limit", type=int, default=50, help="how many (default 50)")
    p.add_argument("--offset", type=int, default=0, help="skip this many first")
    p.set_defaults(func=_guarded(cmd_list))

    p = actions.add_parser("show", help="print a session (its current branch)")
    p.add_argument("id", type=int, help="session id")
    p.set_defaults(func=_guarded(cmd_show))

    p = actions.add_parser("search", help="full-text search over all messages")
    p.add_argument("query", nargs="+", help="words to find (the last may be a prefix)")
    p.add_argument("-n", "--limit", type=int, default=20, help="how many hits (default 20)")
    p.set_defaults(func=_guarded(cmd_search))

    p = actions.add_parser("export", help="write a session as Markdown or JSON")
    p.add_argument("id", type=int, help="session id")
    p.add_argument(
        "--format",
        choices=("md", "json"),
        help="md: the current branch, readable; json: everything, for `import` "
        "(default: from the -o suffix, else md)",
    )
    p.add_argument("-o", "--output", type=Path, metavar="FILE", help="file (default: stdout)")
    p.add_argument("-f", "--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(func=_guarded(cmd_export))

    p = actions.add_parser("import", help="import a session from a JSON export")
    p.add_argument("file", type=Path, help="a file written by `sessions export --format json`")
    p.set_defaults(func=_guarded(cmd_import))

    p = actions.add_parser("delete", help="delete a session and all its messages")
    p.add_argument("id", type=int, help="session id")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=_guarded(cmd_delete))

    p = actions.add_parser("rename", help="set a session's title")
    p.add_argument("id", type=int, help="session id")
    p.add_argument("title", nargs="+", help="the new title ('' for the automatic one)")
    p.set_defaults(func=_guarded(cmd_rename))


# --- helpers -------------------------------------------------------------------------------


def _fail(message: str) -> int:
    print(f"chatapp: {' '.join(str(message).split())}", file=sys.stderr)
    return 1


def _guarded(handler: Handler) -> Handler:
    """Run a handler; store, import and file errors become one line on stderr, exit 1."""

    def run(args: argparse.Namespace) -> int:
        from chatapp.store import StoreError
        from chatapp.store.transfer import SessionImportError

        try:
            return handler(args)
        except (StoreError, SessionImportError) as exc:
            return _fail(str(exc))
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            return _fail(f"{where}{exc.strerror or exc}")

    run.__name__ = handler.__name__
    run.__doc__ = handler.__doc__
    return run


def _open(args: argparse.Namespace) -> Any:
    from chatapp.store import Store

    # Recovery of crashed replies is the app's job: a running app may be streaming one.
    return Store(getattr(args, "database", None), recover=False)


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def _clean(text: str) -> str:
    from chatapp.sanitize import sanitize

    return sanitize(text)


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M")


def _text(value: str, style: str = "") -> Any:
    from rich.text import Text

    return Text(_clean(value), style=style)


# --- commands ------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    from rich.table import Table

    with _open(args) as store:
        sessions = store.list_sessions(limit=max(args.limit, 0), offset=max(args.offset, 0))
        total = store.count_sessions()
    console = _console()
    if not sessions:
        console.print("No saved sessions." if not total else "No sessions on this page.")
        return 0
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("ID", justify="right", style="cyan", no_wrap=True)
    table.add_column("Title", overflow="fold", ratio=3)
    table.add_column("Model", overflow="fold", ratio=1)
    table.add_column("Msgs", justify="right", no_wrap=True)
    table.add_column("Updated", no_wrap=True)
    for s in sessions:
        table.add_row(
            str(s.id),
            _text(s.title or "(untitled)"),
            _text(s.model),
            str(s.message_count),
            _when(s.updated_at),
        )
    console.print(table)
    if total > args.offset + len(sessions):
        shown = f"{args.offset + 1}–{args.offset + len(sessions)}"
        console.print(f"[dim]{shown} of {total}; see more with --offset[/dim]")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from rich.rule import Rule

    with _open(args) as store:
        session = store.get_session(args.id)
        branch = store.branch(args.id)
        alternatives = []
        for message in branch:
            ids = [m.id for m in store.siblings(message.id)]
            alternatives.append((ids.index(message.id) + 1, len(ids)))
    console = _console()
    console.print(_text(session.title or "(untitled)", "bold"))
    details = f"session {session.id} · {session.model or 'no model'} · {_when(session.updated_at)}"
    if len(branch) < session.message_count:
        details += f" · current branch: {len(branch)} of {session.message_count} messages"
    console.print(_text(details, "dim"))
    if session.system_prompt:
        console.print(Rule(_text("system prompt"), align="left", style="dim"))
        console.print(_text(session.system_prompt))
    for message, (position, count) in zip(branch, alternatives, strict=True):
        label = message.role
        if message.role == "assistant" and message.model:
            label += f" · {message.model}"
        if message.status != "complete":
            label += f" · {message.status}"
        if count > 1:
            label += f" · version {position} of {count}"
        console.print(Rule(_text(label), align="left", style="dim"))
        console.print(_text(message.content))
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from rich.table import Table

    query = " ".join(args.query)
    with _open(args) as store:
        hits = store.search(query, limit=max(args.limit, 0))
    console = _console()
    if not hits:
        console.print(_text(f"No messages match {query!r}."))
        return 0
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("Session", justify="right", style="cyan", no_wrap=True)
    table.add_column("Msg", justify="right", style="dim", no_wrap=True)
    table.add_column("Title", overflow="fold", ratio=1)
    table.add_column("Role", no_wrap=True)
    table.add_column("Match", overflow="fold", ratio=2)
    for hit in hits:
        table.add_row(
            str(hit.session_id),
            str(hit.message_id),
            _text(hit.title or "(untitled)"),
            hit.role,
            hit.to_rich(),
        )
    console.print(table)
    return 0


def _write_atomically(path: Path, text: str, force: bool) -> None:
    if path.exists() and not force:
        raise FileExistsError(0, "the file exists; add --force to overwrite it", str(path))
    folder = path.parent if str(path.parent) else Path(".")
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=folder)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as out:
            out.write(text)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def cmd_export(args: argparse.Namespace) -> int:
    from chatapp.store.transfer import export_json, export_markdown

    fmt = args.format
    if fmt is None:
        fmt = "json" if args.output is not None and args.output.suffix.lower() == ".json" else "md"
    with _open(args) as store:
        text = export_json(store, args.id) if fmt == "json" else export_markdown(store, args.id)
    if args.output is None:
        # A terminal gets inert text; a pipe or file gets the data exactly.
        sys.stdout.write(_clean(text) if sys.stdout.isatty() else text)
        sys.stdout.flush()
        return 0
    _write_atomically(args.output, text, args.force)
    print(f"Exported session {args.id} to {args.output}", file=sys.stderr)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from chatapp.store.transfer import import_file

    with _open(args) as store:
        session = import_file(store, args.file)
    _console().print(
        _text(
            f"Imported session {session.id}: {session.title or '(untitled)'} "
            f"({session.message_count} messages)"
        )
    )
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    with _open(args) as store:
        session = store.get_session(args.id)
        if not args.yes:
            stdin = sys.stdin
            if stdin is None or stdin.closed or not stdin.isatty():
                return _fail(f"not deleting session {args.id} without confirmation: add --yes")
            title = _clean(session.title or "(untitled)")
            answer = input(
                f"Delete session {session.id} “{title}” ({session.message_count} messages)? [y/N] "
            )
            if answer.strip().lower() not in ("y", "yes"):
                print("Not deleted.")
                return 1
        store.delete_session(args.id)
    print(f"Deleted session {args.id}.")
    return 0


def cmd_rename(args: argparse.Namespace) -> int:
    title = " ".join(args.title)
    with _open(args) as store:
        session = store.rename_session(args.id, title)
    _console().print(_text(f"Session {session.id} is now titled: {session.title or '(untitled)'}"))
    return 0
