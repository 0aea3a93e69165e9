"""Switching models mid-conversation through the real worker process."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatapp.engine.client import EngineClient
from chatapp.engine.memory import release_memory, rss_bytes
from chatapp.engine.protocol import (
    ChatMessage,
    Done,
    Failed,
    Generate,
    GenerationSettings,
    LoadModel,
    ModelReady,
    ModelSpec,
    Started,
    Token,
)
from tests.conftest import collect
from tests.tiny import build_tiny_model

SHORT = GenerationSettings(max_new_tokens=12, seed=0)


def spec(name: str, path: Path, window: int) -> ModelSpec:
    return ModelSpec(name=name, path=str(path), context_window=window)


async def reply(client: EngineClient, history: list[ChatMessage], model: str) -> list:
    events = await collect(client, Generate(tuple(history), SHORT))
    done = events[-1]
    assert isinstance(done, Done), done
    history.append(ChatMessage("assistant", done.text, model=model))
    return events


async def test_switch_mid_conversation_keeps_history_and_refits_the_context(
    client, tiny_model, tiny_model_b
):
    a, b = spec("a", tiny_model, 256), spec("b", tiny_model_b, 128)
    assert isinstance((await collect(client, LoadModel(a)))[-1], ModelReady)
    history: list[ChatMessage] = []
    for i in range(12):  # a conversation longer than b's window
        history.append(ChatMessage("user", f"Hello, how are you today? question {i}"))
        await reply(client, history, "a")
    on_a = next(e for e in await reply(client, [*history], "a") if isinstance(e, Started))
    assert on_a.context_window == 256

    ready = (await collect(client, LoadModel(b)))[-1]
    assert isinstance(ready, ModelReady) and ready.name == "b" and ready.context_window == 128
    history.append(ChatMessage("user", "And now the capital of France?"))
    events = await reply(client, history, "b")
    started = next(e for e in events if isinstance(e, Started))
    done = events[-1]
    # Rebuilt for b: b's window, b's tokenizer (a different vocabulary), older turns dropped.
    assert started.context_window == 128
    assert started.prompt_tokens + done.stats.new_tokens <= 128
    assert started.prompt_tokens + min(SHORT.max_new_tokens, 64) <= 128
    assert started.dropped_messages > 0
    assert "".join(e.text for e in events if isinstance(e, Token)) == done.text

    # And back to a, which sees the whole history again (its window is larger).
    assert isinstance((await collect(client, LoadModel(a)))[-1], ModelReady)
    history.append(ChatMessage("user", "Thanks!"))
    back = next(e for e in await reply(client, history, "a") if isinstance(e, Started))
    assert back.context_window == 256
    assert back.dropped_messages < started.dropped_messages + 2


async def test_the_two_models_really_tokenize_differently(client, tiny_model, tiny_model_b):
    """The same messages give different prompt lengths: each reply used its own tokenizer."""
    messages = (ChatMessage("user", "Café, naïve, façade, jalapeño — and 日本語 🙂"),)
    counts = []
    for model in (spec("a", tiny_model, 256), spec("b", tiny_model_b, 128)):
        await collect(client, LoadModel(model))
        events = await collect(client, Generate(messages, SHORT))
        counts.append(next(e for e in events if isinstance(e, Started)).prompt_tokens)
    assert counts[0] != counts[1]


async def test_a_model_that_fails_to_load_leaves_the_first_active(client, tiny_model, tmp_path):
    await collect(client, LoadModel(spec("first", tiny_model, 256)))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "llama"}')  # no weights, no tokenizer
    failed = (await collect(client, LoadModel(spec("broken", broken, 256))))[-1]
    assert isinstance(failed, Failed)
    assert "broken" in failed.reason and "still using first" in failed.reason
    events = await collect(client, Generate((ChatMessage("user", "Hi"),), SHORT))
    assert isinstance(events[-1], Done)
    started = next(e for e in events if isinstance(e, Started))
    assert started.context_window == 256  # still the first model


async def test_loading_the_active_model_again_is_immediate(client, tiny_model):
    first = (await collect(client, LoadModel(spec("a", tiny_model, 256))))[-1]
    again = (await collect(client, LoadModel(spec("a", tiny_model, 256))))[-1]
    assert isinstance(again, ModelReady) and again.load_seconds == 0.0
    assert first.load_seconds > 0


@pytest.fixture(scope="module")
def heavier_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two ~10 MB models: a leak of one per switch would stand out of the RSS noise."""
    root = tmp_path_factory.mktemp("heavier")
    a = build_tiny_model(root / "a", hidden_size=256, layers=4)
    b = build_tiny_model(
        root / "b", hidden_size=256, layers=4, vocab_size=330, context_window=128, seed=1
    )
    return a, b


async def test_worker_memory_does_not_grow_switching_back_and_forth(client, heavier_models):
    a, b = (spec("a", heavier_models[0], 256), spec("b", heavier_models[1], 128))
    weights = (heavier_models[0] / "model.safetensors").stat().st_size
    history = (ChatMessage("user", "Hello, how are you today? " * 4),)

    async def switch_to(model: ModelSpec) -> None:
        assert isinstance((await collect(client, LoadModel(model)))[-1], ModelReady)
        assert isinstance((await collect(client, Generate(history, SHORT)))[-1], Done)

    for model in (a, b, a):  # warm up: imports, allocator arenas, first KV caches
        await switch_to(model)
    samples = []
    for _ in range(5):
        for model in (b, a):
            await switch_to(model)
        samples.append(rss_bytes(client.pid))
    # Measured from the first round back and forth, not from the warm-up: the heap can
    # settle one step higher once (seen: +12 MB, then flat), which is not a leak.
    growth = samples[-1] - samples[0]
    # One leaked model per switch would be 8 x `weights`; allow noise under one model.
    assert growth < weights, (samples, weights)


def test_release_memory_runs_here_too() -> None:
    release_memory()  # glibc: trims; elsewhere a plain collection — never raises
    assert rss_bytes() > 0
