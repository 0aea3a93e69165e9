"""The user's TOML config, validated into typed, frozen settings.

`load_settings()` never raises for a bad config: every problem (a syntax error, a value of
the wrong type or out of range, an unknown key, an unreadable file, a bad CHATAPP_*
variable) becomes a `ConfigProblem` naming the file, line and key, the bad value falls back
to its default, and the rest of the file still applies.

This module is used by the command line, so it imports neither textual nor torch.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatapp import locations
from chatapp.engine.protocol import GenerationSettings, ModelSpec

__all__ = [
    "ENV_VARS",
    "ConfigProblem",
    "ContextSettings",
    "GenerationSettings",
    "KeyLines",
    "ModelEntry",
    "Settings",
    "UISettings",
    "did_you_mean",
    "load_settings",
    "settings_as_toml",
    "toml_error_position",
]


# --- settings ------------------------------------------------------------------------


@dataclass(frozen=True)
class ContextSettings:
    window: int | None = None
    """Context window in tokens; None means the model's own."""
    reply_reserve: int = 512
    """Tokens kept free for the reply when the prompt is built."""
    recent_turns: int = 6
    """The most recent turns always sent verbatim."""
    min_score: float | None = 0.3
    """Once a chat outgrows the window, earlier turns scoring below this (encoder cosine)
    are not recalled; None (or -1): recall by score until the budget is full. 0.3 matched
    the oracle's answer accuracy in bench/recall.py with a quarter of the prompt."""
    cross_session_recall: bool = False
    """Let the reranker recall turns from other saved sessions."""


@dataclass(frozen=True)
class UISettings:
    show_stats: bool = True
    """Show tokens/s and token counts under each reply."""
    show_timestamps: bool = False
    render_markdown: bool = True
    """Render replies as Markdown (False: plain text)."""
    show_sidebar: bool = True
    """Show the sessions sidebar at start."""
    auto_scroll: bool = True
    """Follow the reply as it streams in."""


@dataclass(frozen=True)
class ModelEntry:
    """One `[[models]]` table: a model folder (or .gguf file) the user names."""

    name: str
    path: str
    context_window: int | None = None
    chat_template: str | None = None
    stop: tuple[str, ...] = ()
    generation: tuple[tuple[str, Any], ...] = ()
    """The `[models.generation]` overrides as (field, value) pairs, only those set."""

    def generation_settings(self, base: GenerationSettings) -> GenerationSettings:
        """`base` with this model's overrides applied."""
        return dataclasses.replace(base, **dict(self.generation)) if self.generation else base

    def to_spec(self, default_context_window: int = 2048) -> ModelSpec:
        return ModelSpec(
            name=self.name,
            path=self.path,
            context_window=self.context_window or default_context_window,
            chat_template=self.chat_template,
            stop=self.stop,
        )


@dataclass(frozen=True)
class Settings:
    default_model: str = "smollm2-135m-instruct"
    encoder: str = "minilm-l6"
    theme: str = "chatapp-dark"
    system_prompt: str | None = None
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    context: ContextSettings = ContextSettings()
    models: tuple[ModelEntry, ...] = ()
    ui: UISettings = UISettings()
    generation_keys: frozenset[str] = field(default=frozenset(), compare=False)
    """The `[generation]` keys the user actually set (in the file or CHATAPP_* variables)."""

    def model(self, name: str) -> ModelEntry | None:
        """The `[[models]]` entry called `name`, if the config has one."""
        return next((m for m in self.models if m.name == name), None)

    def generation_for(
        self, model_name: str, defaults: GenerationSettings | None = None
    ) -> GenerationSettings:
        """The generation settings for `model_name`: the global ones plus its overrides.

        With `defaults` (a catalogue entry's), only the `[generation]` keys the user set
        replace them: defaults < `[generation]` < `[models.generation]`.
        """
        base = self.generation
        if defaults is not None:
            chosen = {key: getattr(self.generation, key) for key in self.generation_keys}
            base = dataclasses.replace(defaults, **chosen)
        entry = self.model(model_name)
        return entry.generation_settings(base) if entry else base


