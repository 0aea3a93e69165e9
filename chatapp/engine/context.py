"""Fitting a conversation into the model's context window, counted exactly.

The budget is the context window minus the reply reserve. The system prompt and the new
message always go in; earlier messages are added newest first while they fit. Counts
come from the model's own tokenizer and chat template, so the prompt never overflows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from chatapp.engine.protocol import ChatMessage

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
