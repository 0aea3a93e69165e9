"""Rendering a conversation into prompt token ids with the model's own chat template."""

from __future__ import annotations

from collections.abc import Sequence
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
