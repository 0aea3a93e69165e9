"""Decode speed on the real SmolLM2: our decode loop and worker vs plain `generate`,
and the TUI's time to first paint vs a bare Textual app.

    .venv/bin/python bench/decode.py [--model NAME] [--tokens N] [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time

from _common import model_spec, print_table

PROMPT = "Write a short story about a robot who learns to paint, in five sentences."


def load(spec):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(torch.get_num_threads())
    tokenizer = AutoTokenizer.from_pretrained(spec.path)
    model = AutoModelForCausalLM.from_pretrained(spec.path, dtype=torch.float32).eval()
    return model, tokenizer


def bench_generate(model, tokenizer, ids, tokens):
    import torch
    from transformers.generation.streamers import BaseStreamer

    class Clock(BaseStreamer):
        def __init__(self):
            self.calls = 0
            self.first = 0.0

        def put(self, value):
            self.calls += 1
            if self.calls == 2:
                self.first = time.perf_counter()

        def end(self):
            pass

    clock = Clock()
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(
            torch.tensor([ids]),
            max_new_tokens=tokens,
            min_new_tokens=tokens,
            do_sample=False,
            streamer=clock,
            pad_token_id=tokenizer.pad_token_id,
        )
    end = time.perf_counter()
    new = out.shape[1] - len(ids)
    return clock.first - start, (new - 1) / (end - clock.first), new


def bench_decoder(model, tokenizer, ids, tokens):
    from chatapp.engine.decode import Decoder
    from chatapp.engine.protocol import GenerationSettings

    decoder = Decoder(model, tokenizer, reuse_prefix=False)
    decoder.eos_ids = set()  # decode exactly `tokens` tokens, like min_new_tokens above
    settings = GenerationSettings(temperature=0.0, repetition_penalty=1.0, max_new_tokens=tokens)
    stream = decoder.generate(ids, settings)
    while True:
        try:
            next(stream)
        except StopIteration as done:
            s = done.value.stats
            return s.time_to_first_token, s.tokens_per_second, s.new_tokens


async def bench_worker(spec, messages, tokens, runs):
    from chatapp.engine.client import EngineClient
    from chatapp.engine.protocol import Done, Generate, GenerationSettings, LoadModel, Token

    client = EngineClient(poll_interval=0.05)
    client.start()
    results = []
    try:
        started = time.perf_counter()
        async for _ in client.stream(LoadModel(spec)):
            pass
        load_seconds = time.perf_counter() - started
        settings = GenerationSettings(
            temperature=0.0, repetition_penalty=1.0, max_new_tokens=tokens
        )
        for _ in range(runs + 1):
            sent = time.perf_counter()
            first = None
            async for event in client.stream(Generate(messages, settings)):
                if isinstance(event, Token) and first is None:
                    first = time.perf_counter() - sent
                elif isinstance(event, Done):
                    results.append((first or 0.0, event.stats.tokens_per_second, event.stats.new_tokens))
        # The first run prefills the whole prompt; the repeats reuse its KV cache.
        return load_seconds, results[0], results[1:]
    finally:
        client.close()


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
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        runs.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    from chatapp.engine.prompt import render_ids
    from chatapp.engine.protocol import ChatMessage

    spec = model_spec(args.model)
    model, tokenizer = load(spec)
    messages = (ChatMessage("user", PROMPT),)
    ids = render_ids(tokenizer, messages)

    bench_generate(model, tokenizer, ids, 8)  # warm-up
    rows = []
    gen = [bench_generate(model, tokenizer, ids, args.tokens) for _ in range(args.runs)]
    dec = [bench_decoder(model, tokenizer, ids, args.tokens) for _ in range(args.runs)]
    for name, results in (("transformers generate (baseline)", gen), ("chatapp Decoder, in-process", dec)):
        rows.append(
            [
                name,
                len(ids),
                statistics.median(r[0] for r in results),
                statistics.median(r[1] for r in results),
                results[0][2],
            ]
        )
    del model
    load_seconds, cold, warm = asyncio.run(bench_worker(spec, messages, args.tokens, args.runs))
    rows.append(["chatapp worker process (cold prompt)", len(ids), cold[0], cold[1], cold[2]])
    rows.append(
        [
            "chatapp worker process (same prompt again)",
            len(ids),
            statistics.median(r[0] for r in warm),
            statistics.median(r[1] for r in warm),
            warm[0][2],
        ]
    )
    print_table(
        f"Decoding on {spec.name}, greedy, {args.tokens} new tokens, median of {args.runs} runs",
        ["engine", "prompt tokens", "time to first token (s)", "decode tokens/s", "new tokens"],
        rows,
    )
    print(f"\nworker: model loaded and warmed up in {load_seconds:.2f} s (cached safetensors copy)")
    print_table(
        "TUI time to first paint (process start to first frame, headless, median of 3)",
        ["app", "seconds"],
        [["bare Textual app (baseline)", first_paint("bare", spec)], ["chatapp", first_paint("chatapp", spec)]],
    )


if __name__ == "__main__":
    main()
