"""The model registry: the bundled catalogue, pulled models, and the user's own models.

Cheap to import (the UI uses it): nothing here imports torch or transformers. Pulling and
converting live in `chatapp.engine.pull`, which runs the heavy conversion in a child
process.

Where models live:
- `locations.models_dir() / NAME / "hf"`: a pulled catalogue model, as a Hugging Face
  folder (config.json, safetensors, tokenizer). `NAME / ".chatapp-pulled.json"` is written
  inside the pull's staging folder, which is renamed into place only once the pull is
  complete and verified, so a half-done pull is never taken as installed.
- `locations.models_dir() / "gguf-<sha12>" / "hf"`: a `.gguf` file given by path,
  converted once and reused.
- `locations.user_models_dir()`: Hugging Face folders and `.gguf` files the user drops in.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal, cast

from chatapp import locations
from chatapp.engine.protocol import GenerationSettings, ModelSpec

Kind = Literal["chat", "encoder"]
Template = Literal["chat", "plain"]
Format = Literal["gguf", "folder"]
Source = Literal["catalogue", "path", "user-folder"]
ProgressFn = Callable[[str, float, float | None], None]

KINDS: tuple[Kind, ...] = ("chat", "encoder")
TEMPLATES: tuple[Template, ...] = ("chat", "plain")
FORMATS: tuple[Format, ...] = ("gguf", "folder")

MARKER = ".chatapp-pulled.json"
HF_DIRNAME = "hf"
GGUF_CACHE_PREFIX = "gguf-"
GGUF_MAGIC = b"GGUF"
DEFAULT_CONTEXT_WINDOW = 2048
"""The most a model found by path is given: long prompts are slow on a CPU."""

PLAIN_TEMPLATE = (
    "{% if bos_token %}{{ bos_token }}{% endif %}"
    "{% for m in messages %}"
    "{% if m.role == 'system' %}{{ m.content }}\n\n"
    "{% elif m.role == 'user' %}User: {{ m.content }}\n"
    "{% else %}Assistant: {{ m.content }}\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)
"""A transcript for base models that have no chat template of their own."""

PLAIN_STOP: tuple[str, ...] = ("\nUser:",)
"""Stops a base model prompted with PLAIN_TEMPLATE before it writes the user's turn."""

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_GENERATION_KEYS = {f.name for f in dataclasses.fields(GenerationSettings)} - {"stop"}
_CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")


# --- errors --------------------------------------------------------------------------


class ModelError(Exception):
    """A problem with a model, told in one line a person can act on."""


class UnknownModel(ModelError):
    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = tuple(known)
        super().__init__(
            f"unknown model {name!r}; known: {', '.join(self.known)}"
            " — or pass a folder or .gguf path"
        )


class ModelNotInstalled(ModelError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"model {name!r} is not pulled yet: run `chatapp models pull {name}`")


class InvalidModelPath(ModelError):
    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class CatalogueError(ModelError):
    """The catalogue file itself is malformed (a bug in chatapp, not the user's)."""


# --- the catalogue -------------------------------------------------------------------


