"""Time to first token over a scripted 50-turn chat, with and without prefix reuse.

    .venv/bin/python bench/turns.py [--model NAME] [--turns N] [--reply-tokens N]

The worker's own path, in-process: the context builder fits the history into the
model's window as `Worker.handle_generate` does, then a `Decoder` answers. Two decoders
share the model: one keeps its KV cache between turns and prefills only what is new
(`reuse_prefix=True`, the worker's), the other prefills the whole prompt every turn.
Both get the same prompt each turn (the reusing one's replies make the history), in
alternating order. Weights: `CHATAPP_WEIGHTS` (default int4), as in the worker.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from _common import model_spec, print_table

QUESTIONS = (
    "What is a good name for a pet robot?",
    "Why is the sky blue?",
    "Give me a tip for sleeping better.",
    "What rhymes with orange?",
    "How far away is the moon?",
    "Suggest a quick lunch.",
    "What is the boiling point of water?",
    "Tell me a fun fact about octopuses.",
    "How do I say thank you in French?",
    "What is two plus two?",
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--turns", type=int, default=50)
    parser.add_argument("--reply-tokens", type=int, default=40)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from chatapp.engine.context import build_prompt
    from chatapp.engine.decode import Decoder
    from chatapp.engine.prompt import render_ids
    from chatapp.engine.protocol import ChatMessage, GenerationSettings
    from chatapp.engine.quant import quantize_model

    torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) // 2))
    spec = model_spec(args.model)
    tokenizer = AutoTokenizer.from_pretrained(spec.path)
    if spec.chat_template:
        tokenizer.chat_template = spec.chat_template
    model = AutoModelForCausalLM.from_pretrained(spec.path, dtype=torch.float32).eval()
    weights = os.environ.get("CHATAPP_WEIGHTS", "int4")
    quantize_model(model, weights)
    reuse, fresh = Decoder(model, tokenizer), Decoder(model, tokenizer, reuse_prefix=False)
    reply = GenerationSettings(
        temperature=0.0, repetition_penalty=1.1, max_new_tokens=args.reply_tokens
    )
    first_only = GenerationSettings(**{**reply.__dict__, "max_new_tokens": 1})
    window = spec.context_window
    budget = window - min(args.reply_tokens, window // 2)

    def answer(decoder, ids, settings):
        stream = decoder.generate(ids, settings)
        while True:
            try:
                next(stream)
            except StopIteration as done:
                return done.value

    messages = [ChatMessage("system", "You are a friendly assistant. Answer briefly.")]
    rows, with_reuse, without = [], [], []
    for turn in range(1, args.turns + 1):
        question = QUESTIONS[(turn - 1) % len(QUESTIONS)]
        messages.append(ChatMessage("user", f"({turn}) {question}"))
        built = build_prompt(messages, lambda m: render_ids(tokenizer, m), budget)
        ids = built.token_ids
        if turn % 2:  # alternate which one runs first
            completion = answer(reuse, ids, reply)
            cold = answer(fresh, ids, first_only)
        else:
            cold = answer(fresh, ids, first_only)
            completion = answer(reuse, ids, reply)
        warm_ttft, cold_ttft = completion.stats.time_to_first_token, cold.stats.time_to_first_token
        with_reuse.append(warm_ttft)
        without.append(cold_ttft)
        rows.append(
            [
                turn,
                len(ids),
                built.dropped,
                reuse.reused_tokens,
                warm_ttft,
                cold_ttft,
                f"{cold_ttft / warm_ttft:.1f}x",
            ]
        )
        messages.append(ChatMessage("assistant", completion.text))
    print_table(
        f"{spec.name} ({weights}), {args.turns} turns, replies up to {args.reply_tokens} tokens, "
        f"window {window}: time to first token per turn",
        [
            "turn",
            "prompt tokens",
            "messages dropped",
            "reused tokens",
            "TTFT with reuse (s)",
            "TTFT without (s)",
            "speed-up",
        ],
        rows,
    )
    last = slice(-10, None)
    print(
        f"\nturn 1: {with_reuse[0]:.3f} s; turns {args.turns - 9}-{args.turns}, median: "
        f"{statistics.median(with_reuse[last]):.3f} s with reuse, "
        f"{statistics.median(without[last]):.3f} s without"
    )
    print(
        f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}  ({time.strftime('%H:%M')})"
    )


if __name__ == "__main__":
    main()