# --- problems ------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigProblem:
    file: Path | None
    """The config file, or None for a problem with an environment variable."""
    line: int | None
    """1-based line in `file`, when it could be found."""
    key: str | None
    """Dotted key (`generation.temperature`, `models[1].path`) or the variable's name."""
    message: str

    def __str__(self) -> str:
        where = []
        if self.file is not None:
            where.append(self.file.name if self.line is None else f"{self.file.name}:{self.line}")
        if self.key:
            where.append(self.key)
        return ": ".join([*where, self.message])


# --- finding a key's line (best effort) ------------------------------------------------

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\[\]#]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(
    r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*="""
)


def _split_dotted(text: str) -> list[str]:
    parts = re.findall(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""", text)
    return [p[1:-1] if p[:1] in "\"'" else p for p in parts]


class KeyLines:
    """Maps (table, index, key) to the 1-based line where that key is set in TOML text.

    `table` is the dotted table name (`""` for the root, `"generation"`, `"models.generation"`)
    and `index` counts array tables (`[[models]]`): the second `[[models]]` and the
    `[models.generation]` below it both have index 1. Dotted keys are indexed under every
    prefix, so `generation.temperature = 1` at the root is found as ("generation",
    "temperature") too. Multi-line strings and arrays are not understood; this is a hint
    for error messages, never used to read values.
    """

    def __init__(self, text: str) -> None:
        self._lines: dict[tuple[str, int, str], int] = {}
        self._headers: dict[tuple[str, int], int] = {}
        array_counts: dict[str, int] = {}
        table, index = "", 0
        for number, line in enumerate(text.splitlines(), start=1):
            header = _HEADER.match(line)
            if header:
                parts = _split_dotted(header.group(2)) or [""]
                table = ".".join(parts)
                if header.group(1) == "[[":
                    array_counts[table] = array_counts.get(table, 0) + 1
                    index = array_counts[table] - 1
                else:
                    index = array_counts.get(parts[0], 0) - 1 if parts[0] in array_counts else 0
                    index = max(index, 0)
                self._headers.setdefault((table, index), number)
                continue
            match = _KEY.match(line)
            if not match:
                continue
            parts = _split_dotted(match.group(1))
            for cut in range(len(parts)):
                sub_table = ".".join(p for p in [table, *parts[:cut]] if p)
                self._lines.setdefault((sub_table, index, ".".join(parts[cut:])), number)

    def line(self, table: str, key: str | None = None, index: int = 0) -> int | None:
        """The line of `key` in `table`, else the table's header line, else None."""
        if key is not None:
            found = self._lines.get((table, index, key))
            if found is None:  # `key` may itself be a table: `[table.key]`
                found = self._headers.get((".".join(p for p in (table, key) if p), index))
            if found is not None:
                return found
        found = self._headers.get((table, index))
        if found is not None:
            return found
        if "." in table:  # an inline table: point at `parent.child = {...}`
            parent, _, child = table.rpartition(".")
            return self._lines.get((parent, index, child)) or self._lines.get((parent, 0, child))
        if table:
            return self._lines.get(("", 0, table))
        return None


_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")


def toml_error_position(error: tomllib.TOMLDecodeError) -> tuple[int | None, int | None, str]:
    """(line, column, message without the position) of a TOML syntax error."""
    message = str(error)
    line = getattr(error, "lineno", None)
    column = getattr(error, "colno", None)
    match = _POSITION.search(message)
    if match:
        message = (message[: match.start()] + message[match.end() :]).strip()
        line = line or int(match.group(1))
        column = column or int(match.group(2))
    return line, column, message


