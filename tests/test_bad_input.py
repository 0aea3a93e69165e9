"""Bad input everywhere: each gives a clear message naming the thing and what to do, and
nothing already saved is lost.

Unit-level checks of the parsers live beside them (test_config, test_themes, test_store's
import tests, test_app's paste test); here the real app (Pilot) and the real CLI meet:
a broken config and theme at start-up, bad import files, bad attachments, bad model
paths, a 1 MB paste, and a disk that fills up mid-session (a real tmpfs, mounted when
the tests run as root; a read-only database is covered in test_store/test_sessions_app).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.events import Paste

from chatapp import locations
from chatapp.app import ChatApp
from chatapp.config import load_settings
from chatapp.engine.protocol import ModelSpec
from chatapp.store import Store
from chatapp.store.transfer import export_json
from chatapp.widgets import prompt as prompt_module
from tests.conftest import chatapp as run_chatapp
from tests.fakes import FakeEngine, Reply
from tests.test_app import SIZE, SPEC, messages, notes_of, prompt, send, settle

ROOT = Path(__file__).resolve().parent.parent


chatapp = functools.partial(run_chatapp, timeout=60)


# --- config and theme files, at start-up ----------------------------------------------------


def test_a_broken_config_is_named_with_its_line_and_the_start_goes_on(tmp_path: Path) -> None:
    config = locations.config_file()
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text('theme = "chatapp-nord"\n[generation]\ntemperature = "hot"\ncolour = 1\n')
    settings, problems = load_settings()
    assert settings.theme == "chatapp-nord"  # the good keys still apply
    text = "\n".join(map(str, problems))
    assert f"{config.name}:3" in text and "temperature" in text and "colour" in text

    config.write_text("[generation\ntemperature = 0.5\n")  # a syntax error
    result = chatapp("ask", "--model", str(tmp_path / "no-model"), "hi")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert any(f"{config.name}:1: TOML syntax error" in line for line in lines), result.stderr
    assert "Traceback" not in result.stderr


async def test_a_broken_theme_file_is_reported_and_skipped() -> None:
    themes = locations.user_themes_dir()
    themes.mkdir(parents=True, exist_ok=True)
    (themes / "broken.toml").write_text('name = "broken"\nprimary = \n')
    (themes / "wrong.toml").write_text('name = "wrong"\nprimary = 12\n')
    app = ChatApp(FakeEngine(), SPEC)
    with notes_of(app) as notes:
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            assert app.theme.startswith("chatapp-")  # a good theme is in use
    text = "\n".join(notes)
    assert "broken.toml:2: TOML syntax error" in text, notes
    assert "wrong.toml" in text, notes


# --- import files, through the CLI ---------------------------------------------------------


def test_bad_import_files_are_one_line_each_and_write_nothing(tmp_path: Path) -> None:
    with Store(locations.database_file()) as store:
        session = store.create_session("m", None, {})
        store.add_message(session.id, "user", "already saved", None)
        good = json.loads(export_json(store, session.id))
    cases = {
        "malformed.json": b'{"format": "chatapp-session", ',
        "schema.json": json.dumps({**good, "messages": [{"role": 3}]}).encode(),
        "binary.json": bytes(range(256)) * 4,
        "latin1.json": '{"title": "caf\xe9"}'.encode("latin-1"),
        "huge.json": b" " * (21 * 1024 * 1024),
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    for name in [*cases, "missing.json"]:
        result = chatapp("sessions", "import", str(tmp_path / name))
        assert result.returncode == 1, (name, result.stdout)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and name in lines[0], (name, result.stderr)
        assert "Traceback" not in result.stderr
    with Store(locations.database_file()) as store:
        (only,) = store.list_sessions()
        assert [m.content for m in store.branch(only.id)] == ["already saved"]


# --- attachments, model paths, a 1 MB paste, in the app ------------------------------------


async def test_bad_attachments_and_model_paths_say_why(tmp_path: Path) -> None:
    from chatapp import recall_ui

    files = {
        "binary.bin": bytes(range(256)) * 64,
        "latin1.txt": "caf\xe9 cr\xe8me".encode("latin-1"),
        "huge.txt": b"x" * (recall_ui_max() + 1),
        "empty.txt": b"  \n",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    not_a_model = tmp_path / "not-a-model"
    not_a_model.mkdir()
    (not_a_model / "notes.txt").write_text("hello")
    engine = FakeEngine()
    app = ChatApp(engine, SPEC)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        screen = app.chat
        screen.__dict__["_recall_encoder"] = ModelSpec("encoder", "/nowhere")  # as if pulled
        expected = {
            "binary.bin": "looks like a binary file",
            "latin1.txt": "is not UTF-8 text",
            "huge.txt": "files up to",
            "empty.txt": "is empty",
            "folder": "is a folder",
            "pipe": "is not a regular file",
            "dangling": "no such file",
        }
        for name, why in expected.items():
            with notes_of(app) as notes:
                prompt(app).load_text(f"/attach {tmp_path / name}")
                await pilot.press("enter")
                await settle(app, pilot)
            assert len(notes) == 1 and notes[0].startswith("Not attached: "), (name, notes)
            assert name in notes[0] and why in notes[0], notes
        assert not [r for r in engine.requests if type(r).__name__ == "Attach"]
        assert recall_ui is not None

        for path, why in [
            (tmp_path / "missing-model", "missing-model"),
            (not_a_model, "not-a-model"),
            (tmp_path / "binary.bin", "binary.bin"),
        ]:
            with notes_of(app) as notes:
                prompt(app).load_text(f"/model {path}")
                await pilot.press("enter")
                await settle(app, pilot)
            assert len(notes) == 1 and notes[0].startswith(f"Cannot switch to {path}"), notes
            assert why in notes[0]
            assert screen.model == SPEC and screen.model_ready  # still on the old model

        # A 1 MB paste: taken whole (the limit), the app stays usable, and it sends.
        monkeypatch_limit = prompt_module.MAX_PASTE_CHARS
        assert monkeypatch_limit >= 1_000_000
        box = prompt(app)
        box.load_text("")
        big = ("0123456789" * 99 + "012345678\n") * 1000  # 1,000,000 characters, 1,000 lines
        box.post_message(Paste(big + "tail"))
        await pilot.pause()
        assert len(box.text) == 1_000_000 and box.text == big  # cut at the limit
        await pilot.press("enter")
        await settle(app, pilot)
        assert messages(app)[0].text == big
        assert messages(app)[-1].text == "Hello from the fake model."


def recall_ui_max() -> int:
    from chatapp.attachments import MAX_BYTES

    return MAX_BYTES


# --- a disk that fills up, or turns read-only, mid-session ----------------------------------


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str = "400k") -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(folder: Path) -> None:
    """Take every free byte of the filesystem holding `folder`."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)


