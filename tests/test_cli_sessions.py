"""`chatapp sessions …`, driven through its own argparse tree (no TUI, no model)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

from chatapp import locations
from chatapp.commands import sessions as sessions_command
from chatapp.store import Store
from tests.conftest import run_python


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="chatapp")
    sessions_command.register(parser.add_subparsers())
    args = parser.parse_args(["sessions", *argv])
    return args.func(args)


@pytest.fixture
def filled() -> dict[str, int]:
    """Two sessions in the default database; the first has a regenerated reply."""
    with Store() as store:
        first = store.create_session("smollm2", system_prompt="Be kind.")
        u = store.add_message(first.id, "user", "Explain sourdough starters", None).id
        a = store.add_message(first.id, "assistant", "A starter is flour and water.", u).id
        b = store.add_message(first.id, "assistant", "Wild yeast \x1b[31mculture.", u).id
        second = store.create_session("qwen")
        store.add_message(second.id, "user", "Plan a trip to Lisbon", None)
        return {"first": first.id, "second": second.id, "u": u, "a": a, "b": b}


def one_error_line(err: str) -> str:
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, err
    assert lines[0].startswith("chatapp: ")
    return lines[0]


def test_list(filled: dict[str, int], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("list") == 0
    out = capsys.readouterr().out
    assert "ID" in out and "Title" in out and "Msgs" in out
    assert out.index("Plan a trip to Lisbon") < out.index("Explain sourdough starters")
    assert "qwen" in out and "smollm2" in out
    assert cli("list", "--limit", "1") == 0
    out = capsys.readouterr().out
    assert "Lisbon" in out and "sourdough" not in out and "1–1 of 2" in out
    # `chatapp sessions` alone lists too.
    assert cli() == 0
    assert "Lisbon" in capsys.readouterr().out


def test_list_empty(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("list") == 0
    assert "No saved sessions." in capsys.readouterr().out
    assert locations.database_file().exists()


def test_show(filled: dict[str, int], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("show", str(filled["first"])) == 0
    out = capsys.readouterr().out
    assert "Explain sourdough starters" in out
    assert "Be kind." in out
    # The current branch is the newest reply, one of two versions; escapes made inert.
    assert "Wild yeast ␛[31mculture." in out and "\x1b[31m" not in out
    assert "flour and water" not in out
    assert "version 2 of 2" in out


def test_search(filled: dict[str, int], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("search", "sourdough") == 0
    out = capsys.readouterr().out
    assert "sourdough" in out and str(filled["u"]) in out and "Lisbon" not in out
    assert cli("search", "--", '"', "AND", "-*", "NEAR(") == 0
    assert "No messages match" in capsys.readouterr().out
    assert cli("search", "lisb") == 0
    assert "Plan a trip to Lisbon" in capsys.readouterr().out


def test_export_markdown_to_stdout(filled: dict[str, int], capsys) -> None:
    assert cli("export", str(filled["first"])) == 0
    out = capsys.readouterr().out
    assert out.startswith("# Explain sourdough starters\n")
    assert "## Assistant" in out


def test_export_json_import_round_trip(filled: dict[str, int], tmp_path: Path, capsys) -> None:
    target = tmp_path / "first.json"
    assert cli("export", str(filled["first"]), "-o", str(target)) == 0  # format from suffix
    assert "Exported session" in capsys.readouterr().err
    document = json.loads(target.read_text(encoding="utf-8"))
    assert document["format"] == "chatapp-session" and len(document["messages"]) == 3

    assert cli("export", str(filled["first"]), "-o", str(target)) == 1
    assert "--force" in one_error_line(capsys.readouterr().err)
    assert cli("export", str(filled["first"]), "--format", "json", "-o", str(target), "-f") == 0
    capsys.readouterr()

    assert cli("import", str(target)) == 0
    out = capsys.readouterr().out
    assert "Imported session 3: Explain sourdough starters (3 messages)" in out
    again = tmp_path / "again.json"
    assert cli("export", "3", "--format", "json", "-o", str(again)) == 0
    assert again.read_text(encoding="utf-8") == target.read_text(encoding="utf-8")
    md = tmp_path / "first.md"
    assert cli("export", "3", "-o", str(md)) == 0
    assert md.read_text(encoding="utf-8").startswith("# Explain sourdough starters")


def test_import_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "chatapp-session", "version": 7}', encoding="utf-8")
    assert cli("import", str(bad)) == 1
    line = one_error_line(capsys.readouterr().err)
    assert str(bad) in line and "unsupported version 7" in line
    assert cli("import", str(tmp_path / "nope.json")) == 1
    assert "nope.json" in one_error_line(capsys.readouterr().err)
    with Store() as store:
        assert store.count_sessions() == 0


def test_delete(filled: dict[str, int], capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    # Not a terminal and no --yes: refuse.
    monkeypatch.setattr(sys, "stdin", open("/dev/null"))  # noqa: SIM115
    assert cli("delete", str(filled["second"])) == 1
    assert "--yes" in one_error_line(capsys.readouterr().err)
    assert cli("delete", str(filled["second"]), "--yes") == 0
    assert f"Deleted session {filled['second']}." in capsys.readouterr().out
    with Store() as store:
        assert [s.id for s in store.list_sessions()] == [filled["first"]]
    assert cli("delete", str(filled["second"]), "--yes") == 1
    assert f"no session {filled['second']}" in one_error_line(capsys.readouterr().err)


def test_delete_asks_on_a_terminal(filled: dict[str, int], capsys, monkeypatch) -> None:
    class Terminal:
        closed = False

        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Terminal())
    answers = iter(["n", "y"])
    monkeypatch.setattr("builtins.input", lambda prompt: next(answers))
    assert cli("delete", str(filled["first"])) == 1
    assert cli("delete", str(filled["first"])) == 0
    with Store() as store:
        assert [s.id for s in store.list_sessions()] == [filled["second"]]


def test_rename(filled: dict[str, int], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("rename", str(filled["first"]), "Bread", "notes") == 0
    assert "Bread notes" in capsys.readouterr().out
    with Store() as store:
        session = store.get_session(filled["first"])
        assert session.title == "Bread notes" and session.title_locked
    assert cli("rename", "999", "x") == 1
    assert "no session 999" in one_error_line(capsys.readouterr().err)


def test_show_missing_session(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("show", "42") == 1
    assert "no session 42" in one_error_line(capsys.readouterr().err)


def test_unusable_database_is_one_line(tmp_path: Path, capsys) -> None:
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"garbage" * 1000)
    before = broken.read_bytes()
    assert cli("--database", str(broken), "list") == 1
    line = one_error_line(capsys.readouterr().err)
    assert str(broken) in line and "fresh database" in line
    assert broken.read_bytes() == before


def test_runs_in_a_fresh_process_without_heavy_imports(filled: dict[str, int]) -> None:
    code = (
        "import argparse, sys\n"
        "from chatapp.commands import sessions\n"
        "p = argparse.ArgumentParser(prog='chatapp')\n"
        "sessions.register(p.add_subparsers())\n"
        "a = p.parse_args(['sessions', 'search', 'lisbon'])\n"
        "rc = a.func(a)\n"
        "bad = [m for m in ('textual', 'torch', 'transformers') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "sys.exit(rc)\n"
    )
    result = run_python("-c", code, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Lisbon" in result.stdout
