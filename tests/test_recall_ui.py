"""Recall in the TUI: the request's recall fields, the recall line, pins, /attach."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from chatapp.app import ChatApp
from chatapp.attachments import AttachError, read_attachment
from chatapp.config import ContextSettings, Settings
from chatapp.engine.protocol import ContextItem, ModelSpec, Reindex, Started
from chatapp.store import Store
from chatapp.store import recall as db
from chatapp.widgets.recall import RecallRow, RecallSummary
from tests.fakes import FakeEngine
from tests.test_app import send, settle

SPEC = ModelSpec("smollm2", "/nowhere/smollm2", context_window=2048)
SIZE = (100, 30)


class RecallingEngine(FakeEngine):
    """Says, on every reply after the first, that the first exchange was recalled."""

    async def _generate(self, request):
        async for event in super()._generate(request):
            if isinstance(event, Started):
                ids = [m.id for m in request.messages if m.id is not None]
                if len(ids) >= 3:
                    event = replace(
                        event,
                        context=(
                            ContextItem("recalled", message_id=ids[0], score=0.71, position=0),
                            ContextItem("recalled", message_id=ids[1], score=0.42, position=1),
                            ContextItem("recent", message_id=ids[-1], score=0.1),
                        ),
                    )
            yield event


def test_attachment_errors(tmp_path: Path):
    good = tmp_path / "notes.md"
    good.write_text("# Notes\nhello\n", "utf-8")
    assert read_attachment(good).text.startswith("# Notes")
    assert read_attachment(f'"{good}"').name == "notes.md"
    binary = tmp_path / "image.png"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("café".encode("latin-1"))
    huge = tmp_path / "huge.txt"
    huge.write_text("x" * 2000, "utf-8")
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n", "utf-8")
    cases = {
        binary: "binary",
        latin: "not UTF-8",
        tmp_path / "missing.txt": "no such file",
        tmp_path: "is a folder",
        empty: "is empty",
    }
    for path, words in cases.items():
        with pytest.raises(AttachError, match=words):
            read_attachment(path)
    with pytest.raises(AttachError, match="MB"):
        read_attachment(huge, max_bytes=1000)
    with pytest.raises(AttachError, match="usage"):
        read_attachment("  ")


async def test_recall_line_pins_and_context_saved(tmp_path: Path):
    engine = RecallingEngine(["first answer", "second answer"])
    store = Store(tmp_path / "chat.db")
    config = Settings(context=ContextSettings(recent_turns=3, min_score=0.45))
    app = ChatApp(engine, SPEC, store=store, config=config)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await send(pilot, "my cat is Pistachio")
        await settle(app, pilot)
        await send(pilot, "what is my cat called")
        await settle(app, pilot)

        first, second = engine.generates
        assert first.encoder is not None and first.encoder.name == "minilm-l6"
        assert (first.recent_turns, first.min_score) == (3, 0.45)  # the config's [context]
        assert second.database == str(tmp_path / "chat.db")
        assert second.session_id == app.chat.session_id
        assert [m.id for m in second.messages][-1] is not None
        (reindex,) = [r for r in engine.requests if isinstance(r, Reindex)]  # once
        assert reindex.database == second.database

        (summary,) = app.chat.query(RecallSummary)
        head = summary.query_one(".recall-head").render()
        assert "recalled 2 earlier messages" in str(head)
        rows = list(summary.query(RecallRow))
        assert [r.entry.snippet for r in rows] == ["my cat is Pistachio", "first answer"]
        assert not rows[0].display
        summary.toggle()
        await pilot.pause()
        assert rows[0].display
        rows[0].focus()
        await pilot.press("p")
        await pilot.pause()
        cat = rows[0].entry.message_id
        assert db.recall_modes(store, app.chat.session_id) == {cat: "pinned"}
        assert rows[0].entry.mode == "pinned"
        await pilot.press("p")  # again: back to normal
        await pilot.pause()
        assert db.recall_modes(store, app.chat.session_id) == {}

        # The reply's context is stored with it.
        reply_id = app.chat.history[-1].id
        context = store.get_message(reply_id).context
        assert {"kind": "recalled", "message_id": cat, "score": 0.71} in context

        # /exclude #ID goes into the next request.
        app.chat.prompt_input.focus()
        await send(pilot, f"/exclude #{cat}")
        await settle(app, pilot)
        await send(pilot, "and again")
        await settle(app, pilot)
        assert engine.generates[-1].excluded == (cat,)
    store.close()


async def test_attach_refuses_binary_and_keeps_the_session(tmp_path: Path):
    engine = FakeEngine(["ok"])
    store = Store(tmp_path / "chat.db")
    app = ChatApp(engine, SPEC, store=store)
    seen: list[str] = []
    async with app.run_test(size=SIZE) as pilot:
        original = app.notify
        app.chat.notify = lambda message, **kw: (seen.append(message), original(message, **kw))  # type: ignore[method-assign]
        await settle(app, pilot)
        await send(pilot, "hello")
        await settle(app, pilot)
        binary = tmp_path / "blob.bin"
        binary.write_bytes(bytes(range(256)) * 10)
        await send(pilot, f"/attach {binary}")
        await settle(app, pilot)
        assert any("binary" in s for s in seen), seen
        assert [m.content for m in store.branch(app.chat.session_id)] == ["hello", "ok"]
    store.close()
