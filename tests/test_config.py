"""Config loading and validation, env overrides, UI state, `config show` and `locate`."""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path

import pytest

from chatapp import locations
from chatapp.commands import config as config_command
from chatapp.config import (
    ConfigProblem,
    ContextSettings,
    GenerationSettings,
    KeyLines,
    ModelEntry,
    Settings,
    UISettings,
    load_settings,
    settings_as_toml,
)
from chatapp.state import UIState, load_state, save_state, update_state
from tests.conftest import run_python


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def one(problems: list[ConfigProblem], key: str) -> ConfigProblem:
    found = [p for p in problems if p.key == key]
    assert len(found) == 1, problems
    return found[0]


GOOD = """
    default_model = "qwen"
    encoder = "minilm-l12"
    theme = "chatapp-nord"
    system_prompt = "Be brief."

    [generation]
    temperature = 0.2
    top_p = 1
    top_k = 0
    repetition_penalty = 1.0
    max_new_tokens = 64
    seed = 7
    stop = ["</s>", "User:"]

    [context]
    window = 4096
    reply_reserve = 256
    recent_turns = 2
    min_score = 0.25
    cross_session_recall = true

    [ui]
    show_stats = false

    [[models]]
    name = "mine"
    path = "~/models/mine"
    context_window = 8192
    stop = ["<|end|>"]

    [models.generation]
    temperature = 0.0

    [[models]]
    name = "relative"
    path = "models/rel.gguf"
    chat_template = "{{ messages }}"
"""


# --- loading ---------------------------------------------------------------------------


def test_missing_file_gives_defaults_and_no_problem(tmp_path: Path) -> None:
    settings, problems = load_settings(tmp_path / "nope.toml", env={})
    assert settings == Settings()
    assert problems == []


def test_default_path_is_the_config_file() -> None:
    write(locations.config_file(), 'theme = "chatapp-light"\n')
    settings, problems = load_settings(env={})
    assert settings.theme == "chatapp-light"
    assert problems == []


