"""Typed messages between the UI process and the model worker.

Requests go UI -> worker, events come back worker -> UI. Every message is a frozen
dataclass of plain values, so it pickles across the multiprocessing queue and can be
checked field by field in tests. Every event carries the `request_id` of the request
it answers, so the client can route it to the right stream.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Literal

Role = Literal["system", "user", "assistant"]
FinishReason = Literal["stop", "length", "cancelled"]

_ids = itertools.count(1)


def new_request_id() -> int:
    return next(_ids)


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str
    id: int | None = None
    """The stored message's id, when it has one (lets the worker cache its vector)."""
    model: str | None = field(default=None, compare=False)
    """For an assistant turn: the model that wrote it (the history survives switches)."""


@dataclass(frozen=True)
class GenerationSettings:
    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 40
    repetition_penalty: float = 1.1
    max_new_tokens: int = 512
    seed: int | None = None
    stop: tuple[str, ...] = ()

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


@dataclass(frozen=True)
class ModelSpec:
    """A model the worker can load: a Hugging Face-format folder on disk."""

    name: str
    path: str
    context_window: int = 2048
    chat_template: str | None = None
    stop: tuple[str, ...] = ()


# --- requests (UI -> worker) ---------------------------------------------------------


@dataclass(frozen=True)
class LoadModel:
    spec: ModelSpec
    request_id: int = field(default_factory=new_request_id)


@dataclass(frozen=True)
class Generate:
    messages: tuple[ChatMessage, ...]
    settings: GenerationSettings = GenerationSettings()
    request_id: int = field(default_factory=new_request_id)
    # Context recall (all optional: the defaults keep the recency-only builder).
    encoder: ModelSpec | None = None
    """The sentence encoder that ranks earlier turns; None: keep the newest turns only."""
    session_id: int | None = None
    database: str | None = None
    """The store's path: the worker keeps vectors there and reads attachments from it."""
    pinned: tuple[int, ...] = ()
    excluded: tuple[int, ...] = ()
    recent_turns: int | None = None
    min_score: float | None = None
    """Earlier turns and extras scoring below it are not recalled (None: fill the budget)."""
    context_window: int | None = None
    reply_reserve: int | None = None
    cross_session: bool = False


@dataclass(frozen=True)
class Cancel:
    request_id: int


@dataclass(frozen=True)
class Shutdown:
    request_id: int = 0


@dataclass(frozen=True)
class Attach:
    """Add a text file to a session: chunked by encoder tokens, embedded, stored."""

    name: str
    text: str
    encoder: ModelSpec
    session_id: int | None = None
    database: str | None = None
    path: str = ""
    request_id: int = field(default_factory=new_request_id)


@dataclass(frozen=True)
class Search:
    """Semantic search over stored messages (every session) with the encoder."""

    query: str
    encoder: ModelSpec
    database: str
    limit: int = 20
    request_id: int = field(default_factory=new_request_id)


@dataclass(frozen=True)
class Reindex:
    """Embed, while the worker is idle, every stored message and chunk with no vector."""

    encoder: ModelSpec
    database: str
    request_id: int = field(default_factory=new_request_id)


Request = LoadModel | Generate | Cancel | Shutdown | Attach | Search | Reindex


# --- events (worker -> UI) -----------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    request_id: int
    stage: str
    done: float = 0.0
    total: float | None = None


@dataclass(frozen=True)
class ModelReady:
    request_id: int
    name: str
    context_window: int
    load_seconds: float


ContextKind = Literal["recent", "recalled", "pinned", "chunk"]


@dataclass(frozen=True)
class ContextItem:
    """One message or file chunk that was in a reply's context, and its relevance score."""

    kind: ContextKind
    message_id: int | None = None
    chunk_id: int | None = None
    score: float | None = None
    session_id: int | None = None
    """Set when the message comes from another session."""
    position: int | None = None
    """Index of the message in the request's `messages` (for messages of the branch)."""

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {"kind": self.kind}
        for key in ("message_id", "chunk_id", "session_id"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        if self.score is not None:
            data["score"] = round(float(self.score), 4)
        return data

    @classmethod
    def from_json(cls, data: dict[str, object]) -> ContextItem:
        kind = data.get("kind")
        if kind not in ("recent", "recalled", "pinned", "chunk"):
            raise ValueError(f"unknown context item kind {kind!r}")
        score = data.get("score")

        def optional_int(key: str) -> int | None:
            value = data.get(key)
            return value if isinstance(value, int) else None

        return cls(
            kind=kind,  # type: ignore[arg-type]
            message_id=optional_int("message_id"),
            chunk_id=optional_int("chunk_id"),
            score=float(score) if isinstance(score, (int, float)) else None,
            session_id=optional_int("session_id"),
        )


@dataclass(frozen=True)
class Started:
    """The prompt is built and tokenized; decoding begins."""

    request_id: int
    prompt_tokens: int
    context_window: int
    dropped_messages: int = 0
    context: tuple[ContextItem, ...] = ()
    """What the prompt holds besides the system prompt and the new message."""


@dataclass(frozen=True)
class Token:
    request_id: int
    text: str
    tokens: int = 1  # how many model tokens this text delta holds


@dataclass(frozen=True)
class GenerationStats:
    prompt_tokens: int = 0
    new_tokens: int = 0
    time_to_first_token: float = 0.0
    seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        decode_time = self.seconds - self.time_to_first_token
        if self.new_tokens <= 1 or decode_time <= 0:
            return 0.0
        return (self.new_tokens - 1) / decode_time


@dataclass(frozen=True)
class Done:
    request_id: int
    text: str
    finish_reason: FinishReason
    stats: GenerationStats


@dataclass(frozen=True)
class Failed:
    request_id: int
    reason: str


@dataclass(frozen=True)
class WorkerDied:
    """Sent by the client itself (not the worker) when the process is gone."""

    request_id: int
    exitcode: int | None


@dataclass(frozen=True)
class Attached:
    request_id: int
    name: str
    attachment_id: int | None
    chunks: int
    tokens: int


@dataclass(frozen=True)
class SearchHit:
    message_id: int
    session_id: int
    score: float


@dataclass(frozen=True)
class SearchResults:
    request_id: int
    hits: tuple[SearchHit, ...]


@dataclass(frozen=True)
class Reindexed:
    """Answers `Reindex` at once with how many vectors are missing (filled while idle)."""

    request_id: int
    missing: int


Event = (
    Progress
    | ModelReady
    | Started
    | Token
    | Done
    | Failed
    | WorkerDied
    | Attached
    | SearchResults
    | Reindexed
)

TERMINAL_EVENTS = (ModelReady, Done, Failed, WorkerDied, Attached, SearchResults, Reindexed)
