"""Crashes: a worker that dies (mid-reply, while loading, again and again) and an app
that was killed, with nothing committed lost.

- The restart policy backs off (1 s, 2 s, 4 s… capped), resets after a healthy reply and
  gives up after repeated failures; `/restart` tries again.
- Through Pilot with the fake engine: deaths while loading back off and stop; deaths
  mid-reply keep the partial reply, stored as 'interrupted'.
- With the real worker and the tiny model: SIGKILL mid-reply, then SIGKILL of each
  restarted worker while it loads, until the app gives up; `/restart`, and the next
  message works.
- A killed app leaves WAL/SHM files, a half-written state file and a stale temporary
  state file: the next start opens the session, marks the reply interrupted, loses nothing.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import os
import signal
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from chatapp import locations
from chatapp.app import ChatApp
from chatapp.engine.backoff import RestartPolicy
from chatapp.engine.client import StreamRequest
from chatapp.engine.protocol import (
    Event,
    GenerationSettings,
    LoadModel,
    ModelSpec,
    Progress,
    WorkerDied,
)
from chatapp.screens import chat as chat_module
from chatapp.state import UIState, load_state, save_state
from chatapp.store import Store
from chatapp.widgets import Notice
from tests.conftest import chatapp, run_python
from tests.fakes import FakeEngine, Reply
from tests.test_app import SIZE, SPEC, messages, notes_of, prompt, rendered_text, send, settle

ROOT = Path(__file__).resolve().parent.parent
FAST = functools.partial(RestartPolicy, base=0.05, cap=1.0, max_failures=4)


# --- the policy ----------------------------------------------------------------------------


def test_restart_policy_backs_off_caps_gives_up_and_resets() -> None:
    now = [0.0]
    policy = RestartPolicy(base=1.0, cap=4.0, max_failures=5, quiet_period=60, clock=lambda: now[0])
    assert [policy.failed() for _ in range(5)] == [1.0, 2.0, 4.0, 4.0, 4.0]
    assert not policy.gave_up
    assert policy.failed() is None and policy.gave_up
    policy.healthy()
    assert policy.failed() == 1.0 and not policy.gave_up
    now[0] += 61  # a failure long after the last one is not a loop
    assert policy.failed() == 1.0


# --- the fake engine: deaths while loading, deaths mid-reply ----------------------------


class CrashyEngine(FakeEngine):
    """A fake whose worker dies while loading, `load_deaths` times; restarts are timed."""

    def __init__(self, *args: object, load_deaths: int = 0, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.load_deaths = load_deaths
        self.restart_times: list[float] = []

    def restart(self) -> None:
        super().restart()
        self.restart_times.append(time.monotonic())

    async def stream(self, request: StreamRequest) -> AsyncIterator[Event]:
        if isinstance(request, LoadModel) and self.alive and self.load_deaths > 0:
            self.requests.append(request)
            self.load_deaths -= 1
            yield Progress(request.request_id, "weights", 1, 4)
            self.alive = False  # out of memory while loading
            yield WorkerDied(request.request_id, -9)
            return
        async for event in super().stream(request):
            yield event


async def wait_until(pilot, condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            app = pilot.app
            shown = [(m.role, m.text[:40], m.footer) for m in app.chat.chat_view.messages]
            raise AssertionError(f"timed out; {app.chat.status_bar.state_text!r} {shown}")
        await pilot.pause(0.02)


async def test_repeated_deaths_while_loading_back_off_then_stop(monkeypatch) -> None:
    monkeypatch.setattr(chat_module, "RestartPolicy", FAST)
    engine = CrashyEngine(["back again"], load_deaths=5)
    app = ChatApp(engine, SPEC)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.chat
        await wait_until(pilot, lambda: screen.restart_policy.gave_up)
        await settle(app, pilot)
        # The first load and four restarts died; the waits doubled; then it stopped.
        assert engine.restarts == 4
        gaps = [b - a for a, b in itertools.pairwise(engine.restart_times)]
        for gap, delay in zip(gaps, [0.1, 0.2, 0.4], strict=True):
            assert gap >= delay * 0.9, gaps
        notices = [rendered_text(n) for n in screen.query(Notice)]
        assert len(notices) == 5, notices
        assert all("the model worker stopped while loading (exit -9)" in n for n in notices)
        assert "restarting…" in notices[0]
        assert "type /restart to try again" in notices[-1]
        bar = screen.status_bar
        assert bar.state == "error" and "/restart" in rendered_text(bar)
        # Sending is refused with the way out; the typed text stays.
        with notes_of(app) as notes:
            await send(pilot, "hello")
        assert notes == ["The model worker keeps stopping: type /restart to try again."]
        assert prompt(app).text == "hello"
        # /restart tries again (the worker is healthy now) and the next message works.
        prompt(app).load_text("/restart")
        await pilot.press("enter")
        await wait_until(pilot, lambda: screen.model_ready)
        assert engine.restarts == 5 and not screen.restart_policy.gave_up
        await send(pilot, "hello")
        await settle(app, pilot)
        assert messages(app)[-1].text == "back again"


async def test_deaths_mid_reply_keep_the_partial_reply_interrupted_on_disk(
    monkeypatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(chat_module, "RestartPolicy", FAST)
    engine = FakeEngine(
        [
            Reply("alpha beta gamma", end="died", after=2),
            Reply("one two three", end="died", after=1, exitcode=-11),
            "healthy reply",
        ]
    )
    path = tmp_path / "chat.db"
    with Store(path) as store:
        app = ChatApp(engine, SPEC, store=store)
        async with app.run_test(size=SIZE) as pilot:
            screen = app.chat
            await settle(app, pilot)
            for question in ("first", "second", "third"):
                await send(pilot, question)
                await settle(app, pilot)
                await wait_until(pilot, lambda: screen.model_ready)
            shown = [(m.text, m.footer) for m in messages(app) if m.role == "assistant"]
            assert shown[0] == ("alpha beta", "⚠ the model worker stopped (exit -9); restarting…")
            assert shown[1] == ("one", "⚠ the model worker stopped (exit -11); restarting…")
            assert shown[2][0] == "healthy reply" and "tokens" in shown[2][1]
            assert engine.restarts == 2
            assert screen.restart_policy.failures == 0  # reset by the healthy reply
            session_id = screen.session_id
    with Store(path) as store:
        stored = [(m.role, m.content, m.status) for m in store.branch(session_id)]
    assert stored == [
        ("user", "first", "complete"),
        ("assistant", "alpha beta", "interrupted"),
        ("user", "second", "complete"),
        ("assistant", "one", "interrupted"),
        ("user", "third", "complete"),
        ("assistant", "healthy reply", "complete"),
    ]


# --- the real worker, killed with real signals ---------------------------------------------


async def test_real_worker_killed_mid_reply_and_while_loading(
    tiny_model: Path, tmp_path: Path, monkeypatch
) -> None:
    from chatapp.engine.client import EngineClient

    monkeypatch.setattr(chat_module, "RestartPolicy", functools.partial(FAST, base=0.1))
    client = EngineClient(poll_interval=0.05)
    client.start()
    spec = ModelSpec(name="tiny", path=str(tiny_model), context_window=4096)
    endless = GenerationSettings(temperature=0.0, repetition_penalty=1.0, max_new_tokens=3000)
    path = tmp_path / "chat.db"
    try:
        with Store(path) as store:
            app = ChatApp(client, spec, endless, store=store)
            async with app.run_test(size=SIZE) as pilot:
                screen = app.chat
                await wait_until(pilot, lambda: screen.model_ready, 120)

                # 1. SIGKILL mid-reply: the partial reply stays, marked; the worker restarts.
                await send(pilot, "tell me everything")
                await wait_until(pilot, lambda: len(messages(app)[-1].text) > 20, 60)
                first_pid = client.pid
                os.kill(first_pid, signal.SIGKILL)
                await wait_until(pilot, lambda: not screen.generating, 30)
                reply = messages(app)[-1]
                partial = reply.text
                assert partial and reply.footer == (
                    "⚠ the model worker stopped (exit -9); restarting…"
                )
                assert "⚠ the model worker stopped (exit -9)" in rendered_text(reply)
                await wait_until(pilot, lambda: screen.model_ready, 120)
                assert client.pid != first_pid and client.alive
                session_id = screen.session_id

                # 2. Each restarted worker killed while it loads: back off, then give up.
                screen.restart_policy = FAST(base=0.1)
                prompt(app).load_text("/restart")
                await pilot.press("enter")
                killed: list[int] = []
                while not screen.restart_policy.gave_up:
                    await wait_until(
                        pilot,
                        lambda: (client.pid not in (None, first_pid, *killed)) and client.alive,
                        30,
                    )
                    killed.append(client.pid)
                    os.kill(client.pid, signal.SIGKILL)
                    await wait_until(
                        pilot, lambda: screen.restart_policy.failures >= len(killed), 30
                    )
                await settle(app, pilot)
                assert len(killed) == 5  # the /restart, then four automatic restarts
                assert not screen.model_ready and screen.status_bar.state == "error"
                notices = [rendered_text(n) for n in screen.query(Notice)]
                assert "type /restart to try again" in notices[-1], notices

                # 3. /restart, and the next message works.
                prompt(app).load_text("/restart")
                await pilot.press("enter")
                await wait_until(pilot, lambda: screen.model_ready, 120)
                app.chat.settings = GenerationSettings(max_new_tokens=6, seed=0)
                await send(pilot, "hello again")
                await wait_until(pilot, lambda: not screen.generating, 60)
                assert "tokens" in messages(app)[-1].footer
        with Store(path) as store:
            stored = [(m.role, m.status) for m in store.branch(session_id)]
            interrupted = store.branch(session_id)[1]
        assert stored == [
            ("user", "complete"),
            ("assistant", "interrupted"),
            ("user", "complete"),
            ("assistant", "complete"),
        ]
        assert interrupted.content == partial  # what the view showed is what was saved
    finally:
        client.close()


# --- a killed app: leftovers on disk do not block the next start ---------------------------

CRASHING_WRITER = """
import os, signal, sys
from chatapp.store import Store
from chatapp.state import UIState, save_state
store = Store(sys.argv[1])
session = store.create_session("tiny", None, {})
question = store.add_message(session.id, "user", "what survives a crash?", None)
answer = store.add_message(session.id, "assistant", "committed answer", question.id)
second = store.add_message(session.id, "user", "and the reply in flight?", answer.id)
reply = store.begin_reply(session.id, second.id, "tiny")
store.update_reply(reply, "half a rep")
print(session.id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # no close, no checkpoint: WAL and SHM stay
"""


def test_a_killed_app_leaves_nothing_that_blocks_the_next_start(tmp_path: Path) -> None:
    database = locations.database_file()
    database.parent.mkdir(parents=True, exist_ok=True)
    done = run_python("-c", CRASHING_WRITER, str(database), timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr
    session_id = int(done.stdout.split()[0])
    wal, shm = Path(f"{database}-wal"), Path(f"{database}-shm")
    assert wal.exists() and shm.exists()
    # A state file cut mid-write (from an older, non-atomic writer) and a stale temp file.
    state = locations.state_file()
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text('{"theme": "chatapp-no')
    stale = state.with_name(f".{state.name}.abc123.tmp")
    stale.write_text('{"theme": "half')

    # The CLI reads it at once (it never recovers replies: an app may be streaming one).
    shown = chatapp("sessions", "show", str(session_id), timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "committed answer" in shown.stdout and "half a rep" in shown.stdout

    assert load_state() == UIState()  # the cut file gives the defaults, no error
    assert save_state(UIState(theme="chatapp-nord"))
    assert json.loads(state.read_text())["theme"] == "chatapp-nord"

    # The next app start: the session opens with every committed turn, the reply marked.
    async def reopen() -> list[tuple[str, str]]:
        with Store(database) as store:  # opening recovers the crashed reply
            app = ChatApp(FakeEngine(), SPEC, store=store, session_id=session_id)
            async with app.run_test(size=SIZE) as pilot:
                await settle(app, pilot)
                return [(m.text, m.footer) for m in messages(app)]

    assert asyncio.run(reopen()) == [
        ("what survives a crash?", ""),
        ("committed answer", ""),
        ("and the reply in flight?", ""),
        ("half a rep", "⚠ interrupted: the app stopped before this reply finished"),
    ]
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        statuses = conn.execute("SELECT status FROM messages ORDER BY id").fetchall()
    finally:
        conn.close()
    assert [s for (s,) in statuses] == ["complete", "complete", "complete", "interrupted"]
