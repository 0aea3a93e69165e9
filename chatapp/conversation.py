"""The conversation on screen, kept in the store as it happens.

A `Conversation` owns one saved session (created lazily, on the first message), the
branch being viewed (the stored messages from the root to the current leaf), and the reply
being streamed. Every user message is committed when it is sent; a streaming reply is
committed as it grows, at most once per `SAVE_INTERVAL` (so a crash loses at most about
that much text), and finalised with its status and statistics when it ends.

Nothing here imports textual or torch: the TUI and `chatapp ask` both use it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from chatapp.engine.protocol import ChatMessage, GenerationStats
from chatapp.store import Message, NotFoundError, Session, Status, Store, StoreError

SAVE_INTERVAL = 1.0
"""Seconds between saves of a growing reply (the most text a crash can lose)."""


@dataclass
class StreamingReply:
    """An assistant reply being written: its row exists with status 'streaming'."""

    id: int
    parent_id: int | None
    model: str | None
    text: str = ""
    saved_text: str = ""
    saved_at: float = 0.0


@dataclass
class ReplyEnding:
    """How a reply ended: what `Store.finish_reply` saves (kept while it cannot be)."""

    reply: StreamingReply
    text: str
    status: Status
    stats: GenerationStats | None
    context: Any


def memory_store() -> Store:
    """A private in-memory store, for a conversation that is not saved."""
    return Store(":memory:")


class Conversation:
    """One session's current branch and the reply in flight."""

    def __init__(
        self,
        store: Store | None = None,
        *,
        model: str = "",
        system_prompt: str | None = None,
        settings: Mapping[str, Any] | None = None,
        save_interval: float = SAVE_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.saved = store is not None
        """False when nothing outlives the process (no database could be opened)."""
        self.store = store if store is not None else memory_store()
        self.model = model
        self.default_system_prompt = system_prompt
        self.system_prompt = system_prompt
        self.settings: dict[str, Any] = dict(settings or {})
        self.save_interval = save_interval
        self.clock = clock
        self.session: Session | None = None
        self.branch: list[Message] = []
        self.reply: StreamingReply | None = None
        self.unsaved: ReplyEnding | None = None
        """A reply that ended when it could not be saved (a full disk): saved before the
        next message."""

    # --- which session -----------------------------------------------------------------

    @property
    def session_id(self) -> int | None:
        return self.session.id if self.session is not None else None

    def use_store(self, store: Store, *, saved: bool = True) -> None:
        """Switch to another database (e.g. a fresh one); starts a new conversation."""
        if self.reply is not None:
            raise RuntimeError("cannot switch databases while a reply streams")
        self.unsaved = None  # its row is in the other database
        self.store = store
        self.saved = saved
        self.new()

    def new(self) -> None:
        """Start a new conversation; the session is created with its first message."""
        self.session = None
        self.branch = []
        self.system_prompt = self.default_system_prompt

    def open(self, session_id: int, message_id: int | None = None) -> Session:
        """Show a saved session: its current branch, or the branch through ``message_id``."""
        session = self.store.get_session(session_id)
        if message_id is not None:
            branch = self.store.select_branch(message_id)
            session = self.store.get_session(session_id)
        else:
            branch = self.store.branch(session_id)
        self.session = session
        self.branch = branch
        self.system_prompt = session.system_prompt
        return session

    def reload(self) -> None:
        """Read the session and its current branch again (another process may write)."""
        if self.session is not None:
            self.session = self.store.get_session(self.session.id)
            self.branch = self.store.branch(self.session.id)

    def _ensure_session(self) -> Session:
        if self.session is None:
            self.session = self.store.create_session(self.model, self.system_prompt, self.settings)
        return self.session

    def rename(self, title: str) -> Session:
        """Set the session's title ('' goes back to the automatic one)."""
        session = self._ensure_session()
        self.session = self.store.rename_session(session.id, title)
        return self.session

    @property
    def title(self) -> str:
        return self.session.title if self.session is not None else ""

    # --- what the model sees -------------------------------------------------------------

    def history(self) -> list[ChatMessage]:
        """The current branch as chat messages (the reply streaming now is not in it)."""
        return [ChatMessage(m.role, m.content, id=m.id, model=m.model) for m in self.branch]

    def request_messages(self) -> tuple[ChatMessage, ...]:
        """What a `Generate` sends: the system prompt, then the branch."""
        messages = self.history()
        if self.system_prompt:
            messages.insert(0, ChatMessage("system", self.system_prompt))
        return tuple(messages)

    # --- writing -------------------------------------------------------------------------

    def index_of(self, message_id: int) -> int:
        for i, message in enumerate(self.branch):
            if message.id == message_id:
                return i
        raise NotFoundError(f"message {message_id} is not on the current branch")

    def add_user(self, text: str, *, replacing: int | None = None) -> Message:
        """Commit a user message at the end of the branch, or, with ``replacing``, as an
        edited sibling of that earlier user message (a new branch)."""
        if self.reply is not None:
            raise RuntimeError("a reply is still streaming")
        self.save_unsaved()
        session = self._ensure_session()
        if replacing is not None:
            index = self.index_of(replacing)
            base = self.branch[:index]
            parent = self.branch[index].parent_id
        else:
            base = self.branch
            parent = base[-1].id if base else None
        if self.model and session.model != self.model:
            self.store.set_session_model(session.id, self.model)
        message = self.store.add_message(session.id, "user", text, parent)
        self.branch = [*base, message]
        self.session = self.store.get_session(session.id)  # the title may be new
        return message

    def truncate_before(self, message_id: int) -> None:
        """End the branch just before ``message_id`` (to regenerate that reply)."""
        index = self.index_of(message_id)
        self.branch = self.branch[:index]

    def begin_reply(self) -> int:
        """Commit an empty 'streaming' assistant reply at the end of the branch."""
        if self.reply is not None:
            raise RuntimeError("a reply is already streaming")
        session = self._ensure_session()
        parent = self.branch[-1].id if self.branch else None
        reply_id = self.store.begin_reply(session.id, parent, self.model or None)
        self.reply = StreamingReply(reply_id, parent, self.model or None, saved_at=self.clock())
        return reply_id

    @property
    def reply_id(self) -> int | None:
        return self.reply.id if self.reply is not None else None

    def reply_grew(self, delta: str) -> bool:
        """Add streamed text; save it if the last save is `save_interval` old. True if saved."""
        if self.reply is None:
            return False
        self.reply.text += delta
        return self.flush()

    def flush(self, *, force: bool = False) -> bool:
        """Save the reply's unsaved text when due (or now, with ``force``). True if saved."""
        reply = self.reply
        if reply is None or reply.text == reply.saved_text:
            return False
        now = self.clock()
        if not force and now - reply.saved_at < self.save_interval:
            return False
        text = reply.text
        self.store.update_reply(reply.id, text)
        reply.saved_text, reply.saved_at = text, now
        return True

    def finish_reply(
        self,
        text: str | None = None,
        status: Status = "complete",
        stats: GenerationStats | None = None,
        *,
        context: Any = None,
    ) -> Message | None:
        """Finalise the streaming reply (``text`` replaces what was streamed, if given).

        If that cannot be saved (`StoreError`), the ending is kept in `unsaved` and saved
        again before the next message.
        """
        reply = self.reply
        if reply is None:
            return None
        self.reply = None
        final = reply.text if text is None else text
        ending = ReplyEnding(reply, final, status, stats, context)
        try:
            return self._save_ending(ending)
        except StoreError:
            self.unsaved = ending
            raise

    def save_unsaved(self) -> Message | None:
        """Save the ending of a reply that could not be saved before; `StoreError` (and
        still kept) if it cannot be saved now either."""
        ending, self.unsaved = self.unsaved, None
        if ending is None:
            return None
        try:
            return self._save_ending(ending)
        except StoreError:
            self.unsaved = ending
            raise

    def _save_ending(self, ending: ReplyEnding) -> Message | None:
        reply, stats = ending.reply, ending.stats
        try:
            message = self.store.finish_reply(
                reply.id,
                ending.text,
                ending.status,
                prompt_tokens=stats.prompt_tokens if stats else None,
                new_tokens=stats.new_tokens if stats else None,
                ttft=stats.time_to_first_token if stats else None,
                seconds=stats.seconds if stats else None,
                context=ending.context,
            )
        except NotFoundError:
            return None  # deleted meanwhile (by another window)
        at_end = (self.branch[-1].id if self.branch else None) == reply.parent_id
        if message.session_id == self.session_id and at_end:
            self.branch.append(message)
        return message

    # --- branches ------------------------------------------------------------------------

    def siblings(self, message: Message) -> list[Message]:
        return self.store.siblings(message.id)

    def sibling_position(self, message: Message) -> tuple[int, int]:
        """(position, count), counting from 1, among the message and its alternatives."""
        ids = [m.id for m in self.siblings(message)]
        return (ids.index(message.id) + 1 if message.id in ids else 1, max(len(ids), 1))

    def switch_sibling(self, message_id: int, step: int) -> Message | None:
        """View the branch of the sibling ``step`` places away; None at either end."""
        if self.reply is not None:
            raise RuntimeError("a reply is still streaming")
        siblings = self.store.siblings(message_id)
        ids = [m.id for m in siblings]
        target = ids.index(message_id) + step
        if not 0 <= target < len(siblings):
            return None
        self.branch = self.store.select_branch(siblings[target].id)
        return siblings[target]

    def count_below(self, message_id: int) -> int:
        """How many messages a delete of ``message_id`` takes with it (all branches)."""
        if self.session is None:
            return 0
        children: dict[int | None, list[int]] = {}
        for m in self.store.messages(self.session.id):
            children.setdefault(m.parent_id, []).append(m.id)
        count, todo = 0, list(children.get(message_id, []))
        while todo:
            count += 1
            todo.extend(children.get(todo.pop(), []))
        return count

    def delete(self, message_id: int) -> int:
        """Delete a message and everything after it; the view moves to what remains."""
        if self.reply is not None:
            raise RuntimeError("a reply is still streaming")
        removed = self.store.delete_message(message_id)
        self.reload()
        return removed


def stats_of(message: Message) -> GenerationStats | None:
    """The stored statistics of a reply, if it has them."""
    if message.new_tokens is None:
        return None
    return GenerationStats(
        prompt_tokens=message.prompt_tokens or 0,
        new_tokens=message.new_tokens,
        time_to_first_token=message.ttft or 0.0,
        seconds=message.seconds or 0.0,
    )


__all__ = [
    "SAVE_INTERVAL",
    "Conversation",
    "StoreError",
    "StreamingReply",
    "memory_store",
    "stats_of",
]
