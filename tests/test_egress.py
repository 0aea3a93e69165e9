"""No egress: the worker opens no network socket, and remote code is never trusted.

- The socket guard (`CHATAPP_SOCKET_GUARD=1`, chatapp.engine.egress) refuses and records
  network use: checked on a process that tries, then installed in the real worker while
  the real app runs a full turn (tiny model, saved session, the encoder when pulled).
- `trust_remote_code` is passed as False to every `from_pretrained` in the package (an
  AST check), and at run time a model folder whose config asks for remote code loads
  without running it.
- Pulls verify sha256 before use: see tests/test_models.py
  (test_checksum_mismatch_leaves_nothing_installed, ..._of_concatenated_parts).
"""

from __future__ import annotations

import ast
import json
import os
import shutil
from pathlib import Path

import pytest

from chatapp.app import ChatApp
from chatapp.engine.protocol import GenerationSettings, ModelSpec
from chatapp.store import Store
from tests.conftest import run_python
from tests.test_app import SIZE, messages, send, settle
from tests.test_reliability import wait_until

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "chatapp"

TRY_THE_NETWORK = """
import socket, sys
from chatapp.engine.egress import install_socket_guard
install_socket_guard(sys.argv[1])
for attempt in (
    lambda: socket.getaddrinfo("example.com", 443),
    lambda: socket.socket().connect(("192.0.2.1", 80)),
):
    try:
        attempt()
    except PermissionError as error:
        print("refused:", error)
"""


def guard_log(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_the_guard_refuses_and_records_network_use(tmp_path: Path) -> None:
    log = tmp_path / "sockets.log"
    done = run_python("-c", TRY_THE_NETWORK, str(log), timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("refused: network access is not allowed") == 2
    lines = guard_log(log)
    assert lines[0].endswith("guard installed")
    assert any("socket.getaddrinfo" in line and "example.com" in line for line in lines)
    assert any("socket.connect" in line and "192.0.2.1" in line for line in lines)


async def test_a_full_turn_in_the_real_app_opens_no_socket(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chatapp.engine.client import EngineClient

    log = tmp_path / "sockets.log"
    monkeypatch.setenv("CHATAPP_SOCKET_GUARD", "1")
    monkeypatch.setenv("CHATAPP_SOCKET_GUARD_LOG", str(log))
    client = EngineClient(poll_interval=0.05)
    client.start()
    try:
        spec = ModelSpec(name="tiny", path=str(tiny_model), context_window=256)
        with Store(tmp_path / "chat.db") as store:
            app = ChatApp(client, spec, GenerationSettings(max_new_tokens=8, seed=0), store=store)
            async with app.run_test(size=SIZE) as pilot:
                await wait_until(pilot, lambda: app.chat.model_ready, 120)
                for text in ("Hello", "And again"):  # the second turn recalls the first
                    await send(pilot, text)
                    await wait_until(pilot, lambda: not app.chat.generating, 120)
                    await settle(app, pilot)
                    assert "tokens" in messages(app)[-1].footer, messages(app)[-1].footer
    finally:
        client.close()
    lines = guard_log(log)
    assert len(lines) == 1 and lines[0].endswith("guard installed"), lines  # nothing else


# --- trust_remote_code -----------------------------------------------------------------------


def test_every_from_pretrained_passes_trust_remote_code_false() -> None:
    calls = 0
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "trust_remote_code":
                value = node.value
                assert isinstance(value, ast.Constant) and value.value is False, (
                    f"{path}:{value.lineno}: trust_remote_code must be the constant False"
                )
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "from_pretrained"
            ):
                calls += 1
                kinds = {k.arg: k.value for k in node.keywords}
                value = kinds.get("trust_remote_code")
                assert isinstance(value, ast.Constant) and value.value is False, (
                    f"{path}:{node.lineno}: from_pretrained without trust_remote_code=False"
                )
    assert calls >= 4  # the worker's tokenizer and model, the encoder, the GGUF converter


REMOTE_CODE = """
from pathlib import Path
Path(__file__).with_name("REMOTE_CODE_RAN").write_text("ran")
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast
class EvilModel(LlamaForCausalLM):
    pass
class EvilTokenizer(PreTrainedTokenizerFast):
    pass
"""


def test_a_model_that_asks_for_remote_code_never_runs_it(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chatapp.engine.worker import load_model

    monkeypatch.setenv("CHATAPP_WEIGHTS", "fp32")
    folder = tmp_path / "asks-for-remote-code"
    shutil.copytree(tiny_model, folder)
    (folder / "evil.py").write_text(REMOTE_CODE)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    tokenizer_config["auto_map"] = {"AutoTokenizer": [None, "evil.EvilTokenizer"]}
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))

    spec = ModelSpec(name="remote", path=str(folder), context_window=256)
    try:
        loaded = load_model(spec, lambda *_: None)
    except Exception as error:  # refusing is fine too; running the code is not
        assert "remote" in str(error).lower() or "trust" in str(error).lower(), error
    else:
        assert type(loaded.decoder.model).__name__ != "EvilModel"
    assert not (folder / "REMOTE_CODE_RAN").exists()
    assert not any(p.name == "REMOTE_CODE_RAN" for p in Path(os.path.expanduser("~")).glob("*"))
