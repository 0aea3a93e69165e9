"""Fitting a conversation into the model's context window, counted exactly.

The budget is the context window minus the reply reserve. The system prompt and the new
message always go in; earlier messages are added newest first while they fit. Counts
come from the model's own tokenizer and chat template, so the prompt never overflows.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from chatapp.engine.protocol import ChatMessage, ContextItem

Render = Callable[[Sequence[ChatMessage]], list[int]]


class PromptTooLong(ValueError):
    pass


@dataclass(frozen=True)
class BuiltPrompt:
    messages: tuple[ChatMessage, ...]
    token_ids: list[int]
    dropped: int


def build_prompt(messages: Sequence[ChatMessage], render: Render, budget: int) -> BuiltPrompt:
    """Keep a leading system message and the last message; fill with the newest others."""
    if not messages:
        raise ValueError("no messages to send")
    head = [messages[0]] if messages[0].role == "system" and len(messages) > 1 else []
    body = list(messages[len(head) : -1])
    last = messages[-1]

    ids = render([*head, last])
    if len(ids) > budget:
        raise PromptTooLong(
            f"the message is {len(ids)} tokens with the system prompt, "
            f"over the {budget} tokens the model's window leaves for it"
        )
    kept: list[ChatMessage] = []
    # Newest first; each candidate is checked with the full template, so counts are exact.
    # Turns of the same exchange go together: a user turn is not kept without its reply.
    low, high = 0, len(body)
    while low < high:  # binary search for the longest suffix of `body` that fits
        mid = (low + high + 1) // 2
        candidate = render([*head, *body[len(body) - mid :], last])
        if len(candidate) <= budget:
            low, kept, ids = mid, body[len(body) - mid :], candidate
        else:
            high = mid - 1
    if kept and kept[0].role == "assistant" and len(kept) < len(body):
        kept = kept[1:]
        ids = render([*head, *kept, last])
    return BuiltPrompt(tuple([*head, *kept, last]), ids, len(body) - len(kept))


# --- recall: the newest turns plus the earlier turns and file chunks that matter most ---

RECALLED_MARK = "[Recalled from earlier in this conversation]"
PINNED_MARK = "[Pinned from earlier in this conversation]"
OTHER_SESSION_MARK = "[Recalled from another conversation]"
FILES_HEADER = "Excerpts from files the user attached:"
MAX_TOP_UP_TRIES = 4
"""Exact renders spent trying to fill the slack left after the estimate-driven pass."""
MAX_MISSES = 32
"""Candidates in a row that did not fit, after which the budget counts as full."""

Count = Callable[[str], int]


@dataclass(frozen=True)
class Extra:
    """A recall candidate from outside the branch.

    kind "chunk": a piece of an attached file (`text`, from the file `label`);
    kind "session": an exchange from another saved session (`messages`).
    """

    kind: Literal["chunk", "session"]
    score: float
    text: str = ""
    label: str = ""
    messages: tuple[ChatMessage, ...] = ()
    chunk_id: int | None = None
    session_id: int | None = None
    order: int = 0
    """Position among chunks of the same file (they are shown in file order)."""


@dataclass(frozen=True)
class BuiltContext:
    messages: tuple[ChatMessage, ...]
    token_ids: list[int]
    items: tuple[ContextItem, ...]
    dropped: int
    """Messages of the branch (besides the system prompt and the new one) left out."""
    budget: int

    @property
    def recalled(self) -> int:
        return sum(item.kind in ("recalled", "pinned", "chunk") for item in self.items)


@dataclass(eq=False)
class _Unit:
    """What is kept or dropped as a whole: an exchange (a user turn with its replies),
    another session's exchange, or a file chunk."""

    kind: str  # "recent" | "recalled" | "pinned" | "chunk" | "session"
    messages: tuple[ChatMessage, ...]
    positions: tuple[int, ...]  # indices into the request's messages (branch units)
    score: float | None
    extra: Extra | None = None
    cost: int | None = None

    @property
    def sort_key(self) -> tuple[int, int, int]:
        if self.extra is not None:
            return (0, self.extra.session_id or 0, self.extra.order)
        return (1, self.positions[0], 0)


def exchanges(body: Sequence[ChatMessage]) -> list[list[int]]:
    """Indices of `body` grouped so that a user turn and the replies after it stay together."""
    groups: list[list[int]] = []
    open_user = False  # the last group starts with a user turn: replies join it
    for i, message in enumerate(body):
        if message.role == "user":
            groups.append([i])
            open_user = True
        elif open_user:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def _marked(messages: Sequence[ChatMessage], mark: str) -> tuple[ChatMessage, ...]:
    if not messages or not mark:
        return tuple(messages)
    first = messages[0]
    return (replace(first, content=f"{mark}\n{first.content}"), *messages[1:])


