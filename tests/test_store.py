"""The saved-sessions store: real SQLite files under tmp_path, no Textual."""

from __future__ import annotations

import copy
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatapp import locations
from chatapp.engine.protocol import GenerationSettings
from chatapp.store import (
    LATEST_VERSION,
    MARK_END,
    MARK_START,
    NotFoundError,
    Store,
    StoreError,
    fresh_database_path,
    make_title,
)
from chatapp.store.db import open_connection
from chatapp.store.migrations import apply_migrations
from chatapp.store.transfer import (
    MAX_IMPORT_BYTES,
    SessionImportError,
    export_json,
    export_markdown,
    import_file,
    import_text,
    session_document,
)
from tests.conftest import run_python, start_reply_writer

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "store.db") as s:
        yield s


def conversation(store: Store, *turns: str, model: str = "tiny") -> tuple[int, list[int]]:
    """A session with alternating user/assistant messages on one branch."""
    session = store.create_session(model)
    ids: list[int] = []
    parent = None
    for n, text in enumerate(turns):
        role = "user" if n % 2 == 0 else "assistant"
        parent = store.add_message(session.id, role, text, parent).id
        ids.append(parent)
    return session.id, ids


def counts(path: Path) -> tuple[int, int]:
    with sqlite3.connect(path) as conn:
        return (
            conn.execute("SELECT count(*) FROM sessions").fetchone()[0],
            conn.execute("SELECT count(*) FROM messages").fetchone()[0],
        )


# --- opening -------------------------------------------------------------------------------


def test_opens_in_the_data_dir_created_on_open_not_import(isolated_paths: Path) -> None:
    code = "import chatapp.store, chatapp.store.transfer, chatapp.commands.sessions"
    done = run_python("-c", code)
    assert done.returncode == 0, done.stderr
    assert not locations.data_dir().exists()
    with Store() as store:
        assert store.path == locations.database_file()
        assert store.path.is_file()
        conn = store._db
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
        assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
    assert store.closed
    with pytest.raises(StoreError, match="closed"):
        store.list_sessions()


def test_no_heavy_imports() -> None:
    code = (
        "import sys, chatapp.store, chatapp.store.transfer, chatapp.commands.sessions\n"
        "bad = [m for m in ('textual', 'torch', 'transformers') if m in sys.modules]\n"
        "assert not bad, bad"
    )
    done = run_python("-c", code)
    assert done.returncode == 0, done.stderr


# --- sessions ------------------------------------------------------------------------------


def test_create_and_continue_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    with Store(path) as store:
        session = store.create_session(
            "smollm2", system_prompt="Be brief.", settings=GenerationSettings(stop=("</s>",))
        )
        assert session.title == "" and session.message_count == 0
        assert session.settings["stop"] == ["</s>"] and session.settings["temperature"] == 0.7
        user = store.add_message(session.id, "user", "What is the capital of France?", None)
        reply = store.add_message(session.id, "assistant", "Paris.", user.id, model="smollm2")
    with Store(path) as store:
        latest = store.latest_session()
        assert latest is not None and latest.id == session.id
        assert latest.title == "What is the capital of France?"
        assert latest.system_prompt == "Be brief."
        assert latest.current_leaf_id == reply.id
        assert latest.message_count == 2
        branch = store.branch(session.id)
        assert [(m.role, m.content) for m in branch] == [
            ("user", "What is the capital of France?"),
            ("assistant", "Paris."),
        ]
        follow = store.add_message(session.id, "user", "And Italy?", branch[-1].id)
        assert [m.id for m in store.branch(session.id)] == [user.id, reply.id, follow.id]
        assert store.get_session(session.id).title == "What is the capital of France?"


def test_list_sessions_newest_updated_first(store: Store) -> None:
    ids = [store.create_session("m", title=f"s{n}").id for n in range(5)]
    assert [s.id for s in store.list_sessions()] == ids[::-1]
    time.sleep(0.01)
    store.add_message(ids[1], "user", "bump", None)
    listed = [s.id for s in store.list_sessions()]
    assert listed[0] == ids[1]
    assert [s.id for s in store.list_sessions(limit=2, offset=1)] == listed[1:3]
    assert store.count_sessions() == 5


def test_titles(store: Store) -> None:
    assert make_title("\n\n   Hello    world  \nsecond line") == "Hello world"
    long = "word " * 40
    title = make_title(long)
    assert title.endswith("…") and len(title) <= 61
    assert make_title("x" * 100) == "x" * 60 + "…"
    assert make_title("  \n ") == ""

    sid, _ = conversation(store, "First question here\nwith details", "answer", "second question")
    assert store.get_session(sid).title == "First question here"
    renamed = store.rename_session(sid, "  My   chat ")
    assert renamed.title == "My chat" and renamed.title_locked
    store.add_message(sid, "user", "another root", None)
    assert store.get_session(sid).title == "My chat"
    # An empty name goes back to the automatic title.
    assert store.rename_session(sid, "").title == "First question here"
    # A session named before its first message keeps its name.
    named = store.create_session("m", title="Named")
    store.add_message(named.id, "user", "hello", None)
    assert store.get_session(named.id).title == "Named"


