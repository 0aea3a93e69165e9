"""The real worker process, spawned and driven through the EngineClient."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from chatapp.engine.protocol import (
    ChatMessage,
    Done,
    Failed,
    Generate,
    GenerationSettings,
    LoadModel,
    ModelReady,
    ModelSpec,
    Progress,
    Started,
    Token,
    WorkerDied,
)
from tests.conftest import collect

LONG = GenerationSettings(temperature=0.0, repetition_penalty=1.0, max_new_tokens=2000)


def spec_for(path: Path, **kw) -> ModelSpec:
    return ModelSpec(
        name="tiny", path=str(path), context_window=kw.pop("context_window", 256), **kw
    )


async def test_load_stream_and_stats(client, tiny_model):
    events = await collect(client, LoadModel(spec_for(tiny_model)))
    assert any(isinstance(e, Progress) for e in events)
    assert isinstance(events[-1], ModelReady)
    assert events[-1].context_window == 256

    request = Generate(
        (ChatMessage("user", "Hello"),), GenerationSettings(max_new_tokens=20, seed=1)
    )
    events = await collect(client, request)
    started = next(e for e in events if isinstance(e, Started))
    done = events[-1]
    assert isinstance(done, Done)
    assert started.prompt_tokens == done.stats.prompt_tokens > 0
    assert "".join(e.text for e in events if isinstance(e, Token)) == done.text
    assert all(e.request_id == request.request_id for e in events)
    assert done.stats.new_tokens > 0 and done.stats.seconds > 0


async def test_cancel_ends_the_reply_early(client, tiny_model):
    await collect(client, LoadModel(spec_for(tiny_model, context_window=4096)))
    request = Generate((ChatMessage("user", "Hello"),), LONG)
    events = []
    async for event in client.stream(request):
        events.append(event)
        if isinstance(event, Token):
            client.cancel(request.request_id)
    done = events[-1]
    assert isinstance(done, Done)
    assert done.finish_reason == "cancelled"
    assert done.stats.new_tokens < LONG.max_new_tokens
    # The worker is still serving after a cancel.
    events = await collect(
        client, Generate((ChatMessage("user", "Hi"),), GenerationSettings(max_new_tokens=3))
    )
    assert isinstance(events[-1], Done)


async def test_a_failing_load_is_reported_and_the_old_model_stays(client, tiny_model, tmp_path):
    await collect(client, LoadModel(spec_for(tiny_model)))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    events = await collect(client, LoadModel(ModelSpec(name="broken", path=str(broken))))
    failed = events[-1]
    assert isinstance(failed, Failed)
    assert "broken" in failed.reason and "still using tiny" in failed.reason
    events = await collect(
        client, Generate((ChatMessage("user", "Hi"),), GenerationSettings(max_new_tokens=3))
    )
    assert isinstance(events[-1], Done)


async def test_missing_model_folder_is_a_clear_failure(client, tmp_path):
    events = await collect(client, LoadModel(ModelSpec(name="ghost", path=str(tmp_path / "nope"))))
    assert isinstance(events[-1], Failed)
    assert "does not exist" in events[-1].reason


async def test_generate_without_a_model_fails_cleanly(client):
    events = await collect(client, Generate((ChatMessage("user", "Hi"),)))
    assert isinstance(events[-1], Failed)
    assert "no model" in events[-1].reason


async def test_a_killed_worker_ends_the_stream_and_restart_works(client, tiny_model):
    await collect(client, LoadModel(spec_for(tiny_model, context_window=4096)))
    request = Generate((ChatMessage("user", "Hello"),), LONG)
    events = []
    async for event in client.stream(request):
        events.append(event)
        if isinstance(event, Token) and len(events) == 3:
            os.kill(client.pid, signal.SIGKILL)
    assert isinstance(events[-1], WorkerDied)
    assert events[-1].exitcode == -signal.SIGKILL
    assert not client.alive

    # Restarting from inside the running event loop (as the app does) works.
    await asyncio.get_running_loop().run_in_executor(None, client.restart)
    assert client.alive
    assert isinstance((await collect(client, LoadModel(spec_for(tiny_model))))[-1], ModelReady)
    events = await collect(
        client, Generate((ChatMessage("user", "Hi"),), GenerationSettings(max_new_tokens=3))
    )
    assert isinstance(events[-1], Done)


async def until(condition, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_exit_watchers_hear_of_a_death_nobody_waits_on(client, tiny_model):
    heard: list[int | None] = []
    client.watch_exits(heard.append)
    await collect(client, LoadModel(spec_for(tiny_model)))

    # Idle: only the watchers can tell.
    os.kill(client.pid, signal.SIGKILL)
    await until(lambda: heard == [-signal.SIGKILL])

    # Restarted on purpose: not a death to report.
    await asyncio.to_thread(client.restart)
    await collect(client, LoadModel(spec_for(tiny_model, context_window=4096)))
    old = client._process
    await asyncio.to_thread(client.restart)
    await until(lambda: old is not None and not old.is_alive())

    # Mid-reply: the reply hears it (and its caller restarts), the watchers do not.
    await collect(client, LoadModel(spec_for(tiny_model, context_window=4096)))
    events = []
    async for event in client.stream(Generate((ChatMessage("user", "Hello"),), LONG)):
        events.append(event)
        if isinstance(event, Token) and len(events) == 3:
            os.kill(client.pid, signal.SIGKILL)
    assert isinstance(events[-1], WorkerDied)
    await asyncio.sleep(0.3)  # several pump polls: time enough to be heard, if it were
    assert heard == [-signal.SIGKILL]


async def test_a_prompt_over_the_window_is_refused_with_a_reason(client, tiny_model):
    await collect(client, LoadModel(spec_for(tiny_model, context_window=64)))
    events = await collect(client, Generate((ChatMessage("user", "word " * 400),)))
    assert isinstance(events[-1], Failed)
    assert "tokens" in events[-1].reason


async def test_long_history_is_trimmed_to_the_window(client, tiny_model):
    await collect(client, LoadModel(spec_for(tiny_model, context_window=128)))
    history = []
    for i in range(40):
        history += [ChatMessage("user", f"question {i}"), ChatMessage("assistant", f"answer {i}")]
    history.append(ChatMessage("user", "last"))
    events = await collect(client, Generate(tuple(history), GenerationSettings(max_new_tokens=16)))
    started = next(e for e in events if isinstance(e, Started))
    assert started.prompt_tokens + 16 <= 128
    assert started.dropped_messages > 0
    assert isinstance(events[-1], Done)
