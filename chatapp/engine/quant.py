"""Weight-only quantised Linear layers for decoding on the CPU, and the model transform.

Decoding one token reads every weight once, so its speed is bound by how many bytes the
weights take. Our pulled models are GGUF files converted to fp32: a Q4_1 tensor becomes
fp32 values that still lie exactly on its 4-bit grid (32 weights share a scale `d` and
a minimum `m`: w = d*q + m, q in 0..15). `Int4Linear` finds that grid again (min/max of
each group of 32 recovers `m` and `d` exactly) and keeps the weights as 4-bit codes, so
the model reads 8x fewer bytes than fp32 and the weights are the GGUF's own, not a
second rounding. torch's CPU kernel for this layout (`_weight_int4pack_mm_for_cpu`,
the tinygemm format: w = (q - 8) * scale + zero per group) is vectorised only for
bfloat16 activations, so a layer rounds its input to bf16 (llama.cpp rounds it to 8
bits for the same kernels) and the scales are kept in bf16; the residual stream, norms,
attention and softmax stay fp32.

`Int8Linear` is per-output-channel int8 (`_weight_int8pack_mm`, also fast only with bf16
activations): the `int8` format. `GroupInt8Embedding` keeps the input embedding as int8
codes with one scale per 32 values, the GGUF's Q8_0 layout (exact for SmolLM2's Q8_0
token embedding). `RescoredHead` is the lm_head: a fast int4 pass over the vocabulary,
then the best few tokens scored again exactly from those Q8_0 rows.

Formats, chosen with `quantize_model(model, fmt)`:
- "fp32": unchanged.
- "int8": every Linear (lm_head included) int8 per output channel.
- "int4": decoder-layer Linears int4 (groups of 32), the lm_head int4 + exact rescoring,
  the embedding int8 in groups of 32.

`prepare_quantized` builds the new modules without touching the model (it can run on a
background thread while the fp32 model answers); `Quantized.apply` swaps them in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

FORMATS = ("fp32", "int8", "int4")
GROUP = 32
COMPUTE = torch.bfloat16  # what the fast CPU kernels take as activations
PREFILL_ROWS = 64  # from this many rows on, Int4Linear unpacks to bf16 for a dense matmul
FUSED_GROUPS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


def int4_kernels_available() -> bool:
    return all(
        hasattr(torch.ops.aten, name)
        for name in (
            "_weight_int4pack_mm_for_cpu",
            "_convert_weight_to_int4pack_for_cpu",
            "_weight_int8pack_mm",
        )
    )


CHUNK_ROWS = 4096  # quantise big matrices this many rows at a time: small temporaries


def _by_rows(weight: torch.Tensor, fn: Any) -> list[torch.Tensor]:
    """fn(rows) over chunks of `weight`'s rows, results concatenated per output."""
    outs = [fn(weight[i : i + CHUNK_ROWS].float()) for i in range(0, weight.shape[0], CHUNK_ROWS)]
    return [torch.cat(parts) for parts in zip(*outs, strict=True)]


