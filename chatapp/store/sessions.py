"""The saved-sessions store: sessions, branching messages, search.

Messages form a tree per session: each message's parent is the previous message on its
branch (a root user message has ``parent_id`` None). Editing a user message adds a
sibling with the same parent; regenerating a reply adds a sibling assistant message. The
session remembers ``current_leaf_id``, the tip of the branch the user is viewing, and
`Store.branch` walks from the root to that tip.

Every write commits at once. The store is safe to share between threads (one lock), and
between processes (SQLite WAL mode; writers queue on the busy timeout).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from chatapp import locations
from chatapp.store.db import (
    DEFAULT_BUSY_TIMEOUT,
    NotFoundError,
    StoreError,
    describe_error,
    open_connection,
)
from chatapp.store.writers import is_running, this_writer

Role = Literal["system", "user", "assistant"]
Status = Literal["complete", "streaming", "stopped", "interrupted", "error"]
ROLES: frozenset[str] = frozenset({"system", "user", "assistant"})
STATUSES: frozenset[str] = frozenset({"complete", "streaming", "stopped", "interrupted", "error"})
FINAL_STATUSES: frozenset[str] = STATUSES - {"streaming"}
TITLE_LENGTH = 60
# Search ranks (bm25) at most this many of the newest matches.
RANK_WINDOW = 500

# Markers around matched words in `SearchHit.snippet` (control characters never typed).
MARK_START = "\x02"
MARK_END = "\x03"


@dataclass(frozen=True, slots=True)
class Session:
    id: int
    title: str
    created_at: float
    updated_at: float
    model: str
    system_prompt: str | None
    settings: dict[str, Any] = field(default_factory=dict)
    current_leaf_id: int | None = None
    title_locked: bool = False
    message_count: int = 0


@dataclass(frozen=True, slots=True)
class Message:
    id: int
    session_id: int
    parent_id: int | None
    role: Role
    content: str
    model: str | None
    status: Status
    prompt_tokens: int | None
    new_tokens: int | None
    ttft: float | None
    seconds: float | None
    created_at: float
    context: Any = None


@dataclass(frozen=True, slots=True)
class SearchHit:
    session_id: int
    message_id: int
    title: str
    role: Role
    snippet: str  # matched words wrapped in MARK_START ... MARK_END
    created_at: float

    def plain(self) -> str:
        return self.marked("", "")

    def marked(self, before: str, after: str) -> str:
        return self.snippet.replace(MARK_START, before).replace(MARK_END, after)

    def to_rich(self, style: str = "bold reverse") -> Any:
        """The snippet as a `rich.text.Text`, matches styled, made inert for a terminal."""
        from rich.text import Text

        from chatapp.sanitize import sanitize

        text = Text()
        for i, part in enumerate(self.snippet.split(MARK_START)):
            matched, _, rest = part.partition(MARK_END) if i else ("", "", part)
            if matched:
                text.append(sanitize(matched), style=style)
            text.append(sanitize(rest.replace(MARK_END, "")))
        return text


def make_title(content: str, limit: int = TITLE_LENGTH) -> str:
    """The first non-blank line, whitespace collapsed, cut at a word near ``limit``."""
    for line in content.splitlines():
        line = " ".join(line.split())
        if line:
            break
    else:
        return ""
    if len(line) <= limit:
        return line
    cut = line[:limit]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,.;:-") + "…"


def fts_query(text: str) -> str | None:
    """User text as a safe FTS5 query: every word quoted, all must match, the last one
    (of two letters or more) is a prefix.

    Quoting makes operators (``AND``, ``-``, ``*``, ``"``, ``NEAR``, ``col:``) plain words,
    so nothing a user types is a syntax error. Returns None when no word is left.
    """
    # FTS5 stops reading at NUL; SQLite cannot take unpaired surrogates.
    text = text.replace("\x00", " ").encode("utf-8", "replace").decode("utf-8")
    terms = ['"' + t.replace('"', '""') + '"' for t in text.split() if any(c.isalnum() for c in t)]
    if not terms:
        return None
    if sum(c.isalnum() for c in terms[-1]) >= 2:  # a one-letter prefix matches too much
        terms[-1] += "*"
    return " ".join(terms)


def _dumps(value: Any, what: str) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be JSON-serialisable: {exc}") from exc


def _settings_dict(settings: Any) -> dict[str, Any]:
    if settings is None:
        return {}
    if dataclasses.is_dataclass(settings) and not isinstance(settings, type):
        settings = dataclasses.asdict(settings)
    if not isinstance(settings, Mapping):
        raise TypeError(f"settings must be a mapping or a dataclass, not {type(settings)!r}")
    return json.loads(_dumps(dict(settings), "settings"))


def _optional_number(value: float | None, what: str) -> float | None:
    if value is None:
        return None
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{what} must be finite")
    return value


_SESSION_COLUMNS = (
    "s.id, s.title, s.created_at, s.updated_at, s.model, s.system_prompt, s.settings, "
    "s.current_leaf_id, s.title_locked, "
    "(SELECT count(*) FROM messages c WHERE c.session_id = s.id) AS message_count"
)
_MESSAGE_COLUMNS = (
    "m.id, m.session_id, m.parent_id, m.role, m.content, m.model, m.status, "
    "m.prompt_tokens, m.new_tokens, m.ttft, m.seconds, m.created_at, m.context"
)


def _session(row: sqlite3.Row | tuple[Any, ...]) -> Session:
    return Session(
        id=row[0],
        title=row[1],
        created_at=row[2],
        updated_at=row[3],
        model=row[4],
        system_prompt=row[5],
        settings=json.loads(row[6]) if row[6] else {},
        current_leaf_id=row[7],
        title_locked=bool(row[8]),
        message_count=row[9],
    )


def _message(row: sqlite3.Row | tuple[Any, ...]) -> Message:
    return Message(
        id=row[0],
        session_id=row[1],
        parent_id=row[2],
        role=cast(Role, row[3]),
        content=row[4],
        model=row[5],
        status=cast(Status, row[6]),
        prompt_tokens=row[7],
        new_tokens=row[8],
        ttft=row[9],
        seconds=row[10],
        created_at=row[11],
        context=json.loads(row[12]) if row[12] is not None else None,
    )


class Store:
    """The database of saved sessions. Open it, use it, close it (or use ``with``)."""

    def __init__(
        self,
        path: Path | str | None = None,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        recover: bool = True,
    ) -> None:
        """Open (creating and upgrading as needed) the database at ``path``.

        ``path`` defaults to `locations.database_file()`. Streaming replies left by a
        crash are marked 'interrupted' unless ``recover`` is False. Raises `StoreError`.
        """
        self.path = Path(path) if path is not None else locations.database_file()
        self.busy_timeout = busy_timeout
        self._lock = threading.RLock()
        self._depth = 0
        self._conn: sqlite3.Connection | None = open_connection(self.path, busy_timeout)
        if recover:
            try:
                self.recover_interrupted()
            except BaseException:
                self.close()
                raise

    @classmethod
    def open(cls, path: Path | str | None = None, **kwargs: Any) -> Store:
        return cls(path, **kwargs)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @property
    def closed(self) -> bool:
        return self._conn is None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}{', closed' if self.closed else ''})"

    # --- plumbing ----------------------------------------------------------------------

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"the database {self.path} is closed", self.path)
        return self._conn

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise describe_error(exc, self.path, self.busy_timeout) from exc

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``); nested calls join the outer one.

        Everything inside commits together or not at all.
        """
        with self._lock, self._errors():
            conn = self._db
            if self._depth:
                self._depth += 1
                try:
                    yield conn
                finally:
                    self._depth -= 1
                return
            conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield conn
            except BaseException:
                self._depth = 0
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            self._depth = 0
            try:
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _all(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock, self._errors():
            return self._db.execute(sql, params).fetchall()

    def _one(self, sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        with self._lock, self._errors():
            return self._db.execute(sql, params).fetchone()

    # --- sessions ----------------------------------------------------------------------

    def create_session(
        self,
        model: str,
        system_prompt: str | None = None,
        settings: Mapping[str, Any] | Any = None,
        title: str = "",
    ) -> Session:
        """A new, empty session. A non-empty ``title`` counts as chosen by the user."""
        now = time.time()
        title = " ".join(title.split())
        with self.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO sessions (title, title_locked, created_at, updated_at, model, "
                "system_prompt, settings) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    title,
                    int(bool(title)),
                    now,
                    now,
                    model,
                    system_prompt,
                    _dumps(_settings_dict(settings), "settings"),
                ),
            )
            session_id = cast(int, cur.lastrowid)
        return self.get_session(session_id)

    def get_session(self, session_id: int) -> Session:
        row = self._one(f"SELECT {_SESSION_COLUMNS} FROM sessions s WHERE s.id = ?", (session_id,))
        if row is None:
            raise NotFoundError(f"no session {session_id} in {self.path}", self.path)
        return _session(row)

    def list_sessions(self, limit: int = 50, offset: int = 0) -> list[Session]:
        """Sessions, the most recently updated first."""
        rows = self._all(
            f"SELECT {_SESSION_COLUMNS} FROM sessions s "
            "ORDER BY s.updated_at DESC, s.id DESC LIMIT ? OFFSET ?",
            (limit, offset),
        )
        return [_session(r) for r in rows]

    def count_sessions(self) -> int:
        row = self._one("SELECT count(*) FROM sessions")
        return int(row[0]) if row else 0

    def latest_session(self) -> Session | None:
        sessions = self.list_sessions(limit=1)
        return sessions[0] if sessions else None

    def _update_session(self, session_id: int, sql: str, params: tuple[Any, ...]) -> Session:
        with self.transaction() as conn:
            cur = conn.execute(
                f"UPDATE sessions SET {sql}, updated_at = ? WHERE id = ?",
                (*params, time.time(), session_id),
            )
            if cur.rowcount == 0:
                raise NotFoundError(f"no session {session_id} in {self.path}", self.path)
        return self.get_session(session_id)

    def rename_session(self, session_id: int, title: str) -> Session:
        """Set the title; it then stays. An empty title goes back to the automatic one."""
        title = " ".join(title.split())
        if title:
            return self._update_session(session_id, "title = ?, title_locked = 1", (title[:500],))
        with self.transaction():
            first = self._one(
                "SELECT content FROM messages WHERE session_id = ? AND role = 'user' "
                "ORDER BY id LIMIT 1",
                (session_id,),
            )
            auto = make_title(first[0]) if first else ""
            return self._update_session(session_id, "title = ?, title_locked = 0", (auto,))

    def set_session_model(self, session_id: int, model: str) -> Session:
        return self._update_session(session_id, "model = ?", (model,))

    def set_session_settings(self, session_id: int, settings: Mapping[str, Any] | Any) -> Session:
        value = _dumps(_settings_dict(settings), "settings")
        return self._update_session(session_id, "settings = ?", (value,))

    def set_system_prompt(self, session_id: int, system_prompt: str | None) -> Session:
        return self._update_session(session_id, "system_prompt = ?", (system_prompt,))

    def delete_session(self, session_id: int) -> None:
        """Delete the session and all its messages."""
        with self.transaction() as conn:
            cur = conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
            if cur.rowcount == 0:
                raise NotFoundError(f"no session {session_id} in {self.path}", self.path)

    # --- messages ----------------------------------------------------------------------

    def get_message(self, message_id: int) -> Message:
        row = self._one(f"SELECT {_MESSAGE_COLUMNS} FROM messages m WHERE m.id = ?", (message_id,))
        if row is None:
            raise NotFoundError(f"no message {message_id} in {self.path}", self.path)
        return _message(row)

    def messages(self, session_id: int) -> list[Message]:
        """Every message of the session, all branches, in the order they were added."""
        rows = self._all(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages m WHERE m.session_id = ? ORDER BY m.id",
            (session_id,),
        )
        return [_message(r) for r in rows]

    def _insert_message(
        self,
        session_id: int,
        role: str,
        content: str,
        parent_id: int | None,
        model: str | None,
        status: str,
        writer: str | None = None,
    ) -> int:
        if role not in ROLES:
            raise ValueError(f"role must be one of {sorted(ROLES)}, not {role!r}")
        if status not in STATUSES:
            raise ValueError(f"status must be one of {sorted(STATUSES)}, not {status!r}")
        now = time.time()
        with self.transaction() as conn:
            session = conn.execute(
                "SELECT title, title_locked FROM sessions WHERE id = ?", (session_id,)
            ).fetchone()
            if session is None:
                raise NotFoundError(f"no session {session_id} in {self.path}", self.path)
            if parent_id is not None:
                parent = conn.execute(
                    "SELECT session_id FROM messages WHERE id = ?", (parent_id,)
                ).fetchone()
                if parent is None or parent[0] != session_id:
                    raise NotFoundError(
                        f"no message {parent_id} in session {session_id} of {self.path}",
                        self.path,
                    )
            cur = conn.execute(
                "INSERT INTO messages (session_id, parent_id, role, content, model, status, "
                "created_at, writer) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (session_id, parent_id, role, content, model, status, now, writer),
            )
            message_id = cast(int, cur.lastrowid)
            title, locked = session
            if role == "user" and not locked and not title:
                title = make_title(content)
            conn.execute(
                "UPDATE sessions SET current_leaf_id = ?, updated_at = ?, title = ? WHERE id = ?",
                (message_id, now, title, session_id),
            )
        return message_id

    def add_message(
        self,
        session_id: int,
        role: Role,
        content: str,
        parent_id: int | None,
        model: str | None = None,
        status: Status = "complete",
    ) -> Message:
        """Add a message after ``parent_id`` (None: a root) and make it the current leaf.

        The first user message of a session gives it its title, unless the user named it.
        """
        message_id = self._insert_message(session_id, role, content, parent_id, model, status)
        return self.get_message(message_id)

    def begin_reply(self, session_id: int, parent_id: int | None, model: str | None) -> int:
        """Start an assistant reply (status 'streaming', empty, written by this process);
        return its id."""
        return self._insert_message(
            session_id, "assistant", "", parent_id, model, "streaming", this_writer()
        )

    def update_reply(self, message_id: int, content: str) -> bool:
        """Save the text streamed so far. False when the message is gone (deleted)."""
        with self.transaction() as conn:
            cur = conn.execute(
                "UPDATE messages SET content = ? WHERE id = ?", (content, message_id)
            )
            return cur.rowcount > 0

    def finish_reply(
        self,
        message_id: int,
        content: str,
        status: Status = "complete",
        *,
        prompt_tokens: int | None = None,
        new_tokens: int | None = None,
        ttft: float | None = None,
        seconds: float | None = None,
        context: Any = None,
    ) -> Message:
        """Save the final text, status and statistics of a reply.

        ``context`` is any JSON value (for example the ids and scores of the messages the
        reply's context was built from).
        """
        if status not in FINAL_STATUSES:
            raise ValueError(f"status must be one of {sorted(FINAL_STATUSES)}, not {status!r}")
        context_json = None if context is None else _dumps(context, "context")
        now = time.time()
        with self.transaction() as conn:
            cur = conn.execute(
                "UPDATE messages SET content = ?, status = ?, prompt_tokens = ?, new_tokens = ?, "
                "ttft = ?, seconds = ?, context = ? WHERE id = ?",
                (
                    content,
                    status,
                    None if prompt_tokens is None else int(prompt_tokens),
                    None if new_tokens is None else int(new_tokens),
                    _optional_number(ttft, "ttft"),
                    _optional_number(seconds, "seconds"),
                    context_json,
                    message_id,
                ),
            )
            if cur.rowcount == 0:
                raise NotFoundError(f"no message {message_id} in {self.path}", self.path)
            conn.execute(
                "UPDATE sessions SET updated_at = ? "
                "WHERE id = (SELECT session_id FROM messages WHERE id = ?)",
                (now, message_id),
            )
        return self.get_message(message_id)

    def recover_interrupted(self) -> int:
        """Mark 'interrupted' every 'streaming' message whose writing process is gone (a
        crash mid-reply); return how many. Another live chatapp's reply is left alone."""
        streaming = self._all("SELECT id, writer FROM messages WHERE status = 'streaming'")
        dead = [(message_id,) for message_id, writer in streaming if not is_running(writer)]
        if not dead:
            return 0  # the common case takes no write lock
        with self.transaction() as conn:
            cur = conn.executemany(
                "UPDATE messages SET status = 'interrupted' WHERE id = ? AND status = 'streaming'",
                dead,
            )
            return cur.rowcount

    def delete_message(self, message_id: int) -> int:
        """Delete a message and everything after it on its branches; return how many.

        If the current leaf was among them, the view moves to the newest remaining
        sibling's branch, or else to the parent.
        """
        with self.transaction() as conn:
            target = self.get_message(message_id)
            doomed = [
                r[0]
                for r in conn.execute(
                    "WITH RECURSIVE sub(id) AS (SELECT ? UNION ALL "
                    "SELECT m.id FROM messages m JOIN sub ON m.parent_id = sub.id) "
                    "SELECT id FROM sub",
                    (message_id,),
                )
            ]
            leaf_row = conn.execute(
                "SELECT current_leaf_id FROM sessions WHERE id = ?", (target.session_id,)
            ).fetchone()
            conn.execute(
                "DELETE FROM messages WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(doomed),),
            )
            if leaf_row and (leaf_row[0] is None or leaf_row[0] in set(doomed)):
                others = [s for s in self._siblings_of(target) if s.id != message_id]
                new_leaf = self.latest_leaf(others[-1].id) if others else target.parent_id
                conn.execute(
                    "UPDATE sessions SET current_leaf_id = ? WHERE id = ?",
                    (new_leaf, target.session_id),
                )
            conn.execute(
                "UPDATE sessions SET updated_at = ? WHERE id = ?", (time.time(), target.session_id)
            )
        return len(doomed)

    # --- branches ----------------------------------------------------------------------

    def branch(self, session_id: int, leaf_id: int | None = None) -> list[Message]:
        """The messages from the root to ``leaf_id`` (default: the session's current leaf).

        With no current leaf, the branch of the newest message. Empty for an empty session.
        """
        with self._lock:
            if leaf_id is None:
                session = self.get_session(session_id)
                leaf_id = session.current_leaf_id
                if leaf_id is None:
                    row = self._one(
                        "SELECT max(id) FROM messages WHERE session_id = ?", (session_id,)
                    )
                    leaf_id = row[0] if row else None
                    if leaf_id is None:
                        return []
            rows = self._all(
                "WITH RECURSIVE chain(id, depth) AS ("
                " SELECT id, 0 FROM messages WHERE id = ? AND session_id = ?"
                " UNION ALL"
                " SELECT m.parent_id, chain.depth + 1 FROM messages m JOIN chain ON m.id = chain.id"
                " WHERE m.parent_id IS NOT NULL)"
                f" SELECT {_MESSAGE_COLUMNS} FROM chain JOIN messages m ON m.id = chain.id"
                " ORDER BY chain.depth DESC",
                (leaf_id, session_id),
            )
            if not rows:
                raise NotFoundError(
                    f"no message {leaf_id} in session {session_id} of {self.path}", self.path
                )
            return [_message(r) for r in rows]

    def children(self, message_id: int) -> list[Message]:
        """The replies to a message (its alternative continuations), oldest first."""
        rows = self._all(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages m WHERE m.parent_id = ? ORDER BY m.id",
            (message_id,),
        )
        return [_message(r) for r in rows]

    def roots(self, session_id: int) -> list[Message]:
        """The messages with no parent (the first message and its edits), oldest first."""
        rows = self._all(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages m "
            "WHERE m.session_id = ? AND m.parent_id IS NULL ORDER BY m.id",
            (session_id,),
        )
        return [_message(r) for r in rows]

    def _siblings_of(self, message: Message) -> list[Message]:
        if message.parent_id is None:
            return self.roots(message.session_id)
        return self.children(message.parent_id)

    def siblings(self, message_id: int) -> list[Message]:
        """The message and its alternatives (same parent), oldest first."""
        return self._siblings_of(self.get_message(message_id))

    def latest_leaf(self, message_id: int) -> int:
        """Follow the newest reply from ``message_id`` down to a leaf; return the leaf's id."""
        with self._lock:
            self.get_message(message_id)
            row = self._one(
                "WITH RECURSIVE down(id, depth) AS ("
                " SELECT ?, 0"
                " UNION ALL"
                " SELECT (SELECT max(c.id) FROM messages c WHERE c.parent_id = down.id),"
                "        depth + 1 FROM down"
                " WHERE EXISTS (SELECT 1 FROM messages c WHERE c.parent_id = down.id))"
                " SELECT id FROM down ORDER BY depth DESC LIMIT 1",
                (message_id,),
            )
            return int(row[0]) if row else message_id

    def set_current_leaf(self, session_id: int, leaf_id: int | None) -> None:
        """Remember which branch the user is viewing (None: the newest message's)."""
        with self.transaction() as conn:
            if leaf_id is not None:
                row = conn.execute("SELECT session_id FROM messages WHERE id = ?", (leaf_id,))
                found = row.fetchone()
                if found is None or found[0] != session_id:
                    raise NotFoundError(
                        f"no message {leaf_id} in session {session_id} of {self.path}", self.path
                    )
            cur = conn.execute(
                "UPDATE sessions SET current_leaf_id = ? WHERE id = ?", (leaf_id, session_id)
            )
            if cur.rowcount == 0:
                raise NotFoundError(f"no session {session_id} in {self.path}", self.path)

    def select_branch(self, message_id: int) -> list[Message]:
        """View the branch through ``message_id`` (e.g. a sibling): its newest leaf becomes
        the current leaf; return that branch."""
        with self.transaction():
            message = self.get_message(message_id)
            leaf = self.latest_leaf(message_id)
            self.set_current_leaf(message.session_id, leaf)
            return self.branch(message.session_id, leaf)

    # --- search ------------------------------------------------------------------------

    def search(
        self, query: str, limit: int = 20, *, session_id: int | None = None
    ) -> list[SearchHit]:
        """Full-text search over every message; the best matches first.

        Any text is accepted: words are matched literally (the last one as a prefix).
        Relevance (bm25) orders the newest `RANK_WINDOW` matches, which keeps a search
        for a very common word fast; older matches of such a word are not returned.
        """
        match = fts_query(query)
        if match is None or limit <= 0:
            return []
        fts_where = "messages_fts MATCH ?"
        params: tuple[Any, ...] = (match,)
        with self._lock:
            if session_id is not None:
                # A session's messages lie within its id range: FTS5 skips the rest.
                span = self._one(
                    "SELECT min(id), max(id) FROM messages WHERE session_id = ?", (session_id,)
                )
                if span is None or span[0] is None:
                    return []
                fts_where += " AND messages_fts.rowid BETWEEN ? AND ? AND m.session_id = ?"
                params += (span[0], span[1], session_id)
            # Ranking every match of a very common word is slow (bm25 over 100k rows), so
            # rank only the newest RANK_WINDOW matches: FTS5 walks rowids newest first.
            floor = self._one(
                "SELECT messages_fts.rowid FROM messages_fts"
                " JOIN messages m ON m.id = messages_fts.rowid"
                f" WHERE {fts_where} ORDER BY messages_fts.rowid DESC LIMIT 1 OFFSET ?",
                (*params, max(RANK_WINDOW, limit) - 1),
            )
            if floor is not None:
                fts_where += " AND messages_fts.rowid >= ?"
                params += (floor[0],)
            rows = self._all(
                "SELECT m.session_id, m.id, s.title, m.role,"
                f" snippet(messages_fts, 0, '{MARK_START}', '{MARK_END}', '…', 12),"
                " m.created_at"
                " FROM messages_fts"
                " JOIN messages m ON m.id = messages_fts.rowid"
                " JOIN sessions s ON s.id = m.session_id"
                f" WHERE {fts_where} ORDER BY rank LIMIT ?",
                (*params, limit),
            )
        return [
            SearchHit(
                session_id=r[0],
                message_id=r[1],
                title=r[2],
                role=cast(Role, r[3]),
                snippet=r[4] or "",
                created_at=r[5],
            )
            for r in rows
        ]
