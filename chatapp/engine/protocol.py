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


@dataclass(frozen=True)
class Cancel:
    request_id: int


@dataclass(frozen=True)
class Shutdown:
    request_id: int = 0


Request = LoadModel | Generate | Cancel | Shutdown


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


@dataclass(frozen=True)
class Started:
    """The prompt is built and tokenized; decoding begins."""

    request_id: int
    prompt_tokens: int
    context_window: int
    dropped_messages: int = 0


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


Event = Progress | ModelReady | Started | Token | Done | Failed | WorkerDied

TERMINAL_EVENTS = (ModelReady, Done, Failed, WorkerDied)