def _unit_messages(unit: _Unit) -> tuple[ChatMessage, ...]:
    if unit.kind == "recalled":
        return _marked(unit.messages, RECALLED_MARK)
    if unit.kind == "pinned":
        return _marked(unit.messages, PINNED_MARK)
    if unit.kind == "session":
        return _marked(unit.messages, OTHER_SESSION_MARK)
    return unit.messages


def _chunk_block(chunks: Sequence[_Unit]) -> str:
    parts = [FILES_HEADER]
    for unit in sorted(chunks, key=lambda u: (u.extra.label, u.extra.order)):  # type: ignore[union-attr]
        assert unit.extra is not None
        parts.append(f"--- {unit.extra.label} ---\n{unit.extra.text}")
    return "\n\n".join(parts)


def build_context(
    messages: Sequence[ChatMessage],
    render: Render,
    budget: int,
    *,
    scores: Sequence[float | None] | None = None,
    recent_turns: int = 6,
    pinned: Collection[int] = (),
    excluded: Collection[int] = (),
    extras: Sequence[Extra] = (),
    count: Count | None = None,
    count_batch: Callable[[Sequence[str]], Sequence[int]] | None = None,
    min_score: float | None = None,
) -> BuiltContext:
    """The system prompt, the new message, then (while the budget allows) the pinned
    exchanges, the `recent_turns` newest messages, and the earlier exchanges and extras
    with the best scores. Selected turns are shown in their original order; those not
    among the newest are marked as recalled.

    `messages` is a request's messages (a leading system message, the branch, the new
    message last); `scores[i]` is the relevance of `messages[i]` (None: unscored).
    `pinned`/`excluded` are message ids. With `min_score`, once the branch no longer fits,
    earlier exchanges and extras scoring below it are not recalled, even when the budget
    has room (while it fits, every exchange goes in, as without it). `count(text)` (the
    tokenizer's token count) makes the estimates cheap (`count_batch`, counting many texts
    in one call, cheaper still); without it each candidate is measured with `render`.
    Whatever the estimates say, the final prompt is rendered and checked exactly: it
    never exceeds `budget`.
    """
    if not messages:
        raise ValueError("no messages to send")
    head = messages[0] if messages[0].role == "system" and len(messages) > 1 else None
    first = 1 if head is not None else 0
    body = list(messages[first:-1])
    last = messages[-1]
    pinned_ids, excluded_ids = set(pinned), set(excluded)

    def score_of(position: int) -> float | None:
        if scores is None or position >= len(scores):
            return None
        return scores[position]

    # Branch exchanges, newest last; an excluded message takes its exchange out whole.
    # Units are made lazily: a long history has thousands of candidates, and only the
    # best few dozen are ever looked at.
    groups = exchanges(body)
    n_scores = len(scores) if scores is not None else 0

    def group_score(group: list[int]) -> float | None:
        best = None
        for i in group:
            position = first + i
            if position < n_scores:
                value = scores[position]  # type: ignore[index]
                if value is not None and (best is None or value > best):
                    best = value
        return best

    def make_unit(gi: int, kind: str) -> _Unit:
        group = groups[gi]
        members = tuple(body[i] for i in group)
        return _Unit(kind, members, tuple(first + i for i in group), group_score(group))

    kept_groups: list[int] = []
    pinned_groups: set[int] = set()
    for gi, group in enumerate(groups):
        if pinned_ids or excluded_ids:
            ids_here = {body[i].id for i in group} - {None}
            if ids_here & excluded_ids:
                continue
            if ids_here & pinned_ids:
                pinned_groups.add(gi)
        kept_groups.append(gi)
    recent_groups: list[int] = []
    covered = 0
    for gi in reversed(kept_groups):
        if covered >= recent_turns:
            break
        if gi not in pinned_groups:
            recent_groups.append(gi)
        covered += len(groups[gi])
    in_recent = set(recent_groups)
    pins = [make_unit(gi, "pinned") for gi in reversed(kept_groups) if gi in pinned_groups]
    recent = [make_unit(gi, "recent") for gi in recent_groups]
    # Best score first; unscored (or tied) candidates newest first. Extras have gi < 0.
    ranked: list[tuple[float, int, int]] = []
    for gi in kept_groups:
        if gi not in pinned_groups and gi not in in_recent:
            value = group_score(groups[gi])
            ranked.append((-(value if value is not None else -1e9), -groups[gi][0], gi))
    for j, extra in enumerate(extras):
        ranked.append((-extra.score, 0, -1 - j))
    ranked.sort()
    floor: float | None = None  # set below, once it is known whether the branch fits

    def extra_unit(extra: Extra) -> _Unit:
        if extra.kind == "chunk":
            return _Unit("chunk", (), (), extra.score, extra)
        return _Unit("session", extra.messages, (), extra.score, extra)

    def candidates() -> Iterator[_Unit]:
        yield from pins
        yield from recent
        for negated_score, _, gi in ranked:
            if floor is not None and -negated_score < floor:
                return  # best first: the rest score lower still
            yield make_unit(gi, "recalled") if gi >= 0 else extra_unit(extras[-1 - gi])

    def assemble(selected: Sequence[_Unit]) -> list[ChatMessage]:
        chunks = [u for u in selected if u.kind == "chunk"]
        system = head.content if head is not None else ""
        if chunks:
            system = f"{system}\n\n{_chunk_block(chunks)}" if system else _chunk_block(chunks)
        out: list[ChatMessage] = []
        if head is not None or chunks:
            out.append(head if head is not None and not chunks else ChatMessage("system", system))
        for unit in sorted((u for u in selected if u.kind != "chunk"), key=lambda u: u.sort_key):
            out.extend(_unit_messages(unit))
        out.append(last)
        return out

    base = assemble([])
    ids = render(base)
    if len(ids) > budget:
        raise PromptTooLong(
            f"the message is {len(ids)} tokens with the system prompt, "
            f"over the {budget} tokens the model's window leaves for it"
        )
    base_len = len(ids)
    overheads: dict[str, int] = {}

    def overhead(role: str) -> int:
        if role not in overheads:
            assert count is not None
            probe = ChatMessage(role, "hello")  # type: ignore[arg-type]
            with_probe = render([*base[:-1], probe, last])
            overheads[role] = max(0, len(with_probe) - base_len - count(probe.content))
        return overheads[role]

    def estimate(unit: _Unit) -> int:
        if unit.cost is None:
            if count is not None:
                if unit.kind == "chunk":
                    assert unit.extra is not None
                    text = f"{FILES_HEADER}\n\n--- {unit.extra.label} ---\n{unit.extra.text}"
                    unit.cost = count(text) + 4 + (0 if head is not None else overhead("system"))
                else:
                    unit.cost = sum(
                        count_text(m.content) + overhead(m.role) for m in _unit_messages(unit)
                    )
            else:
                unit.cost = len(render(assemble([unit]))) - base_len
        return unit.cost

    counted: dict[str, int] = {}

    def count_text(text: str) -> int:
        n = counted.get(text)
        if n is None:
            assert count is not None
            n = counted[text] = count(text)
        return n

    def branch_fits() -> bool:
        """Whether every exchange (but the excluded) would fit: estimated, newest first,
        stopping as soon as the budget is passed."""
        used = base_len
        for gi in reversed(kept_groups):
            kind = "pinned" if gi in pinned_groups else "recent" if gi in in_recent else "recalled"
            used += estimate(make_unit(gi, kind))
            if used > budget:
                return False
        return True

    if min_score is not None and not branch_fits():
        floor = min_score
    stream = candidates()
    first_batch = list(itertools.islice(stream, len(pins) + len(recent) + 2 * MAX_MISSES))
    if count is not None and count_batch is not None:
        texts = list({m.content: None for u in first_batch for m in _unit_messages(u)})
        if texts:  # (a tokenizer given an empty batch may raise)
            counted.update(zip(texts, count_batch(texts), strict=True))

    selected: list[_Unit] = []
    considered: list[_Unit] = []
    used = base_len
    misses = 0
    for unit in itertools.chain(first_batch, stream):
        if misses >= MAX_MISSES:  # full: the rest would not fit either, most likely
            break
        considered.append(unit)
        cost = estimate(unit)
        if used + cost <= budget:
            selected.append(unit)
            used += cost
            misses = 0
        else:
            misses += 1
    ids = render(assemble(selected))
    while len(ids) > budget:  # the estimate was short: drop the least important
        selected.pop()
        ids = render(assemble(selected))
    # The estimate may also have been long: try the best of what was left out.
    tries = 0
    chosen = set(map(id, selected))
    for unit in considered:
        if tries >= MAX_TOP_UP_TRIES or len(ids) >= budget:
            break
        if id(unit) in chosen or unit.cost is None or unit.cost > budget - len(ids) + 2:
            continue
        tries += 1
        trial = [*selected, unit]
        trial_ids = render(assemble(trial))
        if len(trial_ids) <= budget:
            selected, ids = trial, trial_ids
            chosen.add(id(unit))

    items: list[ContextItem] = []
    kept = 0
    for unit in sorted(selected, key=lambda u: u.sort_key):
        kind = "recalled" if unit.kind == "session" else unit.kind
        if unit.kind == "chunk":
            assert unit.extra is not None
            items.append(ContextItem("chunk", chunk_id=unit.extra.chunk_id, score=unit.score))
            continue
        session_id = unit.extra.session_id if unit.extra is not None else None
        for offset, message in enumerate(unit.messages):
            position = unit.positions[offset] if unit.positions else None
            kept += position is not None
            score = score_of(position) if position is not None else unit.score
            items.append(
                ContextItem(
                    kind,  # type: ignore[arg-type]
                    message_id=message.id,
                    score=score,
                    session_id=session_id,
                    position=position,
                )
            )
    return BuiltContext(tuple(assemble(selected)), ids, tuple(items), len(body) - kept, budget)
