"""The UI side of the engine: spawns the worker process and streams its events.

The worker's events arrive on a multiprocessing queue. A pump thread reads them and
hands each one to the asyncio queue of the request it answers, through
`loop.call_soon_threadsafe`. `stream()` is an async iterator over one request's events
that ends at the request's terminal event.

Textual replaces `sys.stderr` with an object without a real file descriptor, and
multiprocessing's resource tracker passes `sys.stderr.fileno()` to the first spawned
child (Textual issue 3593). `start()` therefore runs before `App.run()` and starts the
resource tracker then, so later restarts from inside the running app work too.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import queue
import threading
from collections.abc import AsyncIterator, Callable
from multiprocessing import resource_tracker
from typing import Protocol, get_args

from chatapp.engine.protocol import (
    TERMINAL_EVENTS,
    Attach,
    Cancel,
    Event,
    Generate,
    LoadModel,
    Reindex,
    Search,
    Shutdown,
    WorkerDied,
)

StreamRequest = LoadModel | Generate | Attach | Search | Reindex
EVENT_TYPES = get_args(Event)
ExitWatcher = Callable[[int | None], None]
"""Told the exit code of a worker that died with no reply or load waiting on it."""


class Engine(Protocol):
    """What the UI needs from an engine; the real client and test fakes provide it."""

    def stream(self, request: StreamRequest) -> AsyncIterator[Event]: ...

    def cancel(self, request_id: int) -> None: ...

    def restart(self) -> None: ...

    def close(self) -> None: ...

    def watch_exits(self, watcher: ExitWatcher) -> None: ...


class EngineClient:
    def __init__(self, *, poll_interval: float = 0.2) -> None:
        self._ctx = mp.get_context("spawn")
        self._poll_interval = poll_interval
        self._process: mp.process.BaseProcess | None = None
        self._requests: mp.Queue | None = None
        self._events: mp.Queue | None = None
        # request id -> (loop, inbox, the worker generation that the request went to,
        # whether its caller restarts the worker when it dies: a reply or a load)
        self._streams: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Queue, int, bool]] = {}
        self._generation = 0
        self._retired = 0  # workers up to this generation were stopped on purpose
        self._exit_watchers: list[ExitWatcher] = []
        self._lock = threading.Lock()
        self._pump: threading.Thread | None = None
        self._closing = False

    # --- process lifecycle -----------------------------------------------------------

    def start(self) -> None:
        """Spawn the worker. Call before `App.run()` (see the module docstring)."""
        resource_tracker.ensure_running()
        from chatapp.engine.worker import run_worker

        self._requests = self._ctx.Queue()
        self._events = self._ctx.Queue()
        self._process = self._ctx.Process(
            target=run_worker,
            args=(self._requests, self._events),
            name="chatapp-worker",
            daemon=True,
        )
        self._process.start()
        self._generation += 1
        self._pump = threading.Thread(
            target=self._pump_events,
            args=(self._process, self._events, self._generation),
            name="chatapp-engine-pump",
            daemon=True,
        )
        self._pump.start()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def restart(self) -> None:
        """Replace a dead (or live) worker with a fresh one; the caller reloads the model."""
        self._stop_process(graceful=False)
        self.start()

    def close(self, timeout: float = 3.0) -> None:
        self._closing = True
        self._stop_process(graceful=True, timeout=timeout)

    def watch_exits(self, watcher: ExitWatcher) -> None:
        """Call `watcher` (on the pump thread) when the worker dies on its own while no
        reply or model load is waiting on it: idle, or answering a search or attach.
        A reply or a load in flight gets `WorkerDied` instead, and its caller restarts."""
        self._exit_watchers.append(watcher)

    def _stop_process(self, *, graceful: bool, timeout: float = 3.0) -> None:
        process, requests = self._process, self._requests
        if process is None:
            return
        self._retired = self._generation
        if graceful and process.is_alive() and requests is not None:
            with contextlib.suppress(Exception):
                requests.put(Shutdown())
            process.join(timeout)
        if process.is_alive():
            process.kill()
            process.join(timeout)
        self._process = None
        for q in (self._requests, self._events):
            if q is not None:
                q.cancel_join_thread()
                q.close()

    # --- requests ----------------------------------------------------------------------

    async def stream(self, request: StreamRequest) -> AsyncIterator[Event]:
        """Send `request` and yield its events until the terminal one."""
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[Event] = asyncio.Queue()
        restarts = isinstance(request, Generate | LoadModel)
        with self._lock:
            self._streams[request.request_id] = (loop, inbox, self._generation, restarts)
        try:
            if not self.alive or self._requests is None:
                yield WorkerDied(request.request_id, self._exitcode())
                return
            self._requests.put(request)
            while True:
                event = await inbox.get()
                yield event
                if isinstance(event, TERMINAL_EVENTS):
                    return
        finally:
            with self._lock:
                self._streams.pop(request.request_id, None)

    def cancel(self, request_id: int) -> None:
        if self._requests is not None and self.alive:
            self._requests.put(Cancel(request_id))

    # --- the pump thread ---------------------------------------------------------------

    def _exitcode(self) -> int | None:
        return self._process.exitcode if self._process else None

    def _deliver(self, request_id: int, event: Event) -> None:
        with self._lock:
            target = self._streams.get(request_id)
        if target is not None:
            loop, inbox, _, _ = target
            with contextlib.suppress(RuntimeError):  # the loop closed under us
                loop.call_soon_threadsafe(inbox.put_nowait, event)

    def _pump_events(
        self, process: mp.process.BaseProcess, events: mp.Queue, generation: int
    ) -> None:
        while True:
            try:
                event = events.get(timeout=self._poll_interval)
            except queue.Empty:
                if process.is_alive():
                    continue
                break
            except (EOFError, OSError, ValueError):
                break
            except Exception:  # e.g. an object that cannot be unpickled here: skip it
                continue
            if isinstance(event, EVENT_TYPES):  # anything else is no event: never routed
                self._deliver(event.request_id, event)
        # The process is gone: every stream still waiting on it ends with WorkerDied.
        with self._lock:
            pending = {
                rid: restarts
                for rid, (_, _, gen, restarts) in self._streams.items()
                if gen == generation
            }
        for request_id in pending:
            self._deliver(request_id, WorkerDied(request_id, process.exitcode))
        if generation > self._retired and not self._closing and not any(pending.values()):
            for watcher in self._exit_watchers:
                watcher(process.exitcode)
