"""Deterministic scenes of the app, for the snapshot tests and the README screenshots.

Each scene is an app (on a fake engine whose stats never change) and a `run_before`
coroutine that brings it to the moment worth a picture. Nothing here depends on time:
the reply's speed and timings are fixed, and the prompt's cursor does not blink.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from textual.pilot import Pilot

from chatapp.app import ChatApp
from chatapp.engine.protocol import Done, Event, Generate, GenerationStats, ModelSpec
from chatapp.widgets.prompt import PromptInput
from tests.fakes import FakeEngine, Reply

SPEC = ModelSpec(name="smollm2-135m-instruct", path="/nowhere", context_window=2048)
MISSING = "smollm2-135m-instruct"
MISSING_ERROR = f"model {MISSING!r} is not pulled yet: run `chatapp models pull {MISSING}`"
QUESTION = "How do I list the files in a folder with Python?"
REPLY = """\
Use `pathlib` from the standard library:

```python
from pathlib import Path

for path in sorted(Path(".").iterdir()):
    if path.is_file():
        print(path.name)
```

`iterdir()` yields **files and folders**; `is_file()` keeps the files. Click the code \
block to copy it.
"""
STATS = GenerationStats(prompt_tokens=61, new_tokens=64, time_to_first_token=0.18, seconds=2.0)

RunBefore = Callable[[Pilot], Awaitable[None]]


class StillEngine(FakeEngine):
    """A `FakeEngine` whose replies always report the same stats."""

    async def _generate(self, request: Generate) -> AsyncIterator[Event]:
        async for event in super()._generate(request):
            if isinstance(event, Done):
                event = dataclasses.replace(event, stats=STATS)
            yield event


@dataclass
class Scene:
    name: str
    app: ChatApp
    run_before: RunBefore


async def settle(pilot: Pilot) -> None:
    for _ in range(3):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


def still_cursor(pilot: Pilot) -> None:
    for prompt in pilot.app.screen.query(PromptInput):
        prompt.cursor_blink = False


async def ask(pilot: Pilot, text: str = QUESTION) -> None:
    prompt = pilot.app.screen.query_one(PromptInput)
    prompt.load_text(text)
    await pilot.press("enter")
    await settle(pilot)


def conversation(theme: str) -> Scene:
    """A question and a reply with a code block, the model ready."""

    async def run_before(pilot: Pilot) -> None:
        await settle(pilot)
        await ask(pilot)
        still_cursor(pilot)

    app = ChatApp(StillEngine([Reply(REPLY)], token_delay=0), SPEC, theme=theme)
    return Scene("conversation", app, run_before)


def first_run(theme: str) -> Scene:
    """No model pulled yet: the notice and the offer to pull it."""

    async def run_before(pilot: Pilot) -> None:
        await settle(pilot)
        still_cursor(pilot)

    app = ChatApp(
        StillEngine(), None, model_error=MISSING_ERROR, missing_model=MISSING, theme=theme
    )
    return Scene("first-run", app, run_before)


def help_screen(theme: str) -> Scene:
    """F1 over a conversation."""
    scene = conversation(theme)
    before = scene.run_before

    async def run_before(pilot: Pilot) -> None:
        await before(pilot)
        await pilot.press("f1")
        await pilot.pause()

    return Scene("help", scene.app, run_before)


def slash_hint(theme: str) -> Scene:
    """Typing a slash command: the ghost completion and the hint above the prompt."""
    scene = conversation(theme)
    before = scene.run_before

    async def run_before(pilot: Pilot) -> None:
        await before(pilot)
        await pilot.press(*"/th")
        await pilot.pause()

    return Scene("slash-hint", scene.app, run_before)


def theme_palette(theme: str) -> Scene:
    """Ctrl+P, searching "theme"."""
    scene = conversation(theme)
    before = scene.run_before

    async def run_before(pilot: Pilot) -> None:
        await before(pilot)
        await pilot.press("ctrl+p")
        await pilot.press(*"theme chatapp")
        palette = pilot.app.screen
        previous = -1
        for _ in range(100):  # the palette searches in the background
            await pilot.pause(0.05)
            count = palette.query_one("CommandList").option_count
            if count and count == previous and not palette.query("LoadingIndicator"):
                break
            previous = count
        palette.query_one("CommandInput").cursor_blink = False

    return Scene("palette", scene.app, run_before)


SCENES = {
    "conversation": conversation,
    "first-run": first_run,
    "help": help_screen,
    "slash-hint": slash_hint,
    "palette": theme_palette,
}
