"""Rendering a conversation into prompt token ids with the model's own chat template."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from chatapp.engine.protocol import ChatMessage

# For models whose tokenizer has no chat template (base models): a plain transcript.
TRANSCRIPT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] }}\n\n"
    "{% elif m['role'] == 'user' %}User: {{ m['content'] }}\n"
    "{% else %}Assistant: {{ m['content'] }}\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)
TRANSCRIPT_STOPS = ("\nUser:", "\nAssistant:")


def render_ids(tokenizer: Any, messages: Sequence[ChatMessage]) -> list[int]:
    """Token ids of `messages` followed by the assistant's generation prompt."""
    encoded = tokenizer.apply_chat_template(
        [{"role": m.role, "content": m.content} for m in messages],
        add_generation_prompt=True,
        tokenize=True,
    )
    if isinstance(encoded, dict) or hasattr(encoded, "input_ids"):
        encoded = encoded["input_ids"]
    return list(encoded)


@dataclass(frozen=True)
class TokenCounter:
    """A model's own token counts, in the three forms the context builder takes."""

    tokenizer: Any

    def render(self, messages: Sequence[ChatMessage]) -> list[int]:
        return render_ids(self.tokenizer, messages)

    def count(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        encoded = self.tokenizer(list(texts), add_special_tokens=False)
        return [len(ids) for ids in encoded["input_ids"]]
