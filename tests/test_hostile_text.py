"""Untrusted text never reaches the terminal as control sequences or as markup.

Hostile text (ESC/CSI/OSC including OSC 52 clipboard writes and OSC 8 links, C1
controls, bidi overrides, NUL, `[bold]` markup) comes from model output, imported
sessions, session titles, attached files and model folder names. Each path is driven
through the real widgets (Pilot) or the real CLI under a pty, and what is drawn or
written is checked: no raw controls, the stand-ins visible, markup shown literally.
"""

from __future__ import annotations

import itertools
import json
import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest
from textual.geometry import Region

from chatapp import locations
from chatapp.app import ChatApp
from chatapp.engine.protocol import ModelSpec
from chatapp.sanitize import is_safe
from chatapp.store import Store
from chatapp.store.transfer import export_json, import_text
from chatapp.widgets.recall import RecallEntry, RecallSummary
from tests.fakes import FakeEngine, Reply
from tests.test_app import SPEC, messages, send, settle

ROOT = Path(__file__).resolve().parent.parent

PAYLOAD = (
    "osc52 \x1b]52;c;aGk=\x07 "
    "osc8 \x1b]8;;http://evil.example/\x1b\\link\x1b]8;;\x1b\\ "
    "csi \x1b[2J\x1b[5;31m "
    "c1 \x9b6n "
    "bidi \u202eesrever\u202c "
    "nul \x00 "
    "[bold]markup[/bold]"
)
"""Holds every kind of hostile text; its words are searchable ("osc52", "markup")."""

RAW_BAD = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def all_rendered(app: ChatApp) -> str:
    """Every line every displayed widget of the screen draws, and its toasts' text."""
    from textual.widgets._toast import Toast

    lines: list[str] = []
    for widget in app.screen.walk_children(with_self=True):
        if isinstance(widget, Toast):
            lines.append(str(widget.render()))
        if not widget.display or not widget.size.area:
            continue
        width, height = widget.size
        for strip in widget.render_lines(Region(0, 0, width, height)):
            lines.append("".join(segment.text for segment in strip))
    return "\n".join(lines)


def assert_inert(shown: str) -> None:
    assert RAW_BAD.search(shown) is None, repr(RAW_BAD.search(shown))
    assert is_safe(shown)


def hostile_session(store: Store) -> int:
    """A session with hostile title and messages, passed through export + import."""
    session = store.create_session(SPEC.name, None, {})
    question = store.add_message(session.id, "user", f"question {PAYLOAD}", None)
    store.add_message(session.id, "assistant", f"answer {PAYLOAD}", question.id)
    store.rename_session(session.id, f"title {PAYLOAD}")
    document = export_json(store, session.id)
    store.delete_session(session.id)
    return import_text(store, document).id


# --- the TUI --------------------------------------------------------------------------------


async def test_imported_session_titles_snippets_messages_and_notices(tmp_path: Path) -> None:
    with Store(tmp_path / "chat.db") as store:
        session_id = hostile_session(store)
        app = ChatApp(FakeEngine(), SPEC, store=store)
        async with app.run_test(size=(160, 50), notifications=True) as pilot:
            await settle(app, pilot)
            # The sessions panel: titles.
            await pilot.press("ctrl+o")
            await settle(app, pilot)
            shown = all_rendered(app)
            assert "title osc52 ␛]52;c;aGk=␇" in shown
            assert_inert(shown)
            # Search snippets.
            await pilot.press(*"markup")
            await settle(app, pilot)
            shown = all_rendered(app)
            assert "Search: 2 matches" in shown and "[bold]" in shown
            assert_inert(shown)
            # The messages, opened from the search.
            await pilot.press("enter")
            await settle(app, pilot)
            assert [m.text for m in messages(app)] == [f"question {PAYLOAD}", f"answer {PAYLOAD}"]
            shown = all_rendered(app)
            assert "␛[2J" in shown and "[bold]markup[/bold]" in shown
            assert_inert(shown)
            # A notification with the hostile title (/rename says "Renamed: TITLE").
            app.chat.prompt_input.focus()
            app.chat.prompt_input.load_text(f"/rename again {PAYLOAD}")
            await pilot.press("enter")
            await settle(app, pilot)
            for _ in range(100):  # the notification appears at the next refresh
                shown = all_rendered(app)
                if "Renamed: again osc52" in shown:
                    break
                await pilot.pause(0.05)
            assert "Renamed: again osc52" in shown
            assert_inert(shown)
            assert store.get_session(session_id).title.startswith("again osc52 \x1b]52")


async def test_model_output_status_bar_and_recall_rows() -> None:
    evil = ModelSpec(name=f"model {PAYLOAD}", path="/nowhere", context_window=2048)
    engine = FakeEngine([Reply(list(f"reply {PAYLOAD}"))], load_steps=1)
    app = ChatApp(engine, evil)
    async with app.run_test(size=(200, 40)) as pilot:
        await settle(app, pilot)
        await send(pilot, "go")
        await settle(app, pilot)
        reply = messages(app)[-1]
        await reply.mount(
            RecallSummary(
                [RecallEntry("recalled", 0.5, "user", f"recalled {PAYLOAD}", message_id=1)],
                expanded=True,
            )
        )
        await settle(app, pilot)
        shown = all_rendered(app)
        assert "recalled osc52 ␛]52" in shown  # the recall row
        assert "reply osc52 ␛]52;c;aGk=␇" in shown  # the reply
        assert "model osc52" in shown  # the label and the status bar
        assert_inert(shown)


