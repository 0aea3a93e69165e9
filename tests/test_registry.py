"""The model registry (catalogue + config + models folder) and the settings precedence."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pytest

from chatapp import locations, registry
from chatapp.config import ModelEntry, Settings, load_settings
from chatapp.engine.models import PLAIN_STOP, PLAIN_TEMPLATE, UnknownModel, get_entry
from chatapp.engine.protocol import GenerationSettings
from chatapp.registry import SettingError, generation_for, parse_setting


def write_config(text: str) -> Settings:
    path = locations.config_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, "utf-8")
    settings, problems = load_settings(env={})
    assert problems == []
    return settings


# --- generation settings: catalogue < [generation] set < [[models]] < session -----------


def test_catalogue_defaults_apply_when_the_config_sets_nothing() -> None:
    smol = generation_for("smollm2-135m-instruct", Settings())
    assert smol.temperature == 0.2 and smol.max_new_tokens == 512
    gemma = generation_for("gemma3-270m", Settings())
    assert gemma.temperature == 0.7 and gemma.top_k == 64 and gemma.max_new_tokens == 256
    assert "\nUser:" in gemma.stop
    assert generation_for("not-in-the-catalogue", Settings()) == GenerationSettings()


def test_only_the_generation_keys_the_user_set_override_the_catalogue() -> None:
    settings = write_config("[generation]\ntemperature = 0.5\n")
    assert settings.generation_keys == {"temperature"}
    gemma = generation_for("gemma3-270m", settings)
    assert gemma.temperature == 0.5  # the user's
    assert gemma.top_k == 64 and gemma.max_new_tokens == 256  # the catalogue's, not defaults


def test_model_table_beats_global_and_session_beats_both(tiny_model: Path) -> None:
    settings = write_config(
        "[generation]\ntemperature = 0.5\nmax_new_tokens = 100\n\n"
        f'[[models]]\nname = "gemma3-270m"\npath = "{tiny_model}"\n'
        "[models.generation]\ntemperature = 0.9\n"
    )
    gemma = generation_for("gemma3-270m", settings)
    assert (gemma.temperature, gemma.max_new_tokens, gemma.top_k) == (0.9, 100, 64)
    session = generation_for("gemma3-270m", settings, {"temperature": 0.3})
    assert session.temperature == 0.3 and session.max_new_tokens == 100


def test_environment_variables_count_as_set_keys() -> None:
    settings, _ = load_settings(env={"CHATAPP_MAX_TOKENS": "64"})
    assert settings.generation_keys == {"max_new_tokens"}
    smol = generation_for("smollm2-135m-instruct", settings)
    assert smol.max_new_tokens == 64 and smol.temperature == 0.2


def test_prepare_uses_the_same_precedence_for_the_tui_and_ask(tiny_model: Path) -> None:
    from chatapp.launch import prepare

    write_config(
        "[generation]\ntop_k = 7\n\n"
        f'[[models]]\nname = "mine"\npath = "{tiny_model}"\ncontext_window = 200\n'
        "[models.generation]\nmax_new_tokens = 33\n"
    )
    startup = prepare(argparse.Namespace(model="mine"))
    assert startup.model is not None and startup.model.name == "mine"
    assert startup.model.context_window == 200
    assert (startup.generation.top_k, startup.generation.max_new_tokens) == (7, 33)


# --- /set ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("temperature", "0.3", ("temperature", 0.3)),
        ("temp", "0", ("temperature", 0.0)),
        ("max_tokens", "256", ("max_new_tokens", 256)),
        ("max-tokens", "1", ("max_new_tokens", 1)),
        ("top_p", "1", ("top_p", 1.0)),
        ("top_k", "0", ("top_k", 0)),
        ("seed", "random", ("seed", None)),
        ("Repetition_Penalty", "1.2", ("repetition_penalty", 1.2)),
    ],
)
def test_parse_setting(key: str, value: str, expected: tuple[str, object]) -> None:
    assert parse_setting(key, value) == expected


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("temprature", "1", "unknown setting"),
        ("temperature", "hot", "must be a number"),
        ("temperature", "-1", "at least 0"),
        ("temperature", "nan", "finite"),
        ("max_tokens", "2.5", "whole number"),
        ("max_tokens", "0", "at least 1"),
        ("top_p", "0", "greater than 0"),
        ("repetition_penalty", "0", "greater than 0"),
    ],
)
def test_parse_setting_refuses_bad_values(key: str, value: str, words: str) -> None:
    with pytest.raises(SettingError, match=words):
        parse_setting(key, value)


def test_describe_settings_is_short_for_the_status_bar() -> None:
    assert registry.describe_settings(GenerationSettings(0.2, max_new_tokens=512), short=True) == (
        "temp 0.2 · max 512"
    )
    assert registry.describe_settings(GenerationSettings(0.0), short=True).startswith("greedy")


# --- listing ---------------------------------------------------------------------------------


def test_list_entries_covers_config_catalogue_and_the_models_folder(
    tiny_model: Path, tiny_model_b: Path, tmp_path: Path
) -> None:
    dropped = locations.user_models_dir() / "dropped-in"
    shutil.copytree(tiny_model_b, dropped)
    settings = Settings(
        models=(
            ModelEntry("mine", str(tiny_model), context_window=200),
            ModelEntry("ghost", str(tmp_path / "nowhere")),
        )
    )
    entries = {e.name: e for e in registry.list_entries(settings)}
    mine = entries["mine"]
    assert mine.source == "config" and mine.installed and mine.context_window == 200
    assert mine.size is not None and mine.size > 10_000
    ghost = entries["ghost"]
    assert not ghost.installed and not ghost.pullable and "missing" in ghost.description
    smol = entries["smollm2-135m-instruct"]
    assert smol.source == "catalogue" and smol.defaults.temperature == 0.2
    assert smol.pullable == (not smol.installed)
    assert "minilm-l6" not in entries  # an encoder cannot chat
    dropped_entry = entries["dropped-in"]
    assert dropped_entry.source == "user-folder" and dropped_entry.installed
    assert dropped_entry.context_window == 128  # from its config.json
    assert registry.format_size(98_362_432) == "98.4 MB"


# --- resolving --------------------------------------------------------------------------------


def test_resolve_a_config_entry_keeps_its_own_settings(tiny_model: Path) -> None:
    settings = Settings(
        models=(ModelEntry("mine", str(tiny_model), context_window=100, stop=("###",)),)
    )
    spec = registry.resolve("mine", settings)
    assert (spec.name, spec.path, spec.context_window) == ("mine", str(tiny_model), 100)
    assert spec.chat_template is None  # the tokenizer's own ChatML template
    assert spec.stop == ("###",)


def test_a_base_model_without_a_template_gets_the_transcript_and_stops(tmp_path: Path) -> None:
    from tests.tiny import build_tiny_model

    base = build_tiny_model(tmp_path / "base", chat_template=None)
    spec = registry.resolve("base", Settings(models=(ModelEntry("base", str(base)),)))
    assert spec.chat_template == PLAIN_TEMPLATE
    assert set(PLAIN_STOP) <= set(spec.stop)
    own = registry.resolve(
        "base", Settings(models=(ModelEntry("base", str(base), chat_template="{{x}}"),))
    )
    assert own.chat_template == "{{x}}" and own.stop == ()


def test_resolve_unknown_names_lists_config_models_too(tiny_model: Path) -> None:
    settings = Settings(models=(ModelEntry("mine", str(tiny_model)),))
    with pytest.raises(UnknownModel) as caught:
        registry.resolve("nope", settings)
    assert "mine" in caught.value.known
    assert get_entry("smollm2-135m-instruct").name in caught.value.known
