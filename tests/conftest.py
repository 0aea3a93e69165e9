from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# The pulled models live in the user's cache (pulled by `make test` before pytest runs).
# Remember that place before any test isolates the environment.
from chatapp import locations
from chatapp.engine.client import EngineClient
from tests.tiny import build_tiny_model

REAL_MODELS_DIR = locations.models_dir()


@pytest.fixture(autouse=True)
def isolated_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own config and data folders; nothing touches the user's."""
    home = tmp_path / "home"
    monkeypatch.setenv("CHATAPP_CONFIG_DIR", str(home / "config"))
    monkeypatch.setenv("CHATAPP_DATA_DIR", str(home / "data"))
    monkeypatch.setenv("CHATAPP_MODELS_DIR", str(REAL_MODELS_DIR))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("NO_COLOR", raising=False)
    return home


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama with a byte-level BPE tokenizer and a ChatML template."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_model_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second tiny model with a different vocabulary and a smaller window."""
    return build_tiny_model(
        tmp_path_factory.mktemp("tiny-model-b"), vocab_size=330, context_window=128, seed=1
    )


async def collect(client: EngineClient, request) -> list:
    """Every event of one request, up to and including its terminal event."""
    return [event async for event in client.stream(request)]


@pytest.fixture
def client():
    """A real worker process, shut down after the test."""
    engine = EngineClient(poll_interval=0.05)
    engine.start()
    yield engine
    engine.close()


ROOT = Path(__file__).resolve().parent.parent


def run_python(
    *args: str, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run this Python with `args` from the repo root (in this test's isolated
    environment), capturing its output."""
    return subprocess.run(
        [sys.executable, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ.copy(),
        cwd=ROOT,
    )


def chatapp(
    *args: str, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run the real `chatapp` command (in this test's isolated environment)."""
    return run_python("-m", "chatapp", *args, stdin=stdin, timeout=timeout)


REPLY_WRITER = """
import sys
from chatapp.store import Store
with Store(sys.argv[1]) as store:
    session = store.create_session("tiny")
    question = store.add_message(session.id, "user", "tell me a story", None).id
    reply = store.begin_reply(session.id, question, "tiny")
    store.update_reply(reply, "Once upon a")
    print(reply, flush=True)
    if sys.stdin.readline().strip() == "finish":
        store.finish_reply(reply, "Once upon a time.")
"""


def start_reply_writer(path: Path) -> tuple[subprocess.Popen[str], int]:
    """A real process that starts a streaming reply and waits for a line on stdin."""
    proc = subprocess.Popen(
        [sys.executable, "-c", REPLY_WRITER, str(path)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def real_model_dir(name: str) -> Path | None:
    """The converted folder of a pulled catalogue model, or None when it is not pulled."""
    path = REAL_MODELS_DIR / name / "hf"
    return path if (path / "config.json").exists() else None


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
