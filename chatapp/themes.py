"""Theme files: the shipped `themes/*.toml` and the user's theme folder.

A theme file holds the keys of `textual.theme.Theme` plus `author` and `description`:

    name = "my-theme"
    author = "Me"
    description = "Calm blues"
    primary = "#5fa8f5"
    background = "#16181d"
    dark = true

    [variables]
    footer-key-foreground = "#5fa8f5"

`load_themes()` never raises for a bad file: a file that cannot be read or parsed, or that
has a missing name, a value that is not a colour, or an unknown key, is reported once (as a
`ThemeProblem` naming the file and line) and skipped. A later folder's theme replaces an
earlier one of the same name, so the user's folder overrides the shipped one. Nothing here
touches Textual's global theme dict: the app calls `register_theme` for each theme.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textual.color import Color, ColorParseError
from textual.theme import Theme

import chatapp
from chatapp import locations
from chatapp.config import KeyLines, did_you_mean, toml_error_position

__all__ = [
    "ThemeInfo",
    "ThemeLoadResult",
    "ThemeProblem",
    "default_theme_dirs",
    "load_theme_file",
    "load_themes",
    "shipped_themes_dir",
]

DEFAULT_THEME = "chatapp-dark"

COLOUR_KEYS = (
    "primary",
    "secondary",
    "accent",
    "foreground",
    "background",
    "surface",
    "panel",
    "success",
    "warning",
    "error",
    "boost",
)
_THEME_FIELDS = {f.name for f in dataclasses.fields(Theme)}
_EXTRA_KEYS = {"author", "description"}
KNOWN_KEYS = _THEME_FIELDS | _EXTRA_KEYS


@dataclass(frozen=True)
class ThemeProblem:
    file: Path
    line: int | None
    message: str

    def __str__(self) -> str:
        where = self.file.name if self.line is None else f"{self.file.name}:{self.line}"
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class ThemeInfo:
    """What a theme file says beyond the `Theme` itself."""

    name: str
    path: Path
    author: str | None = None
    description: str | None = None
    shipped: bool = False


@dataclass
class ThemeLoadResult:
    themes: list[Theme] = field(default_factory=list)
    failed: list[ThemeProblem] = field(default_factory=list)
    info: dict[str, ThemeInfo] = field(default_factory=dict)
    """By theme name: the file each loaded theme came from, its author and description."""

    def get(self, name: str) -> Theme | None:
        return next((theme for theme in self.themes if theme.name == name), None)

    @property
    def names(self) -> list[str]:
        return [theme.name for theme in self.themes]


def shipped_themes_dir() -> Path:
    """The themes that come with chatapp.

    From a checkout (the editable install the README describes) they are the top-level
    `themes/` folder next to the package; an installed wheel carries them as data files
    to `<prefix>/share/chatapp/themes` (see pyproject.toml), found through its record.
    """
    checkout = Path(chatapp.__file__).resolve().parent.parent / "themes"
    if checkout.is_dir():
        return checkout
    return _installed_themes_dir() or checkout


def _installed_themes_dir() -> Path | None:
    import site
    import sys
    from importlib import metadata

    candidates: list[Path] = []
    try:
        files = metadata.distribution("chatapp").files or []
    except metadata.PackageNotFoundError:
        files = []
    for file in files:  # the wheel's record says where its data files went
        if file.parts[-3:-1] == ("chatapp", "themes") and file.suffix == ".toml":
            candidates.append(Path(str(file.locate())).resolve().parent)
            break
    for prefix in (sys.prefix, site.getuserbase()):
        candidates.append(Path(prefix, "share", "chatapp", "themes"))
    return next((path for path in candidates if path.is_dir()), None)


def default_theme_dirs() -> list[Path]:
    """The shipped themes, then the user's own (which override them by name)."""
    return [shipped_themes_dir(), locations.user_themes_dir()]


class _Bad(Exception):
    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


_ALPHA_SUFFIX = re.compile(r"\s+\d+(\.\d+)?%$")


def _check_colour(value: object) -> str | None:
    """None if `value` is a colour Textual can parse, else what is wrong with it."""
    if not isinstance(value, str):
        return f"must be a colour string, got {value!r}"
    try:
        Color.parse(value)
    except ColorParseError as error:
        suggestion = error.suggested_color
        hint = f" (did you mean {suggestion!r}?)" if suggestion else ""
        return f"{value!r} is not a colour{hint}"
    return None


