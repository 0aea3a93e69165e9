"""Saved sessions end to end: real `chatapp` processes, the real worker, the tiny model.

- `chatapp ask` saves each exchange by default; `-c` appends; `--no-save` does not save.
- Two `chatapp ask` processes writing to the same database at once both succeed.
- The crash test: a real `chatapp` TUI (driven in tmux) streaming a reply is killed with
  SIGKILL; the database then holds every completed turn, the user's message, and the
  partial reply saved no more than about a second before the kill; `chatapp -c` reopens
  the session and shows the reply marked as interrupted.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatapp import locations
from chatapp.store import Store
from tests.conftest import chatapp

ROOT = Path(__file__).resolve().parent.parent
ENV_KEYS = ("CHATAPP_CONFIG_DIR", "CHATAPP_DATA_DIR", "CHATAPP_MODELS_DIR", "HF_HUB_OFFLINE")


def rows(path: Path, sql: str, params: tuple = ()) -> list[tuple]:
    """Read the database from outside, as another process would (read-only)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


# --- chatapp ask -------------------------------------------------------------------------


def test_ask_saves_continues_and_can_opt_out(tiny_model: Path) -> None:
    model = str(tiny_model)
    first = chatapp("ask", "--model", model, "--max-tokens", "6", "--seed", "1", "first question")
    assert first.returncode == 0, first.stderr
    again = chatapp("ask", "-c", "--max-tokens", "6", "second question")  # its model comes back
    assert again.returncode == 0, again.stderr
    unsaved = chatapp("ask", "--model", model, "--max-tokens", "4", "--no-save", "private")
    assert unsaved.returncode == 0, unsaved.stderr
    with Store(locations.database_file()) as store:
        (session,) = store.list_sessions()
        assert session.title == "first question"
        branch = store.branch(session.id)
        assert [(m.role, m.status) for m in branch] == [
            ("user", "complete"),
            ("assistant", "complete"),
        ] * 2
        assert [m.content for m in branch if m.role == "user"] == [
            "first question",
            "second question",
        ]
        assert branch[1].content.strip() == first.stdout.strip()
        assert branch[1].model == session.model and branch[1].new_tokens
        assert store.search("private") == []
        sid = str(session.id)
    explicit = chatapp("ask", "--model", model, "--max-tokens", "4", "--session", sid, "third")
    assert explicit.returncode == 0, explicit.stderr
    with Store(locations.database_file()) as store:
        assert len(store.branch(session.id)) == 6
    missing = chatapp("ask", "--model", model, "--session", "999", "hi")
    assert missing.returncode == 1
    assert missing.stderr.startswith("chatapp: no session 999 in ")


