"""What context recall keeps in the database: vectors, attachments, pins and exclusions.

Used by the UI (pins, attachments, the context a reply was built from) and by the model
worker (vectors), each through its own `Store`. Vectors are float32 little-endian bytes;
nothing here imports numpy.
"""

from __future__ import annotations

import json as _json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar, cast

from chatapp.store.db import NotFoundError, StoreError
from chatapp.store.sessions import Message, Session, Store

RecallMode = Literal["pinned", "excluded"]
MODES: frozenset[str] = frozenset({"pinned", "excluded"})
_BATCH = 500  # ids per IN (...) query, well under SQLite's variable limit


@dataclass(frozen=True, slots=True)
class Attachment:
    id: int
    session_id: int
    name: str
    path: str
    size: int
    sha256: str
    created_at: float
    chunks: int = 0


@dataclass(frozen=True, slots=True)
class Chunk:
    id: int
    attachment_id: int
    session_id: int
    ordinal: int
    content: str
    name: str  # the attachment's name


@dataclass(frozen=True, slots=True)
class OtherMessage:
    """A message of another session, for cross-session recall."""

    id: int
    session_id: int
    parent_id: int | None
    role: str
    content: str


def _batches(ids: Sequence[int]) -> Iterable[Sequence[int]]:
    for start in range(0, len(ids), _BATCH):
        yield ids[start : start + _BATCH]


# --- pins and exclusions -------------------------------------------------------------


def set_recall_mode(store: Store, message_id: int, mode: RecallMode | None) -> None:
    """Pin a message (always in the context), exclude it (never), or clear either."""
    if mode is not None and mode not in MODES:
        raise ValueError(f"mode must be one of {sorted(MODES)} or None, not {mode!r}")
    with store.transaction() as conn:
        if conn.execute("SELECT 1 FROM messages WHERE id = ?", (message_id,)).fetchone() is None:
            raise NotFoundError(f"no message {message_id} in {store.path}", store.path)
        if mode is None:
            conn.execute("DELETE FROM message_recall WHERE message_id = ?", (message_id,))
        else:
            conn.execute(
                "INSERT INTO message_recall (message_id, mode) VALUES (?, ?) "
                "ON CONFLICT(message_id) DO UPDATE SET mode = excluded.mode",
                (message_id, mode),
            )


def recall_modes(store: Store, session_id: int) -> dict[int, RecallMode]:
    rows = store._all(
        "SELECT r.message_id, r.mode FROM message_recall r "
        "JOIN messages m ON m.id = r.message_id WHERE m.session_id = ?",
        (session_id,),
    )
    return {r[0]: cast(RecallMode, r[1]) for r in rows}


# --- attachments ---------------------------------------------------------------------


def add_attachment(
    store: Store,
    session_id: int,
    name: str,
    content: str,
    chunks: Sequence[str],
    *,
    path: str = "",
    size: int = 0,
    sha256: str = "",
) -> tuple[int, list[int]]:
    """Store a file and its chunks in one transaction; return (attachment id, chunk ids)."""
    with store.transaction() as conn:
        if conn.execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,)).fetchone() is None:
            raise NotFoundError(f"no session {session_id} in {store.path}", store.path)
        cur = conn.execute(
            "INSERT INTO attachments (session_id, name, path, size, sha256, content, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (session_id, name, path, size, sha256, content, time.time()),
        )
        attachment_id = cast(int, cur.lastrowid)
        chunk_ids = []
        for ordinal, text in enumerate(chunks):
            cur = conn.execute(
                "INSERT INTO chunks (attachment_id, session_id, ordinal, content)"
                " VALUES (?, ?, ?, ?)",
                (attachment_id, session_id, ordinal, text),
            )
            chunk_ids.append(cast(int, cur.lastrowid))
    return attachment_id, chunk_ids


def attachments(store: Store, session_id: int) -> list[Attachment]:
    rows = store._all(
        "SELECT a.id, a.session_id, a.name, a.path, a.size, a.sha256, a.created_at,"
        " (SELECT count(*) FROM chunks c WHERE c.attachment_id = a.id)"
        " FROM attachments a WHERE a.session_id = ? ORDER BY a.id",
        (session_id,),
    )
    return [Attachment(*r) for r in rows]


def remove_attachment(store: Store, attachment_id: int) -> None:
    with store.transaction() as conn:
        conn.execute("DELETE FROM attachments WHERE id = ?", (attachment_id,))


def session_chunks(store: Store, session_id: int) -> list[Chunk]:
    rows = store._all(
        "SELECT c.id, c.attachment_id, c.session_id, c.ordinal, c.content, a.name"
        " FROM chunks c JOIN attachments a ON a.id = c.attachment_id"
        " WHERE c.session_id = ? ORDER BY c.id",
        (session_id,),
    )
    return [Chunk(*r) for r in rows]


def get_chunks(store: Store, chunk_ids: Sequence[int]) -> dict[int, Chunk]:
    out: dict[int, Chunk] = {}
    for batch in _batches(list(chunk_ids)):
        marks = ",".join("?" * len(batch))
        rows = store._all(
            "SELECT c.id, c.attachment_id, c.session_id, c.ordinal, c.content, a.name"
            " FROM chunks c JOIN attachments a ON a.id = c.attachment_id"
            f" WHERE c.id IN ({marks})",
            tuple(batch),
        )
        out.update((r[0], Chunk(*r)) for r in rows)
    return out