@dataclass(frozen=True)
class WheelPart:
    """One wheel on PyPI and the member (file, or folder ending in "/") taken from it."""

    package: str
    version: str
    member: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class CatalogueEntry:
    name: str
    kind: Kind
    description: str
    default: bool
    format: Format
    file: str
    sha256: str
    size: int
    context_window: int
    template: Template
    stop: tuple[str, ...]
    generation: GenerationSettings
    wheels: tuple[WheelPart, ...]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CatalogueEntry:
        """Validate one `[[models]]` table; raise CatalogueError naming what is wrong."""
        name = data.get("name")
        where = f"catalogue entry {name!r}" if name else "a catalogue entry"

        def need(key: str, kind: type | tuple[type, ...]) -> Any:
            if key not in data:
                raise CatalogueError(f"{where} has no {key!r}")
            value = data[key]
            if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
                raise CatalogueError(f"{where}: {key!r} has the wrong type ({value!r})")
            return value

        name = need("name", str)
        if not _NAME_RE.match(name):
            raise CatalogueError(f"{where}: name must be lowercase letters, digits, . _ -")
        kind = need("kind", str)
        if kind not in KINDS:
            raise CatalogueError(f"{where}: kind must be one of {KINDS}, not {kind!r}")
        fmt = need("format", str)
        if fmt not in FORMATS:
            raise CatalogueError(f"{where}: format must be one of {FORMATS}, not {fmt!r}")
        template = data.get("template", "chat")
        if template not in TEMPLATES:
            raise CatalogueError(f"{where}: template must be one of {TEMPLATES}")
        sha = need("sha256", str).lower()
        if not _SHA_RE.match(sha):
            raise CatalogueError(f"{where}: sha256 must be 64 hex digits")
        size = need("size", int)
        context_window = need("context_window", int)
        if size <= 0 or context_window <= 0:
            raise CatalogueError(f"{where}: size and context_window must be positive")
        stop = data.get("stop", [])
        if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
            raise CatalogueError(f"{where}: stop must be a list of non-empty strings")
        generation = data.get("generation", {})
        if not isinstance(generation, dict):
            raise CatalogueError(f"{where}: generation must be a table")
        unknown = set(generation) - _GENERATION_KEYS
        if unknown:
            raise CatalogueError(f"{where}: unknown generation keys {sorted(unknown)}")
        raw_wheels = need("wheels", list)
        if not raw_wheels:
            raise CatalogueError(f"{where} lists no wheels")
        wheels: list[WheelPart] = []
        for wheel in raw_wheels:
            try:
                part = WheelPart(
                    package=str(wheel["package"]),
                    version=str(wheel["version"]),
                    member=str(wheel["member"]),
                )
            except (KeyError, TypeError):
                raise CatalogueError(
                    f"{where}: each wheel needs package, version, member"
                ) from None
            wheels.append(part)
        if fmt == "folder" and (len(wheels) != 1 or not wheels[0].member.endswith("/")):
            raise CatalogueError(f"{where}: a folder model takes one wheel whose member ends /")
        if fmt == "gguf" and any(w.member.endswith("/") for w in wheels):
            raise CatalogueError(f"{where}: a gguf model's members are files, not folders")
        file = need("file", str)
        if not file or "/" in file or "\\" in file or file.startswith("."):
            raise CatalogueError(f"{where}: file must be a plain file name")
        return cls(
            name=name,
            kind=cast(Kind, kind),
            description=str(data.get("description", "")),
            default=bool(data.get("default", False)),
            format=cast(Format, fmt),
            file=file,
            sha256=sha,
            size=size,
            context_window=context_window,
            template=cast(Template, template),
            stop=tuple(stop),
            generation=GenerationSettings(**generation, stop=tuple(stop)),
            wheels=tuple(wheels),
        )

    @property
    def install_dir(self) -> Path:
        return locations.models_dir() / self.name

    @property
    def hf_dir(self) -> Path:
        return self.install_dir / HF_DIRNAME

    @property
    def chat_template(self) -> str | None:
        """None: use the tokenizer's own template; otherwise the transcript template."""
        return PLAIN_TEMPLATE if self.template == "plain" else None

    def spec(self) -> ModelSpec:
        """The spec for the installed model (check `is_installed` first)."""
        return ModelSpec(
            name=self.name,
            path=str(self.hf_dir),
            context_window=self.context_window,
            chat_template=self.chat_template,
            stop=self.stop,
        )


def parse_catalogue(text: str) -> tuple[CatalogueEntry, ...]:
    """Parse and validate catalogue TOML (the bundled file, or one a test writes)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise CatalogueError(f"the model catalogue is not valid TOML: {error}") from None
    tables = data.get("models", [])
    if not isinstance(tables, list):
        raise CatalogueError("the model catalogue must hold [[models]] tables")
    entries = tuple(CatalogueEntry.from_dict(table) for table in tables)
    names = [entry.name for entry in entries]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise CatalogueError(f"the model catalogue names {duplicates} more than once")
    return entries


@functools.cache
def load_catalogue() -> tuple[CatalogueEntry, ...]:
    """The bundled catalogue (chatapp/engine/catalogue.toml), parsed once."""
    text = resources.files("chatapp.engine").joinpath("catalogue.toml").read_text("utf-8")
    return parse_catalogue(text)


def find_entry(name: str) -> CatalogueEntry | None:
    return next((entry for entry in load_catalogue() if entry.name == name), None)


def get_entry(name: str) -> CatalogueEntry:
    entry = find_entry(name)
    if entry is None:
        raise UnknownModel(name, (e.name for e in load_catalogue()))
    return entry


def default_entries(kind: Kind | None = None) -> list[CatalogueEntry]:
    """The entries `models pull --defaults` pulls, optionally of one kind."""
    return [e for e in load_catalogue() if e.default and (kind is None or e.kind == kind)]


def default_model(kind: Kind) -> str:
    """The name of the model used for `kind` when the config names none."""
    entries = default_entries(kind)
    if not entries:
        raise CatalogueError(f"the model catalogue has no default {kind} model")
    return entries[0].name


# --- install state -------------------------------------------------------------------


def read_marker(install_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((install_dir / MARKER).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_marker(install_dir: Path, data: Mapping[str, Any]) -> None:
    """Write the marker atomically (a temp file renamed into place)."""
    tmp = install_dir / f"{MARKER}.tmp"
    tmp.write_text(json.dumps(dict(data), indent=2, sort_keys=True) + "\n", "utf-8")
    os.replace(tmp, install_dir / MARKER)


def is_installed(entry: CatalogueEntry) -> bool:
    """Pulled, verified and converted: the marker names the catalogue's sha256."""
    marker = read_marker(entry.install_dir)
    return (
        marker is not None
        and marker.get("sha256") == entry.sha256
        and (entry.hf_dir / "config.json").is_file()
    )


