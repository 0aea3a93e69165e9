"""The model worker process: loads a model and serves Generate requests one at a time.

A reader thread takes requests off the queue so that a `Cancel` is seen while a reply
is being decoded; everything else runs in the order it arrived. Heavy imports happen
here, in the child, never in the UI process.
"""

from __future__ import annotations

import os
import queue
import signal
import sys
import threading
import time
import traceback
from typing import Any

from chatapp import locations
from chatapp.engine.memory import release_memory
from chatapp.engine.protocol import (
    Attach,
    Cancel,
    Done,
    Failed,
    Generate,
    LoadModel,
    ModelReady,
    ModelSpec,
    Progress,
    Reindex,
    Reindexed,
    Request,
    Search,
    Shutdown,
    Started,
    Token,
)

# Tokens are sent in small batches: one queue message per token costs more than decoding
# a token of a small model. A delta waits at most this long before it is sent.
FLUSH_SECONDS = 0.03


def _offline_environment() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _redirect_output() -> None:
    """Library warnings and progress bars must not draw over the TUI: log them instead."""
    log_dir = locations.ensure_dir(locations.data_dir() / "logs")
    log = open(log_dir / "worker.log", "a", buffering=1, encoding="utf-8")  # noqa: SIM115
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    sys.stdout = sys.stderr = log


class LoadedModel:
    def __init__(self, spec: ModelSpec, model: Any, tokenizer: Any) -> None:
        from chatapp.engine.decode import Decoder

        self.spec = spec
        self.tokenizer = tokenizer
        self.decoder = Decoder(model, tokenizer)
        config = getattr(model.config, "text_config", None) or model.config
        # A configured window never goes past the positions the model was trained for.
        self.max_positions: int = getattr(config, "max_position_embeddings", None) or 1 << 30


