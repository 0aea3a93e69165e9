"""`/export` and the palette's export entries: the real app, a real SQLite store, files."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatapp.app import ChatApp
from chatapp.palette import entries_for
from chatapp.store import Store
from chatapp.store.transfer import export_json, export_markdown, import_text
from tests.fakes import FakeEngine
from tests.test_app import SIZE, SPEC, messages, notes_of, prompt, send, settle


async def run_slash(app: ChatApp, pilot, text: str) -> None:
    prompt(app).load_text(text)
    await pilot.press("enter")
    await settle(app, pilot)


@pytest.fixture
def out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


async def test_export_writes_markdown_or_json_and_never_overwrites(
    tmp_path: Path, out: Path
) -> None:
    with Store(tmp_path / "chat.db") as store:
        app = ChatApp(FakeEngine(["Paris, of course."]), SPEC, store=store)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            with notes_of(app) as notes:
                await run_slash(app, pilot, "/export")
            assert notes == ["Nothing to export yet: send a message first."]
            assert list(out.iterdir()) == []

            await send(pilot, "Capital of France? [bold]x[/bold]")
            await settle(app, pilot)
            session_id = app.chat.session_id
            with notes_of(app) as notes:
                await run_slash(app, pilot, "/export")
                await run_slash(app, pilot, "/export")
                await run_slash(app, pilot, "/export json")
            first, second, as_json = (
                out / "capital-of-france-bold-x-bold.md",
                out / "capital-of-france-bold-x-bold-2.md",
                out / "capital-of-france-bold-x-bold.json",
            )
            assert notes == [
                f"Exported this session as Markdown to {first}",
                f"Exported this session as Markdown to {second}",
                f"Exported this session as JSON to {as_json}",
            ]
            markdown = export_markdown(store, session_id)
            assert "Paris, of course." in markdown
            assert first.read_text("utf-8") == second.read_text("utf-8") == markdown
            assert as_json.read_text("utf-8") == export_json(store, session_id)

            # A PATH: a folder gets a named file; an existing file is left as it is.
            (tmp_path / "notes").mkdir()
            kept = tmp_path / "kept.json"
            kept.write_text("mine")
            with notes_of(app) as notes:
                await run_slash(app, pilot, f"/export {tmp_path / 'notes'}")
                await run_slash(app, pilot, f"/export {kept}")
            assert (tmp_path / "notes" / first.name).read_text("utf-8") == markdown
            assert notes[1] == f"Not exported: {kept} exists already."
            assert kept.read_text() == "mine"

    # The JSON imports into another database as the same session.
    with Store(tmp_path / "other.db") as other:
        imported = import_text(other, as_json.read_text("utf-8"))
        assert export_json(other, imported.id) == as_json.read_text("utf-8").replace(
            f'"id": {session_id}', f'"id": {imported.id}'
        )


async def test_an_unwritable_target_says_why_and_the_chat_goes_on(
    tmp_path: Path, out: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    app = ChatApp(FakeEngine(["one", "two"]), SPEC)  # not saved: the export still works
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await send(pilot, "hello")
        await settle(app, pilot)
        with notes_of(app) as notes:
            await run_slash(app, pilot, f"/export {blocker / 'chat.md'}")
        assert len(notes) == 1 and notes[0].startswith(f"Not exported to {blocker / 'chat.md'}: ")
        await send(pilot, "still here?")
        await settle(app, pilot)
        assert [m.text for m in messages(app)] == ["hello", "one", "still here?", "two"]
        with notes_of(app) as notes:
            await run_slash(app, pilot, "/export")
        assert notes == [f"Exported this session as Markdown to {out / 'hello.md'}"]
        assert "still here?" in (out / "hello.md").read_text("utf-8")


async def test_the_palette_offers_both_formats(tmp_path: Path, out: Path) -> None:
    app = ChatApp(FakeEngine(["a reply"]), SPEC)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await send(pilot, "palette export")
        await settle(app, pilot)
        entries = {e.title: e for e in entries_for(app.screen)}
        assert "/export" in entries
        entries["Export session as JSON"].run()
        entries["Export session as Markdown"].run()
        assert sorted(p.name for p in out.iterdir()) == ["palette-export.json", "palette-export.md"]