def test_session_setters(store: Store) -> None:
    session = store.create_session("a")
    assert store.set_session_model(session.id, "b").model == "b"
    assert store.set_session_settings(session.id, {"temperature": 0.1}).settings == {
        "temperature": 0.1
    }
    assert store.set_system_prompt(session.id, "sys").system_prompt == "sys"
    assert store.set_system_prompt(session.id, None).system_prompt is None
    with pytest.raises(ValueError):
        store.set_session_settings(session.id, {"bad": float("nan")})
    with pytest.raises(NotFoundError):
        store.set_session_model(9999, "x")


def test_delete_session_cascades(store: Store) -> None:
    keep, _ = conversation(store, "keep this unicorn", "ok")
    drop, _ = conversation(store, "drop this unicorn", "fine", "more")
    assert len(store.search("unicorn")) == 2
    store.delete_session(drop)
    assert [s.id for s in store.list_sessions()] == [keep]
    assert counts(store.path) == (1, 2)
    assert [h.session_id for h in store.search("unicorn")] == [keep]
    with pytest.raises(NotFoundError, match="no session"):
        store.get_session(drop)
    with pytest.raises(NotFoundError):
        store.delete_session(drop)


def test_add_message_validation(store: Store) -> None:
    a, a_ids = conversation(store, "hello")
    b, _ = conversation(store, "other")
    with pytest.raises(ValueError, match="role"):
        store.add_message(a, "robot", "x", None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="status"):
        store.add_message(a, "user", "x", None, status="done")  # type: ignore[arg-type]
    with pytest.raises(NotFoundError):
        store.add_message(b, "user", "x", a_ids[0])  # parent in another session
    with pytest.raises(NotFoundError):
        store.add_message(12345, "user", "x", None)
    assert counts(store.path) == (2, 2)


# --- replies -------------------------------------------------------------------------------


def test_reply_lifecycle(store: Store) -> None:
    sid, (question,) = conversation(store, "hi")
    reply = store.begin_reply(sid, question, "tiny")
    message = store.get_message(reply)
    assert (message.role, message.status, message.content, message.parent_id) == (
        "assistant",
        "streaming",
        "",
        question,
    )
    assert store.get_session(sid).current_leaf_id == reply
    assert store.update_reply(reply, "Hel")
    assert store.get_message(reply).content == "Hel"
    context = {"recalled": [{"id": question, "score": 0.93}]}
    done = store.finish_reply(
        reply,
        "Hello!",
        "complete",
        prompt_tokens=12,
        new_tokens=3,
        ttft=0.05,
        seconds=0.4,
        context=context,
    )
    assert done.status == "complete" and done.content == "Hello!"
    assert (done.prompt_tokens, done.new_tokens, done.ttft, done.seconds) == (12, 3, 0.05, 0.4)
    assert done.context == context
    assert store.search("hello")[0].message_id == reply
    with pytest.raises(ValueError):
        store.finish_reply(reply, "x", "streaming")  # type: ignore[arg-type]
    store.delete_message(reply)
    assert store.update_reply(reply, "late") is False
    with pytest.raises(NotFoundError):
        store.finish_reply(reply, "late", "stopped")


def test_a_reply_whose_writer_died_is_marked_interrupted(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    writer, reply = start_reply_writer(path)
    writer.kill()  # SIGKILL: no finish_reply
    writer.wait()
    with Store(path, recover=False) as store:
        assert store.get_message(reply).status == "streaming"
    with Store(path) as store:
        message = store.get_message(reply)
        assert message.status == "interrupted" and message.content == "Once upon a"
        assert store.recover_interrupted() == 0


def test_a_reply_another_live_process_is_writing_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "two.db"
    writer, reply = start_reply_writer(path)
    try:
        with Store(path) as store:  # a second chatapp opens the database meanwhile
            assert store.get_message(reply).status == "streaming"
            assert store.recover_interrupted() == 0
            ours = store.begin_reply(store.get_message(reply).session_id, None, "tiny")
            assert store.recover_interrupted() == 0  # our own live reply too
        writer.communicate("finish\n", timeout=60)
        assert writer.returncode == 0
    finally:
        writer.kill()
    with Store(path) as store:
        finished = store.get_message(reply)
        assert (finished.status, finished.content) == ("complete", "Once upon a time.")
        # This process is still alive, so its reply stays streaming until it finishes.
        assert store.get_message(ours).status == "streaming"


def test_a_writer_is_told_from_a_later_process_with_the_same_pid(tmp_path: Path) -> None:
    from chatapp.store.writers import is_running, this_writer

    pid, start = this_writer().split(":")
    assert is_running(this_writer())
    assert not is_running(f"{pid}:{float(start) - 1000:.2f}")  # same pid, earlier process
    assert not is_running(None) and not is_running("garbage") and not is_running("1:x")
    assert not is_running(f"{2**22 + 12345}:{start}")  # no such pid


def test_store_used_from_another_thread(store: Store) -> None:
    sid, (question,) = conversation(store, "threads")
    errors: list[BaseException] = []

    def stream() -> None:
        try:
            reply = store.begin_reply(sid, question, "m")
            for n in range(20):
                store.update_reply(reply, "x" * n)
            store.finish_reply(reply, "done", "complete")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=stream) for _ in range(4)]
    for t in threads:
        t.start()
    for _ in range(20):
        store.list_sessions()
    for t in threads:
        t.join()
    assert not errors
    assert len(store.children(question)) == 4


