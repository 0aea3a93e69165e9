"""`Conversation`: the session on screen kept in a real SQLite file (no Textual)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatapp.conversation import Conversation
from chatapp.engine.protocol import GenerationStats
from chatapp.store import Store, StoreError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "chat.db") as store:
        yield store


def turns(conversation: Conversation) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in conversation.history()]


def test_session_is_created_with_the_first_message(store: Store) -> None:
    conversation = Conversation(store, model="tiny", system_prompt="Be brief.")
    assert conversation.session is None
    assert store.count_sessions() == 0  # opening the app creates nothing
    conversation.add_user("What is the capital of France?\nThanks")
    session = conversation.session
    assert session is not None
    assert session.title == "What is the capital of France?"
    assert session.model == "tiny" and session.system_prompt == "Be brief."
    assert [(m.role, m.content) for m in conversation.request_messages()] == [
        ("system", "Be brief."),
        ("user", "What is the capital of France?\nThanks"),
    ]
    assert conversation.request_messages()[1].id == conversation.branch[0].id


def test_a_reply_that_ends_when_it_cannot_be_saved_is_saved_before_the_next_message(
    store: Store,
) -> None:
    conversation = Conversation(store, model="tiny")
    conversation.add_user("first")
    reply_id = conversation.begin_reply()
    conversation.reply_grew("the whole answer")
    store._db.execute("PRAGMA query_only = ON")  # every write now fails, as on a full disk
    with pytest.raises(StoreError):
        conversation.finish_reply(status="complete")
    assert conversation.reply is None and conversation.unsaved is not None
    with pytest.raises(StoreError):  # still cannot write: the next message is refused
        conversation.add_user("second")
    assert conversation.unsaved is not None
    store._db.execute("PRAGMA query_only = OFF")
    conversation.add_user("second")
    assert conversation.unsaved is None
    saved = store.get_message(reply_id)
    assert (saved.content, saved.status) == ("the whole answer", "complete")
    assert turns(conversation) == [
        ("user", "first"),
        ("assistant", "the whole answer"),
        ("user", "second"),
    ]
    assert [m.content for m in store.branch(conversation.session_id)] == [
        "first",
        "the whole answer",
        "second",
    ]


def test_reply_saved_at_most_once_per_interval_and_finalised(store: Store) -> None:
    clock = Clock()
    conversation = Conversation(store, model="tiny", clock=clock)
    conversation.add_user("count")
    reply_id = conversation.begin_reply()
    assert store.get_message(reply_id).status == "streaming"
    saved = []
    for n in range(30):  # 30 tokens over 3.75 seconds
        clock.now += 0.125
        saved.append(conversation.reply_grew(f"{n} "))
    assert saved.count(True) == 3  # once a second, not per token
    stored = store.get_message(reply_id)
    assert stored.status == "streaming"
    assert conversation.reply is not None
    missing = conversation.reply.text[len(stored.content) :]
    assert conversation.reply.text.startswith(stored.content) and len(missing.split()) <= 8
    # Idle time: the timer's flush saves what is due, and nothing when nothing is new.
    clock.now += 1.0
    assert conversation.flush() is True
    assert store.get_message(reply_id).content == conversation.reply.text
    assert conversation.flush(force=True) is False
    stats = GenerationStats(prompt_tokens=5, new_tokens=30, time_to_first_token=0.1, seconds=3)
    final = conversation.finish_reply("final text", "complete", stats)
    assert final is not None and final.status == "complete"
    assert (final.content, final.new_tokens, final.model) == ("final text", 30, "tiny")
    assert turns(conversation) == [("user", "count"), ("assistant", "final text")]
    assert conversation.finish_reply() is None  # only once


def test_edit_makes_a_sibling_branch_and_switching_moves_between(store: Store) -> None:
    conversation = Conversation(store, model="tiny")
    first = conversation.add_user("one")
    conversation.begin_reply()
    conversation.finish_reply("reply one")
    conversation.add_user("two")
    conversation.begin_reply()
    conversation.finish_reply("reply two")

    edited = conversation.add_user("ONE", replacing=first.id)
    assert edited.parent_id is None and turns(conversation) == [("user", "ONE")]
    conversation.begin_reply()
    conversation.finish_reply("reply ONE")
    assert conversation.sibling_position(edited) == (2, 2)
    assert conversation.sibling_position(conversation.branch[1]) == (1, 1)

    back = conversation.switch_sibling(edited.id, -1)
    assert back is not None and back.id == first.id
    assert turns(conversation) == [
        ("user", "one"),
        ("assistant", "reply one"),
        ("user", "two"),
        ("assistant", "reply two"),
    ]
    assert conversation.switch_sibling(first.id, -1) is None  # at the first already
    # The view survives reopening: the current leaf is stored.
    again = Conversation(store)
    again.open(conversation.session_id or 0)
    assert turns(again) == turns(conversation)


def test_regenerate_adds_a_sibling_reply(store: Store) -> None:
    conversation = Conversation(store, model="a")
    conversation.add_user("hi")
    conversation.begin_reply()
    old = conversation.finish_reply("first answer")
    assert old is not None
    conversation.truncate_before(old.id)
    assert turns(conversation) == [("user", "hi")]
    conversation.model = "b"
    conversation.begin_reply()
    new = conversation.finish_reply("second answer")
    assert new is not None and new.parent_id == old.parent_id and new.model == "b"
    assert conversation.sibling_position(new) == (2, 2)
    assert turns(conversation) == [("user", "hi"), ("assistant", "second answer")]


def test_delete_takes_what_follows_and_counts_it(store: Store) -> None:
    conversation = Conversation(store, model="tiny")
    first = conversation.add_user("one")
    conversation.begin_reply()
    conversation.finish_reply("reply one")
    conversation.add_user("two")
    conversation.begin_reply()
    conversation.finish_reply("reply two")
    second_user = conversation.branch[2]
    assert conversation.count_below(first.id) == 3
    assert conversation.delete(second_user.id) == 2
    assert turns(conversation) == [("user", "one"), ("assistant", "reply one")]


def test_open_at_a_search_hit_selects_its_branch(store: Store) -> None:
    conversation = Conversation(store, model="tiny")
    first = conversation.add_user("apples")
    conversation.add_user("pears", replacing=first.id)
    (hit,) = store.search("apples")
    fresh = Conversation(store)
    fresh.open(hit.session_id, hit.message_id)
    assert turns(fresh) == [("user", "apples")]


def test_unsaved_conversation_works_in_memory() -> None:
    conversation = Conversation(None, model="tiny")
    assert not conversation.saved
    conversation.add_user("hi")
    conversation.begin_reply()
    conversation.finish_reply("hello")
    assert turns(conversation) == [("user", "hi"), ("assistant", "hello")]
