"""Model switch time through the real worker, for each pulled catalogue chat model.

A "switch" is what the TUI does on `/model NAME`: a `LoadModel` sent to a worker that has
another model loaded, timed until `ModelReady` arrives (tokenizer, weights, warm-up, the
old model dropped and the heap trimmed). "Cached" means the model was pulled and
converted before and its files are in the OS page cache (it was loaded once already).
Goal: under 2 s for the cached 135M model.

    .venv/bin/python bench/switch.py [--runs N] [--models NAME ...]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from _common import print_table

GOAL_SECONDS = 2.0


async def timed_load(client, spec) -> tuple[float, float]:
    """(wall seconds until ModelReady, the worker's own load_seconds)."""
    from chatapp.engine.protocol import Failed, LoadModel, ModelReady, WorkerDied

    started = time.perf_counter()
    async for event in client.stream(LoadModel(spec)):
        if isinstance(event, ModelReady):
            return time.perf_counter() - started, event.load_seconds
        if isinstance(event, Failed | WorkerDied):
            raise SystemExit(f"bench: loading {spec.name} failed: {event}")
    raise SystemExit(f"bench: loading {spec.name} ended without an answer")


async def one_reply(client) -> None:
    from chatapp.engine.protocol import ChatMessage, Generate, GenerationSettings

    request = Generate((ChatMessage("user", "Hi!"),), GenerationSettings(max_new_tokens=8, seed=0))
    async for _ in client.stream(request):
        pass


def pulled_chat_models(names: list[str] | None):
    from chatapp.engine.models import folder_size, is_installed, load_catalogue

    entries = [e for e in load_catalogue() if e.kind == "chat"]
    if names:
        entries = [e for e in entries if e.name in names]
    return [(e, folder_size(e.hf_dir)) for e in entries if is_installed(e)]


async def bench(runs: int, names: list[str] | None) -> list[list[object]]:
    from chatapp.engine.client import EngineClient
    from chatapp.engine.memory import rss_bytes
    from chatapp.engine.protocol import ModelSpec

    models = pulled_chat_models(names)
    if not models:
        raise SystemExit("bench: no catalogue chat model is pulled (`chatapp models pull NAME`)")
    specs = [entry.spec() for entry, _ in models]
    if len(specs) == 1:  # something else to switch away from: a tiny model
        import sys

        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from tests.tiny import build_tiny_model

        tiny = build_tiny_model(Path(tempfile.mkdtemp(prefix="bench-switch-")) / "tiny")
        specs.append(ModelSpec("tiny", str(tiny), 256))

    client = EngineClient()
    client.start()
    rows = []
    try:
        first: dict[str, float] = {}
        for spec in specs:  # the first load of each: reads the files into the page cache
            first[spec.name], _ = await timed_load(client, spec)
            await one_reply(client)
        for (entry, size), spec in zip(models, specs, strict=False):
            other = next(s for s in specs if s.name != spec.name)
            walls, own = [], []
            for _ in range(runs):
                await timed_load(client, other)
                await one_reply(client)
                wall, worker = await timed_load(client, spec)
                await one_reply(client)
                walls.append(wall)
                own.append(worker)
            median = statistics.median(walls)
            rows.append(
                [
                    entry.name,
                    f"{size / 1e6:.0f} MB",
                    first[spec.name],
                    median,
                    min(walls),
                    max(walls),
                    statistics.median(own),
                    f"{rss_bytes(client.pid) / 1e6:.0f} MB",
                    "yes" if median < GOAL_SECONDS else "no",
                ]
            )
    finally:
        client.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="switches timed per model")
    parser.add_argument("--models", nargs="*", help="catalogue names (default: every pulled)")
    args = parser.parse_args()
    rows = asyncio.run(bench(args.runs, args.models))
    print_table(
        f"Switch to a cached model through the worker ({args.runs} runs each; seconds)",
        [
            "model",
            "on disk",
            "first load",
            "switch median",
            "min",
            "max",
            "worker's load",
            "worker RSS after",
            f"< {GOAL_SECONDS:g} s",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