def folder_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(root) / name).stat().st_size
    return total


# --- the registry --------------------------------------------------------------------


@dataclass(frozen=True)
class ModelInfo:
    name: str
    kind: Kind
    installed: bool
    size: int | None
    """Bytes on disk when installed, else the expected download size (None: unknown)."""
    context_window: int
    source: Source
    description: str = ""
    path: Path | None = None
    default: bool = False


def _read_config(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / "config.json").read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _folder_kind(config: Mapping[str, Any]) -> Kind:
    architectures = config.get("architectures") or []
    if any(str(a).endswith(_CAUSAL_SUFFIXES) for a in architectures):
        return "chat"
    return "encoder" if architectures else "chat"


def _folder_context_window(config: Mapping[str, Any]) -> int:
    text_config = config.get("text_config")
    sources = [config, text_config] if isinstance(text_config, dict) else [config]
    for source in sources:
        for key in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
            value = source.get(key)
            if isinstance(value, int) and value > 0:
                return min(value, DEFAULT_CONTEXT_WINDOW)
    return DEFAULT_CONTEXT_WINDOW


def has_chat_template(folder: Path) -> bool:
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    try:
        config = json.loads((folder / "tokenizer_config.json").read_text("utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and bool(config.get("chat_template"))


def _user_models() -> dict[str, Path]:
    """Name -> path of the HF folders and .gguf files in the user's models folder."""
    found: dict[str, Path] = {}
    try:
        children = sorted(locations.user_models_dir().iterdir())
    except OSError:
        return found
    for child in children:
        if child.name.startswith("."):
            continue
        is_folder = child.is_dir() and (child / "config.json").is_file()
        is_gguf = child.is_file() and child.suffix.lower() == ".gguf"
        if is_folder or is_gguf:
            found[child.name] = child
    return found


def _gguf_caches() -> list[tuple[Path, dict[str, Any]]]:
    """The converted `.gguf` files given by path: (install dir, marker)."""
    found = []
    try:
        children = sorted(locations.models_dir().glob(f"{GGUF_CACHE_PREFIX}*"))
    except OSError:
        return found
    for child in children:
        marker = read_marker(child)
        if marker is not None and (child / HF_DIRNAME / "config.json").is_file():
            found.append((child, marker))
    return found


def _find_gguf_cache(path: Path) -> Path | None:
    """A conversion of this very file (same path, size and mtime), without hashing it."""
    try:
        stat = path.stat()
    except OSError:
        return None
    for install_dir, marker in _gguf_caches():
        if (
            marker.get("source") == str(path)
            and marker.get("source_size") == stat.st_size
            and marker.get("source_mtime_ns") == stat.st_mtime_ns
        ):
            return install_dir
    return None


def list_models() -> list[ModelInfo]:
    """Every model chatapp can use: the catalogue, the user's folder, converted files."""
    infos: list[ModelInfo] = []
    for entry in load_catalogue():
        installed = is_installed(entry)
        infos.append(
            ModelInfo(
                name=entry.name,
                kind=entry.kind,
                installed=installed,
                size=folder_size(entry.hf_dir) if installed else entry.size,
                context_window=entry.context_window,
                source="catalogue",
                description=entry.description,
                path=entry.hf_dir if installed else None,
                default=entry.default,
            )
        )
    for name, path in _user_models().items():
        if path.is_dir():
            config = _read_config(path)
            infos.append(
                ModelInfo(
                    name=name,
                    kind=_folder_kind(config),
                    installed=True,
                    size=folder_size(path),
                    context_window=_folder_context_window(config),
                    source="user-folder",
                    description="Hugging Face folder in your models folder",
                    path=path,
                )
            )
        else:
            cache = _find_gguf_cache(path)
            config = _read_config(cache / HF_DIRNAME) if cache else {}
            infos.append(
                ModelInfo(
                    name=name,
                    kind="chat",
                    installed=True,
                    size=path.stat().st_size,
                    context_window=_folder_context_window(config),
                    source="user-folder",
                    description="GGUF file in your models folder"
                    + ("" if cache else " (converted on first use)"),
                    path=path,
                )
            )
    for install_dir, marker in _gguf_caches():
        hf = install_dir / HF_DIRNAME
        config = _read_config(hf)
        infos.append(
            ModelInfo(
                name=install_dir.name,
                kind=_folder_kind(config),
                installed=True,
                size=folder_size(hf),
                context_window=_folder_context_window(config),
                source="path",
                description=f"converted from {marker.get('source', '?')}",
                path=hf,
            )
        )
    return infos


# --- resolving a name or a path ------------------------------------------------------


def _looks_like_path(text: str) -> bool:
    return (
        "/" in text
        or os.sep in text
        or text.startswith(("~", "."))
        or text.lower().endswith(".gguf")
    )


def resolve_model(name_or_path: str, progress: ProgressFn | None = None) -> ModelSpec:
    """A catalogue name, a name in the user's models folder, an HF folder or a .gguf path.

    A `.gguf` file is converted once (in a child process, 20–40 s) into
    `models_dir()/gguf-<sha12>/hf`; `progress(stage, done, total)` hears about it.
    Raises UnknownModel, ModelNotInstalled or InvalidModelPath (all ModelError).
    """
    text = name_or_path.strip()
    entry = find_entry(text)
    if entry is not None:
        if not is_installed(entry):
            raise ModelNotInstalled(entry.name)
        return entry.spec()
    if text and not _looks_like_path(text):
        user = _user_models().get(text)
        if user is not None:
            return _resolve_path(user, progress)
        known = [e.name for e in load_catalogue()] + list(_user_models())
        raise UnknownModel(text, known)
    if not text:
        raise UnknownModel(text, (e.name for e in load_catalogue()))
    return _resolve_path(Path(text).expanduser(), progress)


def _resolve_path(path: Path, progress: ProgressFn | None) -> ModelSpec:
    path = path.absolute()
    if not path.exists():
        raise InvalidModelPath(path, "no such file or folder")
    if path.is_dir():
        if not (path / "config.json").is_file():
            if (path / HF_DIRNAME / "config.json").is_file():
                return _resolve_path(path / HF_DIRNAME, progress)
            raise InvalidModelPath(
                path, "folder has no config.json, so it is not a Hugging Face model folder"
            )
        return folder_spec(path)
    if path.suffix.lower() != ".gguf":
        raise InvalidModelPath(path, "not a model: pass a Hugging Face folder or a .gguf file")
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
    except OSError as error:
        raise InvalidModelPath(path, f"cannot read it ({error.strerror})") from None
    if magic != GGUF_MAGIC:
        raise InvalidModelPath(path, "not a GGUF file (it does not start with 'GGUF')")
    return _resolve_gguf(path, progress)


def folder_spec(folder: Path, name: str | None = None) -> ModelSpec:
    """The spec of a Hugging Face folder: a pulled model keeps its catalogue settings."""
    folder = folder.absolute()
    for entry in load_catalogue():
        if entry.hf_dir.absolute() == folder and is_installed(entry):
            return entry.spec()
    if name is None:
        name = folder.parent.name if folder.name == HF_DIRNAME else folder.name
    config = _read_config(folder)
    plain = _folder_kind(config) == "chat" and not has_chat_template(folder)
    return ModelSpec(
        name=name,
        path=str(folder),
        context_window=_folder_context_window(config),
        chat_template=PLAIN_TEMPLATE if plain else None,
        stop=PLAIN_STOP if plain else (),
    )


def _resolve_gguf(path: Path, progress: ProgressFn | None) -> ModelSpec:
    from chatapp.engine import pull  # lazily: pull imports this module

    name = path.stem
    cached = _find_gguf_cache(path)
    if cached is not None:
        return folder_spec(cached / HF_DIRNAME, name)
    sha = pull.sha256_file(path, progress, stage=f"hash {path.name}")
    install_dir = locations.models_dir() / f"{GGUF_CACHE_PREFIX}{sha[:12]}"
    stat = path.stat()
    marker = {
        "name": name,
        "sha256": sha,
        "file": path.name,
        "source": str(path),
        "source_size": stat.st_size,
        "source_mtime_ns": stat.st_mtime_ns,
    }
    marker_now = read_marker(install_dir)
    if (
        marker_now is not None
        and marker_now.get("sha256") == sha
        and (install_dir / HF_DIRNAME / "config.json").is_file()
    ):
        write_marker(install_dir, {**marker_now, **marker})  # the same file, moved
    else:
        pull.install_converted_gguf(path, install_dir, marker, progress)
    return folder_spec(install_dir / HF_DIRNAME, name)
