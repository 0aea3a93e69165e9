"""Export a session to Markdown or JSON, and import it back from JSON.

The JSON document (``format`` "chatapp-session", ``version`` 1) holds the session and
every message of every branch. Message ids in the document are local to it (1, 2, 3 … in
the order the messages were written) so exporting, importing and exporting again gives
the same document. Import validates the whole document before writing anything, and
writes in one transaction: a bad file leaves the database as it was.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chatapp.store.sessions import FINAL_STATUSES, ROLES, STATUSES, Message, Session, Store

FORMAT = "chatapp-session"
VERSION = 1
MAX_IMPORT_BYTES = 20 * 1024 * 1024
_MAX_INT = 2**63 - 1
_LATEST_TIME = datetime(9999, 1, 1, tzinfo=UTC).timestamp()


class SessionImportError(Exception):
    """A session file that cannot be imported. The message names the file and the problem."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"cannot import {source}: {problem}")
        self.source = source
        self.problem = problem


# --- export ------------------------------------------------------------------------------


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="microseconds")


def session_document(store: Store, session_id: int) -> dict[str, Any]:
    """The session and all its messages as a JSON-ready dict (the export format)."""
    session = store.get_session(session_id)
    messages = store.messages(session_id)
    local = {m.id: n for n, m in enumerate(messages, start=1)}
    return {
        "format": FORMAT,
        "version": VERSION,
        "session": {
            "title": session.title,
            "title_locked": session.title_locked,
            "model": session.model,
            "system_prompt": session.system_prompt,
            "settings": session.settings,
            "created_at": _iso(session.created_at),
            "updated_at": _iso(session.updated_at),
            "current_leaf_id": local.get(session.current_leaf_id)
            if session.current_leaf_id is not None
            else None,
        },
        "messages": [
            {
                "id": local[m.id],
                "parent_id": local[m.parent_id] if m.parent_id is not None else None,
                "role": m.role,
                "content": m.content,
                "model": m.model,
                "status": m.status,
                "prompt_tokens": m.prompt_tokens,
                "new_tokens": m.new_tokens,
                "ttft": m.ttft,
                "seconds": m.seconds,
                "created_at": _iso(m.created_at),
                "context": m.context,
            }
            for m in messages
        ],
    }


def export_json(store: Store, session_id: int) -> str:
    document = session_document(store, session_id)
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


def _local_time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).astimezone().strftime("%Y-%m-%d %H:%M")


def _heading(message: Message) -> str:
    heading = message.role.capitalize()
    if message.role == "assistant" and message.model:
        heading += f" ({message.model})"
    if message.status != "complete":
        heading += f" [{message.status}]"
    return f"## {heading}"


def export_markdown(store: Store, session_id: int) -> str:
    """The current branch of the session as Markdown: a title, details, one heading a turn."""
    session = store.get_session(session_id)
    branch = store.branch(session_id)
    title = " ".join(session.title.split()) or "Untitled session"
    lines = [f"# {title}", ""]
    if session.model:
        lines.append(f"- Model: {session.model}")
    lines.append(f"- Created: {_local_time(session.created_at)}")
    lines.append(f"- Updated: {_local_time(session.updated_at)}")
    if len(branch) < session.message_count:
        lines.append(
            f"- Exported: the current branch ({len(branch)} of {session.message_count} messages)"
        )
    lines.append("")
    if session.system_prompt:
        lines += ["## System prompt", "", session.system_prompt.strip(), ""]
    for message in branch:
        lines += [_heading(message), "", message.content.strip(), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


# --- import: validation (pure, no database) ----------------------------------------------


@dataclass(frozen=True)
class _SessionFields:
    title: str
    title_locked: bool
    model: str
    system_prompt: str | None
    settings: str  # JSON text
    created_at: float
    updated_at: float
    current_leaf_id: int | None


@dataclass(frozen=True)
class _MessageFields:
    id: int
    parent_id: int | None
    role: str
    content: str
    model: str | None
    status: str
    prompt_tokens: int | None
    new_tokens: int | None
    ttft: float | None
    seconds: float | None
    created_at: float
    context: str | None  # JSON text


@dataclass(frozen=True)
class SessionDocument:
    """A validated import document, ready to write."""

    session: _SessionFields
    messages: tuple[_MessageFields, ...]


class _Problem(Exception):
    pass


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
    }.get(type(value), type(value).__name__)