# --- branching -----------------------------------------------------------------------------


def test_branching_edit_regenerate_and_switch(store: Store) -> None:
    sid, (u1, a1, u2, a2) = conversation(store, "Q1", "A1", "Q2", "A2")
    # Regenerate the last reply: a sibling assistant message under the same user message.
    regen = store.begin_reply(sid, u2, "tiny")
    store.finish_reply(regen, "A2 again", "complete")
    assert [m.id for m in store.siblings(a2)] == [a2, regen]
    assert [m.id for m in store.branch(sid)] == [u1, a1, u2, regen]
    # Edit the second user message: a sibling with the same parent, then a reply to it.
    edited = store.add_message(sid, "user", "Q2 edited", a1)
    assert edited.parent_id == a1
    reply = store.add_message(sid, "assistant", "A2 for the edit", edited.id)
    assert [m.id for m in store.siblings(u2)] == [u2, edited.id]
    assert [m.content for m in store.branch(sid)] == ["Q1", "A1", "Q2 edited", "A2 for the edit"]
    assert [m.id for m in store.children(a1)] == [u2, edited.id]
    # Move back to the first version of Q2: its newest reply becomes the tip.
    back = store.select_branch(u2)
    assert [m.id for m in back] == [u1, a1, u2, regen]
    assert store.get_session(sid).current_leaf_id == regen
    # And an explicit leaf.
    store.set_current_leaf(sid, a2)
    assert [m.content for m in store.branch(sid)] == ["Q1", "A1", "Q2", "A2"]
    assert [m.id for m in store.branch(sid, reply.id)][-1] == reply.id
    # Editing the very first message: a second root.
    root2 = store.add_message(sid, "user", "Q1 edited", None)
    assert [m.id for m in store.siblings(u1)] == [u1, root2.id]
    assert [m.id for m in store.roots(sid)] == [u1, root2.id]
    assert store.branch(sid) == [root2]
    assert store.latest_leaf(u1) == reply.id
    assert store.get_session(sid).message_count == 8
    _other, (x,) = conversation(store, "elsewhere")
    with pytest.raises(NotFoundError):
        store.set_current_leaf(sid, x)
    with pytest.raises(NotFoundError):
        store.branch(sid, x)


def test_current_branch_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    with Store(path) as store:
        sid, (u1, a1) = conversation(store, "Q", "A")
        alt = store.add_message(sid, "assistant", "A'", u1)
        store.set_current_leaf(sid, a1)
    with Store(path) as store:
        assert [m.id for m in store.branch(sid)] == [u1, a1]
        assert store.select_branch(alt.id)[-1].id == alt.id
    with Store(path) as store:
        assert store.branch(sid)[-1].id == alt.id


def test_branch_of_session_without_leaf(store: Store) -> None:
    empty = store.create_session("m")
    assert store.branch(empty.id) == []
    sid, ids = conversation(store, "a", "b", "c")
    store.set_current_leaf(sid, None)
    assert [m.id for m in store.branch(sid)] == ids


def test_delete_message_and_descendants(store: Store) -> None:
    sid, (u1, a1, _u2, a2) = conversation(store, "Q1", "A1", "Q2", "A2")
    regen = store.add_message(sid, "assistant", "A1 again", u1)
    store.set_current_leaf(sid, a2)
    # Deleting A1 removes Q2 and A2; the view moves to the remaining sibling.
    assert store.delete_message(a1) == 3
    assert [m.id for m in store.branch(sid)] == [u1, regen.id]
    assert store.get_session(sid).message_count == 2
    # Deleting the only reply moves the view to its parent.
    assert store.delete_message(regen.id) == 1
    assert [m.id for m in store.branch(sid)] == [u1]
    with pytest.raises(NotFoundError):
        store.delete_message(a2)


