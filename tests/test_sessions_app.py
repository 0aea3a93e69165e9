"""Saved sessions in the TUI: real SQLite files under tmp_path, the real app through Pilot,
the scripted `FakeEngine` for the model."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from textual.geometry import Region
from textual.widget import Widget
from textual.widgets import Button, Input

from chatapp.app import ChatApp
from chatapp.engine.protocol import Failed, Search, SearchHit, SearchResults
from chatapp.resume import open_store
from chatapp.screens.confirm import ConfirmScreen, DatabaseErrorScreen, TextInputScreen
from chatapp.store import Store, StoreError
from chatapp.store.migrations import apply_migrations
from chatapp.store.transfer import export_json, import_text
from chatapp.widgets import MessageWidget, Notice
from chatapp.widgets.branch_switch import BranchSwitch
from chatapp.widgets.sessions_panel import SessionsPanel
from tests.conftest import start_reply_writer
from tests.fakes import FakeEngine, Reply
from tests.test_app import SIZE, SPEC, messages, notes_of, rendered_text, send, settle, turns

WIDE = (120, 36)


@pytest.fixture
def db(tmp_path: Path):
    with Store(tmp_path / "chat.db") as store:
        yield store


def screen_text(widget: Widget) -> str:
    """What `widget` renders (any widget, e.g. an OptionList), line by line."""
    width, height = widget.size
    return "\n".join(s.text for s in widget.render_lines(Region(0, 0, width, height)))


def panel_text(panel: SessionsPanel) -> str:
    return rendered_text(panel) + "\n" + screen_text(panel.option_list)


def shown(app: ChatApp) -> list[tuple[str, str]]:
    return [(m.role, m.text) for m in messages(app)]


def stored_turns(store: Store, session_id: int) -> list[tuple[str, str, str]]:
    return [(m.role, m.content, m.status) for m in store.branch(session_id)]


def focus_message(app: ChatApp, index: int) -> MessageWidget:
    widget = messages(app)[index]
    widget.focus()
    return widget


def make_session(store: Store, *pairs: tuple[str, str], title: str = "") -> int:
    session = store.create_session("smollm2", title=title)
    parent = None
    for question, answer in pairs:
        parent = store.add_message(session.id, "user", question, parent).id
        parent = store.add_message(session.id, "assistant", answer, parent, model="smollm2").id
    return session.id


# --- create and continue ---------------------------------------------------------------


async def test_a_chat_is_saved_as_it_happens(db: Store) -> None:
    engine = FakeEngine(["Paris is the capital.", "Rome."])
    app = ChatApp(engine, SPEC, system_prompt="Be brief.", store=db)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert db.count_sessions() == 0  # nothing is created until a message is sent
        await send(pilot, "What is the capital of France?")
        await settle(app, pilot)
        session = db.latest_session()
        assert session is not None and app.chat.session_id == session.id
        assert session.title == "What is the capital of France?"
        assert (session.model, session.system_prompt) == ("smollm2", "Be brief.")
        user, reply = db.branch(session.id)
        assert (user.role, user.content, user.status) == (
            "user",
            "What is the capital of France?",
            "complete",
        )
        assert (reply.content, reply.status, reply.model) == (
            "Paris is the capital.",
            "complete",
            "smollm2",
        )
        assert reply.new_tokens == 4 and reply.seconds is not None
        # Each widget knows its stored message.
        assert [m.message_id for m in messages(app)] == [user.id, reply.id]
        await send(pilot, "And Italy?")
        await settle(app, pilot)
        assert len(db.branch(session.id)) == 4
        assert db.count_sessions() == 1


async def test_the_user_message_is_committed_before_the_reply_and_the_reply_as_it_grows(
    db: Store,
) -> None:
    engine = FakeEngine([Reply("one two three four five", pause_after=3)])
    app = ChatApp(engine, SPEC, store=db)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.chat.conversation.save_interval = 0.0  # save every token (the clock is tested apart)
        await send(pilot, "count")
        await engine.wait_paused()
        await pilot.pause()
        session_id = app.chat.session_id
        assert session_id is not None
        assert stored_turns(db, session_id) == [
            ("user", "count", "complete"),
            ("assistant", "one two three", "streaming"),
        ]
        engine.resume()
        await settle(app, pilot)
        assert stored_turns(db, session_id)[-1] == (
            "assistant",
            "one two three four five",
            "complete",
        )


async def test_continue_a_saved_session(db: Store) -> None:
    session_id = make_session(db, ("hello", "hi there"), ("how are you", "fine"))
    other = make_session(db, ("other chat", "other reply"))
    engine = FakeEngine(["glad to hear"])
    app = ChatApp(engine, SPEC, store=db, session_id=session_id)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert shown(app) == [
            ("user", "hello"),
            ("assistant", "hi there"),
            ("user", "how are you"),
            ("assistant", "fine"),
        ]
        assert "smollm2" in rendered_text(messages(app)[1])  # the model in the label
        await send(pilot, "great")
        await settle(app, pilot)
        assert turns(engine.generates[0].messages) == [
            ("user", "hello"),
            ("assistant", "hi there"),
            ("user", "how are you"),
            ("assistant", "fine"),
            ("user", "great"),
        ]
        assert len(db.branch(session_id)) == 6
        assert len(db.branch(other)) == 2


async def test_ctrl_n_starts_a_new_session(db: Store) -> None:
    engine = FakeEngine(["first", Reply("long reply here", pause_after=1), "fresh"])
    app = ChatApp(engine, SPEC, store=db)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await send(pilot, "one")
        await settle(app, pilot)
        await send(pilot, "two")
        await engine.wait_paused()
        first = app.chat.session_id
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        assert messages(app) == [] and app.chat.session_id is None
        # The reply cut off by Ctrl+N is kept, marked stopped.
        assert first is not None
        assert stored_turns(db, first)[-1] == ("assistant", "long", "stopped")
        await send(pilot, "three")
        await settle(app, pilot)
        assert app.chat.session_id not in (None, first)
        assert db.count_sessions() == 2
        assert turns(engine.generates[-1].messages) == [("user", "three")]


async def test_stopped_failed_and_died_replies_are_stored_with_their_status(db: Store) -> None:
    engine = FakeEngine(
        [
            Reply("one two three four", pause_after=2),
            Reply("alpha beta gamma", end="failed", after=1, reason="boom"),
            Reply("x y z", end="died", after=2),
        ]
    )
    app = ChatApp(engine, SPEC, store=db)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await send(pilot, "a")
        await engine.wait_paused()
        await pilot.press("escape")
        await settle(app, pilot)
        await send(pilot, "b")
        await settle(app, pilot)
        await send(pilot, "c")
        await settle(app, pilot)
        session_id = app.chat.session_id
        assert session_id is not None
        replies = [t for t in stored_turns(db, session_id) if t[0] == "assistant"]
        assert replies == [
            ("assistant", "one two", "stopped"),
            ("assistant", "alpha", "error"),
            ("assistant", "x y", "interrupted"),
        ]


async def test_reopened_interrupted_reply_is_marked(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    writer, reply = start_reply_writer(path)  # a real process, killed mid-reply
    writer.kill()
    writer.wait()
    with Store(path) as store:  # reopening marks the crashed reply
        session_id = store.get_message(reply).session_id
        app = ChatApp(FakeEngine(), SPEC, store=store, session_id=session_id)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            last = messages(app)[-1]
            assert last.text == "Once upon a"
            assert "interrupted" in last.footer
            assert "interrupted" in rendered_text(last)


# --- the sessions panel ----------------------------------------------------------------


async def open_panel(app: ChatApp, pilot) -> SessionsPanel:  # type: ignore[no-untyped-def]
    await pilot.press("ctrl+o")
    await pilot.pause()
    panel = app.screen.query_one(SessionsPanel)
    assert panel.is_open
    return panel


async def test_panel_lists_sessions_newest_first_and_opens_one(db: Store) -> None:
    old = make_session(db, ("old question", "old answer"))
    new = make_session(db, ("new question", "new answer"))
    app = ChatApp(FakeEngine(), SPEC, store=db)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        panel = await open_panel(app, pilot)
        options = panel.option_list
        ids = [options.get_option_at_index(i).id for i in range(options.option_count)]
        assert ids == [f"s:{new}", f"s:{old}"]
        text = panel_text(panel)
        assert "new question" in text and "old question" in text
        await pilot.press("down", "down", "enter")  # into the list, to the second, open
        await settle(app, pilot)
        assert app.chat.session_id == old
        assert shown(app) == [("user", "old question"), ("assistant", "old answer")]
        assert not panel.is_open
        assert app.chat.prompt_input.has_focus
        await open_panel(app, pilot)  # Ctrl+O again; Esc closes it
        await pilot.press("escape")
        await pilot.pause()
        assert not panel.is_open
        assert app.chat.prompt_input.has_focus


async def test_rename_from_the_panel_and_with_a_slash_command(db: Store) -> None:
    session_id = make_session(db, ("first words", "reply"))
    app = ChatApp(FakeEngine(), SPEC, store=db, session_id=session_id)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        panel = await open_panel(app, pilot)
        await pilot.press("down", "r")
        await pilot.pause()
        assert isinstance(app.screen, TextInputScreen)
        box = app.screen.query_one(Input)
        assert box.value == "first words"
        box.value = ""
        await pilot.press(*"Trip plans", "enter")
        await pilot.pause()
        assert db.get_session(session_id).title == "Trip plans"
        assert db.get_session(session_id).title_locked
        assert "Trip plans" in panel_text(panel)
        await pilot.press("escape")
        await send(pilot, "/rename Holiday 2027")
        await pilot.pause()
        assert db.get_session(session_id).title == "Holiday 2027"


async def test_delete_a_session_after_confirming(db: Store) -> None:
    keep = make_session(db, ("keep me", "ok"))
    doomed = make_session(db, ("delete me", "ok"))
    app = ChatApp(FakeEngine(), SPEC, store=db, session_id=doomed)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        await open_panel(app, pilot)
        await pilot.press("down", "d")  # the newest: the open one
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert "delete me" in rendered_text(app.screen)
        await pilot.press("n")  # no: nothing happens
        await pilot.pause()
        assert db.count_sessions() == 2
        await pilot.press("d")
        await pilot.pause()
        await pilot.press("y")
        await settle(app, pilot)
        assert [s.id for s in db.list_sessions()] == [keep]
        assert messages(app) == [] and app.chat.session_id is None


async def test_search_shows_the_matching_text_and_opens_at_the_hit(db: Store) -> None:
    make_session(db, ("weather today", "sunny"))
    target = make_session(
        db,
        ("tell me about volcanoes", "Volcanoes erupt when magma rises."),
        ("and earthquakes", "They shake."),
    )
    app = ChatApp(FakeEngine(), SPEC, store=db)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        panel = await open_panel(app, pilot)
        await pilot.press(*"magma")
        await pilot.pause()
        options = panel.option_list
        assert options.option_count == 1
        assert "Volcanoes erupt when magma rises." in panel_text(panel)
        await pilot.press("enter")
        await settle(app, pilot)
        assert app.chat.session_id == target
        focused = app.focused
        assert isinstance(focused, MessageWidget)
        assert focused.text == "Volcanoes erupt when magma rises."
        assert not panel.is_open
        # Esc leaves the message for the prompt; /search opens the panel with the query.
        await pilot.press("escape")
        assert app.chat.prompt_input.has_focus
        await send(pilot, "/search sunny")
        await pilot.pause()
        assert panel.is_open and panel.search_input.value == "sunny"
        assert panel.option_list.option_count == 1


async def test_find_lists_similar_messages_in_the_chat(db: Store) -> None:
    target = make_session(db, ("tell me about volcanoes", "Volcanoes erupt when magma rises."))
    answer = db.branch(target)[-1]
    hits = (SearchHit(answer.id, target, 0.83), SearchHit(9999, target, 0.5))  # 9999: gone
    engine = FakeEngine(
        search_results={"lava flow": SearchResults(0, hits), "nothing": SearchResults(0, ())}
    )
    app = ChatApp(engine, SPEC, store=db)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        await send(pilot, "/find lava flow")
        await settle(app, pilot)
        await send(pilot, "/find nothing")
        await settle(app, pilot)
        notices = [
            [line.strip() for line in rendered_text(n).strip().splitlines()]
            for n in app.chat.query(Notice)
        ]
        assert notices[-2] == [
            "Similar messages:",
            "0.83 · tell me about volcanoes · Volcanoes erupt when magma rises.",
        ]
        assert notices[-1][-1] == "No matches (vectors are still being computed?)"


async def test_search_by_meaning_opens_at_the_hit(db: Store) -> None:
    make_session(db, ("weather today", "sunny"))
    target = make_session(db, ("tell me about volcanoes", "Volcanoes erupt when magma rises."))
    answer = db.branch(target)[-1]
    engine = FakeEngine(
        search_results={
            "lava": Failed(0, "no vectors yet"),
            "lava flow": SearchResults(0, (SearchHit(answer.id, target, 0.83),)),
        }
    )
    app = ChatApp(engine, SPEC, store=db)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        panel = await open_panel(app, pilot)
        await pilot.press("ctrl+s")  # words -> meaning: the box holds "~"
        await pilot.press(*"lava")  # no such word: only the encoder can find it
        await settle(app, pilot)
        assert "no vectors yet" in panel_text(panel)  # Failed: a one-line notice
        await pilot.press(*" flow")
        await settle(app, pilot)
        (search,) = [r for r in engine.requests if isinstance(r, Search)][-1:]
        assert search.query == "lava flow" and search.database == str(db.path)
        assert panel.option_list.option_count == 1
        assert "Volcanoes erupt when magma rises." in panel_text(panel)
        assert "0.83" in panel_text(panel)
        await pilot.press("enter")
        await settle(app, pilot)
        assert app.chat.session_id == target and not panel.is_open
        focused = app.focused
        assert isinstance(focused, MessageWidget)
        assert focused.text == "Volcanoes erupt when magma rises."


# --- branches: edit, regenerate, switch ------------------------------------------------


async def test_edit_an_earlier_message_makes_a_branch(db: Store) -> None:
    engine = FakeEngine(["reply one", "reply two", "reply to the edit"])
    app = ChatApp(engine, SPEC, store=db)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        await send(pilot, "first")
        await settle(app, pilot)
        await send(pilot, "second")
        await settle(app, pilot)
        focus_message(app, 0)
        await pilot.press("e")
        await pilot.pause()
        box = app.chat.prompt_input
        assert box.has_focus and box.text == "first"
        await pilot.press("end", *" (edited)", "enter")
        await settle(app, pilot)
        assert shown(app) == [("user", "first (edited)"), ("assistant", "reply to the edit")]
        assert turns(engine.generates[-1].messages) == [("user", "first (edited)")]
        switch = messages(app)[0].query_one(BranchSwitch)
        assert (switch.position, switch.count) == (2, 2)
        assert "‹ 2/2" in rendered_text(messages(app)[0])
        # [ goes back to the first version with its whole branch; ] comes back.
        focus_message(app, 0)
        await pilot.press("left_square_bracket")
        await settle(app, pilot)
        assert shown(app) == [
            ("user", "first"),
            ("assistant", "reply one"),
            ("user", "second"),
            ("assistant", "reply two"),
        ]
        await pilot.press("right_square_bracket")
        await settle(app, pilot)
        assert shown(app)[0] == ("user", "first (edited)")
        # A click on the switch does the same.
        switch = messages(app)[0].query_one(BranchSwitch)
        await pilot.click(switch, offset=(0, 0))
        await settle(app, pilot)
        assert shown(app)[0] == ("user", "first")
        # The branch on view is remembered in the store.
        session_id = app.chat.session_id
        assert session_id is not None
        assert db.branch(session_id)[0].content == "first"


async def test_escape_cancels_an_edit(db: Store) -> None:
    engine = FakeEngine(["reply"])
    app = ChatApp(engine, SPEC, store=db)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        await send(pilot, "question")
        await settle(app, pilot)
        focus_message(app, 0)
        await pilot.press("e")
        await pilot.press("escape")
        await pilot.pause()
        assert app.chat.editing is None and app.chat.prompt_input.text == ""
        assert len(engine.generates) == 1


async def test_regenerate_the_last_reply(db: Store) -> None:
    engine = FakeEngine(["first answer", "second answer"])
    app = ChatApp(engine, SPEC, store=db)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        await send(pilot, "question")
        await settle(app, pilot)
        focus_message(app, 1)
        await pilot.press("r")
        await settle(app, pilot)
        assert shown(app) == [("user", "question"), ("assistant", "second answer")]
        assert turns(engine.generates[-1].messages) == [("user", "question")]
        reply = messages(app)[1]
        switch = reply.query_one(BranchSwitch)
        assert (switch.position, switch.count) == (2, 2)
        reply.focus()
        await pilot.press("left_square_bracket")
        await settle(app, pilot)
        assert shown(app) == [("user", "question"), ("assistant", "first answer")]


async def test_delete_a_message_after_confirming(db: Store) -> None:
    session_id = make_session(db, ("one", "reply one"), ("two", "reply two"))
    app = ChatApp(FakeEngine(), SPEC, store=db, session_id=session_id)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        focus_message(app, 2)
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert "the 1 message after it" in rendered_text(app.screen)
        await pilot.click("#yes")
        await settle(app, pilot)
        assert shown(app) == [("user", "one"), ("assistant", "reply one")]
        assert [m.content for m in db.branch(session_id)] == ["one", "reply one"]


async def test_copy_a_message(db: Store) -> None:
    session_id = make_session(db, ("question", "Here:\n\n```python\nprint(1)\n```\n"))
    app = ChatApp(FakeEngine(), SPEC, store=db, session_id=session_id)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        focus_message(app, 0)
        with notes_of(app) as notes:
            await pilot.press("c")
        assert app.clipboard == "question" and "Copied" in notes[0]
        focus_message(app, 1)
        await pilot.press("b")
        assert app.clipboard == "print(1)"
        await pilot.press("c")
        assert app.clipboard.startswith("Here:")


async def test_message_keys_do_nothing_while_typing(db: Store) -> None:
    engine = FakeEngine(["ok"])
    app = ChatApp(engine, SPEC, store=db)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        await pilot.press(*"edit, regenerate, delete [x]")
        assert app.chat.prompt_input.text == "edit, regenerate, delete [x]"
        assert app.chat.editing is None


# --- import, export, old databases -----------------------------------------------------


async def test_export_import_round_trip_of_a_chat(db: Store, tmp_path: Path) -> None:
    engine = FakeEngine(["one", "two", "three"])
    app = ChatApp(engine, SPEC, store=db)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        await send(pilot, "a")
        await settle(app, pilot)
        focus_message(app, 1)
        await pilot.press("r")
        await settle(app, pilot)
        session_id = app.chat.session_id
    assert session_id is not None
    document = export_json(db, session_id)
    with Store(tmp_path / "other.db") as other:
        imported = import_text(other, document)
        assert export_json(other, imported.id) == document


async def test_a_version_1_database_is_upgraded_and_opens(tmp_path: Path) -> None:
    import sqlite3
    import time

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    apply_migrations(conn, target=1)
    now = time.time()
    conn.execute(
        "INSERT INTO sessions (id, title, created_at, updated_at, model) "
        "VALUES (1, 'old chat', ?, ?, 'smollm2')",
        (now, now),
    )
    conn.execute(
        "INSERT INTO messages (id, session_id, parent_id, role, content, created_at) "
        "VALUES (1, 1, NULL, 'user', 'remember the lighthouse', ?)",
        (now,),
    )
    conn.close()
    with Store(path) as store:
        app = ChatApp(FakeEngine(), SPEC, store=store, session_id=1)
        async with app.run_test(size=WIDE) as pilot:
            await settle(app, pilot)
            assert shown(app) == [("user", "remember the lighthouse")]
            panel = await open_panel(app, pilot)
            await pilot.press(*"lighthouse")
            await pilot.pause()
            assert panel.option_list.option_count == 1  # indexed for search on upgrade


# --- start-up: -c, --session, unusable databases ---------------------------------------


def namespace(**values: object) -> argparse.Namespace:
    return argparse.Namespace(**{"continue_last": False, "session": None, **values})


def test_dash_c_picks_the_most_recently_updated_session(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    with Store(path) as store:
        older = make_session(store, ("older", "x"))
        newer = make_session(store, ("newer", "y"))
        store.add_message(older, "user", "touched last", None)  # now `older` is the latest
    opened = open_store(namespace(continue_last=True), path)
    try:
        assert opened.session is not None and opened.session.id == older
    finally:
        opened.close()
    opened = open_store(namespace(session=str(newer)), path)
    try:
        assert opened.session is not None and opened.session.id == newer
    finally:
        opened.close()


def test_session_arguments_that_cannot_be_honoured(tmp_path: Path) -> None:
    from chatapp.resume import ResumeError

    path = tmp_path / "chat.db"
    with pytest.raises(ResumeError, match="no session 7 in"):
        open_store(namespace(session="7"), path)
    with pytest.raises(ResumeError, match="a number"):
        open_store(namespace(session="abc"), path)
    opened = open_store(namespace(continue_last=True), path)  # nothing yet: a new session
    assert opened.session is None
    opened.close()


def test_unusable_database_is_reported_and_left_alone(tmp_path: Path) -> None:
    from chatapp.resume import ResumeError

    path = tmp_path / "chat.db"
    junk = b"this is not a database" * 100
    path.write_bytes(junk)
    opened = open_store(namespace(), path)
    assert opened.store is None and opened.error is not None
    assert str(path) in str(opened.error)
    with pytest.raises(ResumeError, match=str(path)):
        open_store(namespace(continue_last=True), path)
    assert path.read_bytes() == junk


async def test_database_error_dialog_offers_a_fresh_database(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    junk = b"corrupt" * 500
    path.write_bytes(junk)
    opened = open_store(namespace(), path)
    assert opened.error is not None
    engine = FakeEngine(["saved now"])
    app = ChatApp(engine, SPEC, store=None, store_error=opened.error)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        dialog = app.screen
        assert isinstance(dialog, DatabaseErrorScreen)
        text = rendered_text(dialog)
        assert str(path) in "".join(line.strip() for line in text.splitlines())
        labels = [str(b.label) for b in dialog.query(Button)]
        assert labels[0].startswith(f"Start with a fresh database at {path.parent}")
        assert labels[1:] == ["Continue without saving", "Quit"]
        await pilot.press("f")
        await settle(app, pilot)
        fresh = app.store
        assert isinstance(fresh, Store) and fresh.path != path
        assert fresh.path.parent == path.parent
        await send(pilot, "hello")
        await settle(app, pilot)
        assert fresh.count_sessions() == 1
    assert path.read_bytes() == junk  # never deleted or overwritten
    fresh.close()


async def test_database_error_dialog_quit(tmp_path: Path) -> None:
    error = StoreError(f"{tmp_path / 'x.db'} is locked by another process", tmp_path / "x.db")
    app = ChatApp(FakeEngine(), SPEC, store=None, store_error=error)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 1


async def test_without_a_store_chats_are_kept_in_memory() -> None:
    engine = FakeEngine(["in memory"])
    app = ChatApp(engine, SPEC)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await send(pilot, "hi")
        await settle(app, pilot)
        assert shown(app) == [("user", "hi"), ("assistant", "in memory")]
        assert not app.chat.conversation.saved
