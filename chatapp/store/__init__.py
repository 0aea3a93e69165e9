"""Saved sessions: one SQLite database (WAL, numbered migrations, FTS5 search).

Nothing here imports textual, torch or transformers.
"""

from chatapp.store.db import NotFoundError, StoreError, fresh_database_path
from chatapp.store.migrations import LATEST_VERSION
from chatapp.store.sessions import (
    MARK_END,
    MARK_START,
    Message,
    Role,
    SearchHit,
    Session,
    Status,
    Store,
    make_title,
)

__all__ = [
    "LATEST_VERSION",
    "MARK_END",
    "MARK_START",
    "Message",
    "NotFoundError",
    "Role",
    "SearchHit",
    "Session",
    "Status",
    "Store",
    "StoreError",
    "fresh_database_path",
    "make_title",
]
