"""Small UI state remembered between runs: the chosen theme, the last session.

Stored as JSON in `locations.state_file()`. Loading never fails: a missing, unreadable or
corrupt file gives the defaults (a corrupt file is left in place until the next successful
save replaces it). Saving writes a temporary file beside the real one and `os.replace`s it,
so a crash mid-write never leaves a half-written state file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatapp import locations

__all__ = ["UIState", "load_state", "save_state", "update_state"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UIState:
    theme: str | None = None
    """The theme last chosen in the app (None: use the config's)."""
    last_session_id: int | str | None = None
    """The session open when the app last closed."""
    last_model: str | None = None
    """The model last chosen in the app (None: use the config's default)."""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    """Keys this version does not know (written by a newer one); kept when saving."""


def _clean(data: dict[str, Any]) -> UIState:
    """A `UIState` from parsed JSON; a field of the wrong type falls back to its default."""
    theme = data.get("theme")
    session = data.get("last_session_id")
    model = data.get("last_model")
    known = {"theme", "last_session_id", "last_model"}
    return UIState(
        theme=theme if isinstance(theme, str) and theme else None,
        last_session_id=session
        if isinstance(session, int | str) and not isinstance(session, bool)
        else None,
        last_model=model if isinstance(model, str) and model else None,
        extra={k: v for k, v in data.items() if k not in known},
    )


def load_state(path: Path | None = None) -> UIState:
    """The remembered state, or the defaults when the file is missing or unusable."""
    path = locations.state_file() if path is None else Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return UIState()
    except (OSError, UnicodeDecodeError, ValueError) as error:
        log.warning("ignoring unreadable state file %s: %s", path, error)
        return UIState()
    if not isinstance(data, dict):
        log.warning("ignoring state file %s: not a JSON object", path)
        return UIState()
    return _clean(data)


def save_state(state: UIState, path: Path | None = None) -> bool:
    """Write `state` atomically. Returns False (and logs) when it cannot be written."""
    path = locations.state_file() if path is None else Path(path)
    data = {
        **state.extra,
        "theme": state.theme,
        "last_session_id": state.last_session_id,
        "last_model": state.last_model,
    }
    temp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(data, file, indent=2, ensure_ascii=False)
            file.write("\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
        temp = None
        return True
    except (OSError, TypeError, ValueError) as error:
        log.warning("could not save state file %s: %s", path, error)
        return False
    finally:
        if temp is not None:
            with contextlib.suppress(OSError):
                os.unlink(temp)


def update_state(path: Path | None = None, **changes: Any) -> UIState:
    """Load, change the given fields, save; returns the new state (saved or not)."""
    state = dataclasses.replace(load_state(path), **changes)
    save_state(state, path)
    return state
