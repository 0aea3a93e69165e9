"""Choosing the next token from the logits: greedy or sampled, with the usual filters."""

from __future__ import annotations

import torch

from chatapp.engine.protocol import GenerationSettings


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> None:
    """CTRL's penalty, in place: shrink the scores of tokens already in the text."""
    if penalty == 1.0 or seen.numel() == 0:
        return
    scores = logits.index_select(0, seen)
    scores = torch.where(scores > 0, scores / penalty, scores * penalty)
    logits.index_copy_(0, seen, scores)


def choose_token(
    logits: torch.Tensor,
    settings: GenerationSettings,
    seen: torch.Tensor,
    generator: torch.Generator | None,
) -> int:
    """`logits` is the 1-D float vector of the last position; it may be modified."""
    apply_repetition_penalty(logits, seen, settings.repetition_penalty)
    if settings.greedy:
        return int(torch.argmax(logits))
    if 0 < settings.top_k < logits.numel():
        # Scale only the k survivors: top-k does not depend on the temperature.
        logits, indices = torch.topk(logits, settings.top_k)
        probs = torch.softmax(logits / settings.temperature, dim=-1)
    else:
        probs = torch.softmax(logits / settings.temperature, dim=-1)
        probs, indices = _nucleus_candidates(probs, settings.top_p)
    if settings.top_p < 1.0:
        cumulative = torch.cumsum(probs, dim=-1)
        # Keep the smallest prefix whose mass reaches top_p (always at least one token).
        keep = (cumulative - probs) < settings.top_p
        probs = torch.where(keep, probs, torch.zeros_like(probs))
    choice = torch.multinomial(probs, 1, generator=generator)
    return int(indices[choice])


NUCLEUS_CANDIDATES = 64


def _nucleus_candidates(probs: torch.Tensor, top_p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The probabilities in descending order, and their token ids: only the first
    NUCLEUS_CANDIDATES when they already hold `top_p` of the mass (the nucleus is a
    prefix of that order, so the result is the same), the whole sorted vocabulary
    otherwise. Sorting 50k probabilities per token costs more than the rest of sampling."""
    if top_p < 1.0 and probs.numel() > NUCLEUS_CANDIDATES:
        top, indices = torch.topk(probs, NUCLEUS_CANDIDATES)
        if float(top.sum()) >= top_p:
            return top, indices
    return torch.sort(probs, descending=True)
