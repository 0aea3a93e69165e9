"""Weight-only quantised layers (chatapp.engine.quant): exactness, layout, the transform."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from chatapp.engine.quant import (
    GroupInt8Embedding,
    Int4Linear,
    Int8Linear,
    RescoredHead,
    SharedOutput,
    pack_int4,
    prepare_quantized,
    quantize_int4_groups,
    quantize_model,
)

pytestmark = pytest.mark.skipif(
    not hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu"), reason="no CPU int4 kernels"
)


def q4_1_weight(n: int, k: int, seed: int = 0) -> torch.Tensor:
    """Weights as a Q4_1 GGUF tensor dequantises to: fp16 d and m per 32, codes 0..15
    with 0 and 15 used in every group (llama.cpp's quantiser maps min and max there)."""
    gen = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 16, (n, k // 32, 32), generator=gen)
    codes[..., 0], codes[..., 1] = 0, 15
    d = (torch.rand(n, k // 32, 1, generator=gen) * 0.02 + 0.001).half().float()
    m = (-torch.rand(n, k // 32, 1, generator=gen) * 0.1).half().float()
    return (codes * d + m).reshape(n, k)


def linear_with(weight: torch.Tensor, bias: bool = False) -> nn.Linear:
    lin = nn.Linear(weight.shape[1], weight.shape[0], bias=bias)
    with torch.no_grad():
        lin.weight.copy_(weight)
    return lin


@pytest.mark.parametrize(("n", "k"), [(64, 32), (192, 576), (960, 576), (48, 64)])
def test_pack_int4_is_the_cpu_kernels_layout(n, k):
    codes = torch.randint(0, 16, (n, k), dtype=torch.int32)
    expected = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes, 1)
    assert torch.equal(pack_int4(codes.to(torch.uint8)), expected)


def test_a_q4_1_grid_is_recovered_exactly():
    w = q4_1_weight(96, 128)
    codes, scale, lo = quantize_int4_groups(w)
    back = (codes.float().view(96, 4, 32) * scale[..., None] + lo[..., None]).view_as(w)
    assert torch.equal(back, w)


def test_int4_linear_matches_its_weights():
    w = q4_1_weight(128, 256)
    lin = linear_with(w, bias=True)
    q = Int4Linear(lin)
    # Only the scales' bf16 rounding separates the stored weights from the grid.
    assert (q.dequantize() - w).abs().max() < 2e-3
    x = torch.randn(3, 5, 256)
    ref = torch.nn.functional.linear(x, q.dequantize(), lin.bias)
    out = q(x)
    assert out.shape == (3, 5, 128) and out.dtype == torch.float32
    assert torch.allclose(out, ref, rtol=0.02, atol=0.02 * ref.abs().max().item())
    # A long prompt takes the unpack-to-bf16 path: the same result.
    rows = torch.randn(100, 256)
    assert torch.allclose(
        q(rows), torch.nn.functional.linear(rows, q.dequantize(), lin.bias), atol=0.05
    )


def test_int8_linear_and_group_embedding():
    w = torch.randn(64, 96)
    lin = linear_with(w)
    x = torch.randn(4, 96)
    ref = lin(x)
    assert torch.allclose(Int8Linear(lin)(x), ref, atol=0.02 * ref.abs().max().item())
    # A Q8_0 table (int8 codes, one fp16 scale per 32) comes back exactly.
    codes = torch.randint(-127, 128, (50, 3, 32)).float()
    codes[..., 0] = -127  # llama.cpp's d = amax / 127: the largest maps to +-127
    scale = (torch.rand(50, 3, 1) * 0.01).half().float()
    table = (codes * scale).view(50, 96)
    emb = GroupInt8Embedding(table)
    ids = torch.tensor([[3, 0, 49]])
    assert torch.equal(emb(ids), table[ids])


def test_rescored_head_scores_its_top_tokens_exactly():
    table = torch.randn(256, 64)
    lin = linear_with(table)
    rows = GroupInt8Embedding(table)
    head = RescoredHead(lin, rows, rescore=32)
    x = torch.randn(2, 64)
    logits = head(x)
    exact = x @ rows.dequantize_rows(torch.arange(256)).T
    rescored = head.approx(x).topk(32, dim=-1).indices
    assert torch.allclose(logits.gather(-1, rescored), exact.gather(-1, rescored), atol=1e-4)
    assert torch.equal(logits.argmax(-1), exact.argmax(-1))


def test_shared_output_runs_the_fused_matmul_once():
    calls = []

    class Fused(nn.Linear):
        def forward(self, x):
            calls.append(1)
            return super().forward(x)

    fused = Fused(8, 12)
    q, k = SharedOutput(fused, 0, 4), SharedOutput(fused, 4, 12)
    x = torch.randn(2, 8)
    full = fused(x)
    calls.clear()
    assert torch.equal(q(x), full[:, :4]) and torch.equal(k(x), full[:, 4:])
    assert len(calls) == 1
    y = torch.randn(2, 8)
    assert torch.allclose(k(y), fused(y)[:, 4:])  # a different input is never mixed up


@pytest.fixture(scope="module")
def tiny(tiny_model: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model).eval()


def test_prepare_leaves_the_model_alone_until_applied(tiny):
    model = copy.deepcopy(tiny)
    before = [type(m) for m in model.modules()]
    plan = prepare_quantized(model, "int4")
    assert [type(m) for m in model.modules()] == before
    counts = plan.apply(model)
    assert counts["int4"] == 2 * len(model.model.layers) + 2 * len(model.model.layers)
    attn = model.model.layers[0].self_attn
    assert isinstance(attn.q_proj, SharedOutput) and attn.q_proj.fused is attn.v_proj.fused
    assert model.chatapp_weights == "int4"


@pytest.mark.parametrize("fmt", ["int4", "int8"])
def test_quantised_tiny_model_stays_close_to_fp32(tiny, fmt):
    model = copy.deepcopy(tiny)
    quantize_model(model, fmt)
    ids = torch.randint(0, tiny.config.vocab_size, (1, 20))
    with torch.inference_mode():
        ref = tiny(input_ids=ids).logits
        out = model(input_ids=ids).logits
    assert out.shape == ref.shape
    cos = torch.nn.functional.cosine_similarity(out.flatten(), ref.flatten(), dim=0)
    assert cos > 0.98


def test_unknown_format_is_refused(tiny):
    with pytest.raises(ValueError, match="weight format"):
        prepare_quantized(tiny, "int3")