def test_two_processes_write_to_the_same_database_at_once(tiny_model: Path) -> None:
    locations.data_dir().mkdir(parents=True, exist_ok=True)
    procs = [
        subprocess.Popen(
            [
                *(sys.executable, "-m", "chatapp", "ask", "--model", str(tiny_model)),
                *("--max-tokens", "40", "--seed", str(n), f"question number {n}"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),
            cwd=ROOT,
        )
        for n in (1, 2)
    ]
    results = [p.communicate(timeout=180) for p in procs]
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
    with Store(locations.database_file()) as store:
        sessions = store.list_sessions()
        assert sorted(s.title for s in sessions) == ["question number 1", "question number 2"]
        for session in sessions:
            assert [(m.role, m.status) for m in store.branch(session.id)] == [
                ("user", "complete"),
                ("assistant", "complete"),
            ]


# --- the crash test ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def endless_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with a long window and no way to end a reply early: the special
    tokens' output rows are zero, so end-of-turn never wins against random logits."""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    from tests.tiny import build_tiny_model

    # Wide enough that decoding 8,000 tokens takes several seconds even on the lean path.
    path = build_tiny_model(
        tmp_path_factory.mktemp("endless-model"), context_window=8192, hidden_size=512, layers=4
    )
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = LlamaForCausalLM.from_pretrained(path)
    with torch.no_grad():
        for token_id in tokenizer.all_special_ids:
            model.lm_head.weight[token_id].zero_()
    model.save_pretrained(path)
    return path


class Tmux:
    """A private tmux server running commands in windows of a fixed size.

    A window stays when its command ends (killed, or crashed: its last screen is kept for
    the failure message), and so the server does too: a session started just after the
    last one closed could otherwise reach a server that is shutting down, and never run.
    """

    def __init__(self, socket: Path) -> None:
        self.socket = socket
        self.config = socket.with_suffix(".conf")
        self.config.write_text("set -g remain-on-exit on\nset -g exit-empty off\n")

    def _run(self, *args: str) -> str:
        result = subprocess.run(
            ["tmux", "-S", str(self.socket), "-f", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return result.stdout

    def start(self, name: str, argv: list[str]) -> None:
        env = [f"{key}={os.environ[key]}" for key in ENV_KEYS if key in os.environ]
        env += ["TERM=xterm-256color", "TOKENIZERS_PARALLELISM=false"]
        command = " ".join(shlex.quote(a) for a in ["env", *env, *argv])
        self._run(
            "new-session", "-d", "-s", name, "-x", "140", "-y", "40", "-c", str(ROOT), command
        )

    def screen(self, name: str) -> str:
        return self._run("capture-pane", "-p", "-t", name)

    def keys(self, name: str, *keys: str) -> None:
        self._run("send-keys", "-t", name, *keys)

    def pid(self, name: str) -> int:
        return int(self._run("display-message", "-p", "-t", name, "#{pane_pid}").strip())

    def wait_for(self, name: str, text: str, timeout: float = 90, *, status: bool = False) -> str:
        """Wait for `text` on the screen, or only in the status bar (the last line)."""
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen(name)
            lines = screen.rstrip().splitlines()
            where = lines[-1] if status and lines else screen
            if text in where:
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never appeared; the screen:\n{screen}")

    def kill_server(self) -> None:
        self._run("kill-server")


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    server = Tmux(tmp_path / "tmux.sock")
    try:
        yield server
    finally:
        server.kill_server()


def kill_tree(pid: int) -> None:
    """SIGKILL a process and then (orphaned, so they cannot save anything) its children."""
    import psutil

    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    os.kill(pid, signal.SIGKILL)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()


def test_a_killed_app_loses_at_most_about_a_second_of_the_reply(
    endless_model: Path, tmux: Tmux
) -> None:
    config = locations.config_file()
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("[generation]\nmax_new_tokens = 6000\n\n[context]\nwindow = 8192\n")
    database = locations.database_file()

    # A completed turn first, written by a real process (`ask` saves by default).
    done = chatapp("ask", "--model", str(endless_model), "--max-tokens", "2", "first turn")
    assert done.returncode == 0, done.stderr
    (session_id,) = (r[0] for r in rows(database, "SELECT id FROM sessions"))

    python = [sys.executable, "-m", "chatapp"]
    tmux.start("app", [*python, "-c", "--model", str(endless_model)])
    tmux.wait_for("app", " ready ", status=True)  # the random reply may say "ready" too
    tmux.wait_for("app", "first turn")
    tmux.keys("app", "tell me everything", "Enter")

    # Watch the reply grow in the database, from outside, as it streams.
    # (SQL's length() stops at a NUL, and the random model writes NULs: measure in Python.)
    sql = (
        "SELECT id, content, status FROM messages "
        "WHERE session_id = ? AND role = 'assistant' ORDER BY id DESC LIMIT 1"
    )

    def reply() -> list[tuple[int, int, str]]:
        return [(i, len(text), status) for i, text, status in rows(database, sql, (session_id,))]

    seen: list[tuple[float, int]] = []  # (when, saved length) at each change
    deadline = time.monotonic() + 90
    streaming_since: float | None = None
    while time.monotonic() < deadline:
        found = reply()
        if found and found[0][2] == "streaming" and found[0][1] > 0:
            now = time.monotonic()
            streaming_since = streaming_since or now
            if not seen or seen[-1][1] != found[0][1]:
                seen.append((now, found[0][1]))
            if now - streaming_since > 4.0:
                break
        time.sleep(0.05)
    assert streaming_since is not None, tmux.screen("app")
    assert len(seen) >= 3, seen  # it was saved as it grew, several times
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(seen)]
    assert max(gaps) < 1.8, gaps  # about once a second (the poll itself adds a little)

    kill_tree(tmux.pid("app"))
    killed_at = time.monotonic()
    (reply_id, length, status) = reply()[0]
    assert status == "streaming"  # never finalised: the process died
    assert length >= seen[-1][1]
    last_save = next(t for t, n in seen if n == length) if length == seen[-1][1] else killed_at
    assert killed_at - last_save < 1.8  # what the kill lost: under about a second of text

    # Reopening: every completed turn, the user's message, the partial reply interrupted.
    tmux.start("again", [*python, "-c"])
    screen = tmux.wait_for("again", "interrupted")
    # (the long random reply fills the screen; the earlier turns are above it, and on disk)
    assert "interrupted" in screen
    turns = rows(
        database,
        "SELECT role, status FROM messages WHERE session_id = ? ORDER BY id",
        (session_id,),
    )
    assert turns == [
        ("user", "complete"),
        ("assistant", "complete"),
        ("user", "complete"),
        ("assistant", "interrupted"),
    ]
    (content,) = rows(database, "SELECT content FROM messages WHERE id = ?", (reply_id,))[0]
    assert len(content) == length  # recovery keeps the text as saved
    tmux.keys("again", "C-q")
