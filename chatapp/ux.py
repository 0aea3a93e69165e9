"""Everyday commands of the chat screen: /theme, /copy, /pull, /keys.

`install(screen)` registers them on a chat screen's slash commands (the app calls it for
the default screen) and adds the code-block entries to the command palette; every
slash command also shows up in the palette by itself (see `chatapp.palette`).
"""

from __future__ import annotations

from typing import Any

from textual.screen import Screen

from chatapp import code_blocks, palette
from chatapp.theming import switch_theme, theme_names

__all__ = ["install"]


def install(screen: Screen) -> None:
    commands = screen.slash_commands  # type: ignore[attr-defined]
    commands.add(
        "theme",
        "switch the colour theme (remembered); no NAME lists them",
        slash_theme,
        usage="[NAME]",
        complete=complete_theme,
    )
    commands.add(
        "copy",
        "copy the last code block to the clipboard (N: the Nth from the end)",
        code_blocks.slash_copy,
        usage="[N]",
    )
    commands.add(
        "pull",
        "pull a catalogue model, with progress (default: the one that is missing)",
        slash_pull,
        usage="[NAME]",
        complete=complete_pull,
    )
    commands.add("keys", "show every key, command and mouse action (F1)", slash_keys)
    palette.add_source(code_blocks.palette_entries)


# --- /theme ------------------------------------------------------------------------------


async def slash_theme(screen: Any, argument: str) -> None:
    app = screen.app
    if not argument:
        names = theme_names(app)
        listing = ", ".join(f"{n} (current)" if n == app.theme else n for n in names)
        await _say(screen, f"Themes: {listing}.\n/theme NAME switches (remembered).")
        return
    try:
        name = switch_theme(app, argument)
    except LookupError as error:
        screen.notify(str(error), severity="warning", markup=False)
        return
    screen.notify(f"Theme: {name}", markup=False, timeout=2)


def complete_theme(screen: Any, partial: str) -> list[str]:
    return theme_names(screen.app)


async def _say(screen: Any, text: str) -> None:
    view = getattr(screen, "chat_view", None)
    if view is not None:
        await view.add_notice(text, variant="muted")
    else:
        screen.notify(text, markup=False)


# --- /pull ---------------------------------------------------------------------------


def complete_pull(screen: Any, partial: str) -> list[str]:
    from chatapp.engine.models import load_catalogue

    return [entry.name for entry in load_catalogue() if entry.kind == "chat"]


async def slash_pull(screen: Any, argument: str) -> None:
    """Start the offered pull, or pull the named catalogue model in a new offer."""
    from chatapp.engine.models import default_model, find_entry, is_installed, load_catalogue
    from chatapp.widgets.pull_offer import PullOffer

    offers = list(screen.query(PullOffer))
    name = argument.strip() or (
        offers[0].model_name if offers else getattr(screen.app, "missing_model", None)
    )
    name = name or default_model("chat")
    for offer in offers:
        if offer.model_name == name:
            offer.start()
            return
    entry = find_entry(name)
    if entry is None:
        known = ", ".join(e.name for e in load_catalogue() if e.kind == "chat")
        screen.notify(f"no catalogue model {name!r}; pullable: {known}", markup=False)
        return
    if is_installed(entry):
        screen.notify(f"{entry.name} is already pulled.", markup=False)
        return
    offer = PullOffer(entry.name, size=entry.size)
    prompt = screen.query("PromptInput")
    await screen.mount(offer, before=prompt.first() if prompt else None)
    offer.start()


# --- /keys ---------------------------------------------------------------------------


def slash_keys(screen: Any, _argument: str) -> None:
    screen.app.action_help()
