"""Every chat model a user can pick, and the settings each one runs with.

Three sources, found without the network:
- the shipped catalogue (`chatapp.engine.models`), pulled or pullable;
- `[[models]]` entries in the config: a Hugging Face folder or a `.gguf` file, with an
  optional context window, chat template, stop strings and generation defaults;
- Hugging Face folders and `.gguf` files dropped into the user's models folder (and
  `.gguf` files converted earlier by path).

A config entry wins over a model of the same name from elsewhere.

`generation_for` is the one place where sampling defaults are layered, used by the TUI
(start-up and every switch) and by `chatapp ask`:

    catalogue entry's [generation]  <  config [generation] keys the user set
      <  config [[models]] generation  <  this session's /set values

Cheap to import, no torch: the UI process uses it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from chatapp.config import ModelEntry, Settings
from chatapp.engine import models
from chatapp.engine.models import (
    PLAIN_STOP,
    PLAIN_TEMPLATE,
    InvalidModelPath,
    ModelError,
    ProgressFn,
    UnknownModel,
)
from chatapp.engine.protocol import GenerationSettings, ModelSpec

Source = Literal["catalogue", "config", "user-folder", "path"]

__all__ = [
    "SESSION_KEYS",
    "RegistryEntry",
    "SettingError",
    "describe_settings",
    "find",
    "format_size",
    "generation_for",
    "list_entries",
    "parse_setting",
    "resolve",
]


@dataclass(frozen=True)
class RegistryEntry:
    """A model the user can pick, as the picker and `/model` show it."""

    name: str
    source: Source
    installed: bool
    """Usable now. A catalogue model that is not pulled yet can be pulled."""
    size: int | None
    """Bytes on disk when installed, else the download size (None: unknown)."""
    context_window: int
    defaults: GenerationSettings
    """Its sampling settings before the session's own `/set` values."""
    description: str = ""
    path: Path | None = None
    default: bool = False

    @property
    def pullable(self) -> bool:
        return self.source == "catalogue" and not self.installed


def format_size(size: int | None) -> str:
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit in ("B", "KB") else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"  # pragma: no cover


# --- generation settings -----------------------------------------------------------------


def generation_for(
    name: str | None,
    settings: Settings | None = None,
    session: Mapping[str, Any] | None = None,
) -> GenerationSettings:
    """The sampling settings model `name` runs with (see the module docstring)."""
    settings = settings if settings is not None else Settings()
    entry = models.find_entry(name) if name else None
    defaults = entry.generation if entry is not None else GenerationSettings()
    result = settings.generation_for(name or "", defaults)
    return dataclasses.replace(result, **dict(session or {})) if session else result


SESSION_KEYS: dict[str, str] = {
    "temperature": "temperature",
    "temp": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "repetition_penalty": "repetition_penalty",
    "max_tokens": "max_new_tokens",
    "max_new_tokens": "max_new_tokens",
    "seed": "seed",
}
"""What `/set` accepts, and the `GenerationSettings` field each one sets."""


class SettingError(ValueError):
    """A `/set` that cannot be applied, told in one line."""