async def test_a_disk_that_fills_mid_session_keeps_the_view_and_the_saved(
    tmp_path: Path,
) -> None:
    with small_tmpfs(tmp_path / "disk") as disk:
        path = disk / "chat.db"
        engine = FakeEngine(["first answer", Reply("second answer is long", pause_after=1)])
        store = Store(path)
        try:
            app = ChatApp(engine, SPEC, store=store)
            async with app.run_test(size=SIZE) as pilot:
                await settle(app, pilot)
                await send(pilot, "first question")
                await settle(app, pilot)
                session_id = app.chat.session_id
                # The disk fills while a reply streams: it finishes on screen, one notice.
                with notes_of(app) as notes:
                    await send(pilot, "second question")
                    await engine.wait_paused()
                    # A checkpoint empties the WAL file (else SQLite reuses its space).
                    store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                    fill(disk)
                    engine.resume()
                    await settle(app, pilot)
                assert messages(app)[-1].text == "second answer is long"
                assert any("Not saved" in n and "disk is full" in n for n in notes), notes
                assert len(notes) == 1, notes  # said once, not per token
                # A new message cannot be saved: it is refused and stays in the prompt.
                with notes_of(app) as notes:
                    await send(pilot, "third")
                    await settle(app, pilot)
                assert prompt(app).text == "third"
                assert notes and "disk is full" in notes[0], notes
                assert str(path) in notes[0]
                # Space freed: the same message is sent and saved.
                (disk / "filler").unlink()
                await pilot.press("enter")
                await settle(app, pilot)
                assert prompt(app).text == "" and messages(app)[-2].text == "third"
        finally:
            store.close()
        # Nothing saved before the disk filled was lost, and the reply that ended while it
        # was full was saved whole before the next message, once there was room.
        with Store(path, recover=False) as again:
            stored = [(m.role, m.content, m.status) for m in again.branch(session_id)]
        assert stored == [
            ("user", "first question", "complete"),
            ("assistant", "first answer", "complete"),
            ("user", "second question", "complete"),
            ("assistant", "second answer is long", "complete"),
            ("user", "third", "complete"),
            ("assistant", "Hello from the fake model.", "complete"),
        ]
