"""Numbered schema migrations, tracked with ``PRAGMA user_version``.

``MIGRATIONS[i]`` holds the SQL statements that take a database from version ``i`` to
version ``i + 1``. Each step is a tuple of single statements (not a script), so a step runs
inside the caller's transaction: a failed upgrade leaves the database as it was.

Never edit a released step; append a new one.
"""

from __future__ import annotations

import sqlite3

# Version 1: sessions and messages.
_V1: tuple[str, ...] = (
    """
    CREATE TABLE sessions (
        id              INTEGER PRIMARY KEY,
        title           TEXT NOT NULL DEFAULT '',
        created_at      REAL NOT NULL,
        updated_at      REAL NOT NULL,
        model           TEXT NOT NULL DEFAULT '',
        system_prompt   TEXT,
        settings        TEXT NOT NULL DEFAULT '{}',
        current_leaf_id INTEGER REFERENCES messages(id) ON DELETE SET NULL
    )
    """,
    """
    CREATE TABLE messages (
        id            INTEGER PRIMARY KEY,
        session_id    INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        parent_id     INTEGER REFERENCES messages(id) DEFERRABLE INITIALLY DEFERRED,
        role          TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
        content       TEXT NOT NULL DEFAULT '',
        model         TEXT,
        status        TEXT NOT NULL DEFAULT 'complete'
                      CHECK (status IN
                          ('complete', 'streaming', 'stopped', 'interrupted', 'error')),
        prompt_tokens INTEGER,
        new_tokens    INTEGER,
        ttft          REAL,
        seconds       REAL,
        created_at    REAL NOT NULL,
        context       TEXT
    )
    """,
    "CREATE INDEX messages_by_session ON messages(session_id, id)",
    "CREATE INDEX messages_by_parent ON messages(parent_id, id)",
    "CREATE INDEX sessions_by_updated ON sessions(updated_at DESC, id DESC)",
)

# Version 2: full-text search over message contents (an external-content FTS5 table kept
# in step by triggers; prefix indexes make as-you-type prefix queries cheap), a flag for
# titles the user chose, and an index that makes the crash-recovery check on open cheap.
_V2: tuple[str, ...] = (
    "ALTER TABLE sessions ADD COLUMN title_locked INTEGER NOT NULL DEFAULT 0",
    "CREATE INDEX messages_streaming ON messages(id) WHERE status = 'streaming'",
    """
    CREATE VIRTUAL TABLE messages_fts USING fts5(
        content,
        content = 'messages',
        content_rowid = 'id',
        tokenize = 'unicode61 remove_diacritics 2',
        prefix = '2 3'
    )
    """,
    """
    CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
        INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
    END
    """,
    """
    CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, content)
        VALUES ('delete', old.id, old.content);
    END
    """,
    """
    CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, content)
        VALUES ('delete', old.id, old.content);
        INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
    END
    """,
    # Index whatever version 1 already holds.
    "INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')",
)

# Version 3: context recall. Files attached to a session and their chunks; one vector per
# (message or chunk, encoder), float32 little-endian bytes; the user's pins and exclusions.
_V3: tuple[str, ...] = (
    """
    CREATE TABLE attachments (
        id          INTEGER PRIMARY KEY,
        session_id  INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        name        TEXT NOT NULL,
        path        TEXT NOT NULL DEFAULT '',
        size        INTEGER NOT NULL DEFAULT 0,
        sha256      TEXT NOT NULL DEFAULT '',
        content     TEXT NOT NULL,
        created_at  REAL NOT NULL
    )
    """,
    "CREATE INDEX attachments_by_session ON attachments(session_id, id)",
    """
    CREATE TABLE chunks (
        id            INTEGER PRIMARY KEY,
        attachment_id INTEGER NOT NULL REFERENCES attachments(id) ON DELETE CASCADE,
        session_id    INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        ordinal       INTEGER NOT NULL,
        content       TEXT NOT NULL
    )
    """,
    "CREATE INDEX chunks_by_session ON chunks(session_id, id)",
    "CREATE INDEX chunks_by_attachment ON chunks(attachment_id, ordinal)",
    """
    CREATE TABLE embeddings (
        message_id  INTEGER REFERENCES messages(id) ON DELETE CASCADE,
        chunk_id    INTEGER REFERENCES chunks(id) ON DELETE CASCADE,
        encoder     TEXT NOT NULL,
        dim         INTEGER NOT NULL,
        vector      BLOB NOT NULL,
        CHECK ((message_id IS NULL) <> (chunk_id IS NULL))
    )
    """,
    "CREATE UNIQUE INDEX embeddings_by_message ON embeddings(message_id, encoder)"
    " WHERE message_id IS NOT NULL",
    "CREATE UNIQUE INDEX embeddings_by_chunk ON embeddings(chunk_id, encoder)"
    " WHERE chunk_id IS NOT NULL",
    """
    CREATE TABLE message_recall (
        message_id  INTEGER PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
        mode        TEXT NOT NULL CHECK (mode IN ('pinned', 'excluded'))
    )
    """,
)

# Version 4: the process writing a streaming reply ("pid:start time"), so that opening
# the database marks 'interrupted' only the replies whose writer is gone.
_V4: tuple[str, ...] = ("ALTER TABLE messages ADD COLUMN writer TEXT",)

MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1, _V2, _V3, _V4)
LATEST_VERSION = len(MIGRATIONS)


def user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def apply_migrations(conn: sqlite3.Connection, target: int = LATEST_VERSION) -> int:
    """Run the steps from the database's version up to ``target``; return the new version.

    The caller owns the transaction (the store wraps this in ``BEGIN IMMEDIATE``). Tests
    call it with ``target=1`` to build an old database.
    """
    if not 0 <= target <= LATEST_VERSION:
        raise ValueError(f"unknown schema version {target}")
    current = user_version(conn)
    for version in range(current, target):
        for statement in MIGRATIONS[version]:
            conn.execute(statement)
        # PRAGMA takes no parameters; the value is an int we computed.
        conn.execute(f"PRAGMA user_version = {version + 1:d}")
    return max(current, target)