def test_deep_branch(store: Store) -> None:
    session = store.create_session("m")
    parent = None
    with store.transaction():
        for n in range(2500):
            parent = store.add_message(session.id, "user", f"turn {n}", parent).id
    assert len(store.branch(session.id)) == 2500
    first = store.branch(session.id)[0].id
    assert store.latest_leaf(first) == parent
    assert store.delete_message(first) == 2500
    assert store.get_session(session.id).message_count == 0


# --- search --------------------------------------------------------------------------------


def test_search(store: Store) -> None:
    a, _ = conversation(store, "How do I bake sourdough bread?", "Feed the starter daily.")
    b, _ = conversation(store, "Café recommendations in Paris", "Try the bakery near the café.")
    hits = store.search("sourdough")
    assert [(h.session_id, h.role) for h in hits] == [(a, "user")]
    assert hits[0].title == "How do I bake sourdough bread?"
    assert f"{MARK_START}sourdough{MARK_END}" in hits[0].snippet
    assert hits[0].marked("<", ">") == "How do I bake <sourdough> bread?"
    assert hits[0].plain() == "How do I bake sourdough bread?"
    assert hits[0].to_rich().plain == "How do I bake sourdough bread?"
    # Diacritics folded, last word a prefix, all words must match.
    assert {h.session_id for h in store.search("cafe")} == {b}
    assert {h.session_id for h in store.search("bak")} == {a, b}
    assert store.search("sourdough paris") == []
    assert {h.session_id for h in store.search("bakery café")} == {b}
    assert [h.session_id for h in store.search("bak", session_id=a)] == [a]
    assert len(store.search("the", limit=1)) == 1
    assert store.search("   ") == [] and store.search("") == []


def test_search_ranks_the_newest_matches(store: Store, monkeypatch) -> None:
    from chatapp.store import sessions as sessions_module

    monkeypatch.setattr(sessions_module, "RANK_WINDOW", 4)
    a = store.create_session("m")
    b = store.create_session("m")
    ids = []
    for n in range(10):  # interleaved sessions, one relevant message in the middle
        sid = a.id if n % 2 == 0 else b.id
        text = "apple apple apple pie" if n in (3, 8) else f"an apple and {n} other things"
        ids.append(store.add_message(sid, "user", text, None).id)
    hits = store.search("apple", limit=2)
    # Relevance first, among the newest four matches only (n = 6..9).
    assert [h.message_id for h in hits] == [ids[8], ids[9]] or hits[0].message_id == ids[8]
    assert all(h.message_id in ids[6:] for h in hits)
    # Fewer matches than the window: all ranked.
    assert [h.message_id for h in store.search("pie")] in ([ids[3], ids[8]], [ids[8], ids[3]])
    # Within one session, its own newest matches.
    in_b = store.search("apple", limit=3, session_id=b.id)
    assert {h.message_id for h in in_b} <= {ids[n] for n in (3, 5, 7, 9)}
    assert in_b[0].message_id == ids[3] and len(in_b) == 3
    assert len(store.search("apple", limit=10, session_id=b.id)) == 5
    assert store.search("apple", session_id=store.create_session("m").id) == []


def test_one_letter_is_not_a_prefix(store: Store) -> None:
    sid, _ = conversation(store, "apples are a fruit")
    assert [h.session_id for h in store.search("a")] == [sid]
    assert store.search("f") == []
    assert [h.session_id for h in store.search("fr")] == [sid]


HOSTILE = [
    '"',
    '""',
    '"unbalanced',
    "*",
    "bread*",
    "-bread",
    "bread -starter",
    "AND",
    "bread AND",
    "OR bread",
    "NOT",
    "NEAR(bread starter)",
    "content:bread",
    "^bread",
    "bread +",
    "(",
    ")",
    "{content}: x",
    "'; DROP TABLE messages; --",
    "\x00",
    "0\x00",
    "bread\x00starter",
    "\ud800 bread",
    "🙂",
    "bread 🙂",
    "日本語",
    "a" * 5000,
    "\\",
    "%_",
]


@pytest.mark.parametrize("query", HOSTILE)
def test_search_accepts_any_text(store: Store, query: str) -> None:
    conversation(store, "sourdough bread and starter", "ok")
    hits = store.search(query)
    assert isinstance(hits, list)
    assert counts(store.path) == (1, 2)


def test_search_hostile_words_are_literal(store: Store) -> None:
    sid, _ = conversation(store, "use AND or NOT carefully", "fine")
    assert [h.session_id for h in store.search("AND")] == [sid]
    assert [h.session_id for h in store.search('"not"')] == [sid]
    assert [h.session_id for h in store.search("-carefully")] == [sid]


def test_search_property_never_raises(tmp_path: Path) -> None:
    with Store(tmp_path / "fuzz.db") as store:
        conversation(store, "alpha beta gamma", "delta")

        @settings(max_examples=300, deadline=None)
        @given(st.text() | st.text(st.characters(codec=None, categories=["Cs", "Cc", "Po"])))
        def check(query: str) -> None:
            hits = store.search(query)
            assert all(h.session_id == 1 for h in hits)

        check()


