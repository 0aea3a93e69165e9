"""Switching models in the TUI: /model, the picker, /set, /system, the status bar."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from textual.widgets import DataTable

from chatapp.app import ChatApp
from chatapp.config import ModelEntry, Settings
from chatapp.engine.protocol import ChatMessage, GenerationSettings, ModelSpec
from chatapp.screens.model_picker import ModelPicker
from chatapp.widgets import MessageWidget, Notice, StatusBar
from tests.fakes import FakeEngine
from tests.test_app import notes_of, rendered_text, send, settle

SIZE = (100, 30)


def config_for(tiny_model: Path, tiny_model_b: Path) -> Settings:
    return Settings(
        generation=GenerationSettings(temperature=0.5),
        generation_keys=frozenset({"temperature"}),
        models=(
            ModelEntry("tiny-a", str(tiny_model), context_window=256),
            ModelEntry(
                "tiny-b", str(tiny_model_b), generation=(("max_new_tokens", 40), ("top_k", 5))
            ),
        ),
    )


def start_spec(tiny_model: Path) -> ModelSpec:
    return ModelSpec("tiny-a", str(tiny_model), context_window=256)


def labels(app: ChatApp) -> list[str]:
    return [rendered_text(m.query_one(".role")).strip() for m in app.chat.chat_view.messages]


def status(app: ChatApp) -> StatusBar:
    return app.screen.query_one(StatusBar)


async def test_model_command_switches_and_keeps_the_conversation(tiny_model, tiny_model_b):
    engine = FakeEngine(["first reply", "second reply"])
    config = config_for(tiny_model, tiny_model_b)
    app = ChatApp(engine, start_spec(tiny_model), GenerationSettings(), config=config)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await send(pilot, "hello")
        await settle(app, pilot)
        await send(pilot, "/model tiny-b")
        await settle(app, pilot)
        chat = app.chat
        assert chat.model is not None and chat.model.name == "tiny-b"
        assert chat.model.context_window == 128  # from b's config.json
        assert chat.model_ready and status(app).state == "ready"
        assert status(app).model_name == "tiny-b" and status(app).context_window == 128
        notice = rendered_text(app.screen.query(Notice).last())
        assert "tiny-a → tiny-b" in notice and "kept" in notice
        # b's settings: its [[models]] table over the config's temperature.
        assert (chat.settings.temperature, chat.settings.max_new_tokens) == (0.5, 40)
        assert "temp 0.5 · max 40" in rendered_text(status(app))

        await send(pilot, "and you?")
        await settle(app, pilot)
        request = engine.generates[-1]
        assert [m.content for m in request.messages] == [
            "hello",
            "first reply",
            "and you?",
        ]  # the history went along
        assert request.settings.max_new_tokens == 40
        assert labels(app) == ["you", "tiny-a", "you", "tiny-b"]  # who wrote each reply
        assert [m.model for m in chat.history if m.role == "assistant"] == ["tiny-a", "tiny-b"]


async def test_a_failed_switch_keeps_the_previous_model(tiny_model, tiny_model_b):
    engine = FakeEngine()
    app = ChatApp(engine, start_spec(tiny_model), config=config_for(tiny_model, tiny_model_b))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        engine.load_error = "out of memory"
        with notes_of(app) as notes:
            await send(pilot, "/model tiny-b")
            await settle(app, pilot)
        chat = app.chat
        assert chat.model is not None and chat.model.name == "tiny-a"
        assert chat.model_ready and status(app).state == "ready"
        assert status(app).model_name == "tiny-a"
        text = rendered_text(app.screen.query(Notice).last())
        assert "Switching to tiny-b failed: out of memory; still using tiny-a" in text
        assert any("out of memory" in n for n in notes)
        engine.load_error = None
        await send(pilot, "still there?")
        await settle(app, pilot)
        assert labels(app)[-1] == "tiny-a"


async def test_unknown_model_is_refused_with_the_reason(tiny_model, tiny_model_b):
    engine = FakeEngine()
    app = ChatApp(engine, start_spec(tiny_model), config=config_for(tiny_model, tiny_model_b))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        with notes_of(app) as notes:
            await send(pilot, "/model nope")
            await settle(app, pilot)
        assert any("Cannot switch to nope: unknown model 'nope'" in n for n in notes)
        assert app.chat.model.name == "tiny-a" and app.chat.model_ready
        assert status(app).state == "ready" and status(app).model_name == "tiny-a"
        assert len([r for r in engine.requests if type(r).__name__ == "LoadModel"]) == 1


async def test_switching_while_replying_is_refused(tiny_model, tiny_model_b):
    from tests.fakes import Reply

    engine = FakeEngine([Reply("one two three four", pause_after=2)])
    app = ChatApp(engine, start_spec(tiny_model), config=config_for(tiny_model, tiny_model_b))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await send(pilot, "hi")
        await engine.wait_paused()
        with notes_of(app) as notes:
            assert not app.chat.switch_model("tiny-b")
        assert notes and "Still replying" in notes[0]
        engine.resume()
        await settle(app, pilot)


async def test_picker_lists_models_and_enter_switches(tiny_model, tiny_model_b):
    engine = FakeEngine()
    app = ChatApp(engine, start_spec(tiny_model), config=config_for(tiny_model, tiny_model_b))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("f2")
        await pilot.pause()
        picker = app.screen
        assert isinstance(picker, ModelPicker)
        table = picker.query_one(DataTable)
        rows = {str(k.value): table.get_row(k) for k in table.rows}
        assert {"tiny-a", "tiny-b", "smollm2-135m-instruct", "gemma3-270m"} <= set(rows)
        assert str(rows["tiny-a"][3]) == "● active"
        assert str(rows["tiny-b"][2]) == "128" and str(rows["tiny-b"][3]) == "installed"
        assert str(rows["tiny-b"][1]).endswith("KB")
        await pilot.press("down", "enter")  # the cursor starts on the active model
        await settle(app, pilot)
        assert app.chat.model.name == "tiny-b"


async def test_picker_pulls_a_model_with_progress(monkeypatch, tiny_model, tiny_model_b):
    from chatapp.engine import models, pull

    entry = models.get_entry("gemma3-270m")
    seen: list[str] = []
    finish = threading.Event()

    def fake_pull(name, progress):
        for done in (0, 50, 100):
            progress("download", done, 100)
            time.sleep(0.05)
        assert finish.wait(60)  # held until the test has seen the progress
        seen.append(name)
        return entry.hf_dir

    monkeypatch.setattr(pull, "pull_model", fake_pull)
    monkeypatch.setattr(models, "is_installed", lambda e: e.name != "gemma3-270m" or bool(seen))
    monkeypatch.setattr(
        models,
        "resolve_model",
        lambda name, progress=None: ModelSpec(name, str(tiny_model_b), context_window=128),
    )
    engine = FakeEngine()
    app = ChatApp(engine, start_spec(tiny_model), config=config_for(tiny_model, tiny_model_b))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.chat.action_pick_model()
        await pilot.pause()
        picker = app.screen
        assert isinstance(picker, ModelPicker)
        assert not picker.entries["gemma3-270m"].installed
        picker.choose(picker.entries["gemma3-270m"])
        for _ in range(200):
            await pilot.pause(0.05)
            if "pulling gemma3-270m: download" in rendered_text(picker):
                break
        assert picker.pulling == "gemma3-270m"
        assert "pulling gemma3-270m: download" in rendered_text(picker)
        finish.set()
        await settle(app, pilot)
        assert seen == ["gemma3-270m"]
        assert app.chat.model.name == "gemma3-270m"
        assert app.chat.settings.top_k == 64  # its catalogue defaults


async def test_set_and_system_change_the_next_request(tiny_model, tiny_model_b):
    engine = FakeEngine()
    app = ChatApp(engine, start_spec(tiny_model), config=config_for(tiny_model, tiny_model_b))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await send(pilot, "/set temperature 0.3")
        await send(pilot, "/set max_tokens 256")
        await send(pilot, "/system Answer in French.")
        with notes_of(app) as notes:
            await send(pilot, "/set temperature hot")
        assert notes == ["temperature must be a number, got 'hot'"]
        await settle(app, pilot)
        assert "temp 0.3 · max 256" in rendered_text(status(app))
        await send(pilot, "hi")
        await settle(app, pilot)
        request = engine.generates[-1]
        assert (request.settings.temperature, request.settings.max_new_tokens) == (0.3, 256)
        assert request.messages[0] == ChatMessage("system", "Answer in French.")
        # The session's values survive a switch; the new model's own defaults fill the rest.
        await send(pilot, "/model tiny-b")
        await settle(app, pilot)
        assert app.chat.settings.temperature == 0.3 and app.chat.settings.top_k == 5
        assert app.chat.settings.max_new_tokens == 256
        await send(pilot, "/set")
        await settle(app, pilot)
        shown = rendered_text(app.screen.query(Notice).last())
        assert "temperature 0.3" in shown and "max_new_tokens=256" in shown
        await send(pilot, "/set reset")
        await send(pilot, "/system -")
        await settle(app, pilot)
        assert app.chat.settings.max_new_tokens == 40 and app.chat.system_prompt is None


async def test_session_settings_and_model_are_saved(tiny_model, tiny_model_b, tmp_path):
    from chatapp.store import Store

    store = Store(tmp_path / "chat.db")
    try:
        engine = FakeEngine()
        config = config_for(tiny_model, tiny_model_b)
        app = ChatApp(engine, start_spec(tiny_model), config=config, store=store)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            await send(pilot, "hello")
            await settle(app, pilot)
            await send(pilot, "/set temperature 0.1")
            await send(pilot, "/model tiny-b")
            await settle(app, pilot)
            session_id = app.chat.conversation.session_id
        session = store.get_session(session_id)
        assert session.model == "tiny-b"
        assert session.settings["generation"] == {"temperature": 0.1}

        # Opening it again (from tiny-a) brings back its model and its /set values.
        engine = FakeEngine()
        app = ChatApp(engine, start_spec(tiny_model), config=config, store=store)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            assert app.chat.model.name == "tiny-a"
            await app.chat.open_session(session_id)
            await settle(app, pilot)
            assert app.chat.model.name == "tiny-b" and app.chat.model_ready
            assert app.chat.settings.temperature == 0.1
            assert labels(app) == ["you", "tiny-a"]  # the stored reply keeps its model
    finally:
        store.close()


@pytest.mark.timeout(240)
async def test_real_worker_switches_mid_conversation_in_the_tui(tiny_model, tiny_model_b):
    from chatapp.engine.client import EngineClient

    client = EngineClient()
    client.start()
    try:
        config = config_for(tiny_model, tiny_model_b)
        settings = GenerationSettings(max_new_tokens=12, seed=0)
        app = ChatApp(client, start_spec(tiny_model), settings, config=config)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            assert app.chat.model_ready, status(app).state_text
            await send(pilot, "Hello")
            await settle(app, pilot)
            await send(pilot, "/model tiny-b")
            await settle(app, pilot)
            assert app.chat.model.name == "tiny-b" and app.chat.model_ready
            await send(pilot, "How are you today?")
            await settle(app, pilot)
            replies = [m for m in app.chat.chat_view.messages if m.role == "assistant"]
            assert len(replies) == 2 and all("tokens" in r.footer for r in replies)
            assert labels(app) == ["you", "tiny-a", "you", "tiny-b"]
            assert status(app).context_window == 128
            assert isinstance(app.chat.chat_view.messages[-1], MessageWidget)
    finally:
        client.close()


async def test_palette_and_completion_offer_the_models(tiny_model, tiny_model_b):
    from chatapp.palette import entries_for

    engine = FakeEngine()
    app = ChatApp(engine, start_spec(tiny_model), config=config_for(tiny_model, tiny_model_b))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        entries = {e.title: e for e in entries_for(app.chat)}
        assert "Switch model" in entries and "/model" in entries and "/set" in entries
        assert "active" in entries["Model: tiny-a"].help
        assert "128 tokens" in entries["Model: tiny-b"].help
        entries["Model: tiny-b"].run()
        await settle(app, pilot)
        assert app.chat.model.name == "tiny-b"
        model = app.chat.slash_commands.get("model")
        assert model is not None and model.complete is not None
        assert model.complete(app.chat, "tiny") == ["tiny-a", "tiny-b"]
        assert app.chat.slash_commands.get("set").complete(app.chat, "max") == ["max_tokens "]
