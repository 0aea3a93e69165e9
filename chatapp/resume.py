"""Opening the sessions database at start-up, and which session `-c` / `--session` mean.

Shared by the TUI (`chatapp`, `chatapp -c`, `chatapp --session ID`) and `chatapp ask`.
The database is never deleted or overwritten here: a file that cannot be used is
reported (the message names it), and the TUI then offers a fresh database beside it.
"""

from __future__ import annotations

import argparse
import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from chatapp.store import NotFoundError, Session, Store, StoreError

if TYPE_CHECKING:
    from chatapp.launch import Startup


class ResumeError(Exception):
    """`-c` or `--session` cannot be honoured; the message is one line for stderr."""


@dataclass
class OpenedStore:
    store: Store | None
    error: StoreError | None = None
    session: Session | None = None
    """The session to continue (`-c`, `--session`), if one was asked for."""
    extra: list[Store] = field(default_factory=list)

    def close(self, *others: Store | None) -> None:
        """Close the store and any other the app opened (a fresh database)."""
        seen: set[int] = set()
        for store in (self.store, *others, *self.extra):
            if store is not None and id(store) not in seen:
                seen.add(id(store))
                store.close()


def wants_session(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "continue_last", False) or getattr(args, "session", None))


def session_id_argument(value: object) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        raise ResumeError(f"--session takes a session id (a number), not {value!r}") from None


def pick_session(store: Store, args: argparse.Namespace) -> Session | None:
    """The session `--session ID` or `-c` asks for; None when neither is given.

    `-c` with no saved session yet gives None (a new session). Raises `ResumeError`.
    """
    requested = getattr(args, "session", None)
    if requested is not None and str(requested) != "":
        session_id = session_id_argument(requested)
        try:
            return store.get_session(session_id)
        except NotFoundError:
            raise ResumeError(
                f"no session {session_id} in {store.path}; `chatapp sessions list` shows them"
            ) from None
    if getattr(args, "continue_last", False):
        return store.latest_session()
    return None


def open_store(
    args: argparse.Namespace, path: Path | None = None, *, recover: bool = True
) -> OpenedStore:
    """Open the database (default: the app's own) and find the session asked for.

    A database that cannot be opened gives ``OpenedStore(None, error)``, unless a session
    was asked for: then there is nothing to continue, and `ResumeError` says why.
    """
    try:
        store = Store(path, recover=recover)
    except StoreError as error:
        if wants_session(args):
            raise ResumeError(str(error)) from error
        return OpenedStore(None, error)
    try:
        session = pick_session(store, args)
    except BaseException:
        store.close()
        raise
    return OpenedStore(store, None, session)


def model_refs(session: Session) -> list[str]:
    """How to find a session's model again: its name, then the path it was loaded from."""
    refs = [session.model] if session.model else []
    path = session.settings.get("model_path") if isinstance(session.settings, dict) else None
    if isinstance(path, str) and path and path not in refs:
        refs.append(path)
    return refs


def prepare_for(args: argparse.Namespace, session: Session | None) -> Startup:
    """`launch.prepare`, but a continued session without `--model` gets its own model back
    when it can still be found (else the default model, as for a new chat)."""
    from chatapp.launch import prepare

    if session is not None and not getattr(args, "model", None):
        for ref in model_refs(session):
            attempt = copy.copy(args)
            attempt.model = ref
            startup = prepare(attempt)
            if startup.model is not None:
                return startup
    return prepare(args)


__all__ = [
    "OpenedStore",
    "ResumeError",
    "model_refs",
    "open_store",
    "pick_session",
    "prepare_for",
    "wants_session",
]
