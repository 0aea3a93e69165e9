"""The GPT decoding loop: prefill, then one token at a time on the model's KV cache.

`Decoder` keeps the KV cache of the previous turn (its prompt and reply). A new prompt
that starts with the same tokens reuses that cache and prefills only the rest, so the
first token of turn 50 comes about as fast as turn 1's (bench/turns.py).

Two ways to run the model (a "runner"): `_LlamaRunner`, a lean forward for Llama-shaped
models (SmolLM2, Llama, Qwen2) on a preallocated KV cache, calling the quantised
kernels of `chatapp.engine.quant` directly; and `_HFRunner`, the model's own forward on
a transformers `DynamicCache`, for every other architecture (Gemma 3...). The weights
can be quantised on a background thread (`upgrade_in_background`) and swapped in
between two replies.
"""

from __future__ import annotations

import threading
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


class _HFRunner:
    """Any causal LM through its own forward, on a transformers `DynamicCache`."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.cache: Any = None

    def reset(self) -> None:
        self.cache = None

    def seq_length(self) -> int:
        return 0 if self.cache is None else self.cache.get_seq_length()

    def keep(self, n: int) -> int:
        """Keep the first `n` cached positions; return how many are kept (0 or n)."""
        length = self.seq_length()
        if n <= 0 or self.cache is None:
            self.cache = None
            return 0
        if n < length:
            try:
                self.cache.crop(n - length)
            except (RuntimeError, ValueError):  # e.g. a sliding-window layer past its window
                self.cache = None
                return 0
        return n

    def forward(self, ids: list[int]) -> torch.Tensor:
        from transformers import DynamicCache

        if self.cache is None:
            self.cache = DynamicCache(config=self.model.config)
        out = self.model(
            input_ids=torch.tensor([ids], dtype=torch.long),
            cache=self.cache,
            use_cache=True,
            logits_to_keep=1,
        )
        return out.logits[0, -1].float()


class _LlamaRunner:
    """A lean forward for Llama-shaped models (Llama, SmolLM, Qwen2), batch 1.

    The same modules and weights as the model's own forward (quantised or not), with
    less around them: q|k|v and gate|up as one matmul each where `quant` fused them,
    rotary tables computed once, and a KV cache preallocated per layer that grows by
    doubling, so a step writes one position instead of concatenating the whole cache
    (which `DynamicCache` does, at a cost that grows with the conversation).
    """

    SUPPORTED = ("llama", "qwen2")

    @classmethod
    def supports(cls, model: Any) -> bool:
        config = getattr(model, "config", None)
        inner = getattr(model, "model", None)
        if config is None or getattr(config, "model_type", None) not in cls.SUPPORTED:
            return False
        if getattr(config, "pretraining_tp", 1) != 1 or getattr(
            config, "use_sliding_window", False
        ):
            return False
        rotary = getattr(inner, "rotary_emb", None)
        if rotary is None or getattr(rotary, "rope_type", "default") not in (
            "default",
            "linear",
            "llama3",
        ):
            return False
        layers = getattr(inner, "layers", ())
        return all(
            hasattr(layer, "self_attn") and hasattr(layer, "mlp") and hasattr(layer.mlp, "act_fn")
            for layer in layers
        )

    def __init__(self, model: Any) -> None:
        config = model.config
        inner = model.model
        self.model = model
        self.embed = inner.embed_tokens
        self.norm = inner.norm
        self.head = model.lm_head
        self.rotary = inner.rotary_emb
        self.max_positions = int(getattr(config, "max_position_embeddings", 4096))
        self.n_heads = config.num_attention_heads
        self.n_kv = getattr(config, "num_key_value_heads", None) or self.n_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.n_heads
        self.hidden = config.hidden_size
        self.layers = []
        matmuls = []
        for layer in inner.layers:
            attn, mlp = layer.self_attn, layer.mlp
            qkv = getattr(attn.q_proj, "fused", None)
            gate_up = getattr(mlp.gate_proj, "fused", None)
            matmuls += [qkv, gate_up, attn.o_proj, mlp.down_proj]
        # Quantised kernels take and give bfloat16: when every matmul is one, cast once
        # per matmul input and call the bare kernels; otherwise call the modules in fp32.
        bare = all(hasattr(m, "kernel") for m in matmuls)
        self.dtype = torch.bfloat16 if bare else torch.float32
        _kernel = (lambda m: m.kernel) if bare else (lambda m: m)
        for layer in inner.layers:
            attn, mlp = layer.self_attn, layer.mlp
            qkv = getattr(attn.q_proj, "fused", None)
            gate_up = getattr(mlp.gate_proj, "fused", None)
            if qkv is None:
                parts = (attn.q_proj, attn.k_proj, attn.v_proj)
                qkv_fn = lambda x, parts=parts: torch.cat([m(x) for m in parts], dim=-1)  # noqa: E731
            else:
                qkv_fn = _kernel(qkv)
            if gate_up is None:
                pair = (mlp.gate_proj, mlp.up_proj)
                gate_up_fn = lambda x, pair=pair: torch.cat([m(x) for m in pair], dim=-1)  # noqa: E731
            else:
                gate_up_fn = _kernel(gate_up)
            self.layers.append(
                (
                    _norm(layer.input_layernorm),
                    qkv_fn,
                    _kernel(attn.o_proj),
                    float(getattr(attn, "scaling", self.head_dim**-0.5)),
                    _norm(layer.post_attention_layernorm),
                    gate_up_fn,
                    _kernel(mlp.down_proj),
                    mlp.act_fn,
                )
            )
        self.final_norm = _norm(self.norm)
        self.capacity = 0
        self.length = 0
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.cos = self.sin = torch.empty(0)

    def reset(self) -> None:
        self.length = 0

    def seq_length(self) -> int:
        return self.length

    def keep(self, n: int) -> int:
        self.length = max(0, min(n, self.length))
        return self.length

    def _grow(self, needed: int) -> None:
        capacity = max(256, self.capacity)
        while capacity < needed:
            capacity *= 2
        # The model's window caps the doubling, but never below what is needed (the
        # plain path lets a prompt run past the window too).
        capacity = max(needed, min(capacity, self.max_positions))
        dtype = torch.float32
        shape = (1, self.n_kv, capacity, self.head_dim)
        keys, values = [], []
        for i in range(len(self.layers)):
            k, v = torch.empty(shape, dtype=dtype), torch.empty(shape, dtype=dtype)
            if self.length:
                k[:, :, : self.length] = self.keys[i][:, :, : self.length]
                v[:, :, : self.length] = self.values[i][:, :, : self.length]
            keys.append(k)
            values.append(v)
        self.keys, self.values = keys, values
        positions = torch.arange(capacity).unsqueeze(0)
        cos, sin = self.rotary(torch.empty(0, dtype=dtype), positions)
        half = self.head_dim // 2
        # rotate_half(x) * sin == cat(-x2, x1) * sin: fold the sign into the table.
        self.cos = cos[0]
        self.sin = torch.cat([-sin[0, :, :half], sin[0, :, half:]], dim=-1)
        self.capacity = capacity

    def forward(self, ids: list[int]) -> torch.Tensor:
        start, n = self.length, len(ids)
        end = start + n
        if end > self.capacity:
            self._grow(end)
        h = self.embed(torch.tensor([ids], dtype=torch.long)).float()  # [1, n, hidden]
        cos = self.cos[start:end]  # [n, D]
        sin = self.sin[start:end]
        mask = None
        if n > 1 and start:
            q_pos = torch.arange(start, end).unsqueeze(1)
            mask = torch.arange(end).unsqueeze(0) <= q_pos  # [n, end]
        causal = n > 1 and not start
        nq, nkv, d = self.n_heads, self.n_kv, self.head_dim
        group = nq // nkv
        half = d // 2
        dtype = self.dtype
        for i, (norm1, qkv, o_proj, scale, norm2, gate_up, down, act) in enumerate(self.layers):
            proj = qkv(norm1(h[0]).to(dtype)).float().view(n, nq + 2 * nkv, d)
            qk = proj[:, : nq + nkv]
            # RoPE on q and k at once: x * cos + rotate_half(x) * sin (sign folded in sin).
            qk = (
                qk * cos[:, None]
                + torch.cat([qk[..., half:], qk[..., :half]], dim=-1) * sin[:, None]
            )
            k_cache, v_cache = self.keys[i], self.values[i]
            k_cache[0, :, start:end] = qk[:, nq:].transpose(0, 1)
            v_cache[0, :, start:end] = proj[:, nq + nkv :].transpose(0, 1)
            if n == 1:
                # One query: two small matmuls beat the general attention kernel's set-up.
                q = qk[0, :nq].view(nkv, group, d)
                scores = torch.bmm(q, k_cache[0, :, :end].transpose(1, 2)).mul_(scale)
                attn = torch.bmm(torch.softmax(scores, dim=-1), v_cache[0, :, :end])
                attn = attn.view(1, nq * d)
            else:
                q = qk[:, :nq].transpose(0, 1).unsqueeze(0)  # [1, H, n, D]
                attn = torch.nn.functional.scaled_dot_product_attention(
                    q,
                    k_cache[:, :, :end],
                    v_cache[:, :, :end],
                    attn_mask=mask,
                    is_causal=causal,
                    scale=scale,
                    enable_gqa=nq != nkv,
                )
                attn = attn[0].transpose(0, 1).reshape(n, nq * d)
            h = h + o_proj(attn.to(dtype))
            g, u = gate_up(norm2(h[0]).to(dtype)).chunk(2, dim=-1)
            h = h + down(act(g) * u)
        self.length = end
        return self.head(self.final_norm(h[:, -1:]))[0, -1].float()


def _norm(module: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """An RMSNorm as one fused call (`F.rms_norm`) when it is the plain kind."""
    weight = getattr(module, "weight", None)
    eps = getattr(module, "variance_epsilon", getattr(module, "eps", None))
    if type(module).__name__ in ("LlamaRMSNorm", "Qwen2RMSNorm") and weight is not None and eps:
        shape = (weight.shape[0],)
        return lambda x: torch.nn.functional.rms_norm(x, shape, weight, eps)
    return module


class Decoder:
    def __init__(
        self, model: Any, tokenizer: Any, *, reuse_prefix: bool = True, lean: bool | None = None
    ) -> None:
        """`lean`: use the lean Llama forward (default: when the model is Llama-shaped)."""
        self.model = model
        self.tokenizer = tokenizer
        self.reuse_prefix = reuse_prefix
        self.eos_ids = self._eos_ids(model, tokenizer)
        self.lean = lean
        self.runner = self._make_runner()
        self._cached_ids: list[int] = []
        self.reused_tokens = 0
        self.generated_tokens = 0  # of the reply being decoded, live
        self._upgrade: threading.Thread | None = None
        self._plan: Any = None
        self.upgrade_error: BaseException | None = None

    def _make_runner(self) -> _HFRunner | _LlamaRunner:
        lean = _LlamaRunner.supports(self.model) if self.lean is None else self.lean
        return _LlamaRunner(self.model) if lean else _HFRunner(self.model)

    @property
    def weights(self) -> str:
        """The weight format in use now ("fp32" until a background upgrade is applied)."""
        return getattr(self.model, "chatapp_weights", "fp32")

    def upgrade_in_background(self, fmt: str) -> threading.Thread:
        """Quantise the weights to `fmt` on a thread; the next reply after it is done
        uses them. Replies meanwhile use the weights as loaded, so a model answers as
        soon as it is loaded and quantising never blocks a reply."""
        from chatapp.engine.quant import prepare_quantized

        def work() -> None:
            try:
                self._plan = prepare_quantized(self.model, fmt)
            except Exception as exc:  # keep the loaded weights; say why
                self.upgrade_error = exc

        self._upgrade = threading.Thread(target=work, name=f"quantise-{fmt}", daemon=True)
        self._upgrade.start()
        return self._upgrade

    def wait_for_upgrade(self, timeout: float | None = None) -> str:
        """Block until a background upgrade is done and applied; return the format."""
        if self._upgrade is not None:
            self._upgrade.join(timeout)
        self._apply_upgrade()
        return self.weights

    def _apply_upgrade(self) -> None:
        if self._upgrade is None or self._upgrade.is_alive():
            return
        self._upgrade = None
        plan, self._plan = self._plan, None
        if plan is None:
            return
        plan.apply(self.model)
        self.runner = self._make_runner()
        self._cached_ids = []  # the cache was computed with the old weights

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
        self.runner.reset()
        self._cached_ids = []

    def _prefill(self, prompt_ids: list[int]) -> torch.Tensor:
        """Run the prompt through the model, reusing the cached prefix; return last logits."""
        reuse = common_prefix_length(self._cached_ids, prompt_ids) if self.reuse_prefix else 0
        reuse = min(reuse, len(prompt_ids) - 1, self.runner.seq_length())  # feed >= 1 token
        reuse = self.runner.keep(reuse)
        self.reused_tokens = reuse
        self._cached_ids = list(prompt_ids)
        return self.runner.forward(prompt_ids[reuse:])

    def _step(self, token_id: int) -> torch.Tensor:
        logits = self.runner.forward([token_id])
        self._cached_ids.append(token_id)
        return logits

    def generate(
        self,
        prompt_ids: list[int],
        settings: GenerationSettings,
        *,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> Iterator[str]:
        """Yield text deltas; the generator's return value is the `Completion`."""
        started = time.perf_counter()
        self._apply_upgrade()
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