def parse_setting(key: str, value: str) -> tuple[str, Any]:
    """(`GenerationSettings` field, value) for `/set KEY VALUE`; raises SettingError."""
    field_name = SESSION_KEYS.get(key.strip().lower().replace("-", "_"))
    if field_name is None:
        known = ", ".join(sorted({k for k in SESSION_KEYS if k not in ("temp", "max_new_tokens")}))
        raise SettingError(f"unknown setting {key!r}; known: {known}")
    text = value.strip()
    try:
        if field_name in ("top_k", "max_new_tokens", "seed"):
            if field_name == "seed" and text.lower() in ("none", "random", "off"):
                return field_name, None
            number: float = int(text)
        else:
            number = float(text)
    except ValueError:
        kind = "a whole number" if field_name in ("top_k", "max_new_tokens", "seed") else "a number"
        raise SettingError(f"{key} must be {kind}, got {text!r}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise SettingError(f"{key} must be a finite number")
    low = {"max_new_tokens": 1}.get(field_name, 0)
    if number < low:
        raise SettingError(f"{key} must be at least {low}, got {text}")
    if field_name == "top_p" and not 0 < number <= 1:
        raise SettingError(f"top_p must be greater than 0 and at most 1, got {text}")
    if field_name == "repetition_penalty" and number <= 0:
        raise SettingError(f"repetition_penalty must be greater than 0, got {text}")
    return field_name, number


def describe_settings(settings: GenerationSettings, *, short: bool = False) -> str:
    """ "temp 0.2 · max 512" (short), or every sampling setting (for `/set`)."""
    temperature = "greedy" if settings.greedy else f"temp {settings.temperature:g}"
    if short:
        return f"{temperature} · max {settings.max_new_tokens}"
    parts = [
        f"temperature {settings.temperature:g}",
        f"max_tokens {settings.max_new_tokens}",
        f"top_p {settings.top_p:g}",
        f"top_k {settings.top_k}",
        f"repetition_penalty {settings.repetition_penalty:g}",
        f"seed {'random' if settings.seed is None else settings.seed}",
    ]
    return " · ".join(parts)


# --- listing -----------------------------------------------------------------------------


def _config_entry(entry: ModelEntry, settings: Settings) -> RegistryEntry:
    path = Path(entry.path)
    installed = path.exists()
    size: int | None = None
    window = entry.context_window
    if path.is_dir():
        size = models.folder_size(path)
        if window is None:
            folder = path if (path / "config.json").is_file() else path / models.HF_DIRNAME
            window = models._folder_context_window(models._read_config(folder))
    elif path.is_file():
        size = path.stat().st_size
    kind = "GGUF file" if path.suffix.lower() == ".gguf" else "folder"
    return RegistryEntry(
        name=entry.name,
        source="config",
        installed=installed,
        size=size,
        context_window=window or models.DEFAULT_CONTEXT_WINDOW,
        defaults=generation_for(entry.name, settings),
        description=f"{kind} from your config: {entry.path}"
        if installed
        else f"missing: {entry.path}",
        path=path,
    )


def list_entries(settings: Settings | None = None) -> list[RegistryEntry]:
    """Every chat model: the config's `[[models]]` first, then the catalogue, then the
    user's models folder and converted files. Encoders are left out (they cannot chat)."""
    settings = settings if settings is not None else Settings()
    entries = [_config_entry(entry, settings) for entry in settings.models]
    taken = {entry.name for entry in entries}
    for info in models.list_models():
        if info.kind != "chat" or info.name in taken:
            continue
        taken.add(info.name)
        entries.append(
            RegistryEntry(
                name=info.name,
                source=info.source,
                installed=info.installed,
                size=info.size,
                context_window=info.context_window,
                defaults=generation_for(info.name, settings),
                description=info.description,
                path=info.path,
                default=info.default,
            )
        )
    return entries


def find(name: str, settings: Settings | None = None) -> RegistryEntry | None:
    return next((e for e in list_entries(settings) if e.name == name), None)


# --- resolving ---------------------------------------------------------------------------


def resolve(
    name_or_path: str, settings: Settings | None = None, progress: ProgressFn | None = None
) -> ModelSpec:
    """The spec to load for a name (config entry, catalogue, models folder) or a path.

    A `.gguf` file is converted once (in a child process); `progress` hears about it.
    Raises `ModelError` (UnknownModel, ModelNotInstalled, InvalidModelPath).
    """
    settings = settings if settings is not None else Settings()
    text = name_or_path.strip()
    entry = settings.model(text)
    if entry is None:
        try:
            return models.resolve_model(text, progress)
        except UnknownModel as error:
            known = [*(m.name for m in settings.models), *error.known]
            raise UnknownModel(text, dict.fromkeys(known)) from None
    try:
        found = models.resolve_model(entry.path, progress)
    except InvalidModelPath as error:
        reason = f"{error.reason} (model {entry.name!r} in your config)"
        raise InvalidModelPath(error.path, reason) from None
    except ModelError as error:
        raise ModelError(f"model {entry.name!r} in your config: {error}") from None
    return config_spec(entry, found)


def config_spec(entry: ModelEntry, found: ModelSpec) -> ModelSpec:
    """A config entry's spec: its own settings over what the folder itself says.

    A base model (no chat template in the folder, none in the config) gets the plain
    transcript template and the stop strings that keep it from writing the user's turn.
    """
    if entry.chat_template:  # the user's own template: only the user's own stops
        template, stop = entry.chat_template, entry.stop
    else:
        template, stop = found.chat_template, tuple(dict.fromkeys((*entry.stop, *found.stop)))
        if template == PLAIN_TEMPLATE:
            stop = tuple(dict.fromkeys((*stop, *PLAIN_STOP)))
    return ModelSpec(
        name=entry.name,
        path=found.path,
        context_window=entry.context_window or found.context_window,
        chat_template=template,
        stop=stop,
    )