async def test_model_picker_names_from_the_user_models_folder() -> None:
    folder = locations.user_models_dir() / "evil\x1b]52;c;aGk=\x07[bold]x\u202e\x9b"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    app = ChatApp(FakeEngine(), SPEC)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("f2")
        await settle(app, pilot)
        shown = all_rendered(app)
        assert "evil␛]52;c;aGk=␇[bold]x" in shown
        assert_inert(shown)


# --- the CLI, writing to a terminal and to a pipe -------------------------------------------


def run_on_pty(args: list[str], timeout: float = 120) -> tuple[int, bytes, str]:
    """Run `chatapp ARGS` with stdout on a pty (stderr on a pipe): (status, bytes, stderr)."""
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "200", "TERM": "xterm-256color"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatapp", *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    os.close(slave)
    out = bytearray()
    while True:
        ready, _, _ = select.select([master], [], [], timeout)
        if not ready:
            proc.kill()
            raise AssertionError(f"no output for {timeout} s: {bytes(out)!r}")
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    status = proc.wait(timeout)
    assert proc.stderr is not None
    return status, bytes(out), proc.stderr.read().decode()


SGR = re.compile(rb"\x1b\[[0-9;]*m")
"""The styling Rich itself writes to a terminal (colours, bold): the only ESC allowed."""


def assert_terminal_safe(out: bytes) -> str:
    text = SGR.sub(b"", out).decode("utf-8")
    assert "\x1b" not in text and "\x9b" not in text, repr(text)
    assert_inert(text.replace("\r\n", "\n"))
    return text


@pytest.fixture(scope="module")
def evil_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model that always says `EVIL_REPLY` (then ends): every layer's output is
    zeroed so the next token depends on the last one only, through one-hot embeddings."""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    from tests.tiny import build_tiny_model

    path = build_tiny_model(tmp_path_factory.mktemp("evil-model"))
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = LlamaForCausalLM.from_pretrained(path)
    byte_ids = [tokenizer.convert_tokens_to_ids(t) for t in _byte_tokens(EVIL_REPLY)]
    chain = [tokenizer.convert_tokens_to_ids(_byte_tokens("\n")[0]), *byte_ids]
    chain.append(tokenizer.eos_token_id)
    assert len(set(chain[:-1])) == len(chain) - 1  # each state leads to one next token
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight.zero_()
        model.lm_head.weight.zero_()
        for state, (token, following) in enumerate(itertools.pairwise(chain)):
            model.model.embed_tokens.weight[token, state] = 1.0
            model.lm_head.weight[following, state] = 10.0
    model.save_pretrained(path)
    return path


EVIL_REPLY = "\x1b]52;cQ=\x07[bold\x9b\u202e"
"""Every byte differs (the model's state is the last token): OSC 52, markup, C1, bidi."""


def _byte_tokens(text: str) -> list[str]:
    """The byte-level BPE symbol of each UTF-8 byte (GPT-2's byte-to-unicode table)."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return [table[b] for b in text.encode("utf-8")]


def test_ask_to_a_terminal_is_inert_and_to_a_pipe_is_raw(evil_model: Path) -> None:
    args = ["ask", "--model", str(evil_model), "--no-save", "--max-tokens", "40", "-t", "0", "hi"]
    piped = subprocess.run(
        [sys.executable, "-m", "chatapp", *args],
        capture_output=True,
        cwd=ROOT,
        env=os.environ.copy(),
        timeout=120,
    )
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.decode() == EVIL_REPLY + "\n"  # a pipe gets the model's raw text

    status, out, err = run_on_pty(args)
    assert status == 0, err
    assert b"\x1b" not in out  # not even Rich: `ask` writes plain text
    text = assert_terminal_safe(out)
    assert text.strip() == "␛]52;cQ=␇[bold��"


def test_sessions_list_show_search_and_models_list_on_a_terminal(tmp_path: Path) -> None:
    with Store(locations.database_file()) as store:
        session_id = hostile_session(store)
    folder = locations.user_models_dir() / "evil\x1b]52;c;aGk=\x07[bold]x\u202e\x9b"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))

    for args, expected in [
        (["sessions", "list"], "title osc52 ␛]52;c;aGk=␇"),
        (["sessions", "show", str(session_id)], "answer osc52 ␛]52;c;aGk=␇"),
        (["sessions", "search", "markup"], "[bold]markup[/bold]"),
        (["models", "list"], "evil␛]52;c;aGk=␇[bold]x"),
    ]:
        status, out, err = run_on_pty(args)
        assert status == 0, (args, err)
        text = assert_terminal_safe(out)
        flat = " ".join(text.split())  # tables wrap long cells
        assert " ".join(expected.split()) in flat, (args, text)
