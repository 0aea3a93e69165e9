"""Context recall on the chat screen: what a `Generate` asks for, the "recalled N earlier
messages" line under each reply, pins and exclusions, `/attach`, `/recall`, `/find`.

`install(screen)` registers the slash commands; the chat screen calls `generate_options`
when it builds a request, `show_context` when the reply starts, and `keep_context` when
it is saved. Nothing here imports torch or numpy (the worker does the ranking).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from chatapp.attachments import AttachError, read_attachment
from chatapp.engine.protocol import (
    Attach,
    Attached,
    ContextItem,
    Failed,
    ModelSpec,
    Reindex,
    Search,
    SearchHit,
    SearchResults,
    Started,
    WorkerDied,
)
from chatapp.store import StoreError
from chatapp.store import recall as db
from chatapp.widgets.recall import RecallEntry, RecallSummary

CROSS_SESSION_KEY = "cross_session_recall"
"""Per-session override (session settings JSON) of `context.cross_session_recall`."""


def _config(screen: Any) -> Any:
    return getattr(screen.app, "config", None)


def encoder_spec(screen: Any) -> ModelSpec | None:
    """The encoder to rank with, if it is pulled (resolved once per screen)."""
    if "_recall_encoder" not in screen.__dict__:
        from chatapp.engine.models import ModelError, resolve_model

        config = _config(screen)
        name = config.encoder if config is not None else "minilm-l6"
        try:
            screen.__dict__["_recall_encoder"] = resolve_model(name) if name else None
        except ModelError:
            screen.__dict__["_recall_encoder"] = None
    return screen.__dict__["_recall_encoder"]


def _conversation(screen: Any) -> Any:
    return getattr(screen, "conversation", None)


def _database(screen: Any) -> str | None:
    conversation = _conversation(screen)
    if conversation is None or not conversation.saved:
        return None
    path = str(conversation.store.path)
    return None if path == ":memory:" else path


def cross_session(screen: Any) -> bool:
    conversation = _conversation(screen)
    session = getattr(conversation, "session", None)
    if session is not None and CROSS_SESSION_KEY in session.settings:
        return bool(session.settings[CROSS_SESSION_KEY])
    config = _config(screen)
    return bool(config.context.cross_session_recall) if config is not None else False


def generate_options(screen: Any) -> dict[str, Any]:
    """The recall fields of a `Generate` (empty: recency only, today's behaviour)."""
    encoder = encoder_spec(screen)
    conversation = _conversation(screen)
    if encoder is None or conversation is None:
        return {}
    options: dict[str, Any] = {"encoder": encoder, "session_id": conversation.session_id}
    database = _database(screen)
    options["database"] = database
    if conversation.session_id is not None:
        try:
            modes = db.recall_modes(conversation.store, conversation.session_id)
        except StoreError:
            modes = {}
        options["pinned"] = tuple(i for i, m in modes.items() if m == "pinned")
        options["excluded"] = tuple(i for i, m in modes.items() if m == "excluded")
    config = _config(screen)
    if config is not None:
        context = config.context
        options["recent_turns"] = context.recent_turns
        options["min_score"] = context.min_score
        options["context_window"] = context.window
        options["reply_reserve"] = context.reply_reserve
    options["cross_session"] = bool(database) and cross_session(screen)
    if database is not None and screen.__dict__.get("_recall_reindexed") != database:
        # Once per database: vectors missing for this encoder are computed while idle.
        screen.__dict__["_recall_reindexed"] = database
        screen.run_worker(_reindex(screen, encoder, database), group="reindex", exit_on_error=False)
    return options


async def _reindex(screen: Any, encoder: ModelSpec, database: str) -> None:
    async for _event in screen.engine.stream(Reindex(encoder, database)):
        pass


def entries_for(screen: Any, items: tuple[ContextItem, ...]) -> list[RecallEntry]:
    """Rows for the recalled (not recent) items, with a snippet of each."""
    conversation = _conversation(screen)
    store = conversation.store if conversation is not None else None
    wanted = [i for i in items if i.kind != "recent"]
    modes: dict[int, str] = {}
    if store is not None and conversation.session_id is not None:
        with contextlib.suppress(StoreError):
            modes = dict(db.recall_modes(store, conversation.session_id))
    chunks = {}
    if store is not None:
        ids = [i.chunk_id for i in wanted if i.chunk_id is not None and i.chunk_id > 0]
        try:
            chunks = db.get_chunks(store, ids) if ids else {}
        except StoreError:
            chunks = {}
    history = list(screen.history) if hasattr(screen, "history") else []
    by_id = {m.id: m for m in history if m.id is not None}
    out = []
    for item in wanted:
        role, snippet = "", ""
        if item.kind == "chunk":
            chunk = chunks.get(item.chunk_id or 0)
            role, snippet = "file", (f"{chunk.name}: {chunk.content}" if chunk else "excerpt")
        elif item.message_id is not None:
            message = by_id.get(item.message_id)
            if message is None and store is not None:
                try:
                    stored = store.get_message(item.message_id)
                    message = stored
                except StoreError:
                    message = None
            if message is not None:
                role, snippet = message.role, message.content
            if item.session_id is not None:
                role = f"{role} (another session)"
        elif item.position is not None and item.position < len(history) + 1:
            role, snippet = "message", ""
        out.append(
            RecallEntry(
                item.kind,
                item.score,
                role,
                snippet,
                message_id=item.message_id,
                chunk_id=item.chunk_id,
                mode=modes.get(item.message_id) if item.message_id is not None else None,
            )
        )
    return out


async def show_context(screen: Any, reply: Any, event: Started) -> None:
    """A reply started: remember its context; show the recall line when something was."""
    screen.__dict__.setdefault("_recall_context", {})[id(reply)] = event.context
    status = getattr(screen, "status_bar", None)
    if status is not None:
        recalled = sum(i.kind != "recent" for i in event.context)
        status.detail = f"{recalled} recalled" if recalled else ""
    if not any(i.kind != "recent" for i in event.context):
        return
    entries = entries_for(screen, event.context)
    if entries and reply.is_attached:
        await reply.mount(RecallSummary(entries))


def keep_context(screen: Any, reply: Any) -> None:
    """The reply is saved: store which messages and chunks its context held (JSON)."""
    context = screen.__dict__.get("_recall_context", {}).pop(id(reply), None)
    message_id = getattr(reply, "message_id", None)
    conversation = _conversation(screen)
    if not context or message_id is None or conversation is None:
        return
    try:
        db.set_reply_context(conversation.store, message_id, [i.to_json() for i in context])
    except StoreError as error:
        screen.notify(f"Context not saved: {error}", severity="warning", markup=False)


def mark(screen: Any, message_id: int, mode: str | None) -> bool:
    conversation = _conversation(screen)
    if conversation is None:
        return False
    try:
        db.set_recall_mode(conversation.store, message_id, mode)  # type: ignore[arg-type]
    except (StoreError, ValueError) as error:
        screen.notify(str(error), severity="error", markup=False)
        return False
    text = {"pinned": "Pinned: always in the context", "excluded": "Excluded from the context"}
    screen.notify(text.get(mode or "", "Back to normal ranking"), markup=False)
    return True


def on_mark(screen: Any, event: RecallSummary.Mark) -> None:
    if mark(screen, event.message_id, event.mode):
        event.row.set_mode(event.mode)


# --- slash commands ---------------------------------------------------------------------


def _target_message(screen: Any, argument: str) -> int | None:
    """The message a /pin or /exclude is about: an id, the focused message, or the last."""
    if argument.strip().lstrip("#").isdigit():
        return int(argument.strip().lstrip("#"))
    focused = getattr(screen, "focused", None)
    message_id = getattr(focused, "message_id", None)
    if message_id is not None:
        return message_id
    history = list(getattr(screen, "history", []))
    for message in reversed(history):
        if message.role == "user" and message.id is not None:
            return message.id
    return None


def _slash_mark(mode: str | None):
    async def run(screen: Any, argument: str) -> None:
        message_id = _target_message(screen, argument)
        if message_id is None:
            screen.notify("No message to mark yet.", markup=False)
            return
        mark(screen, message_id, mode)

    return run


async def slash_attach(screen: Any, argument: str) -> None:
    encoder = encoder_spec(screen)
    if encoder is None:
        screen.notify(
            "Attaching needs the encoder: run `chatapp models pull minilm-l6`.",
            severity="warning",
            markup=False,
        )
        return
    try:
        file = await asyncio.to_thread(read_attachment, argument)
    except AttachError as error:
        screen.notify(f"Not attached: {error}", severity="warning", markup=False)
        return
    conversation = _conversation(screen)
    session_id = None
    if conversation is not None:
        try:
            session_id = conversation._ensure_session().id
        except StoreError as error:
            screen.notify(f"Not attached: {error}", severity="error", markup=False)
            return
    request = Attach(
        file.name,
        file.text,
        encoder,
        session_id=session_id,
        database=_database(screen),
        path=file.path,
    )
    screen.notify(f"Attaching {file.name}…", markup=False)
    screen.run_worker(_attach(screen, request), group="attach", exit_on_error=False)


async def _attach(screen: Any, request: Attach) -> None:
    async for event in screen.engine.stream(request):
        if isinstance(event, Attached):
            screen.notify(
                f"Attached {event.name}: {event.chunks} chunks ({event.tokens} tokens); "
                "the relevant ones join the context.",
                markup=False,
            )
        elif isinstance(event, Failed):
            screen.notify(f"Not attached: {event.reason}", severity="error", markup=False)
        elif isinstance(event, WorkerDied):
            screen.notify("Not attached: the model worker stopped", severity="error", markup=False)


async def slash_recall(screen: Any, argument: str) -> None:
    """/recall on|off: cross-session recall for this session; alone, say what is on."""
    conversation = _conversation(screen)
    word = argument.strip().lower()
    if word in ("on", "off") and conversation is not None:
        try:
            session = conversation._ensure_session()
            settings = {**session.settings, CROSS_SESSION_KEY: word == "on"}
            conversation.session = conversation.store.set_session_settings(session.id, settings)
        except StoreError as error:
            screen.notify(str(error), severity="error", markup=False)
            return
    elif word in ("show", "last"):
        summaries = list(screen.query(RecallSummary))
        if summaries:
            summaries[-1].toggle()
        return
    elif word:
        screen.notify("usage: /recall [on|off|show]", severity="warning", markup=False)
        return
    encoder = encoder_spec(screen)
    state = "on" if cross_session(screen) else "off"
    saved = "" if _database(screen) else " (needs a saved session)"
    ranking = f"ranked by {encoder.name}" if encoder else "recency only (no encoder pulled)"
    screen.notify(f"Context: {ranking}; recall from other sessions {state}{saved}", markup=False)


async def semantic_search(
    screen: Any, query: str, *, limit: int = 8
) -> tuple[SearchHit, ...] | str | None:
    """Saved messages near QUERY in meaning (the worker ranks with the encoder's vectors).

    The hits, or a one-line reason there are none (no encoder, a failure); None when the
    engine gave no answer. Shared by `/find` and the sessions panel's meaning search.
    """
    encoder, database = encoder_spec(screen), _database(screen)
    if encoder is None or database is None:
        return "Semantic search needs the encoder and a saved database."
    async for event in screen.engine.stream(Search(query, encoder, database, limit=limit)):
        if isinstance(event, SearchResults):
            return event.hits
        if isinstance(event, Failed):
            return f"Search failed: {event.reason}"
        if isinstance(event, WorkerDied):
            return "Search failed: the model worker stopped"
    return None


async def slash_find(screen: Any, argument: str) -> None:
    """/find WORDS: semantic search over every saved message (the encoder's vectors)."""
    if not argument.strip():
        screen.notify("usage: /find WORDS", severity="warning", markup=False)
        return
    screen.run_worker(_find(screen, argument), group="find", exit_on_error=False)


async def _find(screen: Any, query: str) -> None:
    result = await semantic_search(screen, query, limit=8)
    if isinstance(result, str):
        screen.notify(result, severity="warning", markup=False)
        return
    if result is None:
        return
    conversation = _conversation(screen)
    lines = []
    for hit, session, message in db.found_messages(conversation.store, result):
        snippet = " ".join(message.content.split())[:80]
        lines.append(f"{hit.score:.2f} · {session.title or '(untitled)'} · {snippet}")
    text = "\n".join(lines) if lines else "No matches (vectors are still being computed?)"
    await screen.chat_view.add_notice(f"Similar messages:\n{text}", variant="muted")


def install(screen: Any) -> None:
    commands = screen.slash_commands
    commands.add(
        "attach", "add a text/code file to this session's context", slash_attach, usage="PATH"
    )
    commands.add(
        "pin",
        "always keep a message in the context (focused, #ID, or last)",
        _slash_mark("pinned"),
        usage="[#ID]",
    )
    commands.add(
        "exclude", "never put a message in the context", _slash_mark("excluded"), usage="[#ID]"
    )
    commands.add("unpin", "clear a message's pin or exclusion", _slash_mark(None), usage="[#ID]")
    commands.add(
        "recall",
        "cross-session recall on/off; show: expand the last recall line",
        slash_recall,
        usage="[on|off|show]",
    )
    commands.add("find", "semantic search over every saved message", slash_find, usage="WORDS")


__all__ = [
    "generate_options",
    "install",
    "keep_context",
    "on_mark",
    "semantic_search",
    "show_context",
]
