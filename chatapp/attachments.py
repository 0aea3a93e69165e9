"""Reading a file for `/attach`: text, Markdown or code, refused clearly otherwise.

Cheap to import (the UI uses it); the worker chunks and embeds what this returns.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MAX_BYTES = 2 * 1024 * 1024
"""Bigger files are refused: their chunks would swamp the ranking and take minutes to embed."""
SNIFF_BYTES = 8192


class AttachError(Exception):
    """Why a file cannot be attached, in one line a person can act on."""


@dataclass(frozen=True)
class FileText:
    name: str
    path: str
    text: str
    size: int


def _looks_binary(head: bytes) -> bool:
    if b"\x00" in head:
        return True
    if not head:
        return False
    control = sum(b < 32 and b not in (9, 10, 12, 13, 27) for b in head)
    return control / len(head) > 0.1


def read_attachment(path: str | os.PathLike[str], max_bytes: int = MAX_BYTES) -> FileText:
    """The file's text, or `AttachError` saying why not (nothing else is touched)."""
    raw = str(path).strip()
    if not raw:
        raise AttachError("usage: /attach PATH (a text, Markdown or code file)")
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        raw = raw[1:-1]
    file = Path(raw).expanduser()
    if not file.exists():
        raise AttachError(f"{file}: no such file")
    if file.is_dir():
        raise AttachError(f"{file} is a folder; attach the files in it one at a time")
    if not file.is_file():
        raise AttachError(f"{file} is not a regular file")
    try:
        size = file.stat().st_size
        if size > max_bytes:
            raise AttachError(
                f"{file.name} is {size / 1024 / 1024:.1f} MB; files up to "
                f"{max_bytes / 1024 / 1024:.0f} MB can be attached"
            )
        with file.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except PermissionError:
        raise AttachError(f"{file}: permission denied") from None
    except OSError as exc:
        raise AttachError(f"{file}: cannot be read ({exc.strerror or exc})") from None
    if len(data) > max_bytes:  # grew while we looked
        raise AttachError(f"{file.name} is over {max_bytes / 1024 / 1024:.0f} MB")
    if _looks_binary(data[:SNIFF_BYTES]):
        raise AttachError(f"{file.name} looks like a binary file; only text files can be attached")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AttachError(
            f"{file.name} is not UTF-8 text (byte {exc.start} is invalid); "
            "convert it to UTF-8 first"
        ) from None
    if not text.strip():
        raise AttachError(f"{file.name} is empty")
    return FileText(file.name, str(file.absolute()), text, len(data))