# --- migrations ----------------------------------------------------------------------------


def test_migrates_version_1_with_data(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    assert apply_migrations(conn, target=1) == 1
    conn.execute(
        "INSERT INTO sessions (id, title, created_at, updated_at, model, settings) "
        "VALUES (1, 'Old chat', 1.0, 2.0, 'tiny', '{\"temperature\": 0.2}')"
    )
    conn.execute(
        "INSERT INTO messages (id, session_id, parent_id, role, content, created_at) "
        "VALUES (1, 1, NULL, 'user', 'remember the zeppelin', 1.0)"
    )
    conn.execute(
        "INSERT INTO messages (id, session_id, parent_id, role, content, status, created_at) "
        "VALUES (2, 1, 1, 'assistant', 'half a rep', 'streaming', 1.5)"
    )
    conn.execute("UPDATE sessions SET current_leaf_id = 2")
    conn.execute("COMMIT")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    conn.close()

    with Store(path) as store:
        assert store._db.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
        session = store.get_session(1)
        assert (session.title, session.model, session.settings) == (
            "Old chat",
            "tiny",
            {"temperature": 0.2},
        )
        assert not session.title_locked
        assert [m.content for m in store.branch(1)] == ["remember the zeppelin", "half a rep"]
        assert store.get_message(2).status == "interrupted"
        hits = store.search("zeppelin")
        assert [(h.session_id, h.message_id, h.title) for h in hits] == [(1, 1, "Old chat")]
        # The upgraded database keeps working, search index included.
        store.add_message(1, "user", "zeppelin again", 2)
        assert len(store.search("zeppelin")) == 2


def test_migration_steps_are_statement_lists() -> None:
    from chatapp.store.migrations import MIGRATIONS

    assert len(MIGRATIONS) == LATEST_VERSION >= 2
    for step in MIGRATIONS:
        assert step and all(isinstance(sql, str) for sql in step)


# --- two processes -------------------------------------------------------------------------

WRITER = """
import sys, time
from chatapp.store import Store
path, tag, n, start = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
while time.time() < start:
    time.sleep(0.001)
with Store(path) as store:
    session = store.create_session("model-" + tag)
    parent = None
    for i in range(n):
        role = "user" if i % 2 == 0 else "assistant"
        parent = store.add_message(session.id, role, f"{tag} says {i}", parent).id
    reply = store.begin_reply(session.id, parent, "m")
    for i in range(20):
        store.update_reply(reply, f"{tag} streaming {i}")
    store.finish_reply(reply, f"{tag} finished", "complete")
print("ok", tag)
"""


def test_two_processes_write_at_once(tmp_path: Path) -> None:
    path = tmp_path / "shared" / "chat.db"  # neither the file nor its folder exists yet
    start = time.time() + 1.0
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), tag, "150", str(start)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("a", "b")
    ]
    results = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
        assert out.startswith("ok")
    with Store(path) as store:
        sessions = store.list_sessions()
        assert sorted(s.model for s in sessions) == ["model-a", "model-b"]
        for s in sessions:
            tag = s.model[-1]
            branch = store.branch(s.id)
            assert len(branch) == 151
            assert [m.content for m in branch[:-1]] == [f"{tag} says {i}" for i in range(150)]
            assert branch[-1].content == f"{tag} finished"
        assert len(store.search("says")) == 20
        assert counts(path) == (2, 302)