def test_good_file_is_read_into_typed_settings(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", GOOD)
    settings, problems = load_settings(path, env={})
    assert problems == []
    assert settings.default_model == "qwen"
    assert settings.encoder == "minilm-l12"
    assert settings.theme == "chatapp-nord"
    assert settings.system_prompt == "Be brief."
    assert settings.generation == GenerationSettings(
        temperature=0.2,
        top_p=1.0,
        top_k=0,
        repetition_penalty=1.0,
        max_new_tokens=64,
        seed=7,
        stop=("</s>", "User:"),
    )
    assert isinstance(settings.generation.top_p, float)
    assert settings.context == ContextSettings(4096, 256, 2, 0.25, True)
    assert settings.ui == UISettings(show_stats=False)
    mine, relative = settings.models
    assert mine == ModelEntry(
        name="mine",
        path=str(Path("~/models/mine").expanduser()),
        context_window=8192,
        stop=("<|end|>",),
        generation=(("temperature", 0.0),),
    )
    assert relative.path == str(tmp_path / "models/rel.gguf")
    assert relative.chat_template == "{{ messages }}"
    assert settings.generation_for("mine").temperature == 0.0
    assert settings.generation_for("mine").max_new_tokens == 64
    assert settings.generation_for("relative") == settings.generation
    assert settings.generation_for("unknown") == settings.generation
    spec = relative.to_spec(default_context_window=1024)
    assert (spec.name, spec.context_window, spec.chat_template) == (
        "relative",
        1024,
        "{{ messages }}",
    )


def test_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    path = write(
        tmp_path / "config.toml",
        """
        theme = "chatapp-light"

        [generation]
        temperature = 0.5
        top_p = = 0.3
        """,
    )
    settings, problems = load_settings(path, env={})
    assert settings == Settings()
    (problem,) = problems
    assert problem.file == path
    assert problem.line == 5
    assert "column" in problem.message
    assert str(problem).startswith("config.toml:5: TOML syntax error")


def test_wrong_type_falls_back_and_the_rest_applies(tmp_path: Path) -> None:
    path = write(
        tmp_path / "config.toml",
        """
        default_model = "qwen"

        # the temperature below is not a number
        [generation]
        max_new_tokens = 99
        temperature = "hot"
        """,
    )
    settings, problems = load_settings(path, env={})
    assert settings.default_model == "qwen"
    assert settings.generation.max_new_tokens == 99
    assert settings.generation.temperature == 0.7
    problem = one(problems, "generation.temperature")
    assert problem.line == 6
    assert problem.file == path
    assert str(problem) == (
        "config.toml:6: generation.temperature: must be a number, got 'hot' (using 0.7)"
    )
    assert len(problems) == 1


@pytest.mark.parametrize(
    ("line", "key", "expected"),
    [
        ("temperature = -0.1", "temperature", "at least 0"),
        ("top_p = 0", "top_p", "greater than 0 and at most 1"),
        ("top_p = 1.5", "top_p", "greater than 0 and at most 1"),
        ("max_new_tokens = 0", "max_new_tokens", "at least 1"),
        ("max_new_tokens = 2.5", "max_new_tokens", "whole number"),
        ("top_k = true", "top_k", "whole number"),
        ("repetition_penalty = 0", "repetition_penalty", "greater than 0"),
        ("stop = [1, 2]", "stop", "array of strings"),
    ],
)
def test_out_of_range_or_wrong_type_generation(
    tmp_path: Path, line: str, key: str, expected: str
) -> None:
    path = write(tmp_path / "config.toml", f"[generation]\nseed = 3\n{line}\n")
    settings, problems = load_settings(path, env={})
    problem = one(problems, f"generation.{key}")
    assert expected in problem.message
    assert problem.line == 3
    assert getattr(settings.generation, key) == getattr(GenerationSettings(), key)
    assert settings.generation.seed == 3


def test_other_tables_are_checked(tmp_path: Path) -> None:
    path = write(
        tmp_path / "config.toml",
        """
        theme = 3
        encoder = ""
        [context]
        window = 0
        cross_session_recall = "yes"
        min_score = "high"
        [ui]
        show_stats = 1
        """,
    )
    settings, problems = load_settings(path, env={})
    assert settings == Settings()
    assert {p.key: p.line for p in problems} == {
        "theme": 1,
        "encoder": 2,
        "context.window": 4,
        "context.cross_session_recall": 5,
        "context.min_score": 6,
        "ui.show_stats": 8,
    }
    assert "(using false)" in one(problems, "context.cross_session_recall").message
    assert "(using not set)" in one(problems, "context.window").message


def test_unknown_keys_suggest_the_closest(tmp_path: Path) -> None:
    path = write(
        tmp_path / "config.toml",
        """
        defualt_model = "x"
        [generation]
        tempreture = 1.0
        top_p = 0.5
        [genration]
        x = 1
        """,
    )
    settings, problems = load_settings(path, env={})
    assert settings.generation.top_p == 0.5
    typo = one(problems, "generation.tempreture")
    assert typo.line == 3
    assert "did you mean 'temperature'?" in typo.message
    assert "did you mean 'default_model'?" in one(problems, "defualt_model").message
    table = one(problems, "genration")
    assert "did you mean 'generation'?" in table.message
    assert table.line == 5
    assert len(problems) == 3


def test_dotted_and_inline_keys_are_located(tmp_path: Path) -> None:
    path = write(
        tmp_path / "config.toml",
        """
        theme = "x"
        generation.temperature = "warm"
        context = { window = -1 }
        """,
    )
    _, problems = load_settings(path, env={})
    assert one(problems, "generation.temperature").line == 2
    assert one(problems, "context.window").line == 3


def test_a_table_of_the_wrong_type(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", 'generation = "fast"\ntheme = "t"\n')
    settings, problems = load_settings(path, env={})
    assert settings.theme == "t"
    assert one(problems, "generation").line == 1


def test_bad_models_are_skipped_and_good_ones_kept(tmp_path: Path) -> None:
    path = write(
        tmp_path / "config.toml",
        """
        [[models]]
        name = "ok"
        path = "/m/ok"

        [[models]]
        name = "no-path"
        pth = "/m/x"

        [[models]]
        name = "ok"
        path = "/m/dup"

        [[models]]
        name = "tuned"
        path = "/m/tuned"
        context_window = "big"
        [models.generation]
        top_p = 2
        max_new_tokens = 10
        """,
    )
    settings, problems = load_settings(path, env={})
    assert [m.name for m in settings.models] == ["ok", "tuned"]
    assert settings.models[1].context_window is None
    assert settings.models[1].generation == (("max_new_tokens", 10),)
    assert one(problems, "models[2].pth").line == 7
    assert "did you mean 'path'?" in one(problems, "models[2].pth").message
    assert one(problems, "models[2]").line == 5
    assert one(problems, "models[3].name").line == 10
    assert one(problems, "models[4].context_window").line == 16
    assert one(problems, "models[4].generation.top_p").line == 18
    assert len(problems) == 5


def test_a_folder_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.mkdir()
    settings, problems = load_settings(path, env={})
    assert settings == Settings()
    (problem,) = problems
    assert problem.file == path
    assert "folder" in problem.message


def test_an_unreadable_file_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "config.toml", 'theme = "x"\n')
    real_read_text = Path.read_text

    def denied(self: Path, *args, **kwargs) -> str:
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_text(self, *args, **kwargs)

    # chmod 0 is no barrier to root (as in CI containers), so deny the read directly.
    monkeypatch.setattr(Path, "read_text", denied)
    settings, problems = load_settings(path, env={"CHATAPP_MODEL": "m"})
    assert settings == Settings(default_model="m")
    (problem,) = problems
    assert problem.file == path
    assert str(problem) == "config.toml: cannot be read (Permission denied); using defaults"


def test_binary_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b"\xff\xfe\x00bad")
    settings, problems = load_settings(path, env={})
    assert settings == Settings()
    assert "UTF-8" in problems[0].message


