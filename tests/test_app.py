"""The TUI, driven with Pilot against the scripted `FakeEngine` (and once, the real worker)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from textual.binding import Binding
from textual.events import Paste
from textual.geometry import Region
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import Static

from chatapp.app import ChatApp
from chatapp.engine.protocol import ChatMessage, GenerationSettings, ModelSpec
from chatapp.sanitize import is_safe
from chatapp.screens.chat import ChatScreen
from chatapp.widgets import ChatView, MessageWidget, Notice, PromptInput, StatusBar
from chatapp.widgets import prompt as prompt_module
from tests.fakes import FakeEngine, Reply

SPEC = ModelSpec(name="smollm2", path="/nowhere", context_window=2048)
SIZE = (80, 24)


# --- helpers ---------------------------------------------------------------------------


def rendered_text(root: Widget) -> str:
    """What the leaf widgets under `root` actually render, line by line."""
    lines: list[str] = []
    for widget in root.walk_children(with_self=True):
        if isinstance(widget, Static) and not widget.children and widget.display:
            width, height = widget.size
            lines.extend(strip.text for strip in widget.render_lines(Region(0, 0, width, height)))
    return "\n".join(lines)


def messages(app: ChatApp) -> list[MessageWidget]:
    return app.chat.chat_view.messages


def status(app: ChatApp) -> StatusBar:
    return app.screen.query_one(StatusBar)


def prompt(app: ChatApp) -> PromptInput:
    return app.screen.query_one(PromptInput)


def turns(messages: Iterable[ChatMessage]) -> list[tuple[str, str]]:
    """(role, content) of chat messages (stored ones also carry their ids)."""
    return [(m.role, m.content) for m in messages]


async def settle(app: ChatApp, pilot: Pilot) -> None:
    """Let every worker finish (a finished worker may start another), then repaint."""
    for _ in range(3):
        await app.workers.wait_for_complete()
        await pilot.pause()


async def send(pilot: Pilot, text: str) -> None:
    await pilot.press(*text)
    await pilot.press("enter")


@contextmanager
def notes_of(app: ChatApp) -> Iterator[list[str]]:
    """Record what the app notifies."""
    seen: list[str] = []
    original = app.notify

    def notify(message: str, **kwargs: object) -> None:
        seen.append(message)
        original(message, **kwargs)  # type: ignore[arg-type]

    app.notify = notify  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        app.notify = original  # type: ignore[method-assign]


# --- start-up --------------------------------------------------------------------------


async def test_paints_with_status_bar_before_the_model_is_ready() -> None:
    engine = FakeEngine(hold_load=True, load_steps=4)
    app = ChatApp(engine, SPEC)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        bar = status(app)
        assert bar.region.height == 1 and bar.region.y == SIZE[1] - 1
        assert prompt(app).has_focus
        assert not app.chat.model_ready
        assert bar.state == "loading"
        assert "loading smollm2… weights 25%" in rendered_text(bar)
        engine.release_load()
        await settle(app, pilot)
        assert app.chat.model_ready
        assert bar.state == "ready"
        assert "ready" in rendered_text(bar)
        assert "ctx –/2048 tokens" in rendered_text(bar)


async def test_no_model_shows_the_notice_and_stays_usable() -> None:
    error = "model 'x' is not pulled yet: run `chatapp models pull x`"
    engine = FakeEngine()
    app = ChatApp(engine, None, model_error=error)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        notices = list(app.screen.query(Notice))
        assert len(notices) == 1
        assert rendered_text(notices[0]).strip() == error  # markup-looking text kept as is
        assert status(app).state == "no model"
        with notes_of(app) as notes:
            await send(pilot, "hi")
            await pilot.pause()
        assert notes == [error]
        assert engine.requests == []
        assert prompt(app).text == "hi"  # kept, nothing lost


async def test_a_failed_load_is_reported() -> None:
    engine = FakeEngine(load_error="out of memory")
    app = ChatApp(engine, SPEC)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert status(app).state == "error"
        notice = app.screen.query_one(Notice)
        assert "could not load smollm2: out of memory" in rendered_text(notice)
        with notes_of(app) as notes:
            await send(pilot, "hi")
            await pilot.pause()
        assert notes == ["The model failed to load."]


# --- a turn ----------------------------------------------------------------------------


async def test_enter_sends_and_the_reply_streams_in() -> None:
    engine = FakeEngine(["Hello! I am a **fake** model."])
    settings = GenerationSettings(temperature=0.0, max_new_tokens=32)
    app = ChatApp(engine, SPEC, settings, system_prompt="Be brief.")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await send(pilot, "hello")
        await settle(app, pilot)

        user, reply = messages(app)
        assert (user.role, user.text) == ("user", "hello")
        assert "hello" in rendered_text(user)
        assert reply.role == "assistant"
        assert reply.text == "Hello! I am a **fake** model."
        shown = rendered_text(reply)
        assert "smollm2" in shown
        assert "Hello! I am a fake model." in shown  # rendered as Markdown
        assert "tok/s" in reply.footer and "s to first token" in reply.footer
        assert reply.footer.endswith(" 6 tokens")
        assert prompt(app).text == ""

        (request,) = engine.generates
        assert request.settings == settings
        assert turns(request.messages) == [("system", "Be brief."), ("user", "hello")]
        bar = status(app)
        assert bar.state == "ready"
        assert "tok/s" in rendered_text(bar)
        assert turns(app.chat.history) == [
            ("user", "hello"),
            ("assistant", "Hello! I am a **fake** model."),
        ]


async def test_the_reply_is_streamed_not_rerendered_per_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Tokens go through one MarkdownStream; the whole Markdown renders once at the end."""
    from textual.widgets import Markdown

    updates: list[str] = []
    original_update = Markdown.update

    def spy_update(self: Markdown, markdown: str):  # type: ignore[no-untyped-def]
        updates.append(markdown)
        return original_update(self, markdown)

    monkeypatch.setattr(Markdown, "update", spy_update)
    engine = FakeEngine([Reply(["tok "] * 40)])
    app = ChatApp(engine, SPEC)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        updates.clear()
        await send(pilot, "go")
        await settle(app, pilot)
        reply = messages(app)[-1]
        assert reply.text == "tok " * 40
        # One empty update when the body mounts, one final update with the full text.
        assert [u for u in updates if u] == ["tok " * 40]


