"""Opening the SQLite database: pragmas, migrations, and one-line errors.

The rules: the database file is never deleted or overwritten by the code that opens it.
A file that cannot be used (not a database, locked, read-only, written by a newer
chatapp) raises `StoreError` whose message names the file and says what to do; the app
may then offer `fresh_database_path` to start over beside it.
"""

from __future__ import annotations

import os
import sqlite3
import time
from datetime import datetime
from pathlib import Path

from chatapp.store.migrations import LATEST_VERSION, apply_migrations, user_version

DEFAULT_BUSY_TIMEOUT = 5.0


class StoreError(Exception):
    """The saved-sessions database cannot do what was asked. The message is one line."""

    def __init__(self, message: str, path: Path | None = None) -> None:
        super().__init__(" ".join(message.split()))
        self.path = path


class NotFoundError(StoreError):
    """A session or message id that is not in the database."""


def fresh_database_path(path: Path | str) -> Path:
    """A new, unused file name beside ``path``, e.g. ``chatapp-2026-12-04T2301.db``."""
    path = Path(path)
    stamp = datetime.now().strftime("%Y-%m-%dT%H%M")
    candidate = path.with_name(f"{path.stem}-{stamp}{path.suffix}")
    n = 2
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}-{stamp}-{n}{path.suffix}")
        n += 1
    return candidate


def describe_error(error: sqlite3.Error, path: Path, busy_timeout: float) -> StoreError:
    """Turn an sqlite3 error into a `StoreError` that names the file and a way out."""
    name = getattr(error, "sqlite_errorname", "") or ""
    text = str(error)
    lowered = text.lower()
    if name in ("SQLITE_NOTADB", "SQLITE_CORRUPT") or "not a database" in lowered:
        return StoreError(
            f"{path} is not a usable chatapp database ({text}); it was left untouched: "
            "move it aside, or start with a fresh database",
            path,
        )
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in lowered:
        return StoreError(
            f"{path} is locked by another process (waited {busy_timeout:g}s); "
            "close other chatapp windows and try again",
            path,
        )
    if name.startswith("SQLITE_READONLY") or "readonly" in lowered or "read-only" in lowered:
        return StoreError(
            f"{path} is read-only ({text}); fix the permissions of the file and its folder, "
            "or start with a fresh database elsewhere",
            path,
        )
    if name.startswith("SQLITE_CANTOPEN"):
        return StoreError(
            f"cannot open {path} ({text}); check that the path and its folder are accessible",
            path,
        )
    if name.startswith("SQLITE_FULL") or "disk is full" in lowered:
        return StoreError(f"cannot write {path}: the disk is full; free some space", path)
    return StoreError(f"database error in {path}: {text}", path)


def _check_access(path: Path) -> None:
    """Refuse early, with a clear message, what SQLite would report vaguely."""
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot create the folder {folder} for the database {path.name} "
            f"({exc.strerror or exc}); check its permissions or set CHATAPP_DATA_DIR",
            path,
        ) from exc
    if path.exists() and not path.is_file():
        raise StoreError(f"{path} is not a file; move it aside or set CHATAPP_DATA_DIR", path)
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise StoreError(
            f"{path} is read-only; make it writable (chmod u+rw) or start with a fresh "
            "database elsewhere",
            path,
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StoreError(
            f"the folder {folder} is read-only, and SQLite needs to write journal files "
            f"beside {path.name}; fix its permissions or set CHATAPP_DATA_DIR",
            path,
        )


def open_connection(path: Path, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> sqlite3.Connection:
    """Open (creating if needed) and upgrade the database at ``path``.

    The connection is in autocommit mode (``isolation_level=None``); the store opens its
    own ``BEGIN IMMEDIATE`` transactions, so two writers queue on ``busy_timeout`` instead
    of failing.
    """
    path = Path(path)
    _check_access(path)
    try:
        conn = sqlite3.connect(
            path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise describe_error(exc, path, busy_timeout) from exc
    try:
        _prepare(conn, path, busy_timeout)
    except BaseException:
        conn.close()
        raise
    return conn


def _enable_wal(conn: sqlite3.Connection, busy_timeout: float) -> None:
    """Switch to WAL. Two processes creating one database at the same moment can get
    "database is locked" here at once, without SQLite's busy handler: retry until the
    busy timeout, as the handler would."""
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.02)


def _prepare(conn: sqlite3.Connection, path: Path, busy_timeout: float) -> None:
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000):d}")
        # Read-only checks first: nothing below may change a file we cannot use. Both
        # reads share one snapshot, or another process creating the schema between them
        # would look like a foreign database (tables, but no version yet).
        conn.execute("BEGIN")
        try:
            version = user_version(conn)
            tables = conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
            ).fetchone()[0]
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")
        if version > LATEST_VERSION:
            raise StoreError(
                f"{path} was written by a newer chatapp (schema version {version}; this one "
                f"knows up to {LATEST_VERSION}); upgrade chatapp, or start with a fresh "
                "database",
                path,
            )
        if version == 0 and tables:
            raise StoreError(
                f"{path} is an SQLite database but not a chatapp one (it has tables and "
                "no chatapp schema version); it was left untouched: move it aside, or "
                "start with a fresh database",
                path,
            )
        _enable_wal(conn, busy_timeout)
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        if version < LATEST_VERSION:
            conn.execute("BEGIN IMMEDIATE")
            try:
                # Another process may have upgraded it while we waited for the lock.
                if user_version(conn) > LATEST_VERSION:
                    raise StoreError(f"{path} was upgraded by a newer chatapp meanwhile", path)
                apply_migrations(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
    except sqlite3.Error as exc:
        raise describe_error(exc, path, busy_timeout) from exc