# --- environment -----------------------------------------------------------------------


def test_env_overrides_win_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", GOOD)
    env = {
        "CHATAPP_MODEL": "other",
        "CHATAPP_THEME": "chatapp-light",
        "CHATAPP_TEMPERATURE": "1.25",
        "CHATAPP_MAX_TOKENS": "32",
        "CHATAPP_CONTEXT_WINDOW": "1024",
        "CHATAPP_SYSTEM_PROMPT": "You are a pirate.",
    }
    settings, problems = load_settings(path, env=env)
    assert problems == []
    assert settings.default_model == "other"
    assert settings.theme == "chatapp-light"
    assert settings.generation.temperature == 1.25
    assert settings.generation.max_new_tokens == 32
    assert settings.generation.top_k == 0  # the rest of the file still applies
    assert settings.context.window == 1024
    assert settings.context.reply_reserve == 256
    assert settings.system_prompt == "You are a pirate."


def test_bad_env_values_name_the_variable(tmp_path: Path) -> None:
    env = {
        "CHATAPP_TEMPERATURE": "hot",
        "CHATAPP_MAX_TOKENS": "0",
        "CHATAPP_CONTEXT_WINDOW": "4k",
        "CHATAPP_MODEL": "  ",
        "CHATAPP_SYSTEM_PROMPT": "",
    }
    path = write(tmp_path / "config.toml", 'system_prompt = "x"\n')
    settings, problems = load_settings(path, env=env)
    assert settings == Settings()
    assert str(one(problems, "CHATAPP_TEMPERATURE")) == (
        "CHATAPP_TEMPERATURE: must be a number, got 'hot' (using 0.7)"
    )
    assert "at least 1" in one(problems, "CHATAPP_MAX_TOKENS").message
    assert "whole number" in one(problems, "CHATAPP_CONTEXT_WINDOW").message
    assert all(p.file is None for p in problems)
    assert len(problems) == 3


def test_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATAPP_THEME", "chatapp-nord")
    settings, _ = load_settings()
    assert settings.theme == "chatapp-nord"


# --- writing ---------------------------------------------------------------------------


