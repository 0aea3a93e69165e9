"""The GPT decoding loop: prefill, then one token at a time on the model's KV cache.

`Decoder` keeps the KV cache of the previous turn (its prompt and reply). A new prompt
that starts with the same tokens reuses that cache and prefills only the rest, so the
first token of turn 50 comes about as fast as turn 1's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from chatapp.engine.detokenize import IncrementalDetokenizer
from chatapp.engine.protocol import FinishReason, GenerationSettings, GenerationStats
from chatapp.engine.sampling import choose_token
from chatapp.engine.stops import StopMatcher


@dataclass
class Completion:
    text: str
    finish_reason: FinishReason
    stats: GenerationStats
    token_ids: list[int]


def common_prefix_length(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class Decoder:
    def __init__(self, model: Any, tokenizer: Any, *, reuse_prefix: bool = True) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.reuse_prefix = reuse_prefix
        self.eos_ids = self._eos_ids(model, tokenizer)
        self._cache: Any = None
        self._cached_ids: list[int] = []
        self.reused_tokens = 0
        self.generated_tokens = 0  # of the reply being decoded, live

    @staticmethod
    def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
        ids: set[int] = set()
        for source in (model.generation_config.eos_token_id, tokenizer.eos_token_id):
            if isinstance(source, int):
                ids.add(source)
            elif source:
                ids.update(source)
        return ids

    def reset(self) -> None:
        self._cache = None
        self._cached_ids = []

    def _prefill(self, prompt_ids: list[int]) -> torch.Tensor:
        """Run the prompt through the model, reusing the cached prefix; return last logits."""
        from transformers import DynamicCache

        reuse = common_prefix_length(self._cached_ids, prompt_ids) if self.reuse_prefix else 0
        reuse = min(reuse, len(prompt_ids) - 1)  # at least one token must be fed
        if self._cache is not None and 0 < reuse < self._cache.get_seq_length():
            try:
                self._cache.crop(reuse - self._cache.get_seq_length())
            except (RuntimeError, ValueError):  # e.g. a sliding-window layer past its window
                reuse = 0
        if self._cache is None or reuse == 0:
            self._cache = DynamicCache(config=self.model.config)
            reuse = 0
        self.reused_tokens = reuse
        self._cached_ids = list(prompt_ids)
        new = torch.tensor([prompt_ids[reuse:]], dtype=torch.long)
        out = self.model(
            input_ids=new,
            cache=self._cache,
            use_cache=True,
            logits_to_keep=1,
        )
        return out.logits[0, -1].float()

    def _step(self, token_id: int) -> torch.Tensor:
        out = self.model(
            input_ids=torch.tensor([[token_id]], dtype=torch.long),
            cache=self._cache,
            use_cache=True,
        )
        self._cached_ids.append(token_id)
        return out.logits[0, -1].float()

    def generate(
        self,
        prompt_ids: list[int],
        settings: GenerationSettings,
        *,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> Iterator[str]:
        """Yield text deltas; the generator's return value is the `Completion`."""
        started = time.perf_counter()
        first_token_at = 0.0
        generator = None
        if not settings.greedy:
            generator = torch.Generator()
            generator.manual_seed(
                settings.seed if settings.seed is not None else time.time_ns() % 2**63
            )
        detok = IncrementalDetokenizer(self.tokenizer)
        stops = StopMatcher(settings.stop)
        seen = torch.tensor(sorted(set(prompt_ids)), dtype=torch.long)
        seen_set = set(prompt_ids)
        new_ids: list[int] = []
        self.generated_tokens = 0
        finish: FinishReason = "length"
        with torch.inference_mode():
            logits = self._prefill(prompt_ids)
            while len(new_ids) < settings.max_new_tokens:
                if should_stop():
                    finish = "cancelled"
                    break
                token = choose_token(logits, settings, seen, generator)
                if not new_ids:
                    first_token_at = time.perf_counter() - started
                if token in self.eos_ids:
                    finish = "stop"
                    break
                new_ids.append(token)
                self.generated_tokens = len(new_ids)
                if token not in seen_set:
                    seen_set.add(token)
                    seen = torch.cat([seen, torch.tensor([token], dtype=torch.long)])
                shown = stops.feed(detok.add(token))
                if shown:
                    yield shown
                if stops.stopped:
                    finish = "stop"
                    break
                if len(new_ids) < settings.max_new_tokens:
                    logits = self._step(token)
        if not stops.stopped:
            tail = stops.feed(detok.flush()) + stops.flush()
            if tail:
                yield tail
        text = _shown_text(detok.text, settings.stop)
        stats = GenerationStats(
            prompt_tokens=len(prompt_ids),
            new_tokens=len(new_ids),
            time_to_first_token=first_token_at,
            seconds=time.perf_counter() - started,
        )
        return Completion(text, finish, stats, new_ids)


def _shown_text(text: str, stops: tuple[str, ...]) -> str:
    cut = min((i for s in stops if s and (i := text.find(s)) != -1), default=len(text))
    return text[:cut]
