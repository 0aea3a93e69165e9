"""`chatapp ask` as a script would use it: a real process, a real worker, a real model."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import chatapp


def test_ask_streams_a_reply_to_stdout(tiny_model: Path):
    result = chatapp(
        "ask", "--model", str(tiny_model), "--max-tokens", "12", "--seed", "3", "--stats", "Hello"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert "tokens/s" in result.stderr
    assert "Traceback" not in result.stderr


def test_ask_reads_the_question_from_stdin(tiny_model: Path):
    result = chatapp("ask", "--model", str(tiny_model), "--max-tokens", "5", stdin="What is 2+2?")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_ask_with_nothing_to_ask_says_so():
    result = chatapp("ask", stdin="")
    assert result.returncode == 1
    assert result.stderr.strip() == "chatapp: nothing to ask: give a question, or pipe one to stdin"


def test_unknown_model_is_one_clear_line():
    result = chatapp("ask", "--model", "no-such-model", "hi")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "no-such-model" in lines[0] and "smollm2-135m-instruct" in lines[0]


def test_missing_model_folder_is_one_clear_line(tmp_path: Path):
    result = chatapp("ask", "--model", str(tmp_path / "missing"), "hi")
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "missing" in result.stderr and "Traceback" not in result.stderr


def test_a_model_that_cannot_load_is_one_clear_line(tmp_path: Path):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "llama"}')
    result = chatapp("ask", "--model", str(broken), "hi")
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "could not load model" in result.stderr