def did_you_mean(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --- value checks ----------------------------------------------------------------------


class _Invalid(Exception):
    pass


def _describe(value: object) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return repr(value)


def _fallback(default: object) -> str:
    """A default as the TOML the user would write, for "(using ...)"."""
    return "not set" if default is None else _toml_value(default)


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise _Invalid(f"must be a number, got {_describe(value)}")
    return float(value)


def _integer(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(f"must be a whole number, got {_describe(value)}")
    return value


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"must be true or false, got {_describe(value)}")
    return value


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"must be a string, got {_describe(value)}")
    return value


def _name(value: object) -> str:
    text = _string(value).strip()
    if not text:
        raise _Invalid("must not be empty")
    return text


def _strings(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Invalid(f"must be an array of strings, got {_describe(value)}")
    return tuple(value)


def _at_least(check: Callable[[object], Any], low: float) -> Callable[[object], Any]:
    def checked(value: object) -> Any:
        result = check(value)
        if result < low:
            raise _Invalid(f"must be at least {low:g}, got {value!r}")
        return result

    return checked


def _above(check: Callable[[object], Any], low: float) -> Callable[[object], Any]:
    def checked(value: object) -> Any:
        result = check(value)
        if result <= low:
            raise _Invalid(f"must be greater than {low:g}, got {value!r}")
        return result

    return checked


def _top_p(value: object) -> float:
    result = _number(value)
    if not 0.0 < result <= 1.0:
        raise _Invalid(f"must be greater than 0 and at most 1, got {value!r}")
    return result


Check = Callable[[object], Any]

_TOP_LEVEL: dict[str, Check] = {
    "default_model": _name,
    "encoder": _name,
    "theme": _name,
    "system_prompt": _string,
}
_GENERATION: dict[str, Check] = {
    "temperature": _at_least(_number, 0),
    "top_p": _top_p,
    "top_k": _at_least(_integer, 0),
    "repetition_penalty": _above(_number, 0),
    "max_new_tokens": _at_least(_integer, 1),
    "seed": _at_least(_integer, 0),
    "stop": _strings,
}
_CONTEXT: dict[str, Check] = {
    "window": _at_least(_integer, 1),
    "reply_reserve": _at_least(_integer, 0),
    "recent_turns": _at_least(_integer, 0),
    "min_score": _at_least(_number, -1.0),
    "cross_session_recall": _boolean,
}
_UI: dict[str, Check] = {f.name: _boolean for f in dataclasses.fields(UISettings)}
_MODEL: dict[str, Check] = {
    "name": _name,
    "path": _name,
    "context_window": _at_least(_integer, 1),
    "chat_template": _string,
    "stop": _strings,
}
_TABLES = ("generation", "context", "ui", "models")


# --- loading ---------------------------------------------------------------------------


class _Reader:
    """Validates one parsed config document, collecting problems."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = KeyLines(text)
        self.problems: list[ConfigProblem] = []

    def problem(
        self, table: str, key: str | None, message: str, *, index: int = 0, label: str = ""
    ) -> None:
        line = self.lines.line(table, key, index)
        dotted = label or ".".join(p for p in (table, key) if p)
        self.problems.append(ConfigProblem(self.path, line, dotted or None, message))

    def table(
        self,
        data: Mapping[str, Any],
        checks: Mapping[str, Check],
        defaults: object,
        table: str,
        *,
        index: int = 0,
        label: str | None = None,
        ignore: Iterable[str] = (),
    ) -> dict[str, Any]:
        """The valid values of `data`; each bad or unknown key is reported and left out."""
        label = table if label is None else label
        values: dict[str, Any] = {}
        for key, value in data.items():
            dotted = f"{label}.{key}" if label else key
            if key in ignore:
                continue
            check = checks.get(key)
            if check is None:
                hint = did_you_mean(key, [*checks, *ignore])
                self.problem(table, key, f"unknown key{hint}; ignored", index=index, label=dotted)
                continue
            try:
                values[key] = check(value)
            except _Invalid as error:
                fallback = _fallback(getattr(defaults, key, None))
                self.problem(table, key, f"{error} (using {fallback})", index=index, label=dotted)
        return values

    def sub_table(self, data: Mapping[str, Any], key: str, parent: str = "") -> dict[str, Any]:
        value = data.get(key, {})
        if isinstance(value, dict):
            return value
        dotted = f"{parent}.{key}" if parent else key
        self.problem(parent, key, f"must be a table, got {_describe(value)}; ignored", label=dotted)
        return {}

    def settings(self, data: dict[str, Any]) -> Settings:
        top = self.table(data, _TOP_LEVEL, Settings(), "", ignore=_TABLES)
        generation = self.table(
            self.sub_table(data, "generation"), _GENERATION, GenerationSettings(), "generation"
        )
        context = self.table(
            self.sub_table(data, "context"), _CONTEXT, ContextSettings(), "context"
        )
        ui = self.table(self.sub_table(data, "ui"), _UI, UISettings(), "ui")
        return Settings(
            **top,
            generation=GenerationSettings(**generation),
            generation_keys=frozenset(generation),
            context=ContextSettings(**context),
            models=self.models(data.get("models", [])),
            ui=UISettings(**ui),
        )

    def models(self, raw: object) -> tuple[ModelEntry, ...]:
        if isinstance(raw, dict):
            raw = [raw]
        if not isinstance(raw, list):
            self.problem("", "models", f"must be [[models]] tables, got {_describe(raw)}; ignored")
            return ()
        entries: list[ModelEntry] = []
        for index, item in enumerate(raw):
            label = f"models[{index + 1}]"
            if not isinstance(item, dict):
                self.problem("models", None, "must be a table; ignored", index=index, label=label)
                continue
            values = self.table(
                item,
                _MODEL,
                ModelEntry("", ""),
                "models",
                index=index,
                label=label,
                ignore=("generation",),
            )
            generation_raw = item.get("generation", {})
            if not isinstance(generation_raw, dict):
                self.problem(
                    "models",
                    "generation",
                    f"must be a table, got {_describe(generation_raw)}; ignored",
                    index=index,
                    label=f"{label}.generation",
                )
                generation_raw = {}
            generation = self.table(
                generation_raw,
                _GENERATION,
                GenerationSettings(),
                "models.generation",
                index=index,
                label=f"{label}.generation",
            )
            missing = [key for key in ("name", "path") if key not in values]
            if missing:
                what = " and ".join(repr(k) for k in missing)
                self.problem(
                    "models",
                    None,
                    f"needs a valid {what}; this model is skipped",
                    index=index,
                    label=label,
                )
                continue
            if any(entry.name == values["name"] for entry in entries):
                self.problem(
                    "models",
                    "name",
                    f"a model called {values['name']!r} is already defined; this one is skipped",
                    index=index,
                    label=f"{label}.name",
                )
                continue
            values["path"] = self.resolve(values["path"])
            entries.append(
                ModelEntry(
                    **values,
                    generation=tuple((k, generation[k]) for k in sorted(generation)),
                )
            )
        return tuple(entries)

    def resolve(self, path: str) -> str:
        """`~` expanded; a relative path is relative to the config file's folder."""
        resolved = Path(path).expanduser()
        if not resolved.is_absolute():
            resolved = self.path.parent / resolved
        return str(resolved)


def _env_overrides(
    settings: Settings, env: Mapping[str, str]
) -> tuple[Settings, list[ConfigProblem]]:
    problems: list[ConfigProblem] = []

    def read(var: str, check: Check, default: object, convert: Callable[[str], object]) -> Any:
        raw = env.get(var, "").strip()
        if not raw:
            return None
        try:
            value: object = convert(raw)
        except ValueError:
            value = raw  # the check reports it with the text as given
        try:
            return check(value)
        except _Invalid as error:
            problems.append(ConfigProblem(None, None, var, f"{error} (using {_fallback(default)})"))
            return None

    changes: dict[str, Any] = {}
    generation: dict[str, Any] = {}
    if model := env.get("CHATAPP_MODEL", "").strip():
        changes["default_model"] = model
    if theme := env.get("CHATAPP_THEME", "").strip():
        changes["theme"] = theme
    if "CHATAPP_SYSTEM_PROMPT" in env:
        changes["system_prompt"] = env["CHATAPP_SYSTEM_PROMPT"] or None
    temperature = read(
        "CHATAPP_TEMPERATURE", _GENERATION["temperature"], settings.generation.temperature, float
    )
    if temperature is not None:
        generation["temperature"] = temperature
    max_tokens = read(
        "CHATAPP_MAX_TOKENS", _GENERATION["max_new_tokens"], settings.generation.max_new_tokens, int
    )
    if max_tokens is not None:
        generation["max_new_tokens"] = max_tokens
    window = read("CHATAPP_CONTEXT_WINDOW", _CONTEXT["window"], settings.context.window, int)
    if window is not None:
        changes["context"] = dataclasses.replace(settings.context, window=window)
    if generation:
        changes["generation"] = dataclasses.replace(settings.generation, **generation)
        changes["generation_keys"] = settings.generation_keys | frozenset(generation)
    return dataclasses.replace(settings, **changes), problems


ENV_VARS = (
    "CHATAPP_MODEL",
    "CHATAPP_THEME",
    "CHATAPP_TEMPERATURE",
    "CHATAPP_MAX_TOKENS",
    "CHATAPP_CONTEXT_WINDOW",
    "CHATAPP_SYSTEM_PROMPT",
)


def load_settings(
    path: Path | None = None, env: Mapping[str, str] = os.environ
) -> tuple[Settings, list[ConfigProblem]]:
    """The effective settings: defaults, then the config file, then CHATAPP_* variables.

    Never raises for a bad config; returns the problems found alongside the settings.
    """
    path = locations.config_file() if path is None else Path(path)
    problems: list[ConfigProblem] = []
    settings = Settings()
    text: str | None = None
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        problems.append(ConfigProblem(path, None, None, "is a folder, not a file; using defaults"))
    except UnicodeDecodeError as error:
        problems.append(
            ConfigProblem(path, None, None, f"is not UTF-8 text ({error.reason}); using defaults")
        )
    except OSError as error:
        reason = error.strerror or str(error)
        problems.append(
            ConfigProblem(path, None, None, f"cannot be read ({reason}); using defaults")
        )

    if text is not None:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            line, column, message = toml_error_position(error)
            where = f", column {column}" if column else ""
            problems.append(
                ConfigProblem(
                    path, line, None, f"TOML syntax error{where}: {message}; using defaults"
                )
            )
        else:
            reader = _Reader(path, text)
            settings = reader.settings(data)
            problems.extend(sorted(reader.problems, key=lambda p: p.line or 0))

    settings, env_problems = _env_overrides(settings, env)
    problems.extend(env_problems)
    return settings, problems


# --- writing ---------------------------------------------------------------------------


def _toml_string(value: str) -> str:
    escaped = json.dumps(value, ensure_ascii=False)
    return escaped.replace("\x7f", "\\u007f")


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def _toml_lines(values: Iterable[tuple[str, object]]) -> list[str]:
    lines = []
    for key, value in values:
        if value is None:
            lines.append(f"# {key} is not set")
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    return lines


def _fields(obj: object) -> list[tuple[str, object]]:
    return [(f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj)]  # type: ignore[arg-type]


def settings_as_toml(settings: Settings) -> str:
    """`settings` as a TOML document that `load_settings` reads back to the same settings."""
    out = _toml_lines(
        (key, getattr(settings, key))
        for key in ("default_model", "encoder", "theme", "system_prompt")
    )
    for table in ("generation", "context", "ui"):
        out += ["", f"[{table}]", *_toml_lines(_fields(getattr(settings, table)))]
    for model in settings.models:
        values = [(k, v) for k, v in _fields(model) if k != "generation"]
        out += ["", "[[models]]", *_toml_lines(values)]
        if model.generation:
            out += ["", "[models.generation]", *_toml_lines(model.generation)]
    return "\n".join(out) + "\n"
