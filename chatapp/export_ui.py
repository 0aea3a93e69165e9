"""Exporting the chat on screen to a file: `/export [md|json|PATH]` and the palette.

The file is what `chatapp sessions export` writes: Markdown of the current branch, or the
JSON document that `chatapp sessions import` reads back exactly. Without a PATH it goes in
the current folder, named after the session's title; an existing file is never
overwritten (a number is added to the name instead).
"""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path
from typing import Any

from textual.screen import Screen

from chatapp import palette
from chatapp.palette import PaletteEntry
from chatapp.store import StoreError
from chatapp.store.transfer import export_json, export_markdown

__all__ = ["export_session", "install", "target_path"]

FORMATS = {"md": ".md", "markdown": ".md", "json": ".json"}


def _slug(title: str) -> str:
    words = re.findall(r"[a-z0-9]+", title.lower())
    return "-".join(words)[:60].strip("-")


def target_path(folder: Path, title: str, session_id: int, suffix: str) -> Path:
    """A new file in `folder` named after the session; never one that exists."""
    stem = _slug(title) or f"session-{session_id}"
    path = folder / f"{stem}{suffix}"
    n = 2
    while path.exists():
        path = folder / f"{stem}-{n}{suffix}"
        n += 1
    return path


def export_session(screen: Any, argument: str = "") -> Path | None:
    """Write the session on `screen` to a file (see the module docstring) and say where;
    None (and the user is told why) when there is nothing to export or it cannot be
    written."""
    conversation = screen.conversation
    session_id = conversation.session_id
    if session_id is None:
        screen.notify("Nothing to export yet: send a message first.", markup=False)
        return None
    word = argument.strip()
    if not word or word.lower() in FORMATS:
        suffix = FORMATS.get(word.lower(), ".md")
        path = target_path(Path.cwd(), conversation.title, session_id, suffix)
    else:
        path = Path(word).expanduser()
        if path.is_dir():
            path = target_path(path, conversation.title, session_id, ".md")
        suffix = ".json" if path.suffix.lower() == ".json" else ".md"
    try:
        export = export_json if suffix == ".json" else export_markdown
        text = export(conversation.store, session_id)
        with path.open("x", encoding="utf-8") as file:  # "x": never over an existing file
            file.write(text)
    except FileExistsError:
        screen.notify(f"Not exported: {path} exists already.", severity="warning", markup=False)
        return None
    except (OSError, StoreError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        screen.notify(f"Not exported to {path}: {reason}", severity="error", markup=False)
        return None
    kind = "JSON" if suffix == ".json" else "Markdown"
    screen.notify(f"Exported this session as {kind} to {path}", markup=False)
    return path


async def slash_export(screen: Any, argument: str) -> None:
    export_session(screen, argument)


def palette_entries(screen: Screen) -> list[PaletteEntry]:
    if getattr(screen, "conversation", None) is None:
        return []
    return [
        PaletteEntry(
            f"Export session as {kind}",
            f"save this chat to a {suffix} file in the current folder",
            partial(export_session, screen, fmt),
        )
        for kind, fmt, suffix in (("Markdown", "md", ".md"), ("JSON", "json", ".json"))
    ]


def install(screen: Any) -> None:
    screen.slash_commands.add(
        "export",
        "save this session to a file: Markdown, or JSON (`json`, or a PATH ending .json)",
        slash_export,
        usage="[md|json|PATH]",
    )
    palette.add_source(palette_entries)