# --- vectors -------------------------------------------------------------------------


def get_vectors(
    store: Store, encoder: str, ids: Sequence[int], *, chunks: bool = False
) -> dict[int, bytes]:
    """The stored vectors of these messages (or chunks) for `encoder`, by id."""
    column = "chunk_id" if chunks else "message_id"
    out: dict[int, bytes] = {}
    for batch in _batches(list(ids)):
        marks = ",".join("?" * len(batch))
        rows = store._all(
            f"SELECT {column}, vector FROM embeddings WHERE encoder = ? AND {column} IN ({marks})",
            (encoder, *batch),
        )
        out.update((r[0], bytes(r[1])) for r in rows)
    return out


def put_vectors(
    store: Store,
    encoder: str,
    dim: int,
    vectors: Iterable[tuple[int, bytes]],
    *,
    chunks: bool = False,
) -> int:
    """Save (id, vector bytes) pairs; ids deleted meanwhile are skipped. Returns how many."""
    column = "chunk_id" if chunks else "message_id"
    table = "chunks" if chunks else "messages"
    saved = 0
    with store.transaction() as conn:
        for item_id, blob in vectors:
            if len(blob) != 4 * dim:
                raise ValueError(f"a {dim}-dimensional vector takes {4 * dim} bytes")
            cur = conn.execute(
                f"INSERT INTO embeddings ({column}, encoder, dim, vector)"
                f" SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM {table} WHERE id = ?)"
                f" ON CONFLICT({column}, encoder) WHERE {column} IS NOT NULL"
                " DO UPDATE SET vector = excluded.vector, dim = excluded.dim",
                (item_id, encoder, dim, blob, item_id),
            )
            saved += cur.rowcount
    return saved


def missing_vectors(
    store: Store, encoder: str, limit: int = 64, *, chunks: bool = False
) -> list[tuple[int, str]]:
    """Up to `limit` (id, text) of messages (or chunks) with no vector for `encoder`,
    newest first. Only finished, non-empty messages count."""
    if chunks:
        sql = (
            "SELECT c.id, c.content FROM chunks c WHERE NOT EXISTS (SELECT 1 FROM embeddings e"
            " WHERE e.chunk_id = c.id AND e.encoder = ?) ORDER BY c.id DESC LIMIT ?"
        )
    else:
        sql = (
            "SELECT m.id, m.content FROM messages m WHERE m.status != 'streaming'"
            " AND m.content != '' AND m.role != 'system' AND NOT EXISTS"
            " (SELECT 1 FROM embeddings e WHERE e.message_id = m.id AND e.encoder = ?)"
            " ORDER BY m.id DESC LIMIT ?"
        )
    return [(r[0], r[1]) for r in store._all(sql, (encoder, limit))]


def count_missing(store: Store, encoder: str) -> int:
    row = store._one(
        "SELECT (SELECT count(*) FROM messages m WHERE m.status != 'streaming'"
        " AND m.content != '' AND m.role != 'system' AND NOT EXISTS"
        " (SELECT 1 FROM embeddings e WHERE e.message_id = m.id AND e.encoder = ?))"
        " + (SELECT count(*) FROM chunks c WHERE NOT EXISTS"
        " (SELECT 1 FROM embeddings e WHERE e.chunk_id = c.id AND e.encoder = ?))",
        (encoder, encoder),
    )
    return int(row[0]) if row else 0


def all_message_vectors(store: Store, encoder: str) -> list[tuple[int, int, bytes]]:
    """(message id, session id, vector) of every embedded message, for search."""
    rows = store._all(
        "SELECT m.id, m.session_id, e.vector FROM embeddings e JOIN messages m"
        " ON m.id = e.message_id WHERE e.encoder = ? ORDER BY m.id",
        (encoder,),
    )
    return [(r[0], r[1], bytes(r[2])) for r in rows]


class _Hit(Protocol):
    @property
    def session_id(self) -> int: ...

    @property
    def message_id(self) -> int: ...


H = TypeVar("H", bound=_Hit)


def found_messages(store: Store, hits: Iterable[H]) -> list[tuple[H, Session, Message]]:
    """Each search hit with its session and message; a hit whose message is gone
    (deleted meanwhile) or cannot be read is left out."""
    found = []
    for hit in hits:
        try:
            session = store.get_session(hit.session_id)
            message = store.get_message(hit.message_id)
        except StoreError:
            continue
        found.append((hit, session, message))
    return found


def other_session_messages(store: Store, session_id: int) -> list[OtherMessage]:
    """The finished user and assistant messages of every other session."""
    rows = store._all(
        "SELECT id, session_id, parent_id, role, content FROM messages"
        " WHERE session_id != ? AND role != 'system' AND status != 'streaming'"
        " AND content != '' ORDER BY id",
        (session_id,),
    )
    return [OtherMessage(*r) for r in rows]


def set_reply_context(store: Store, message_id: int, context: object) -> None:
    """Record which messages and chunks a reply's context held (any JSON value)."""
    value = _json.dumps(context, ensure_ascii=False, allow_nan=False)
    with store.transaction() as conn:
        cur = conn.execute("UPDATE messages SET context = ? WHERE id = ?", (value, message_id))
        if cur.rowcount == 0:
            raise NotFoundError(f"no message {message_id} in {store.path}", store.path)