async def test_ctrl_j_adds_a_newline_and_enter_sends_both_lines() -> None:
    engine = FakeEngine(["ok"])
    app = ChatApp(engine, SPEC)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("a", "ctrl+j", "b", "shift+enter", "c")
        assert prompt(app).text == "a\nb\nc"
        await pilot.press("enter")
        await settle(app, pilot)
        assert messages(app)[0].text == "a\nb\nc"
        assert turns(engine.generates[0].messages[-1:]) == [("user", "a\nb\nc")]


async def test_enter_on_a_blank_prompt_sends_nothing() -> None:
    engine = FakeEngine()
    app = ChatApp(engine, SPEC)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("space", "enter")
        await settle(app, pilot)
        assert messages(app) == []
        assert engine.generates == []


async def test_up_on_an_empty_prompt_recalls_earlier_messages() -> None:
    engine = FakeEngine(["one", "two"])
    app = ChatApp(engine, SPEC)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await send(pilot, "first")
        await settle(app, pilot)
        await send(pilot, "second")
        await settle(app, pilot)
        box = prompt(app)
        await pilot.press("up")
        assert box.text == "second"
        await pilot.press("up")
        assert box.text == "first"
        await pilot.press("down")
        assert box.text == "second"
        await pilot.press("down")
        assert box.text == ""
        # Up in a non-empty prompt moves the cursor instead.
        await pilot.press("x", "up")
        assert box.text == "x"


# --- stopping and failures -------------------------------------------------------------


async def test_escape_stops_mid_stream_and_keeps_the_partial_reply() -> None:
    engine = FakeEngine([Reply("one two three four five six", pause_after=3), "next"])
    app = ChatApp(engine, SPEC)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await send(pilot, "count")
        await engine.wait_paused()
        await pilot.press("escape")
        await settle(app, pilot)

        reply = messages(app)[-1]
        assert reply.text == "one two three"
        assert reply.footer.startswith("stopped")
        assert "one two three" in rendered_text(reply)
        assert "stopped" in rendered_text(reply)
        request_id = engine.generates[0].request_id
        assert engine.cancelled == {request_id}
        assert status(app).state == "ready"

        # The stopped partial reply is part of the history sent next.
        await send(pilot, "go on")
        await settle(app, pilot)
        assert turns(engine.generates[1].messages) == [
            ("user", "count"),
            ("assistant", "one two three"),
            ("user", "go on"),
        ]


async def test_escape_when_idle_does_nothing() -> None:
    engine = FakeEngine()
    app = ChatApp(engine, SPEC)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("escape")
        await settle(app, pilot)
        assert engine.cancelled == set()
        assert app.is_running


