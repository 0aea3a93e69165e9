"""The command palette (Ctrl+P): every action of the chat, found by typing.

`ChatCommands` is a Textual command `Provider` that lists, for the screen the palette
was opened from:

- every key binding with a description, on the screen and the app ("New chat  ctrl+n");
- every slash command ("/help"); one that needs an argument puts "/name " in the prompt;
- one "Theme: NAME" entry per installed theme (found by searching, not listed up front);
- whatever the extra sources add (copy a code block, pull a model, ...).

A feature gets palette entries for free by giving its `Binding` a description or by
registering a slash command. For anything else, register a source:

    from chatapp.palette import PaletteEntry, add_source

    def my_entries(screen):
        yield PaletteEntry("Sessions: open…", "browse saved chats", screen.action_sessions)

    add_source(my_entries)

A source is called each time the palette opens or searches, with the calling screen; it
yields `PaletteEntry`s and may yield none. A source that raises is logged and skipped.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from rich.text import Text
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.screen import Screen

from chatapp.slash import UnknownCommand

__all__ = ["ChatCommands", "PaletteEntry", "Source", "add_source", "entries_for"]

log = logging.getLogger(__name__)

SKIPPED_ACTIONS = frozenset(
    {"quit", "command_palette", "help_quit", "focus_next", "focus_previous", "copy_text"}
)
"""Actions that make no sense from the palette, or that Textual's own entries cover."""


@dataclass(frozen=True)
class PaletteEntry:
    title: str
    help: str
    run: Callable[[], Any]
    discover: bool = True
    """Listed when the palette opens (False: only found by typing)."""


Source = Callable[[Screen], Iterable[PaletteEntry]]


def binding_entries(screen: Screen) -> Iterator[PaletteEntry]:
    """The app's and the screen's key bindings that have a description."""
    app = screen.app
    seen: set[str] = set()
    for node in (screen, app):
        for bindings in node._bindings.key_to_bindings.values():
            for binding in bindings:
                action = binding.action
                skipped = action.rpartition(".")[2] in SKIPPED_ACTIONS
                if not binding.description or skipped or action in seen:
                    continue
                seen.add(action)
                yield PaletteEntry(
                    binding.description,
                    f"key: {app.get_key_display(binding)}",
                    partial(app.run_action, action, node),
                )


def slash_entries(screen: Screen) -> Iterator[PaletteEntry]:
    """Each slash command of the screen; one taking an argument is typed for the user."""
    commands = getattr(screen, "slash_commands", None)
    if commands is None:
        return
    for command in commands:
        if command.usage and not command.usage.startswith("["):  # a required argument
            run = partial(_type_command, screen, command.name)
            help_text = f"{command.summary} · types {command.signature} in the prompt"
        else:
            run = partial(_run_command, screen, command.name)
            help_text = command.summary
        yield PaletteEntry(f"/{command.name}", help_text, run)


def theme_entries(screen: Screen) -> Iterator[PaletteEntry]:
    """'Theme: NAME' for every installed theme (searchable; Textual lists them too)."""
    from chatapp.theming import switch_theme, theme_names

    app = screen.app
    loaded = getattr(app, "loaded_themes", None)
    info = loaded.info if loaded is not None else {}
    for name in theme_names(app):
        details = info.get(name)
        about = details.description if details and details.description else "a Textual theme"
        current = " (current)" if name == app.theme else ""
        yield PaletteEntry(
            f"Theme: {name}", f"{about}{current}", partial(switch_theme, app, name), False
        )


def _type_command(screen: Screen, name: str) -> None:
    from chatapp.widgets.prompt import PromptInput

    prompt = screen.query_one(PromptInput)
    prompt.load_text(f"/{name} ")
    prompt.move_cursor(prompt.document.end)
    prompt.focus()


async def _run_command(screen: Screen, name: str) -> None:
    try:
        await screen.slash_commands.run(screen, name, "")  # type: ignore[attr-defined]
    except UnknownCommand as error:
        screen.notify(str(error), severity="warning", markup=False)


SOURCES: list[Source] = [binding_entries, slash_entries, theme_entries]


def add_source(source: Source) -> Source:
    """Add a source of palette entries (usable as a decorator); adding twice is harmless."""
    if source not in SOURCES:
        SOURCES.append(source)
    return source


def entries_for(screen: Screen) -> list[PaletteEntry]:
    """Every entry the sources give for `screen`, the first of each title kept."""
    entries: dict[str, PaletteEntry] = {}
    for source in list(SOURCES):
        try:
            for entry in source(screen):
                entries.setdefault(entry.title, entry)
        except Exception:
            log.exception("palette source %r failed", source)
    return list(entries.values())


def _call(run: Callable[[], Any]) -> Callable[[], Any]:
    """The palette ignores what a command returns; await coroutines so they run."""

    async def call() -> None:
        result = run()
        if inspect.isawaitable(result):
            await result

    return call


class ChatCommands(Provider):
    """The chat's actions, slash commands and themes in Textual's command palette."""

    async def discover(self) -> Hits:
        for entry in entries_for(self.screen):
            if entry.discover:
                yield DiscoveryHit(Text(entry.title), _call(entry.run), entry.title, entry.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for entry in entries_for(self.screen):
            score = matcher.match(entry.title)
            if score > 0:
                # `highlight` reads its argument as markup: titles with "[" stay plain.
                shown = Text(entry.title) if "[" in entry.title else matcher.highlight(entry.title)
                yield Hit(score, shown, _call(entry.run), entry.title, entry.help)