def load_theme_file(path: Path) -> tuple[Theme, ThemeInfo]:
    """One theme file as a `Theme`; raises `_Bad` listing what is wrong with it."""
    try:
        text = path.read_text(encoding="utf-8")
    except IsADirectoryError:
        raise _Bad(None, "is a folder, not a theme file") from None
    except UnicodeDecodeError as error:
        raise _Bad(None, f"is not UTF-8 text ({error.reason})") from None
    except OSError as error:
        raise _Bad(None, f"cannot be read ({error.strerror or error})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        line, column, message = toml_error_position(error)
        where = f", column {column}" if column else ""
        raise _Bad(line, f"TOML syntax error{where}: {message}") from None

    lines = KeyLines(text)
    issues: list[tuple[int | None, str]] = []

    def bad(key: str, message: str, table: str = "") -> None:
        issues.append((lines.line(table, key), f"{key}: {message}"))

    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in KNOWN_KEYS:
            bad(key, f"unknown key{did_you_mean(key, sorted(KNOWN_KEYS))}")
        elif key in COLOUR_KEYS:
            if (problem := _check_colour(value)) is not None:
                bad(key, problem)
            else:
                values[key] = value
        elif key in ("name", "author", "description"):
            if not isinstance(value, str) or not value.strip():
                bad(key, f"must be a non-empty string, got {value!r}")
            else:
                values[key] = value.strip()
        elif key in ("dark", "ansi"):
            if not isinstance(value, bool):
                bad(key, f"must be true or false, got {value!r}")
            else:
                values[key] = value
        elif key in ("luminosity_spread", "text_alpha"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                bad(key, f"must be a number, got {value!r}")
            elif not 0 <= value <= 1:
                bad(key, f"must be between 0 and 1, got {value!r}")
            else:
                values[key] = float(value)
        elif key == "variables":
            values[key] = _variables(value, lines, issues)

    if "name" not in data:
        issues.append((1, "name: missing (every theme needs a name)"))
    if "primary" not in data:
        issues.append((lines.line("", "name") or 1, "primary: missing (every theme needs one)"))
    if not issues:
        author = values.pop("author", None)
        description = values.pop("description", None)
        theme = Theme(**values)
        try:  # the checks above should catch everything; this is Textual's own word
            theme.to_color_system().generate()
        except Exception as error:
            issues.append((None, f"Textual rejects it: {error}"))
        else:
            return theme, ThemeInfo(theme.name, path, author, description)
    issues.sort(key=lambda issue: issue[0] or 0)
    raise _Bad(issues[0][0], "; ".join(message for _, message in issues))


def _variables(
    value: object, lines: KeyLines, issues: list[tuple[int | None, str]]
) -> dict[str, str]:
    if not isinstance(value, dict):
        issues.append((lines.line("", "variables"), "variables: must be a table"))
        return {}
    result: dict[str, str] = {}
    for name, setting in value.items():
        line = lines.line("variables", name)
        if not isinstance(setting, str):
            issues.append((line, f"variables.{name}: must be a string, got {setting!r}"))
        elif setting.startswith("#") and (problem := _check_colour(_ALPHA_SUFFIX.sub("", setting))):
            issues.append((line, f"variables.{name}: {problem}"))
        else:
            result[name] = setting
    return result


def load_themes(dirs: Sequence[Path] | None = None) -> ThemeLoadResult:
    """Every `*.toml` theme in `dirs` (default: shipped, then the user's folder).

    A folder that does not exist is skipped quietly. Each broken file is reported once in
    `failed` and skipped. A theme in a later folder replaces one of the same name from an
    earlier folder; two files with the same theme name in one folder are a problem.
    """
    dirs = default_theme_dirs() if dirs is None else list(dirs)
    shipped = shipped_themes_dir().resolve()
    themes: dict[str, Theme] = {}
    info: dict[str, ThemeInfo] = {}
    failed: list[ThemeProblem] = []
    for folder in dirs:
        try:
            files = sorted(p for p in Path(folder).glob("*.toml"))
        except OSError as error:
            failed.append(ThemeProblem(Path(folder), None, f"cannot be read ({error})"))
            continue
        seen_here: dict[str, Path] = {}
        for path in files:
            try:
                theme, details = load_theme_file(path)
            except _Bad as error:
                failed.append(ThemeProblem(path, error.line, error.message))
                continue
            if theme.name in seen_here:
                failed.append(
                    ThemeProblem(
                        path,
                        None,
                        f"name: {theme.name!r} is already used by "
                        f"{seen_here[theme.name].name}; skipped",
                    )
                )
                continue
            seen_here[theme.name] = path
            themes[theme.name] = theme
            is_shipped = Path(folder).resolve() == shipped
            info[theme.name] = dataclasses.replace(details, shipped=is_shipped)
    return ThemeLoadResult(list(themes.values()), failed, info)