async def test_failed_shows_one_line_and_keeps_the_partial_text() -> None:
    engine = FakeEngine([Reply("alpha beta gamma delta", end="failed", after=2, reason="boom")])
    app = ChatApp(engine, SPEC)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await send(pilot, "hi")
        await settle(app, pilot)
        reply = messages(app)[-1]
        assert reply.text == "alpha beta"
        assert reply.footer == "⚠ generation failed: boom"
        shown = rendered_text(reply)
        assert "alpha beta" in shown and "⚠ generation failed: boom" in shown
        assert status(app).state == "ready"


async def test_worker_died_shows_one_line_restarts_and_reloads() -> None:
    engine = FakeEngine([Reply("alpha beta gamma", end="died", after=2, exitcode=-9), "back"])
    app = ChatApp(engine, SPEC)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await send(pilot, "hi")
        await settle(app, pilot)
        reply = messages(app)[-1]
        assert reply.text == "alpha beta"
        assert reply.footer == "⚠ the model worker stopped (exit -9); restarting…"
        assert "⚠ the model worker stopped (exit -9); restarting…" in rendered_text(reply)
        assert engine.restarts == 1
        assert engine.loaded == SPEC
        assert status(app).state == "ready"
        # Usable again after the restart.
        await send(pilot, "again")
        await settle(app, pilot)
        assert messages(app)[-1].text == "back"


# --- untrusted output ------------------------------------------------------------------

HOSTILE = (
    "plain \x1b[31mred\x1b[0m "
    "clip \x1b]52;c;aGVsbG8=\x07 "
    "link \x1b]8;;http://evil.example\x1b\\here\x1b]8;;\x1b\\ "
    "dcs \x1bP1$r\x1b\\ "
    "c1 \x9b2J "
    "[bold red]markup[/] "
    "bidi \u202eevil\u202c \u2066iso\u2069 "
    "nul \x00 bell \x07 del \x7f"
)


async def test_hostile_model_output_is_inert_on_screen() -> None:
    engine = FakeEngine([Reply(list(HOSTILE))])  # one character per token
    app = ChatApp(engine, SPEC)
    async with app.run_test(size=(200, 40)) as pilot:
        await settle(app, pilot)
        await send(pilot, "be evil")
        await settle(app, pilot)
        reply = messages(app)[-1]
        assert reply.text == HOSTILE  # the raw text is kept for the history
        shown = rendered_text(reply)
        assert is_safe(shown), repr(shown)
        assert "\x1b" not in shown and "\u202e" not in shown
        assert "␛[31mred␛[0m" in shown
        assert "␛]52;c;aGVsbG8=␇" in shown
        assert "[bold red]markup[/]" in shown
        assert "␀" in shown and "␡" in shown
        assert "�evil�" in shown


async def test_hostile_text_in_a_notice_and_a_user_message_is_inert() -> None:
    engine = FakeEngine()
    app = ChatApp(engine, None, model_error="[red]no[/] \x1b]52;c;eA==\x07 model")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        shown = rendered_text(app.screen.query_one(Notice))
        assert "[red]no[/] ␛]52;c;eA==␇ model" in shown
        await app.chat.chat_view.add_message(MessageWidget("user", "[b]x[/b] \x1b[2J"))
        await pilot.pause()
        shown = rendered_text(messages(app)[-1])
        assert "[b]x[/b] ␛[2J" in shown


# --- while a reply streams -------------------------------------------------------------


async def test_typing_while_a_reply_streams_and_a_second_send_is_refused() -> None:
    engine = FakeEngine([Reply("a b c d", pause_after=1), "second reply"])
    app = ChatApp(engine, SPEC)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await send(pilot, "first")
        await engine.wait_paused()
        await pilot.press(*"typing")
        assert prompt(app).text == "typing"
        with notes_of(app) as notes:
            await pilot.press("enter")
            await pilot.pause()
        assert notes == ["Still replying: wait, or press Esc to stop."]
        assert prompt(app).text == "typing"  # nothing lost
        assert len(engine.generates) == 1

        engine.resume()
        await settle(app, pilot)
        assert messages(app)[-1].text == "a b c d"
        await pilot.press("enter")
        await settle(app, pilot)
        assert messages(app)[-1].text == "second reply"
        assert prompt(app).text == ""


