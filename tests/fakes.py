"""A fake engine for UI tests: a real implementation of the `Engine` protocol that
speaks the same events as the worker, from scripted replies, in the event loop.

- `LoadModel` answers with `Progress` events, then `ModelReady` (or `Failed`); set
  `hold_load=True` to hold it after the first `Progress` until `release_load()`.
- `Generate` answers with `Started`, one `Token` per scripted token (with `token_delay`
  seconds between them), then `Done` with the joined text and stats. A `Reply` can end in
  `Failed` or `WorkerDied` after some tokens, or pause after some tokens until
  `resume()` or a cancel (tests use it to act mid-stream without timing).
- `cancel(request_id)` is honoured before the next token: the stream ends with
  `Done(finish_reason="cancelled")` holding the text so far.
- `Search` answers with the `SearchResults` or `Failed` scripted for its query in
  `search_results` (its request id filled in); any other query gets no answer.
- After a `WorkerDied` the engine is dead: every stream answers `WorkerDied` at once until
  `restart()`, which also forgets the loaded model, as the real client does.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from chatapp.engine.client import StreamRequest
from chatapp.engine.protocol import (
    Done,
    Event,
    Failed,
    Generate,
    GenerationStats,
    LoadModel,
    ModelReady,
    ModelSpec,
    Progress,
    Search,
    SearchResults,
    Started,
    Token,
    WorkerDied,
)


def split_tokens(text: str) -> list[str]:
    """Word-ish tokens that join back to `text` exactly."""
    return re.findall(r"\s*\S+|\s+", text)


@dataclass
class Reply:
    """A scripted answer to one `Generate`."""

    tokens: Sequence[str] | str = "Hello from the fake model."
    end: Literal["done", "failed", "died"] = "done"
    after: int | None = None
    """For failed/died: how many tokens come first (default: all of them)."""
    reason: str = "the fake engine failed"
    exitcode: int | None = -9
    pause_after: int | None = None
    """Stop after this many tokens until `resume()` or `cancel()`."""
    finish_reason: Literal["stop", "length"] = "stop"

    @property
    def token_list(self) -> list[str]:
        return split_tokens(self.tokens) if isinstance(self.tokens, str) else list(self.tokens)


class FakeEngine:
    def __init__(
        self,
        replies: Iterable[Reply | str] = (),
        *,
        default: Reply | str = "Hello from the fake model.",
        token_delay: float = 0.002,
        load_steps: int = 4,
        load_delay: float = 0.001,
        load_error: str | None = None,
        hold_load: bool = False,
        context_window: int | None = None,
        search_results: Mapping[str, SearchResults | Failed] | None = None,
    ) -> None:
        self.replies: deque[Reply] = deque(_reply(r) for r in replies)
        self.default = _reply(default)
        self.token_delay = token_delay
        self.load_steps = load_steps
        self.load_delay = load_delay
        self.load_error = load_error
        self.context_window = context_window
        self.search_results = dict(search_results or {})
        self.requests: list[StreamRequest] = []
        self.cancelled: set[int] = set()
        self.loaded: ModelSpec | None = None
        self.alive = True
        self.restarts = 0
        self.closed = False
        self.exit_watchers: list[Callable[[int | None], None]] = []
        self._hold_load = hold_load
        self._load_gate: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._paused: asyncio.Event | None = None

    # --- scripting ---------------------------------------------------------------------

    def queue(self, *replies: Reply | str) -> None:
        self.replies.extend(_reply(r) for r in replies)

    def release_load(self) -> None:
        self._hold_load = False
        self._gate("_load_gate").set()

    async def wait_paused(self) -> None:
        """Wait until a reply has reached its `pause_after` point."""
        await self._gate("_paused").wait()

    def resume(self) -> None:
        self._gate("_wake").set()

    @property
    def generates(self) -> list[Generate]:
        return [r for r in self.requests if isinstance(r, Generate)]

    def _gate(self, name: str) -> asyncio.Event:
        event = getattr(self, name)
        if event is None:
            event = asyncio.Event()
            setattr(self, name, event)
        return event

    # --- the Engine protocol -------------------------------------------------------------

    def cancel(self, request_id: int) -> None:
        self.cancelled.add(request_id)
        self._gate("_wake").set()

    def restart(self) -> None:
        self.alive = True
        self.loaded = None
        self.restarts += 1

    def watch_exits(self, watcher: Callable[[int | None], None]) -> None:
        self.exit_watchers.append(watcher)

    def close(self) -> None:
        self.closed = True
        self.alive = False

    async def stream(self, request: StreamRequest) -> AsyncIterator[Event]:
        self.requests.append(request)
        if not self.alive:
            yield WorkerDied(request.request_id, None if self.closed else -9)
            return
        if isinstance(request, LoadModel):
            async for event in self._load(request):
                yield event
        elif isinstance(request, Search):
            answer = self.search_results.get(request.query)
            if answer is not None:
                yield replace(answer, request_id=request.request_id)
        elif not isinstance(request, Generate):
            return  # context recall's other requests (Attach, Reindex): no answer
        else:
            async for event in self._generate(request):
                yield event

    async def _load(self, request: LoadModel) -> AsyncIterator[Event]:
        rid = request.request_id
        start = time.monotonic()
        for step in range(1, self.load_steps + 1):
            yield Progress(rid, "weights", done=step, total=self.load_steps)
            if step == 1 and self._hold_load:
                await self._gate("_load_gate").wait()
            await asyncio.sleep(self.load_delay)
        if self.load_error is not None:
            yield Failed(rid, self.load_error)
            return
        self.loaded = request.spec
        window = self.context_window or request.spec.context_window
        yield ModelReady(rid, request.spec.name, window, time.monotonic() - start)

    async def _generate(self, request: Generate) -> AsyncIterator[Event]:
        rid = request.request_id
        if self.loaded is None:
            yield Failed(rid, "no model is loaded")
            return
        reply = self.replies.popleft() if self.replies else self.default
        tokens = reply.token_list
        if reply.end != "done" and reply.after is not None:
            tokens = tokens[: reply.after]
        start = time.monotonic()
        prompt_tokens = sum(len(split_tokens(m.content)) + 4 for m in request.messages)
        window = self.context_window or self.loaded.context_window
        yield Started(rid, prompt_tokens, window)
        sent: list[str] = []
        first_at: float | None = None
        finish: str = reply.finish_reason
        for index, token in enumerate(tokens):
            if index == reply.pause_after:
                self._gate("_wake").clear()
                self._gate("_paused").set()
                await self._gate("_wake").wait()
                self._gate("_paused").clear()
            if rid in self.cancelled:
                finish = "cancelled"
                break
            await asyncio.sleep(self.token_delay)
            if rid in self.cancelled:
                finish = "cancelled"
                break
            if first_at is None:
                first_at = time.monotonic()
            sent.append(token)
            yield Token(rid, token)
        if reply.end == "failed" and finish != "cancelled":
            yield Failed(rid, reply.reason)
            return
        if reply.end == "died" and finish != "cancelled":
            self.alive = False
            self.loaded = None
            yield WorkerDied(rid, reply.exitcode)
            return
        now = time.monotonic()
        stats = GenerationStats(
            prompt_tokens=prompt_tokens,
            new_tokens=len(sent),
            time_to_first_token=(first_at or now) - start,
            seconds=now - start,
        )
        yield Done(rid, "".join(sent), finish, stats)  # type: ignore[arg-type]


def _reply(reply: Reply | str) -> Reply:
    return Reply(reply) if isinstance(reply, str) else reply