def _text(value: Any, where: str, *, nullable: bool = False) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        expected = "a string or null" if nullable else "a string"
        raise _Problem(f"{where} must be {expected}, not {_type_name(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _Problem(f"{where} holds invalid text (an unpaired surrogate)") from exc
    return value


def _integer(value: Any, where: str, *, nullable: bool = False, minimum: int = 0) -> int | None:
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        expected = "an integer or null" if nullable else "an integer"
        raise _Problem(f"{where} must be {expected}, not {_type_name(value)}")
    if not minimum <= value <= _MAX_INT:
        raise _Problem(f"{where} is out of range ({value})")
    return value


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Problem(f"{where} must be a number or null, not {_type_name(value)}")
    number = float(value) if not isinstance(value, int) or abs(value) < 2**53 else math.inf
    if not math.isfinite(number) or number < 0:
        raise _Problem(f"{where} must be a finite number ≥ 0")
    return number


def _timestamp(value: Any, where: str) -> float:
    text = _text(value, where)
    assert text is not None
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        stamp = moment.timestamp()
    except (ValueError, OverflowError, OSError) as exc:
        raise _Problem(f"{where} must be an ISO 8601 date-time, not {text[:40]!r}") from exc
    if not 0 <= stamp < _LATEST_TIME:
        raise _Problem(f"{where} is out of range (1970 to 9999): {text[:40]!r}")
    return stamp


def _json_text(value: Any, where: str) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise _Problem(f"{where} cannot be stored: {exc}") from exc


def _check_keys(obj: Any, keys: tuple[str, ...], where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise _Problem(f"{where} must be an object, not {_type_name(obj)}")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise _Problem(f"{where} is missing {', '.join(repr(k) for k in missing)}")
    unknown = sorted(k for k in obj if k not in keys)
    if unknown:
        raise _Problem(f"{where} has unknown field {unknown[0]!r}")
    return obj


_TOP_KEYS = ("format", "version", "session", "messages")
_SESSION_KEYS = (
    "title",
    "title_locked",
    "model",
    "system_prompt",
    "settings",
    "created_at",
    "updated_at",
    "current_leaf_id",
)
_MESSAGE_KEYS = (
    "id",
    "parent_id",
    "role",
    "content",
    "model",
    "status",
    "prompt_tokens",
    "new_tokens",
    "ttft",
    "seconds",
    "created_at",
    "context",
)


def _validate(data: Any) -> SessionDocument:
    if not isinstance(data, dict):
        raise _Problem(f"the document must be a JSON object, not {_type_name(data)}")
    if data.get("format") != FORMAT:
        raise _Problem(f"not a chatapp session file (format must be {FORMAT!r})")
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise _Problem(f"version must be an integer, not {_type_name(version)}")
    if version != VERSION:
        raise _Problem(
            f"unsupported version {version} (this chatapp reads version {VERSION}); upgrade chatapp"
        )
    _check_keys(data, _TOP_KEYS, "the document")

    raw = _check_keys(data["session"], _SESSION_KEYS, "session")
    if not isinstance(raw["title_locked"], bool):
        raise _Problem(
            f"session.title_locked must be a boolean, not {_type_name(raw['title_locked'])}"
        )
    if not isinstance(raw["settings"], dict):
        raise _Problem(f"session.settings must be an object, not {_type_name(raw['settings'])}")
    title = _text(raw["title"], "session.title")
    model = _text(raw["model"], "session.model")
    assert title is not None and model is not None
    _text_everywhere(raw["settings"], "session.settings")
    session = _SessionFields(
        title=" ".join(title.split()),
        title_locked=raw["title_locked"],
        model=model,
        system_prompt=_text(raw["system_prompt"], "session.system_prompt", nullable=True),
        settings=_json_text(raw["settings"], "session.settings"),
        created_at=_timestamp(raw["created_at"], "session.created_at"),
        updated_at=_timestamp(raw["updated_at"], "session.updated_at"),
        current_leaf_id=_integer(
            raw["current_leaf_id"], "session.current_leaf_id", nullable=True, minimum=-_MAX_INT
        ),
    )

    items = data["messages"]
    if not isinstance(items, list):
        raise _Problem(f"messages must be an array, not {_type_name(items)}")
    seen: set[int] = set()
    messages: list[_MessageFields] = []
    for n, item in enumerate(items):
        where = f"messages[{n}]"
        raw_m = _check_keys(item, _MESSAGE_KEYS, where)
        message_id = _integer(raw_m["id"], f"{where}.id", minimum=-_MAX_INT)
        assert message_id is not None
        if message_id in seen:
            raise _Problem(f"{where}.id {message_id} is used twice")
        parent_id = _integer(
            raw_m["parent_id"], f"{where}.parent_id", nullable=True, minimum=-_MAX_INT
        )
        if parent_id is not None and parent_id not in seen:
            raise _Problem(f"{where}.parent_id {parent_id} is not the id of an earlier message")
        role = raw_m["role"]
        if not isinstance(role, str) or role not in ROLES:
            raise _Problem(f"{where}.role must be one of {', '.join(sorted(ROLES))}")
        status = raw_m["status"]
        if not isinstance(status, str) or status not in STATUSES:
            raise _Problem(f"{where}.status must be one of {', '.join(sorted(STATUSES))}")
        content = _text(raw_m["content"], f"{where}.content")
        assert content is not None
        _text_everywhere(raw_m["context"], f"{where}.context")
        messages.append(
            _MessageFields(
                id=message_id,
                parent_id=parent_id,
                role=role,
                content=content,
                model=_text(raw_m["model"], f"{where}.model", nullable=True),
                # A reply exported mid-stream will never finish.
                status=status if status in FINAL_STATUSES else "interrupted",
                prompt_tokens=_integer(
                    raw_m["prompt_tokens"], f"{where}.prompt_tokens", nullable=True
                ),
                new_tokens=_integer(raw_m["new_tokens"], f"{where}.new_tokens", nullable=True),
                ttft=_number(raw_m["ttft"], f"{where}.ttft"),
                seconds=_number(raw_m["seconds"], f"{where}.seconds"),
                created_at=_timestamp(raw_m["created_at"], f"{where}.created_at"),
                context=None
                if raw_m["context"] is None
                else _json_text(raw_m["context"], f"{where}.context"),
            )
        )
        seen.add(message_id)
    if session.current_leaf_id is not None and session.current_leaf_id not in seen:
        raise _Problem(
            f"session.current_leaf_id {session.current_leaf_id} is not the id of a message"
        )
    return SessionDocument(session=session, messages=tuple(messages))


def _text_everywhere(value: Any, where: str) -> None:
    """Every string (keys included) inside a JSON value must be valid UTF-8 text."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            _text(item, where)
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())


def _reject_constant(name: str) -> Any:
    raise _Problem(f"{name} is not valid JSON")


def parse_document(text: str | bytes, source: str = "<input>") -> SessionDocument:
    """Parse and validate a session document; raise `SessionImportError` on any problem."""
    try:
        if isinstance(text, bytes | bytearray):
            if len(text) > MAX_IMPORT_BYTES:
                raise _Problem(_too_big(len(text)))
            try:
                text = bytes(text).decode("utf-8-sig")
            except UnicodeDecodeError as exc:
                raise _Problem(f"the file is not UTF-8 text (byte {exc.start})") from exc
        elif len(text) > MAX_IMPORT_BYTES:
            raise _Problem(_too_big(len(text)))
        try:
            data = json.loads(text, parse_constant=_reject_constant)
        except json.JSONDecodeError as exc:
            raise _Problem(
                f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
            ) from exc
        return _validate(data)
    except _Problem as exc:
        raise SessionImportError(source, str(exc)) from None
    except RecursionError:
        raise SessionImportError(source, "the JSON is nested too deeply") from None


def _too_big(size: int) -> str:
    return (
        f"the file is too big ({size / 1e6:.1f} MB; the limit is {MAX_IMPORT_BYTES / 1e6:.0f} MB)"
    )


# --- import: writing ------------------------------------------------------------------------


def write_document(store: Store, document: SessionDocument) -> Session:
    """Create a new session from a validated document, in one transaction."""
    s = document.session
    ids: dict[int, int] = {}
    with store.transaction() as conn:
        cur = conn.execute(
            "INSERT INTO sessions (title, title_locked, created_at, updated_at, model, "
            "system_prompt, settings) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                s.title,
                int(s.title_locked),
                s.created_at,
                s.updated_at,
                s.model,
                s.system_prompt,
                s.settings,
            ),
        )
        session_id = cur.lastrowid
        for m in document.messages:
            cur = conn.execute(
                "INSERT INTO messages (session_id, parent_id, role, content, model, status, "
                "prompt_tokens, new_tokens, ttft, seconds, created_at, context) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    session_id,
                    ids[m.parent_id] if m.parent_id is not None else None,
                    m.role,
                    m.content,
                    m.model,
                    m.status,
                    m.prompt_tokens,
                    m.new_tokens,
                    m.ttft,
                    m.seconds,
                    m.created_at,
                    m.context,
                ),
            )
            assert cur.lastrowid is not None
            ids[m.id] = cur.lastrowid
        if s.current_leaf_id is not None:
            conn.execute(
                "UPDATE sessions SET current_leaf_id = ? WHERE id = ?",
                (ids[s.current_leaf_id], session_id),
            )
    assert session_id is not None
    return store.get_session(session_id)


def import_text(store: Store, text: str | bytes, source: str = "<input>") -> Session:
    """Import a session document given as text; return the new session."""
    return write_document(store, parse_document(text, source))


def import_file(store: Store, path: Path | str) -> Session:
    """Import a session file (JSON, at most 20 MB); return the new session.

    Raises `SessionImportError` (nothing written) for a file that is missing, too big,
    malformed or not a valid chatapp session document.
    """
    path = Path(path)
    source = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_IMPORT_BYTES:
            raise SessionImportError(source, _too_big(size))
        with path.open("rb") as handle:
            data = handle.read(MAX_IMPORT_BYTES + 1)
    except OSError as exc:
        raise SessionImportError(source, exc.strerror or str(exc)) from None
    return import_text(store, data, source)