async def test_status_bar_shows_context_and_live_speed_after_started() -> None:
    engine = FakeEngine([Reply("one two three", pause_after=2)])
    app = ChatApp(engine, SPEC)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await send(pilot, "hello there")
        await engine.wait_paused()
        await pilot.pause()
        bar = status(app)
        # FakeEngine counts a message as its words plus 4.
        assert bar.context_text == "ctx 6/2048 tokens"
        assert "ctx 6/2048 tokens" in rendered_text(bar)
        assert bar.state == "generating"
        assert bar.tokens_counted == 2
        assert bar.tokens_per_second is not None
        engine.resume()
        await settle(app, pilot)
        assert bar.context_text == "ctx 9/2048 tokens"  # prompt + reply


async def test_ctrl_n_starts_a_new_chat() -> None:
    engine = FakeEngine(["first reply", Reply("long reply here", pause_after=1), "fresh"])
    app = ChatApp(engine, SPEC)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await send(pilot, "one")
        await settle(app, pilot)
        await send(pilot, "two")
        await engine.wait_paused()
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        assert messages(app) == []
        assert app.chat.history == []
        assert engine.generates[1].request_id in engine.cancelled
        assert len(app.screen.query_one(ChatView).children) == 0
        await send(pilot, "three")
        await settle(app, pilot)
        assert turns(engine.generates[-1].messages) == [("user", "three")]
        assert messages(app)[-1].text == "fresh"


async def test_enormous_paste_stays_responsive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prompt_module, "MAX_PASTE_CHARS", 50_000)
    engine = FakeEngine()
    app = ChatApp(engine, SPEC)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        box = prompt(app)
        with notes_of(app) as notes:
            box.post_message(Paste("word " * 20_000))  # 100,000 characters on one line
            await pilot.pause()
        assert len(box.text) == 50_000
        assert not box.soft_wrap  # no wrapping a giant line on every keystroke
        assert len(notes) == 1 and "cut" in notes[0]
        await pilot.press("enter")
        await settle(app, pilot)
        assert len(messages(app)[0].text) == 50_000
        assert box.text == "" and box.soft_wrap


async def test_an_engine_that_raises_is_reported_and_the_app_survives() -> None:
    class Exploding(FakeEngine):
        async def stream(self, request):  # type: ignore[no-untyped-def, override]
            raise RuntimeError("kaboom")
            yield  # pragma: no cover

    app = ChatApp(Exploding(), SPEC)
    with notes_of(app) as notes:
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            assert notes == ["RuntimeError: kaboom"]
            assert status(app).state == "error"
            assert app.is_running


def test_every_binding_has_an_id() -> None:
    for owner in (ChatApp, ChatScreen):
        for binding in owner.BINDINGS:
            assert isinstance(binding, Binding) and binding.id, (owner.__name__, binding)


# --- the real worker -------------------------------------------------------------------


async def test_real_worker_on_the_tiny_model(tiny_model: Path) -> None:
    from chatapp.engine.client import EngineClient

    client = EngineClient()
    client.start()
    try:
        spec = ModelSpec(name="tiny", path=str(tiny_model), context_window=256)
        settings = GenerationSettings(max_new_tokens=16, seed=0)
        app = ChatApp(client, spec, settings)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            assert app.chat.model_ready, status(app).state_text
            await send(pilot, "Hello")
            await settle(app, pilot)
            reply = messages(app)[-1]
            assert reply.text.strip(), reply.footer
            assert "tokens" in reply.footer and "s to first token" in reply.footer
            assert "ctx " in status(app).context_text
            assert status(app).state == "ready"
    finally:
        client.close()


async def test_real_worker_killed_while_idle_is_restarted_at_once(tiny_model: Path) -> None:
    import os
    import signal

    from chatapp.engine.client import EngineClient

    client = EngineClient(poll_interval=0.05)
    client.start()
    try:
        spec = ModelSpec(name="tiny", path=str(tiny_model), context_window=256)
        app = ChatApp(client, spec, GenerationSettings(max_new_tokens=8, seed=0))
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            assert app.chat.model_ready, status(app).state_text
            first_pid = client.pid
            assert first_pid is not None
            os.kill(first_pid, signal.SIGKILL)  # nothing is waiting on it
            for _ in range(600):
                await pilot.pause(0.05)
                notices = [rendered_text(n).strip() for n in app.chat.query(Notice)]
                if notices and app.chat.model_ready:
                    break
            assert notices == ["⚠ the model worker stopped while idle (exit -9); restarting…"]
            assert client.pid != first_pid and client.alive
            assert app.chat.model_ready, status(app).state_text
            await send(pilot, "Hello again")
            await settle(app, pilot)
            assert "tokens" in messages(app)[-1].footer
    finally:
        client.close()