def quantize_int4_groups(weight: torch.Tensor, group: int = GROUP):
    """Asymmetric 4-bit codes per group of `group` input features (the Q4_1 quantiser).

    Returns (codes uint8 [N, K] in 0..15, scale [N, K/group], minimum [N, K/group]);
    w ~= scale * code + minimum. Weights already on such a grid come back exactly.
    """

    def rows(w: torch.Tensor):
        n, k = w.shape
        w = w.reshape(n, k // group, group)
        lo, hi = torch.aminmax(w, dim=-1)
        scale = (hi - lo) / 15
        inv = torch.where(scale > 0, 1 / scale, torch.zeros_like(scale))
        codes = (w - lo[..., None]).mul_(inv[..., None]).round_().clamp_(0, 15)
        return codes.to(torch.uint8).reshape(n, k), scale, lo

    codes, scale, lo = _by_rows(weight.detach(), rows)
    return codes, scale, lo


def pack_int4(codes: torch.Tensor) -> torch.Tensor:
    """uint8 codes [N, K] -> the CPU int4 kernel's packed [N, K/2] uint8.

    The layout (that of `_convert_weight_to_int4pack_for_cpu`, checked by a test): blocks
    of 64 output rows, each stored as [K, 32] bytes, byte j holding row j in its low
    nibble and row j + 32 in its high one. Packing from uint8 here saves an int32 copy
    of every weight at load time.
    """
    n, k = codes.shape
    if n % 64:
        return torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes.to(torch.int32), 1)
    blocks = codes.view(n // 64, 64, k).transpose(1, 2)  # [N/64, K, 64]
    return (blocks[..., :32] | (blocks[..., 32:] << 4)).contiguous().view(n, k // 2)


def quantize_int8_channels(weight: torch.Tensor):
    """Symmetric int8 per output row: (codes int8 [N, K], scale [N]); w ~= scale * code."""

    def rows(w: torch.Tensor):
        scale = w.abs().amax(dim=1) / 127
        inv = torch.where(scale > 0, 1 / scale, torch.zeros_like(scale))
        return (w * inv[:, None]).round_().clamp_(-127, 127).to(torch.int8), scale

    codes, scale = _by_rows(weight.detach(), rows)
    return codes, scale


def quantize_int8_groups(weight: torch.Tensor, group: int = GROUP):
    """Symmetric int8 per group of `group` (Q8_0): (codes int8 [N, K/g, g], scale [N, K/g])."""

    def rows(w: torch.Tensor):
        g = w.reshape(w.shape[0], -1, group)
        scale = g.abs().amax(dim=-1) / 127
        inv = torch.where(scale > 0, 1 / scale, torch.zeros_like(scale))
        return (g * inv[..., None]).round_().clamp_(-127, 127).to(torch.int8), scale

    codes, scale = _by_rows(weight.detach(), rows)
    return codes, scale


def _bias(parts: list[nn.Linear]) -> nn.Parameter | None:
    if all(p.bias is None for p in parts):
        return None
    biases = [p.bias.detach() if p.bias is not None else torch.zeros(p.out_features) for p in parts]
    return nn.Parameter(torch.cat(biases).float(), requires_grad=False)


class Int4Linear(nn.Module):
    """y = x W^T (+ b) with W stored as 4-bit codes, a scale and a zero per 32 inputs."""

    def __init__(self, linear: nn.Linear | list[nn.Linear], group: int = GROUP) -> None:
        """One Linear, or several taking the same input, run as one (q|k|v)."""
        super().__init__()
        parts = linear if isinstance(linear, list) else [linear]
        self.in_features = parts[0].in_features
        self.out_features = sum(p.out_features for p in parts)
        self.group = group
        quantised = [quantize_int4_groups(p.weight, group) for p in parts]
        codes = torch.cat([q[0] for q in quantised])
        scale = torch.cat([q[1] for q in quantised])
        lo = torch.cat([q[2] for q in quantised])
        # tinygemm's layout: w = (q - 8) * scale + zero, scales_and_zeros [K/group, N, 2].
        zero = lo + 8 * scale
        self.register_buffer("packed", pack_int4(codes), persistent=False)
        self.register_buffer(
            "scales_and_zeros",
            torch.stack([scale.t(), zero.t()], dim=-1).contiguous().to(COMPUTE),
            persistent=False,
        )
        self.bias = _bias(parts)

    def kernel(self, x: torch.Tensor) -> torch.Tensor:
        """[M, K] bfloat16 in, [M, N] bfloat16 out (+ bias).

        The int4 kernel is made for a few rows (decoding); a long prompt's rows go
        faster through a bf16 matmul on weights unpacked for this one call.
        """
        if x.shape[0] >= PREFILL_ROWS and self.out_features % 64 == 0:
            y = torch.nn.functional.linear(x, self.dequantize(COMPUTE))
        else:
            y = torch.ops.aten._weight_int4pack_mm_for_cpu(
                x, self.packed, self.group, self.scales_and_zeros
            )
        return y if self.bias is None else (y.float() + self.bias).to(y.dtype)

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The [N, K] weight (needs N % 64 == 0; see `pack_int4` for the layout)."""
        n, k, g = self.out_features, self.in_features, self.group
        blocks = self.packed.view(n // 64, k, 32)
        codes = torch.cat([blocks & 15, blocks >> 4], dim=-1).transpose(1, 2)
        codes = codes.reshape(n, k // g, g)
        scale, zero = self.scales_and_zeros.float().unbind(-1)  # [K/g, N] each
        w = (codes.float() - 8).mul_(scale.t()[..., None]).add_(zero.t()[..., None])
        return w.reshape(n, k).to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = self.kernel(x.reshape(-1, shape[-1]).to(COMPUTE)).to(x.dtype)
        return y.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, group={self.group}"
        )


class Int8Linear(nn.Module):
    """y = x W^T (+ b) with W stored as int8 codes and one scale per output row."""

    def __init__(self, linear: nn.Linear | list[nn.Linear]) -> None:
        super().__init__()
        parts = linear if isinstance(linear, list) else [linear]
        self.in_features = parts[0].in_features
        self.out_features = sum(p.out_features for p in parts)
        quantised = [quantize_int8_channels(p.weight) for p in parts]
        self.register_buffer("codes", torch.cat([q[0] for q in quantised]), persistent=False)
        self.register_buffer(
            "scales", torch.cat([q[1] for q in quantised]).to(COMPUTE), persistent=False
        )
        self.bias = _bias(parts)

    def kernel(self, x: torch.Tensor) -> torch.Tensor:
        """[M, K] bfloat16 in, [M, N] bfloat16 out (+ bias)."""
        y = torch.ops.aten._weight_int8pack_mm(x, self.codes, self.scales)
        return y if self.bias is None else (y.float() + self.bias).to(y.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = self.kernel(x.reshape(-1, shape[-1]).to(COMPUTE)).to(x.dtype)
        return y.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


class GroupInt8Embedding(nn.Module):
    """An embedding table as int8 codes with one scale per 32 values (the Q8_0 layout)."""

    def __init__(self, weight: torch.Tensor, group: int = GROUP, embed_scale: Any = None) -> None:
        super().__init__()
        v, k = weight.shape
        self.num_embeddings, self.embedding_dim, self.group = v, k, group
        codes, scale = quantize_int8_groups(weight, group)
        self.register_buffer("codes", codes, persistent=False)
        self.register_buffer("scales", scale, persistent=False)
        self.embed_scale = embed_scale  # Gemma multiplies embeddings by sqrt(hidden)

    def dequantize_rows(self, ids: torch.Tensor) -> torch.Tensor:
        flat = ids.reshape(-1)
        rows = self.codes.index_select(0, flat).float()
        rows = rows * self.scales.index_select(0, flat)[..., None]
        return rows.reshape(*ids.shape, self.embedding_dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = self.dequantize_rows(ids)
        if self.embed_scale is not None:
            rows = rows * torch.as_tensor(self.embed_scale, dtype=rows.dtype)
        return rows

    @property
    def weight(self) -> torch.Tensor:  # for code that only asks for the dtype or device
        return self.scales


class SharedOutput(nn.Module):
    """One slice of a fused projection's output (q of q|k|v, gate of gate|up).

    Hugging Face modules call q_proj(x), k_proj(x), v_proj(x) on the same tensor; the
    first call runs the fused matmul once and the others take their slice of its result.
    `fused` is what the lean decode path (chatapp.engine.decode) calls directly.
    """

    def __init__(self, fused: nn.Module, start: int, stop: int) -> None:
        super().__init__()
        self._fused = [fused]  # not a submodule: it would be counted once per slice
        self.start, self.stop = start, stop
        self.in_features = fused.in_features
        self.out_features = stop - start

    @property
    def fused(self) -> nn.Module:
        return self._fused[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fused = self.fused
        memo = fused.__dict__.get("_memo")
        if self.start == 0 or memo is None or memo[0] is not x:
            memo = (x, fused(x))
            fused.__dict__["_memo"] = memo
        out = memo[1][..., self.start : self.stop]
        if self.stop == fused.out_features:  # the last slice: let go of the tensors
            fused.__dict__["_memo"] = None
        return out

    def extra_repr(self) -> str:
        return f"[{self.start}:{self.stop}] of {self.fused!r}"


class RescoredHead(nn.Module):
    """The lm_head as a fast int4 pass over the whole vocabulary, then the best
    `rescore` tokens scored again exactly from the int8 (Q8_0) rows.

    The vocabulary matrix is the largest one in a small model (49152 x 576 in SmolLM2);
    as int4 it reads half the bytes of int8. The tokens that decide greedy decoding, and
    almost all of a sampled token's probability, are the top few, and those get exact
    scores: greedy output is that of the GGUF's own Q8_0 head.
    """

    def __init__(self, linear: nn.Linear, rows: GroupInt8Embedding | None, rescore: int = 32):
        super().__init__()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.approx = Int4Linear(linear)
        self.rows = rows if rows is not None else GroupInt8Embedding(linear.weight)
        self.rescore = min(rescore, linear.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.approx(x)  # bias included
        top = logits.topk(self.rescore, dim=-1).indices  # [..., R]
        rows = self.rows.dequantize_rows(top)  # [..., R, K]
        exact = (rows @ x.float().unsqueeze(-1)).squeeze(-1).to(logits.dtype)
        if self.approx.bias is not None:
            exact = exact + self.approx.bias[top]
        return logits.scatter_(-1, top, exact)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, rescore={self.rescore}"


def _quantizable(module: Any, group: int) -> bool:
    return (
        isinstance(module, nn.Linear)
        and module.weight.dtype == torch.float32
        and module.in_features % group == 0
    )


@dataclass
class Quantized:
    """New modules for a model, built by `prepare_quantized`; `apply` swaps them in."""

    fmt: str
    replacements: list[tuple[nn.Module, str, nn.Module]] = field(default_factory=list)
    embedding: nn.Module | None = None
    counts: dict[str, int] = field(default_factory=lambda: {"int4": 0, "int8": 0, "embedding": 0})

    def apply(self, model: Any) -> dict[str, int]:
        for parent, name, module in self.replacements:
            setattr(parent, name, module)
        if self.embedding is not None:
            model.set_input_embeddings(self.embedding)
        self.replacements = []
        model.chatapp_weights = self.fmt
        release_unused_memory(model)
        return self.counts


def release_unused_memory(model: Any) -> None:
    """Give the replaced fp32 weights' memory back to the system.

    transformers maps the safetensors file and makes the weights views of it: one
    mapping that lives while any weight from the file does, so the few left in fp32
    (norms, biases) would keep all 540 MB of it resident. Copy those out (small, once
    the big matrices are quantised), then ask
    glibc to return the freed heap (the quantiser's temporaries) to the system.
    """
    import gc

    gc.collect()
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            tensor.data = tensor.data.clone()
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def prepare_quantized(model: Any, fmt: str = "int4", *, group: int = GROUP) -> Quantized:
    """Quantised replacements for the model's Linears (and embedding), model untouched.

    q|k|v and gate|up become one matmul each (fewer, larger kernels), the old names
    `SharedOutput` slices of it.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown weight format {fmt!r}; one of {', '.join(FORMATS)}")
    plan = Quantized(fmt)
    if fmt == "fp32":
        return plan
    if not int4_kernels_available():
        raise RuntimeError("this torch has no CPU int4/int8 weight-only kernels")
    counts = plan.counts
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None

    def make(linear: nn.Linear | list[nn.Linear]) -> nn.Module:
        parts = linear if isinstance(linear, list) else [linear]
        if fmt == "int8" or any(p.out_features % 8 for p in parts):
            counts["int8"] += 1
            return Int8Linear(linear)
        counts["int4"] += 1
        return Int4Linear(linear, group)

    with torch.no_grad():
        for parent in list(model.modules()):
            done: set[str] = set()
            for names in FUSED_GROUPS:
                parts = [getattr(parent, n, None) for n in names]
                if all(_quantizable(p, group) for p in parts) and (
                    len({p.in_features for p in parts}) == 1
                ):
                    fused = make(parts)
                    start = 0
                    for name, part in zip(names, parts, strict=True):
                        stop = start + part.out_features
                        plan.replacements.append((parent, name, SharedOutput(fused, start, stop)))
                        start = stop
                    done.update(names)
            for name, child in parent.named_children():
                if name in done or not _quantizable(child, group):
                    continue
                if child is head:
                    continue
                plan.replacements.append((parent, name, make(child)))
        embed = model.get_input_embeddings()
        rows = None
        if (
            fmt == "int4"
            and (type(embed) is nn.Embedding or _is_scaled_embedding(embed))
            and embed.weight.dtype == torch.float32
            and embed.embedding_dim % group == 0
        ):
            rows = GroupInt8Embedding(embed.weight, group, getattr(embed, "embed_scale", None))
            plan.embedding = rows
            counts["embedding"] += 1
        if _quantizable(head, group):
            parent_name = _find_parent(model, head)
            if parent_name is not None:
                parent, name = parent_name
                counts["int8"] += 1
                if fmt == "int4" and head.out_features % 64 == 0:
                    tied = rows is not None and head.weight is embed.weight
                    module: nn.Module = RescoredHead(head, rows if tied else None)
                else:
                    module = Int8Linear(head)
                plan.replacements.append((parent, name, module))
    return plan


def quantize_model(model: Any, fmt: str = "int4", *, group: int = GROUP) -> dict[str, int]:
    """Quantise the model in place; return counts of the modules replaced."""
    return prepare_quantized(model, fmt, group=group).apply(model)


def _is_scaled_embedding(embed: Any) -> bool:
    """Gemma's embedding: nn.Embedding times a constant `embed_scale`."""
    return (
        isinstance(embed, nn.Embedding)
        and type(embed).__name__.endswith("ScaledWordEmbedding")
        and hasattr(embed, "embed_scale")
    )


def _find_parent(model: nn.Module, target: nn.Module) -> tuple[nn.Module, str] | None:
    for parent in model.modules():
        for name, child in parent.named_children():
            if child is target:
                return parent, name
    return None