def test_many_connections_create_one_database_at_the_same_instant(tmp_path: Path) -> None:
    # Whoever loses the race to create the schema must see it whole, never half-made
    # ("tables but no version", which would read as somebody else's database).
    failures: list[BaseException] = []

    def open_when_ready(path: Path, ready: threading.Barrier) -> None:
        ready.wait()
        try:
            open_connection(path).close()
        except BaseException as exc:
            failures.append(exc)

    for round_ in range(30):
        path = tmp_path / str(round_) / "chat.db"
        ready = threading.Barrier(6)
        threads = [threading.Thread(target=open_when_ready, args=(path, ready)) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not failures, failures
        assert counts(path) == (0, 0)


# --- errors --------------------------------------------------------------------------------


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_corrupt_database_is_reported_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "chatapp.db"
    path.write_bytes(b"this is not a database\n" * 500)
    before = _files(tmp_path)
    with pytest.raises(StoreError) as info:
        Store(path)
    message = str(info.value)
    assert str(path) in message and "not a usable chatapp database" in message
    assert "fresh database" in message and "\n" not in message
    assert _files(tmp_path) == before


def test_truncated_database_is_reported_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "chatapp.db"
    with Store(path) as store:
        conversation(store, *[f"message {n} " * 50 for n in range(40)])
    data = path.read_bytes()
    path.write_bytes(data[:100] + b"\xff" * 4000 + data[4100:])
    for extra in ("-wal", "-shm"):
        Path(str(path) + extra).unlink(missing_ok=True)
    before = path.read_bytes()
    with pytest.raises(StoreError, match=r"chatapp\.db"), Store(path) as store:
        store.list_sessions()
        store.search("message")
    assert path.read_bytes() == before


def test_newer_schema_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    with Store(path) as store:
        conversation(store, "from the future")
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
        conn.execute("PRAGMA journal_mode = DELETE")
    before = _files(tmp_path)
    with pytest.raises(StoreError) as info:
        Store(path)
    assert str(path) in str(info.value)
    assert f"schema version {LATEST_VERSION + 1}" in str(info.value)
    assert "upgrade chatapp" in str(info.value)
    assert _files(tmp_path) == before


def test_other_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (text)")
    before = _files(tmp_path)
    with pytest.raises(StoreError, match="not a chatapp one"):
        Store(path)
    assert _files(tmp_path) == before


def test_locked_database(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    Store(path).close()
    with Store(path) as store:
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        store.busy_timeout = 0.2
        store._db.execute("PRAGMA busy_timeout = 200")
        with pytest.raises(StoreError, match="locked by another process"):
            store.create_session("m")
        holder.execute("ROLLBACK")
        holder.close()
        assert store.create_session("m").id == 1
    # Opening while another process holds an exclusive lock on a rollback-journal database.
    plain = tmp_path / "plain.db"
    holder = sqlite3.connect(plain, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("INSERT INTO t VALUES (1)")
    try:
        with pytest.raises(StoreError) as info:
            Store(plain, busy_timeout=0.2)
        assert "locked by another process" in str(info.value) and str(plain) in str(info.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def _as_unprivileged(check) -> list[str]:
    """Run ``check()`` (returning lines) where file permissions apply: as is, or, when the
    tests run as root, in a forked child switched to the `nobody` user."""
    if os.geteuid() != 0:
        return check()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        status = 1
        try:
            os.close(read_end)
            os.setgid(65534)
            os.setuid(65534)
            lines = check()
            os.write(write_end, json.dumps(lines).encode())
            status = 0
        except BaseException as exc:
            os.write(write_end, json.dumps([f"child failed: {exc!r}"]).encode())
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        data = reader.read()
    os.waitpid(pid, 0)
    return json.loads(data)


def test_read_only_file_and_folder(tmp_path: Path) -> None:
    base = Path(tempfile.mkdtemp(prefix="chatapp-ro-"))  # reachable by `nobody` too
    try:
        os.chmod(base, 0o755)
        ro_file = base / "ro-file.db"
        Store(ro_file).close()
        os.chmod(ro_file, 0o444)
        folder = base / "ro-folder"
        folder.mkdir()
        in_folder = folder / "chatapp.db"
        Store(in_folder).close()
        os.chmod(in_folder, 0o666)
        os.chmod(folder, 0o555)
        before = {ro_file: ro_file.read_bytes(), in_folder: in_folder.read_bytes()}

        def check() -> list[str]:
            lines = []
            for path in (ro_file, in_folder, folder / "new.db", folder / "sub" / "new.db"):
                try:
                    Store(path).close()
                    lines.append(f"opened {path}")
                except StoreError as exc:
                    lines.append(str(exc))
            return lines

        lines = _as_unprivileged(check)
        assert len(lines) == 4, lines
        assert str(ro_file) in lines[0] and "read-only" in lines[0]
        assert str(folder) in lines[1] and "read-only" in lines[1]
        assert str(folder) in lines[2] and "read-only" in lines[2]
        assert str(folder / "sub") in lines[3] and "cannot create the folder" in lines[3]
        assert all("\n" not in line for line in lines)
        for path, data in before.items():
            assert path.read_bytes() == data
        assert sorted(p.name for p in folder.iterdir()) == ["chatapp.db"]
    finally:
        for root, dirs, _ in os.walk(base):
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o755)
        subprocess.run(["rm", "-rf", str(base)], check=False)


def test_fresh_database_path(tmp_path: Path) -> None:
    path = tmp_path / "chatapp.db"
    path.write_bytes(b"junk")
    fresh = fresh_database_path(path)
    assert fresh.parent == tmp_path and fresh.suffix == ".db"
    assert fresh.name.startswith("chatapp-20") and not fresh.exists()
    fresh.write_bytes(b"")
    again = fresh_database_path(path)
    assert again != fresh and not again.exists()
    with Store(again) as store:
        assert store.list_sessions() == []
    assert path.read_bytes() == b"junk"


# --- export / import -----------------------------------------------------------------------


def branched_session(store: Store) -> int:
    session = store.create_session(
        "smollm2-360m", system_prompt="You are terse.", settings={"temperature": 0.3, "stop": []}
    )
    sid = session.id
    u1 = store.add_message(sid, "user", "Name a **prime** number\nplease", None).id
    a1 = store.begin_reply(sid, u1, "smollm2-360m")
    store.finish_reply(
        a1,
        "7 — and ünïcödé 🙂",
        "complete",
        prompt_tokens=20,
        new_tokens=6,
        ttft=0.125,
        seconds=0.5,
        context={"recalled": [{"id": u1, "score": 0.5}]},
    )
    a1b = store.begin_reply(sid, u1, "other-model")
    store.finish_reply(a1b, "Eleven", "stopped", new_tokens=2)
    u2 = store.add_message(sid, "user", "Another?", a1).id
    store.add_message(sid, "assistant", "13", u2, model="smollm2-360m")
    store.add_message(sid, "user", "Edited: another one?", a1)
    store.set_current_leaf(sid, store.latest_leaf(u2))
    return sid


def test_export_import_round_trip_is_exact(store: Store, tmp_path: Path) -> None:
    sid = branched_session(store)
    first = export_json(store, sid)
    document = json.loads(first)
    assert document["format"] == "chatapp-session" and document["version"] == 1
    assert len(document["messages"]) == 6
    assert [m["id"] for m in document["messages"]] == [1, 2, 3, 4, 5, 6]
    assert [m["parent_id"] for m in document["messages"]] == [None, 1, 1, 2, 4, 2]
    assert document["session"]["current_leaf_id"] == 5

    file = tmp_path / "export.json"
    file.write_text(first, encoding="utf-8")
    imported = import_file(store, file)
    assert imported.id != sid and imported.message_count == 6
    assert export_json(store, imported.id) == first  # byte for byte
    # Same structure, fresh ids.
    old, new = store.messages(sid), store.messages(imported.id)
    assert not {m.id for m in old} & {m.id for m in new}
    assert [(m.role, m.content, m.status, m.context is None) for m in old] == [
        (m.role, m.content, m.status, m.context is None) for m in new
    ]
    assert [m.content for m in store.branch(imported.id)] == [m.content for m in store.branch(sid)]
    # The import is searchable like anything else.
    assert {h.session_id for h in store.search("prime")} == {sid, imported.id}


def test_export_markdown_is_the_current_branch(store: Store) -> None:
    sid = branched_session(store)
    text = export_markdown(store, sid)
    assert text.startswith("# Name a **prime** number\n")
    assert "- Model: smollm2-360m" in text
    assert "current branch (4 of 6 messages)" in text
    assert "## System prompt\n\nYou are terse." in text
    assert "## User\n\nName a **prime** number\nplease" in text
    assert "## Assistant (smollm2-360m)\n\n7 — and ünïcödé 🙂" in text
    assert "## User\n\nAnother?" in text and "13" in text
    assert "Eleven" not in text and "Edited" not in text
    assert text.endswith("13\n")


def valid_document(store: Store) -> dict[str, Any]:
    return session_document(store, branched_session(store))


def _edit(document: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(document)
    target = doc
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


_DELETE = object()

BAD_DOCUMENTS = [
    (("format",), "something-else", "not a chatapp session file"),
    (("format",), _DELETE, "not a chatapp session file"),
    (("version",), 2, "unsupported version 2"),
    (("version",), "1", "version must be an integer"),
    (("version",), True, "version must be an integer"),
    (("extra",), 1, "unknown field 'extra'"),
    (("session",), [], "session must be an object"),
    (("session", "title"), 5, "session.title must be a string, not an integer"),
    (("session", "title_locked"), 1, "session.title_locked must be a boolean"),
    (("session", "settings"), "hot", "session.settings must be an object"),
    (("session", "model"), _DELETE, "session is missing 'model'"),
    (("session", "created_at"), "yesterday", "session.created_at must be an ISO 8601"),
    (("session", "created_at"), "0001-01-01T00:00:00+00:00", "out of range"),
    (("session", "current_leaf_id"), 99, "current_leaf_id 99 is not the id of a message"),
    (("session", "system_prompt"), ["x"], "system_prompt must be a string or null"),
    (("messages",), {}, "messages must be an array"),
    (("messages", 0), "hi", "messages[0] must be an object"),
    (("messages", 1, "role"), "robot", "messages[1].role must be one of"),
    (("messages", 1, "status"), "done", "messages[1].status must be one of"),
    (("messages", 1, "content"), None, "messages[1].content must be a string, not null"),
    (("messages", 1, "content"), "\ud800", "unpaired surrogate"),
    (("messages", 1, "parent_id"), 5, "parent_id 5 is not the id of an earlier message"),
    (("messages", 1, "parent_id"), 2, "parent_id 2 is not the id of an earlier message"),
    (("messages", 1, "id"), 1, "messages[1].id 1 is used twice"),
    (("messages", 1, "id"), 1.5, "messages[1].id must be an integer"),
    (("messages", 1, "new_tokens"), -1, "out of range"),
    (("messages", 1, "new_tokens"), 2**70, "out of range"),
    (("messages", 1, "new_tokens"), False, "must be an integer or null, not a boolean"),
    (("messages", 1, "ttft"), "fast", "must be a number or null"),
    (("messages", 1, "seconds"), -0.5, "finite number"),
    (("messages", 1, "created_at"), _DELETE, "messages[1] is missing 'created_at'"),
    (("messages", 1, "surprise"), 1, "messages[1] has unknown field 'surprise'"),
]


@pytest.mark.parametrize(("path", "value", "problem"), BAD_DOCUMENTS)
def test_import_rejects_bad_documents(
    store: Store, tmp_path: Path, path: tuple[Any, ...], value: Any, problem: str
) -> None:
    document = _edit(valid_document(store), path, value)
    file = tmp_path / "bad.json"
    file.write_text(json.dumps(document), encoding="utf-8")
    before = counts(store.path)
    with pytest.raises(SessionImportError) as info:
        import_file(store, file)
    message = str(info.value)
    assert message.startswith(f"cannot import {file}: ")
    assert problem in message
    assert "\n" not in message
    assert counts(store.path) == before


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "malformed JSON at line 1 column 1"),
        (b"{", "malformed JSON"),
        (b'{"format": "chatapp-session",}', "malformed JSON"),
        (b"[1, 2]", "must be a JSON object, not an array"),
        (b"null", "must be a JSON object, not null"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b'{"a": NaN}', "NaN is not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
)
def test_import_rejects_malformed_files(
    store: Store, tmp_path: Path, data: bytes, problem: str
) -> None:
    file = tmp_path / "broken.json"
    file.write_bytes(data)
    with pytest.raises(SessionImportError, match=r"cannot import .*broken\.json: ") as info:
        import_file(store, file)
    assert problem in str(info.value)
    assert counts(store.path) == (0, 0)


def test_import_missing_and_oversize_files(store: Store, tmp_path: Path) -> None:
    with pytest.raises(SessionImportError, match=r"missing\.json: No such file"):
        import_file(store, tmp_path / "missing.json")
    big = tmp_path / "big.json"
    with big.open("wb") as out:
        out.truncate(MAX_IMPORT_BYTES + 1)
    with pytest.raises(SessionImportError, match=r"big.json: the file is too big \(21.0 MB"):
        import_file(store, big)
    with pytest.raises(SessionImportError, match="too big"):
        import_text(store, "x" * (MAX_IMPORT_BYTES + 1))
    assert counts(store.path) == (0, 0)


def test_import_failure_midway_writes_nothing(store: Store, monkeypatch) -> None:
    text = export_json(store, branched_session(store))
    before = counts(store.path)
    from chatapp.store import transfer

    original = transfer.write_document

    def failing(store_: Store, document: Any) -> Any:
        with store_.transaction() as conn:
            original(store_, document)  # joins this transaction
            conn.execute("INSERT INTO messages (session_id) VALUES (NULL)")  # fails

    monkeypatch.setattr(transfer, "write_document", failing)
    with pytest.raises(StoreError):
        import_text(store, text)
    assert counts(store.path) == before


def test_imported_streaming_reply_becomes_interrupted(store: Store) -> None:
    document = valid_document(store)
    document["messages"][1]["status"] = "streaming"
    session = import_text(store, json.dumps(document))
    assert store.messages(session.id)[1].status == "interrupted"


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.sampled_from(["chatapp-session", "user", "assistant", "complete", "2026-01-01T00:00"]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


def test_import_property_only_session_import_error(tmp_path: Path) -> None:
    with Store(tmp_path / "fuzz.db") as store:
        base = valid_document(store)
        paths = _paths(base)

        def attempt(text: str | bytes) -> None:
            before = counts(store.path)
            try:
                session = import_text(store, text, source="fuzz.json")
            except SessionImportError as exc:
                assert str(exc).startswith("cannot import fuzz.json: ")
                assert counts(store.path) == before
            else:
                after = counts(store.path)
                assert after == (before[0] + 1, before[1] + session.message_count)

        @settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(value=JSON_VALUES)
        def arbitrary_json(value: Any) -> None:
            attempt(json.dumps(value))
            attempt(json.dumps({**base, "session": value}))
            attempt(json.dumps({**base, "messages": value}))

        @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(data=st.data())
        def mutated_document(data: st.DataObject) -> None:
            path = data.draw(st.sampled_from(paths))
            value = data.draw(st.just(_DELETE) | JSON_VALUES)
            attempt(json.dumps(_edit(base, path, value)))

        @settings(max_examples=150, deadline=None)
        @given(raw=st.binary(max_size=200) | st.text(max_size=200))
        def arbitrary_input(raw: bytes | str) -> None:
            attempt(raw)

        arbitrary_json()
        mutated_document()
        arbitrary_input()