def test_settings_as_toml_round_trips(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", GOOD)
    settings, _ = load_settings(path, env={"CHATAPP_SYSTEM_PROMPT": 'Say "hi"\n\tand \\ bye é'})
    text = settings_as_toml(settings)
    again = write(tmp_path / "again.toml", text)
    assert load_settings(again, env={}) == (settings, [])


def test_default_settings_as_toml_round_trip(tmp_path: Path) -> None:
    text = settings_as_toml(Settings())
    assert "# system_prompt is not set" in text
    assert load_settings(write(tmp_path / "c.toml", text), env={}) == (Settings(), [])


def test_key_lines_best_effort() -> None:
    lines = KeyLines('a = 1\n[t]\n"b" = 2\n[[arr]]\nk = 1\n[[arr]]\nk = 2\n[arr.sub]\nz = 3\n')
    assert lines.line("", "a") == 1
    assert lines.line("t", "b") == 3
    assert lines.line("arr", "k", 0) == 5
    assert lines.line("arr", "k", 1) == 7
    assert lines.line("arr.sub", "z", 1) == 9
    assert lines.line("t", "missing") == 2
    assert lines.line("nowhere", "x") is None


def test_config_does_not_import_textual() -> None:
    code = "import sys, chatapp.config, chatapp.commands.config, chatapp.state; " + (
        "bad = [m for m in ('textual', 'torch', 'transformers') if m in sys.modules]; "
        "assert not bad, bad"
    )
    done = run_python("-c", code)
    assert done.returncode == 0, done.stderr


# --- UI state --------------------------------------------------------------------------


def test_state_round_trip() -> None:
    assert load_state() == UIState()
    state = UIState(theme="chatapp-nord", last_session_id=42, last_model="m")
    assert save_state(state)
    assert locations.state_file().exists()
    assert load_state() == state
    assert update_state(theme="chatapp-light") == UIState("chatapp-light", 42, "m")
    assert load_state().theme == "chatapp-light"
    leftovers = [p for p in locations.state_file().parent.iterdir() if p.name != "state.json"]
    assert leftovers == []


def test_corrupt_state_gives_defaults_and_is_kept_until_saved() -> None:
    path = locations.state_file()
    path.parent.mkdir(parents=True)
    path.write_text("{not json", encoding="utf-8")
    assert load_state() == UIState()
    assert path.read_text(encoding="utf-8") == "{not json"
    assert save_state(UIState(theme="t"))
    assert load_state() == UIState(theme="t")


@pytest.mark.parametrize(
    "text",
    ["[1, 2]", '"x"', "", '{"theme": 5, "last_session_id": true, "last_model": []}'],
)
def test_odd_state_files_give_defaults(tmp_path: Path, text: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(text, encoding="utf-8")
    assert load_state(path) == UIState()


def test_state_keeps_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"theme": "a", "future": [1]}), encoding="utf-8")
    state = load_state(path)
    assert state.extra == {"future": [1]}
    save_state(state, path)
    assert json.loads(path.read_text(encoding="utf-8"))["future"] == [1]


def test_state_save_failure_is_reported_not_raised(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    assert save_state(UIState(theme="t"), blocker / "state.json") is False


# --- commands --------------------------------------------------------------------------


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="chatapp")
    config_command.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_config_show_prints_effective_toml_and_problems(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write(locations.config_file(), '[generation]\ntemperature = "hot"\ntop_k = 5\n')
    monkeypatch.setenv("CHATAPP_MODEL", "env-model")
    code, out, err = run_cli(["config", "show"], capsys)
    assert code == 0
    assert 'default_model = "env-model"' in out
    assert "top_k = 5" in out
    assert "temperature = 0.7" in out
    assert "config.toml:2: generation.temperature: must be a number, got 'hot'" in err


def test_config_show_with_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "other.toml", 'theme = "chatapp-nord"\n')
    code, out, err = run_cli(["config", "show", "--file", str(path)], capsys)
    assert (code, err) == (0, "")
    assert 'theme = "chatapp-nord"' in out


def test_config_check(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["config", "check"], capsys)
    assert code == 0
    assert "using defaults" in out
    write(locations.config_file(), "theem = 1\n")
    code, _, err = run_cli(["config", "check"], capsys)
    assert code == 1
    assert "did you mean 'theme'?" in err


def test_config_alone_prints_usage(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["config"], capsys)
    assert code == 2
    assert "show" in err


@pytest.mark.parametrize(
    ("what", "where"),
    [
        ("config", locations.config_file),
        ("themes", locations.user_themes_dir),
        ("data", locations.data_dir),
        ("models", locations.models_dir),
        ("database", locations.database_file),
        ("state", locations.state_file),
    ],
)
def test_locate(what: str, where, capsys: pytest.CaptureFixture[str], isolated_paths: Path) -> None:
    code, out, _ = run_cli(["locate", what], capsys)
    assert code == 0
    assert out == f"{where()}\n"
    assert not any(isolated_paths.rglob("*")) if isolated_paths.exists() else True


def test_locate_all(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["locate"], capsys)
    assert code == 0
    assert f"database     {locations.database_file()}" in out.splitlines()


def test_locate_rejects_unknown(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run_cli(["locate", "nowhere"], capsys)