def load_model(spec: ModelSpec, progress: Any) -> LoadedModel:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from chatapp.engine.prompt import TRANSCRIPT_TEMPLATE

    if not os.path.isdir(spec.path):
        raise FileNotFoundError(f"model folder {spec.path} does not exist")
    # Decoding one token is a chain of small, memory-bound kernels: one thread per two
    # cores (llama.cpp's default too) measured faster than one per core on a 2-core
    # machine (bench/decode.py); CHATAPP_THREADS overrides.
    torch.set_num_threads(
        int(os.environ.get("CHATAPP_THREADS") or 0) or max(1, (os.cpu_count() or 1) // 2)
    )
    progress("loading tokenizer", 0, 3)
    tokenizer = AutoTokenizer.from_pretrained(spec.path, trust_remote_code=False)
    if spec.chat_template:
        tokenizer.chat_template = spec.chat_template
    elif not tokenizer.chat_template:
        tokenizer.chat_template = TRANSCRIPT_TEMPLATE
    progress("loading weights", 1, 3)
    model = AutoModelForCausalLM.from_pretrained(
        spec.path, dtype=torch.float32, trust_remote_code=False
    )
    model.eval()
    progress("warming up", 2, 3)
    with torch.inference_mode():
        model(input_ids=torch.tensor([[tokenizer.eos_token_id or 0]]))
    loaded = LoadedModel(spec, model, tokenizer)
    # Weight format for decoding (chatapp.engine.quant): int4 (default; the GGUF's own
    # 4-bit weights, ~3-4x the fp32 decode speed), int8, or fp32 (the plain path). The
    # model answers at once in fp32; the quantised weights replace them, built on a
    # background thread, from the first reply after they are ready.
    weights = os.environ.get("CHATAPP_WEIGHTS", "int4").strip().lower() or "int4"
    if weights != "fp32":
        loaded.decoder.upgrade_in_background(weights)
        if os.environ.get("CHATAPP_WEIGHTS_WAIT") == "1":  # benchmarks: measure int4 only
            loaded.decoder.wait_for_upgrade()
    return loaded


def describe_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


class Worker:
    def __init__(self, requests: Any, events: Any) -> None:
        self.requests = requests
        self.events = events
        self.inbox: queue.Queue[Request] = queue.Queue()
        self.cancelled: set[int] = set()
        self.loaded: LoadedModel | None = None
        self._recall: Any = None

    def read_requests(self) -> None:
        while True:
            try:
                request = self.requests.get()
            except (EOFError, OSError):
                request = Shutdown()
            if isinstance(request, Cancel):
                self.cancelled.add(request.request_id)
                continue
            self.inbox.put(request)
            if isinstance(request, Shutdown):
                return

    def serve(self) -> None:
        threading.Thread(target=self.read_requests, name="requests", daemon=True).start()
        while True:
            request = self.next_request()
            if isinstance(request, Shutdown):
                return
            try:
                if isinstance(request, LoadModel):
                    self.handle_load(request)
                elif isinstance(request, Generate):
                    self.handle_generate(request)
                elif isinstance(request, Attach | Search | Reindex):
                    self.handle_recall(request)
            except Exception as exc:  # report, keep serving
                traceback.print_exc()
                self.events.put(Failed(request.request_id, describe_error(exc)))

    # --- context recall (chatapp.engine.recall) ---------------------------------------

    @property
    def recall(self) -> Any:
        if self._recall is None:
            from chatapp.engine.recall import Recall

            self._recall = Recall()
        return self._recall

    def next_request(self) -> Request:
        """The next request; while there is none, embed missing vectors a batch at a time."""
        while self._recall is not None and self._recall.backlog:
            try:
                return self.inbox.get_nowait()
            except queue.Empty:
                pass
            try:
                self._recall.work_backlog()
            except Exception:
                traceback.print_exc()
                self._recall.backlog.clear()
        return self.inbox.get()

    def build_recall_context(self, request: Generate, loaded: Any, budget: int) -> Any:
        """Recent turns plus the best-scored earlier ones; None (recency only) when the
        encoder cannot be used."""
        from chatapp.engine.context import build_context
        from chatapp.engine.prompt import TokenCounter

        tokens = TokenCounter(loaded.tokenizer)
        try:
            scores, extras = self.recall.prepare(request)
        except Exception:
            traceback.print_exc()
            return None
        recent = request.recent_turns if request.recent_turns is not None else 6
        return build_context(
            request.messages,
            tokens.render,
            budget,
            scores=scores,
            recent_turns=recent,
            min_score=request.min_score,
            pinned=request.pinned,
            excluded=request.excluded,
            extras=extras,
            count=tokens.count,
            count_batch=tokens.count_batch,
        )

    def handle_recall(self, request: Attach | Search | Reindex) -> None:
        if isinstance(request, Attach):
            self.events.put(self.recall.attach(request))
        elif isinstance(request, Search):
            self.events.put(self.recall.search(request))
        else:
            missing = self.recall.queue_reindex(request.encoder, request.database)
            self.events.put(Reindexed(request.request_id, missing))

    def handle_load(self, request: LoadModel) -> None:
        import torch

        spec = request.spec
        started = time.perf_counter()

        def progress(stage: str, done: float, total: float | None) -> None:
            self.events.put(Progress(request.request_id, stage, done, total))

        torch.set_num_threads(max(1, os.cpu_count() or 1))
        if self.loaded is not None and self.loaded.spec == spec:  # already the active model
            self.events.put(ModelReady(request.request_id, spec.name, spec.context_window, 0.0))
            return
        loaded: LoadedModel | None = None
        try:
            loaded = load_model(spec, progress)
        except Exception as exc:
            traceback.print_exc()
            keep = f"; still using {self.loaded.spec.name}" if self.loaded else ""
            reason = f"could not load model '{spec.name}' from {spec.path}: {describe_error(exc)}"
            self.events.put(Failed(request.request_id, reason + keep))
        if loaded is None:
            release_memory()  # what the failed load allocated (its traceback is gone now)
            return
        old, self.loaded = self.loaded, loaded
        if old is not None:  # drop the old model, its KV cache and decoder
            old.decoder.reset()
            del old
        self.events.put(
            ModelReady(
                request.request_id, spec.name, spec.context_window, time.perf_counter() - started
            )
        )
        # Then collect its cycles and trim the heap (a full collection takes ~0.3 s): the
        # user reads "ready" meanwhile, and the next request waits for it in the queue.
        release_memory()

    def handle_generate(self, request: Generate) -> None:
        from chatapp.engine.context import PromptTooLong, build_prompt
        from chatapp.engine.prompt import TokenCounter

        rid = request.request_id
        loaded = self.loaded
        if loaded is None:
            self.events.put(Failed(rid, "no model is loaded"))
            return
        settings = request.settings
        window = min(request.context_window or loaded.spec.context_window, loaded.max_positions)
        stops = tuple(dict.fromkeys((*settings.stop, *loaded.spec.stop)))
        reserve = min(settings.max_new_tokens, window // 2)
        if request.reply_reserve is not None:
            reserve = max(0, min(request.reply_reserve, window - 1))
        try:
            built = None
            if request.encoder is not None:
                built = self.build_recall_context(request, loaded, window - reserve)
            if built is None:
                built = build_prompt(
                    request.messages,
                    TokenCounter(loaded.tokenizer).render,
                    window - reserve,
                )
        except PromptTooLong as exc:
            self.events.put(Failed(rid, str(exc)))
            return
        max_new = min(settings.max_new_tokens, window - len(built.token_ids))
        settings = type(settings)(**{**settings.__dict__, "stop": stops, "max_new_tokens": max_new})
        context = getattr(built, "items", ())
        self.events.put(Started(rid, len(built.token_ids), window, built.dropped, context))

        decoder = loaded.decoder
        pending: list[str] = []
        sent_tokens = 0
        last_flush = time.perf_counter()
        stream = decoder.generate(
            built.token_ids, settings, should_stop=lambda: rid in self.cancelled
        )
        try:
            while True:
                try:
                    delta = next(stream)
                except StopIteration as finished:
                    completion = finished.value
                    break
                pending.append(delta)
                now = time.perf_counter()
                if now - last_flush >= FLUSH_SECONDS:
                    self.events.put(
                        Token(rid, "".join(pending), decoder.generated_tokens - sent_tokens)
                    )
                    sent_tokens = decoder.generated_tokens
                    pending.clear()
                    last_flush = now
        except BaseException:
            decoder.reset()
            raise
        if pending:
            self.events.put(Token(rid, "".join(pending), completion.stats.new_tokens - sent_tokens))
        self.cancelled.discard(rid)
        self.events.put(Done(rid, completion.text, completion.finish_reason, completion.stats))


def run_worker(requests: Any, events: Any) -> None:
    """Entry point of the spawned process."""
    from chatapp.engine.egress import guard_from_environment

    guard_from_environment()  # CHATAPP_SOCKET_GUARD=1: any network use fails, is recorded
    _offline_environment()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C belongs to the UI
    if os.environ.get("CHATAPP_WORKER_LOG", "1") != "0":
        _redirect_output()
    # Import the model stack now, while the UI paints and before the first LoadModel
    # arrives: it is most of a cached model's start-up time.
    import torch  # noqa: F401
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    Worker(requests, events).serve()
