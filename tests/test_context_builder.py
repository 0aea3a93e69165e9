"""The recall context builder's invariants, with fake templates and scores (no model)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from chatapp.engine.context import (
    FILES_HEADER,
    OTHER_SESSION_MARK,
    PINNED_MARK,
    RECALLED_MARK,
    Extra,
    PromptTooLong,
    build_context,
    build_prompt,
    exchanges,
)
from chatapp.engine.protocol import ChatMessage

WORDS = ["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta"]


def count(text: str) -> int:
    return len(text.split())


def render_additive(messages: Sequence[ChatMessage]) -> list[int]:
    """A ChatML-like template: role token, one token per word, end token; then a prompt."""
    ids: list[int] = []
    for m in messages:
        ids.append({"system": 1, "user": 2, "assistant": 3}[m.role])
        ids.extend(100 + len(w) for w in m.content.split())
        ids.append(4)
    return [*ids, 5]


def render_quirky(messages: Sequence[ChatMessage]) -> list[int]:
    """Not additive: a default system prompt when none is given, and an extra token for
    every third message, so estimates are off and the exact check must catch it."""
    ids = render_additive(messages)
    if not messages or messages[0].role != "system":
        ids = [1, 9, 9, 9, 4, *ids]
    return ids + [6] * (len(messages) // 3)


def text(draw_words: list[str]) -> str:
    return " ".join(draw_words) or "x"


@st.composite
def conversations(draw):
    n_exchanges = draw(st.integers(0, 12))
    body: list[ChatMessage] = []
    next_id = 1
    for _ in range(n_exchanges):
        for role in ("user", "assistant"):
            if role == "assistant" and draw(st.integers(0, 9)) == 0:
                continue  # an occasional user turn with no reply (a failed reply)
            words = draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=12))
            body.append(ChatMessage(role, " ".join(words), id=next_id))
            next_id += 1
    system = draw(st.none() | st.lists(st.sampled_from(WORDS), min_size=1, max_size=6))
    new = ChatMessage(
        "user", " ".join(draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=8)))
    )
    messages = ([ChatMessage("system", " ".join(system))] if system else []) + body + [new]
    ids = [m.id for m in body]
    pinned = draw(st.lists(st.sampled_from(ids), max_size=3)) if ids else []
    excluded = draw(st.lists(st.sampled_from(ids), max_size=3)) if ids else []
    scores = [draw(st.floats(-1, 1)) for _ in messages]
    budget = draw(st.integers(5, 260))
    recent = draw(st.integers(0, 8))
    min_score = draw(st.none() | st.floats(-1, 1))
    return messages, pinned, excluded, scores, budget, recent, min_score


def branch_of(built_messages, original):
    """The original branch messages found in the prompt (by id), in prompt order."""
    by_id = {m.id: m for m in original if m.id is not None}
    return [by_id[m.id] for m in built_messages if m.id is not None and m.id in by_id]


@pytest.mark.parametrize("render", [render_additive, render_quirky])
@pytest.mark.parametrize("use_count", [True, False, "batch"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=conversations())
def test_invariants(case, render, use_count):
    messages, pinned, excluded, scores, budget, recent, min_score = case
    system = messages[0] if messages[0].role == "system" and len(messages) > 1 else None
    try:
        built = build_context(
            messages,
            render,
            budget,
            scores=scores,
            recent_turns=recent,
            pinned=pinned,
            excluded=excluded,
            count=count if use_count else None,
            count_batch=(lambda texts: [count(t) for t in texts]) if use_count == "batch" else None,
            min_score=min_score,
        )
    except PromptTooLong:
        floor = [m for m in (system, messages[-1]) if m is not None]
        assert len(render(floor)) > budget
        return
    # Never over budget, and the ids are the prompt's exact rendering.
    assert len(built.token_ids) <= budget
    assert built.token_ids == render(built.messages)
    # Always the new message (last) and the system prompt (first).
    assert built.messages[-1] == messages[-1]
    if system is not None:
        assert built.messages[0] == system
    body = [m for m in messages if m.id is not None]
    kept = branch_of(built.messages, messages)
    kept_ids = [m.id for m in kept]
    # Original order, no duplicates.
    assert kept_ids == sorted(kept_ids) and len(set(kept_ids)) == len(kept_ids)
    # Exclusions honoured.
    assert not set(kept_ids) & set(excluded)
    # Pairs kept: a user turn is never without the replies that follow it, and a reply
    # never without its user turn.
    for group in exchanges(body):
        ids = {body[i].id for i in group}
        assert not ids & set(kept_ids) or ids <= set(kept_ids)
    # Pins honoured: when the system prompt, the pinned exchanges and the new message
    # fit, every pin is in.
    if render is render_additive and use_count:
        pin_groups = [
            [body[i] for i in g]
            for g in exchanges(body)
            if {body[i].id for i in g} & set(pinned) and not {body[i].id for i in g} & set(excluded)
        ]
        floor = [m for m in (system,) if m is not None]
        floor += [m for g in pin_groups for m in g] + [messages[-1]]
        floor_tokens = len(render(floor)) + sum(count(PINNED_MARK) for _ in pin_groups)
        if floor_tokens <= budget:
            assert {m.id for g in pin_groups for m in g} <= set(kept_ids)
    # A floor: once the branch does not fit (something left out that was not excluded),
    # nothing is recalled for a score below it (pins and recent turns are not recalled;
    # an exchange scores as its best message). Checked where the estimates are exact.
    excluded_groups = [g for g in exchanges(body) if {body[i].id for i in g} & set(excluded)]
    left_out = len(body) - len(kept_ids) - sum(len(g) for g in excluded_groups)
    if min_score is not None and left_out and render is render_additive and use_count:
        for group in exchanges(body):
            items = [i for i in built.items if i.message_id in {body[j].id for j in group}]
            if any(i.kind == "recalled" for i in items):
                assert max(scores[messages.index(body[j])] for j in group) >= min_score
    # Items describe exactly the branch messages in the prompt.
    assert sorted(i.message_id for i in built.items) == kept_ids
    assert built.dropped == len(body) - len(kept_ids)


@settings(max_examples=100, deadline=None)
@given(case=conversations())
def test_everything_fits_means_everything_is_kept(case):
    messages, _pinned, excluded, scores, _budget, recent, _floor = case
    built = build_context(
        messages, render_additive, 10_000, scores=scores, recent_turns=recent, excluded=excluded
    )
    body = [m for m in messages if m.id is not None]
    dropped = {
        m.id
        for g in exchanges(body)
        for m in (body[i] for i in g)
        if {body[j].id for j in g} & set(excluded)
    }
    assert {m.id for m in branch_of(built.messages, messages)} == {m.id for m in body} - dropped


@settings(max_examples=100, deadline=None)
@given(case=conversations(), data=st.data())
def test_the_best_scored_exchange_wins(case, data):
    messages, _p, _e, _s, _b, _r, _f = case
    body = [m for m in messages if m.id is not None]
    groups = exchanges(body)
    assume(len(groups) >= 2)
    best = data.draw(st.integers(0, len(groups) - 1))
    first = 1 if messages[0].role == "system" else 0
    scores = [0.0] * len(messages)
    for i in groups[best]:
        scores[first + i] = 1.0
    unit = [body[i] for i in groups[best]]
    head = [messages[0]] if first else []
    needed = len(render_additive([*head, *unit, messages[-1]])) + count(RECALLED_MARK)
    built = build_context(messages, render_additive, needed, scores=scores, recent_turns=0)
    assert {m.id for m in unit} <= {m.id for m in built.messages}
    assert built.recalled == len(unit)


def conversation(n: int) -> list[ChatMessage]:
    out = []
    for i in range(n):
        out.append(ChatMessage("user", f"question {i} " + "w " * 5, id=2 * i + 1))
        out.append(ChatMessage("assistant", f"answer {i} " + "w " * 5, id=2 * i + 2))
    return out


def scored_conversation(
    other: float, question_1: float
) -> tuple[list[ChatMessage], list[ChatMessage], list[float | None]]:
    """Ten exchanges and a new message; "question 3" scores 0.9, "question 1" as given."""
    body = conversation(10)
    messages = [ChatMessage("system", "be brief"), *body, ChatMessage("user", "about three?")]
    scores: list[float | None] = [other] * len(messages)
    scores[1 + 6] = 0.9
    scores[1 + 2] = question_1
    return body, messages, scores


def test_recent_then_recalled_marked_in_original_order():
    body, messages, scores = scored_conversation(0.0, 0.5)
    budget = len(render_additive(messages[:1] + body[-4:] + messages[-1:])) + 2 * (18 + 6)
    built = build_context(messages, render_additive, budget, scores=scores, recent_turns=4)
    contents = [m.content for m in built.messages]
    assert contents[0] == "be brief" and contents[-1] == "about three?"
    ids = [m.id for m in built.messages if m.id]
    assert ids == [3, 4, 7, 8, 17, 18, 19, 20]
    assert contents[1].startswith(RECALLED_MARK) and contents[3].startswith(RECALLED_MARK)
    assert not contents[5].startswith("[")
    kinds = {i.message_id: i.kind for i in built.items}
    assert kinds[3] == kinds[7] == "recalled" and kinds[17] == kinds[20] == "recent"
    assert built.recalled == 4 and built.dropped == 12


def test_a_floor_on_scores_recalls_only_what_matters():
    body, messages, scores = scored_conversation(0.1, 0.3)
    extras = [
        Extra("chunk", 0.6, text="relevant part", label="notes.md", chunk_id=11),
        Extra("chunk", 0.2, text="other part", label="notes.md", chunk_id=12, order=1),
    ]
    whole = len(render_additive(messages))

    def built_ids(min_score: float | None, budget: int) -> tuple[list[int | None], list[int]]:
        built = build_context(
            messages,
            render_additive,
            budget,
            scores=scores,
            recent_turns=4,
            pinned=[1],
            extras=extras,
            count=count,
            min_score=min_score,
        )
        assert len(built.token_ids) <= budget
        chunks = [i.chunk_id for i in built.items if i.kind == "chunk"]
        return [m.id for m in built.messages if m.id], chunks

    # While the whole branch fits, the floor changes nothing: a short chat is sent whole.
    everything = ([m.id for m in body], [11, 12])
    assert built_ids(None, 10_000) == built_ids(0.5, 10_000) == everything
    # Once it does not, the pinned exchange and the recent turns always go in, then only
    # what scores at least the floor, though the budget has room for more.
    tight = whole - 5
    assert len(built_ids(None, tight)[0]) > 10
    assert built_ids(0.25, tight) == ([1, 2, 3, 4, 7, 8, 17, 18, 19, 20], [11])
    assert built_ids(0.5, tight) == ([1, 2, 7, 8, 17, 18, 19, 20], [11])
    assert built_ids(0.95, tight) == ([1, 2, 17, 18, 19, 20], [])


def test_pins_and_exclusions():
    body = conversation(8)
    messages = [*body, ChatMessage("user", "now")]
    scores = [1.0] * len(messages)
    built = build_context(
        messages, render_additive, 60, scores=scores, recent_turns=2, pinned=[2], excluded=[16]
    )
    ids = [m.id for m in built.messages if m.id]
    assert ids[:2] == [1, 2] and 16 not in ids and 15 not in ids
    assert built.messages[0].content.startswith(PINNED_MARK)
    assert {i.kind for i in built.items if i.message_id in (1, 2)} == {"pinned"}


def test_extras_chunks_in_system_and_other_sessions_marked():
    messages = [ChatMessage("user", "hi", id=1), ChatMessage("assistant", "hello", id=2)]
    messages.append(ChatMessage("user", "what does the file say"))
    extras = [
        Extra("chunk", 0.9, text="second part", label="notes.md", chunk_id=12, order=1),
        Extra("chunk", 0.8, text="first part", label="notes.md", chunk_id=11, order=0),
        Extra("chunk", -0.5, text="irrelevant " * 200, label="big.txt", chunk_id=99),
        Extra(
            "session",
            0.7,
            messages=(
                ChatMessage("user", "old q", id=50),
                ChatMessage("assistant", "old a", id=51),
            ),
            session_id=7,
        ),
    ]
    built = build_context(
        messages, render_additive, 120, recent_turns=2, extras=extras, count=count
    )
    system = built.messages[0]
    assert system.role == "system" and system.content.startswith(FILES_HEADER)
    assert system.content.index("first part") < system.content.index("second part")
    assert "irrelevant" not in system.content
    assert built.messages[1].content.startswith(OTHER_SESSION_MARK)
    chunk_ids = [i.chunk_id for i in built.items if i.kind == "chunk"]
    assert chunk_ids == [11, 12]
    assert any(i.session_id == 7 and i.message_id == 50 for i in built.items)
    assert len(built.token_ids) <= 120


def test_no_scores_is_recency():
    body = conversation(20)
    messages = [ChatMessage("system", "s"), *body, ChatMessage("user", "new")]
    for budget in (20, 50, 93, 200, 1000):
        old = build_prompt(messages, render_additive, budget)
        new = build_context(messages, render_additive, budget, recent_turns=100)
        assert [m.id for m in new.messages] == [m.id for m in old.messages]
        assert new.token_ids == old.token_ids


def test_too_long_message():
    with pytest.raises(PromptTooLong):
        build_context([ChatMessage("user", "w " * 50)], render_additive, 10)


def test_first_message_with_batch_counting():
    def strict_batch(texts):
        if not texts:
            raise IndexError("empty batch")  # as a Hugging Face tokenizer does
        return [count(t) for t in texts]

    built = build_context(
        [ChatMessage("user", "hello")], render_additive, 50, count=count, count_batch=strict_batch
    )
    assert [m.content for m in built.messages] == ["hello"] and built.items == ()
