"""The decode loop, detokenizer, stop strings and context builder on a tiny real model."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatapp.engine.context import PromptTooLong, build_prompt
from chatapp.engine.decode import Decoder, common_prefix_length
from chatapp.engine.detokenize import IncrementalDetokenizer
from chatapp.engine.prompt import render_ids
from chatapp.engine.protocol import ChatMessage, GenerationSettings
from chatapp.engine.stops import StopMatcher

GREEDY = GenerationSettings(temperature=0.0, repetition_penalty=1.0, max_new_tokens=24)


@pytest.fixture(scope="module")
def loaded(tiny_model: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    return model, tokenizer


def run(decoder: Decoder, prompt_ids, settings, **kw):
    stream = decoder.generate(prompt_ids, settings, **kw)
    deltas = []
    while True:
        try:
            deltas.append(next(stream))
        except StopIteration as done:
            return deltas, done.value


def prompt_for(tokenizer, text: str) -> list[int]:
    return render_ids(tokenizer, [ChatMessage("user", text)])


def test_greedy_matches_transformers_generate(loaded):
    import torch

    model, tokenizer = loaded
    ids = prompt_for(tokenizer, "The capital of France is")
    _, completion = run(Decoder(model, tokenizer), ids, GREEDY)
    reference = model.generate(
        torch.tensor([ids]),
        max_new_tokens=GREEDY.max_new_tokens,
        do_sample=False,
        eos_token_id=sorted(Decoder(model, tokenizer).eos_ids),
        pad_token_id=tokenizer.pad_token_id,
    )[0, len(ids) :].tolist()
    eos = Decoder(model, tokenizer).eos_ids
    reference = [t for t in reference if t not in eos]
    assert completion.token_ids == reference
    assert completion.stats.new_tokens == len(reference)
    assert completion.stats.prompt_tokens == len(ids)


def test_deltas_join_to_the_decoded_reply(loaded):
    model, tokenizer = loaded
    ids = prompt_for(tokenizer, "日本語 🙂 café")
    deltas, completion = run(Decoder(model, tokenizer), ids, GREEDY)
    assert "".join(deltas) == completion.text
    assert completion.text == tokenizer.decode(completion.token_ids, skip_special_tokens=True)


def test_sampling_is_reproducible_with_a_seed_and_varies_without(loaded):
    model, tokenizer = loaded
    ids = prompt_for(tokenizer, "Hello")
    sampled = GenerationSettings(temperature=1.5, top_p=0.95, top_k=0, max_new_tokens=20, seed=7)
    decoder = Decoder(model, tokenizer)
    first = run(decoder, ids, sampled)[1].token_ids
    again = run(decoder, ids, sampled)[1].token_ids
    other = run(decoder, ids, GenerationSettings(**{**sampled.__dict__, "seed": 8}))[1].token_ids
    assert first == again
    assert first != other


def test_top_k_one_is_greedy(loaded):
    model, tokenizer = loaded
    ids = prompt_for(tokenizer, "Hello")
    decoder = Decoder(model, tokenizer)
    greedy = run(decoder, ids, GREEDY)[1].token_ids
    top1 = GenerationSettings(temperature=1.0, top_k=1, repetition_penalty=1.0, max_new_tokens=24)
    assert run(decoder, ids, top1)[1].token_ids == greedy


def test_repetition_penalty_changes_greedy_output(loaded):
    model, tokenizer = loaded
    ids = prompt_for(tokenizer, "Hello")
    decoder = Decoder(model, tokenizer)
    plain = run(decoder, ids, GREEDY)[1].token_ids
    penalised = GenerationSettings(**{**GREEDY.__dict__, "repetition_penalty": 5.0})
    out = run(decoder, ids, penalised)[1].token_ids
    assert out != plain
    assert len(set(out)) >= len(set(plain))


def test_stop_string_cuts_the_reply_and_never_shows(loaded):
    model, tokenizer = loaded
    ids = prompt_for(tokenizer, "Streaming tokens")
    decoder = Decoder(model, tokenizer)
    full = run(decoder, ids, GREEDY)[1].text
    assert len(full) > 8, full
    stop = full[5:8]
    cut = full.find(stop)
    deltas, completion = run(
        decoder, ids, GenerationSettings(**{**GREEDY.__dict__, "stop": (stop,)})
    )
    assert completion.text == full[:cut]
    assert "".join(deltas) == full[:cut]
    assert completion.finish_reason == "stop"


def test_cancel_stops_within_one_token(loaded):
    model, tokenizer = loaded
    ids = prompt_for(tokenizer, "Hello")
    checks = iter(range(1000))
    settings = GenerationSettings(**{**GREEDY.__dict__, "max_new_tokens": 200})
    _, completion = run(
        Decoder(model, tokenizer), ids, settings, should_stop=lambda: next(checks) >= 5
    )
    assert completion.finish_reason == "cancelled"
    assert completion.stats.new_tokens == 5


def test_max_new_tokens_is_a_hard_limit(loaded):
    model, tokenizer = loaded
    ids = prompt_for(tokenizer, "Hello")
    settings = GenerationSettings(**{**GREEDY.__dict__, "max_new_tokens": 3})
    _, completion = run(Decoder(model, tokenizer), ids, settings)
    assert completion.stats.new_tokens <= 3


def test_prefix_reuse_gives_the_same_tokens_as_a_full_prefill(loaded):
    model, tokenizer = loaded
    history = [ChatMessage("user", "Hello, how are you today?")]
    reuse, fresh = Decoder(model, tokenizer), Decoder(model, tokenizer, reuse_prefix=False)
    for turn in range(4):
        ids = render_ids(tokenizer, history)
        a = run(reuse, ids, GREEDY)[1]
        b = run(fresh, ids, GREEDY)[1]
        assert a.token_ids == b.token_ids
        if turn:
            assert reuse.reused_tokens > 0
        assert fresh.reused_tokens == 0
        history += [ChatMessage("assistant", a.text), ChatMessage("user", f"Turn {turn} café")]


def test_incremental_detokenizer_never_breaks_characters(loaded):
    _, tokenizer = loaded
    text = "Café naïve — 日本語のテキスト 🙂🚀 done"
    ids = tokenizer.encode(text, add_special_tokens=False)
    detok = IncrementalDetokenizer(tokenizer)
    deltas = [detok.add(i) for i in ids]
    deltas.append(detok.flush())
    assert "".join(deltas) == text
    assert not any("\ufffd" in d for d in deltas)
    assert sum(1 for d in deltas if d == "") > 0  # some tokens were partial characters


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40))
def test_incremental_detokenizer_round_trips_any_text(loaded, text):
    _, tokenizer = loaded
    ids = tokenizer.encode(text, add_special_tokens=False)
    detok = IncrementalDetokenizer(tokenizer)
    joined = "".join(detok.add(i) for i in ids) + detok.flush()
    assert joined == tokenizer.decode(ids, skip_special_tokens=True)


@pytest.mark.parametrize(
    ("deltas", "stops", "shown"),
    [
        (["Hello ", "Us", "er: hi"], ("User:",), "Hello "),
        (["a", "b", "c"], ("bd",), "abc"),
        (["no stop here"], (), "no stop here"),
        (["x<|", "im_end|>"], ("<|im_end|>",), "x"),
        (["partial <|im"], ("<|im_end|>",), "partial <|im"),
    ],
)
def test_stop_matcher(deltas, stops, shown):
    matcher = StopMatcher(stops)
    out = "".join(matcher.feed(d) for d in deltas)
    out += matcher.flush()
    assert out == shown


def test_common_prefix_length():
    assert common_prefix_length([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix_length([], [1]) == 0
    assert common_prefix_length([1, 2], [1, 2, 3]) == 2


# --- the context builder -------------------------------------------------------------


def conversation(turns: int) -> list[ChatMessage]:
    messages = [ChatMessage("system", "You are terse.")]
    for i in range(turns):
        messages += [
            ChatMessage("user", f"question {i} " * 5),
            ChatMessage("assistant", f"answer {i} " * 5),
        ]
    return [*messages, ChatMessage("user", "the new question")]


def test_builder_keeps_system_and_new_message_and_fits_the_budget(loaded):
    _, tokenizer = loaded
    messages = conversation(30)
    render = lambda msgs: render_ids(tokenizer, msgs)  # noqa: E731
    for budget in (60, 120, 400, 100_000):
        built = build_prompt(messages, render, budget)
        assert len(built.token_ids) <= budget
        assert built.token_ids == render(built.messages)
        assert built.messages[0] == messages[0]
        assert built.messages[-1] == messages[-1]
        kept = built.messages[1:-1]
        assert list(kept) == messages[len(messages) - 1 - len(kept) : -1]  # newest, in order
        assert not kept or kept[0].role == "user"  # no reply without its question
        assert built.dropped == len(messages) - 2 - len(kept)
    assert build_prompt(messages, render, 100_000).dropped == 0


def test_builder_refuses_a_message_over_the_budget(loaded):
    _, tokenizer = loaded
    with pytest.raises(PromptTooLong, match="tokens"):
        build_prompt([ChatMessage("user", "word " * 500)], lambda m: render_ids(tokenizer, m), 50)


# --- the optimised decode path: lean forward, quantised weights -----------------------


def teacher_forced_agreement(model, reference_model, ids, reply) -> float:
    """Share of the reply's positions where both models' top token is the same."""
    import torch

    seq = torch.tensor([ids + reply])
    with torch.inference_mode():
        a = model(input_ids=seq).logits[0, len(ids) - 1 : -1].argmax(-1)
        b = reference_model(input_ids=seq).logits[0, len(ids) - 1 : -1].argmax(-1)
    return float((a == b).float().mean())


def test_lean_path_matches_the_plain_forward(loaded):
    model, tokenizer = loaded
    from chatapp.engine.decode import _LlamaRunner

    lean = Decoder(model, tokenizer)
    assert isinstance(lean.runner, _LlamaRunner)  # the tiny model is a Llama
    plain = Decoder(model, tokenizer, lean=False)
    for text in ("The capital of France is", "日本語 🙂 café", "def add(a, b):"):
        ids = prompt_for(tokenizer, text)
        assert run(lean, ids, GREEDY)[1].token_ids == run(plain, ids, GREEDY)[1].token_ids


@pytest.mark.parametrize("fmt", ["int4", "int8"])
def test_quantised_decode_agrees_with_the_plain_one_on_the_tiny_model(loaded, fmt):
    import copy

    from chatapp.engine.quant import quantize_model

    model, tokenizer = loaded
    quantised = copy.deepcopy(model)
    quantize_model(quantised, fmt)
    total = 0.0
    prompts = ("The capital of France is", "Hello, how are you today?", "Streaming tokens")
    for text in prompts:
        ids = prompt_for(tokenizer, text)
        reply = run(Decoder(model, tokenizer, lean=False), ids, GREEDY)[1].token_ids
        fast = run(Decoder(quantised, tokenizer), ids, GREEDY)[1].token_ids
        assert fast[:2] == reply[:2]  # a random tiny model has many near-ties after that
        total += teacher_forced_agreement(quantised, model, ids, reply)
    assert total / len(prompts) >= 0.8


def test_prefix_reuse_with_quantised_weights_gives_the_same_tokens(loaded):
    import copy

    from chatapp.engine.quant import quantize_model

    model, tokenizer = loaded
    quantised = copy.deepcopy(model)
    quantize_model(quantised, "int4")
    history = [ChatMessage("user", "Hello, how are you today?")]
    reuse, fresh = Decoder(quantised, tokenizer), Decoder(quantised, tokenizer, reuse_prefix=False)
    for turn in range(4):
        ids = render_ids(tokenizer, history)
        a = run(reuse, ids, GREEDY)[1]
        b = run(fresh, ids, GREEDY)[1]
        assert a.token_ids == b.token_ids
        assert turn == 0 or reuse.reused_tokens > 0
        history += [ChatMessage("assistant", a.text), ChatMessage("user", f"Turn {turn}")]


def test_background_upgrade_swaps_the_weights_between_replies(loaded):
    import copy

    model, tokenizer = loaded
    decoder = Decoder(copy.deepcopy(model), tokenizer)
    ids = prompt_for(tokenizer, "Hello")
    run(decoder, ids, GREEDY)  # the fp32 cache ...
    decoder.upgrade_in_background("int4")
    assert decoder.wait_for_upgrade(timeout=60) == "int4"
    assert decoder.upgrade_error is None
    _, completion = run(decoder, ids, GREEDY)
    assert decoder.reused_tokens == 0  # ... is not reused with other weights
    assert completion.stats.new_tokens > 0


def test_a_bad_weight_format_keeps_the_loaded_weights(loaded):
    import copy

    model, tokenizer = loaded
    decoder = Decoder(copy.deepcopy(model), tokenizer)
    decoder.upgrade_in_background("int3")
    assert decoder.wait_for_upgrade(timeout=60) == "fp32"
    assert isinstance(decoder.upgrade_error, ValueError)


@pytest.fixture(scope="module")
def smollm2():
    from tests.conftest import real_model_dir

    path = real_model_dir("smollm2-135m-instruct")
    if path is None:
        pytest.skip("SmolLM2 is not pulled: run `make models`")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


@pytest.mark.real_model
def test_optimised_decode_agrees_with_the_plain_one_on_smollm2(smollm2):
    """fp32 lean path: the same tokens. int4 (the GGUF's own Q4_1 weights, bf16
    activations): the top token agrees at >= 95% of a plain reply's positions (measured:
    ~99%; bench/decode.py --agreement)."""
    import copy

    from chatapp.engine.quant import quantize_model

    model, tokenizer = smollm2
    quantised = copy.deepcopy(model)
    quantize_model(quantised, "int4")
    settings = GenerationSettings(temperature=0.0, repetition_penalty=1.0, max_new_tokens=32)
    agreement = []
    for text in ("What is the capital of France?", "Write a haiku about the sea."):
        ids = prompt_for(tokenizer, text)
        plain = run(Decoder(model, tokenizer, lean=False), ids, settings)[1].token_ids
        assert run(Decoder(model, tokenizer), ids, settings)[1].token_ids == plain
        fast = run(Decoder(quantised, tokenizer), ids, settings)[1].token_ids
        assert fast[:4] == plain[:4]
        agreement.append(teacher_forced_agreement(quantised, model, ids, plain))
    assert sum(agreement) / len(agreement) >= 0.95


def test_lean_path_runs_qwen2_with_its_biases():
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from chatapp.engine.decode import _LlamaRunner
    from chatapp.engine.quant import quantize_model

    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    model = Qwen2ForCausalLM(config).eval()
    with torch.no_grad():  # random biases, so that dropping them would show
        for layer in model.model.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                proj.bias.normal_()
    assert _LlamaRunner.supports(model)
    ids = [3, 17, 42, 99, 5, 8]
    with torch.inference_mode():
        ref = model(input_ids=torch.tensor([ids])).logits[0]
        runner = _LlamaRunner(model)
        assert torch.allclose(runner.forward(ids[:4]), ref[3], atol=1e-4)
        for i in (4, 5):  # one token at a time on the cache
            assert torch.allclose(runner.forward([ids[i]]), ref[i], atol=1e-4)
        quantize_model(model, "int4")
        runner = _LlamaRunner(model)
        assert torch.nn.functional.cosine_similarity(runner.forward(ids), ref[-1], dim=0) > 0.98
