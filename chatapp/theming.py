"""The app's side of themes: register them, pick the first one, remember the user's choice.

`chatapp.themes` reads the theme files; this module puts them on a running app:

- every loaded theme is registered with `App.register_theme` (Textual's global theme
  dict is never touched), and each broken file is reported once with `notify`;
- the starting theme is the one the user last chose in the app (`state.json`), else the
  config's `theme` (or `CHATAPP_THEME`), else chatapp's default. A name that is not
  installed is reported and skipped, never fatal;
- whenever the theme changes, by `/theme`, the palette's "Theme: NAME" entries or
  Textual's own theme picker, the new name is saved with `update_state(theme=...)`.

NO_COLOR: Textual itself honours it. `App.__init__` sees the variable and adds a
`Monochrome` line filter (`NoColor` with `ansi_color`), so every theme is drawn in grey
levels. Grey levels lose the difference between colours of the same lightness, so with
NO_COLOR and no theme chosen by the user chatapp starts on the high-contrast theme,
whose colours stay apart in grey.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Collection
from typing import TYPE_CHECKING

from textual.theme import Theme

from chatapp.state import UIState, load_state, update_state
from chatapp.themes import DEFAULT_THEME, ThemeLoadResult, load_themes

if TYPE_CHECKING:
    from textual.app import App

__all__ = [
    "NO_COLOR_THEME",
    "choose_theme",
    "find_theme",
    "setup_themes",
    "switch_theme",
    "theme_names",
]

NO_COLOR_THEME = "chatapp-high-contrast"

log = logging.getLogger(__name__)


def choose_theme(
    available: Collection[str],
    *,
    saved: str | None,
    configured: str | None,
    no_color: bool = False,
) -> tuple[str, list[str]]:
    """The theme to start with, and a warning for each wanted theme that is missing."""
    configured = configured or DEFAULT_THEME
    if no_color and saved is None and configured == DEFAULT_THEME:
        configured = NO_COLOR_THEME
    warnings: list[str] = []
    wanted = [(saved, "the theme you last chose"), (configured, "the configured theme")]
    for name, what in wanted:
        if not name:
            continue
        if name in available:
            return name, warnings
        close = difflib.get_close_matches(name, list(available), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        warnings.append(f"{what}, {name!r}, is not installed{hint}")
    fallback = next(
        (name for name in (configured, DEFAULT_THEME, "textual-dark") if name in available),
        next(iter(available)),
    )
    return fallback, [f"{warning}; using {fallback}" for warning in warnings]


def setup_themes(
    app: App,
    *,
    configured: str | None = None,
    result: ThemeLoadResult | None = None,
    state: UIState | None = None,
) -> ThemeLoadResult:
    """Register chatapp's themes on a running `app`, set the starting one, remember changes.

    Call it from the app's `on_mount` (notifications need a running app). Returns the
    load result, whose `info` holds each theme's description and file.
    """
    result = load_themes() if result is None else result
    for theme in result.themes:
        app.register_theme(theme)
    for problem in result.failed:
        app.notify(str(problem), title="theme skipped", severity="warning", markup=False)
    state = load_state() if state is None else state
    name, warnings = choose_theme(
        app.available_themes,
        saved=state.theme,
        configured=configured,
        no_color=app.no_color,
    )
    for warning in warnings:
        app.notify(warning, severity="warning", markup=False)
    app.theme = name
    remembered = [state.theme or name]

    def remember(theme: Theme) -> None:
        """Save a theme the user picked (not the one we started with)."""
        if theme.name != remembered[0]:
            remembered[0] = theme.name
            update_state(theme=theme.name)

    app.theme_changed_signal.subscribe(app, remember)
    return result


def theme_names(app: App) -> list[str]:
    """chatapp's themes first (shipped and the user's), then Textual's own."""
    loaded: ThemeLoadResult | None = getattr(app, "loaded_themes", None)
    names = sorted(app.available_themes)
    ours = set(loaded.names) if loaded is not None else set()
    return [n for n in names if n in ours] + [n for n in names if n not in ours]


def find_theme(app: App, text: str) -> str | None:
    """The installed theme `text` names: exact, any case, or without the `chatapp-`."""
    text = text.strip()
    names = theme_names(app)
    for candidate in (text, text.lower(), f"chatapp-{text.lower()}"):
        if candidate in names:
            return candidate
    lowered = {name.lower(): name for name in names}
    return lowered.get(text.lower())


def switch_theme(app: App, text: str) -> str:
    """Switch to the theme `text` names (the change is remembered); returns its name.

    Raises LookupError, with a did-you-mean, when no such theme is installed.
    """
    name = find_theme(app, text)
    if name is None:
        close = difflib.get_close_matches(text, theme_names(app), n=2, cutoff=0.5)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise LookupError(f"no theme called {text!r}{hint}; /theme lists them")
    app.theme = name
    return name
