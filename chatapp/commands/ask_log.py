"""Saving `chatapp ask` exchanges as sessions: on by default, as `llm` logs its prompts.

`--no-save` opts out; `-c` continues the latest session and `--session ID` a given one
(their messages are sent as the context, and the exchange is added to them). The
question is committed before the reply starts, and the reply is saved as it streams, as
in the TUI. A database that cannot be opened costs a warning, not the answer — unless a
session was asked for, which then fails with the reason.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from chatapp.conversation import Conversation
from chatapp.engine.protocol import ChatMessage, Failed, GenerationStats, ModelSpec
from chatapp.resume import OpenedStore, ResumeError, open_store, wants_session
from chatapp.store import Store, StoreError


def open_log(args: argparse.Namespace) -> tuple[OpenedStore | None, AskLog | None]:
    """The opened database (None when not needed) and the log to write (None: no saving).

    Raises ValueError (one line) when `-c` / `--session` cannot be honoured.
    """
    save = not getattr(args, "no_save", False)
    if not save and not wants_session(args):
        return None, None
    try:
        # Recovering crashed replies is the TUI's job: one may be streaming right now.
        opened = open_store(args, recover=False)
    except ResumeError as error:
        raise ValueError(str(error)) from None
    if opened.store is None:
        print(f"chatapp: {opened.error}; this exchange is not saved", file=sys.stderr)
        return None, None
    return opened, (AskLog(opened.store, opened) if save else None)


class AskLog:
    """One exchange written to the store; a store error warns once and stops the saving."""

    def __init__(self, store: Store, opened: OpenedStore) -> None:
        self.store = store
        self.opened = opened
        self.conversation: Conversation | None = None

    @staticmethod
    def system_prompt_of(opened: OpenedStore | None) -> str | None:
        session = opened.session if opened is not None else None
        return session.system_prompt if session is not None else None

    @staticmethod
    def history_of(opened: OpenedStore | None) -> list[ChatMessage]:
        if opened is None or opened.store is None or opened.session is None:
            return []
        branch = opened.store.branch(opened.session.id)
        return [ChatMessage(m.role, m.content, id=m.id, model=m.model) for m in branch]

    def start(self, model: ModelSpec, system_prompt: str | None) -> None:
        conversation = Conversation(
            self.store,
            model=model.name,
            system_prompt=system_prompt,
            settings={"model_path": model.path},
        )
        session = self.opened.session
        if session is not None:
            self._safely(conversation.open, session.id)
        conversation.system_prompt = system_prompt
        self.conversation = conversation

    def _safely(self, operation: Any, *args: Any) -> Any:
        try:
            return operation(*args)
        except StoreError as error:
            print(f"chatapp: {error}; this exchange is not saved", file=sys.stderr)
            self.conversation = None
            return None

    def begin(self, messages: tuple[ChatMessage, ...]) -> tuple[ChatMessage, ...]:
        """Commit the question and an empty streaming reply; the request's messages."""
        conversation = self.conversation
        if conversation is None:
            return messages
        if self._safely(conversation.add_user, messages[-1].content) is None:
            return messages
        if self._safely(conversation.begin_reply) is None:
            return messages
        return conversation.request_messages()

    def grew(self, text: str) -> None:
        if self.conversation is not None:
            self._safely(self.conversation.reply_grew, text)

    def finish(self, text: str, finish_reason: str, stats: GenerationStats) -> None:
        if self.conversation is not None:
            status = "stopped" if finish_reason == "cancelled" else "complete"
            self._safely(self.conversation.finish_reply, text, status, stats)

    def failed(self, event: object) -> None:
        """The reply ended badly (``event``: Failed or WorkerDied; None: cut short)."""
        conversation = self.conversation
        if conversation is not None and conversation.reply is not None:
            status = "error" if isinstance(event, Failed) else "interrupted"
            self._safely(conversation.finish_reply, None, status)
