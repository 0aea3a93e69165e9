"""Long-conversation memory: does the context builder bring back what matters?

Planted facts are stated early in long conversations of real chit-chat (the chitchat
dataset), with topical distractors around them, and asked back at the end in other words.

1. recall@k of the fact's exchange among the earlier exchanges, per scorer: recency only,
   BM25, the MiniLM encoder (cosine), and encoder + BM25 hybrids. The hybrid weight is
   chosen on half the facts ("dev") and reported on the other half ("test").
2. Time to build the context for a 10,000-message history (the new message's embedding
   aside): scoring (one matrix product + BM25) and the exact, template-counted builder.
3. Answer accuracy of a real chat model when the context is built by recency vs by our
   builder, filling the budget or with a floor on scores (`--min-scores`; the app's
   default is 0.3), and an oracle (same window, same reply reserve, greedy decoding).

    .venv/bin/python bench/recall.py [--models qwen2.5-coder-0.5b-instruct,smollm2-135m-instruct]
        [--seeds 3] [--exchanges 100] [--window 1024] [--skip-e2e] [--min-scores 0.25,0.3]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import numpy as np
from _common import model_spec, print_table
from recall_data import FACTS, chitchat_file, filler_exchanges, make_trial

from chatapp import locations
from chatapp.engine.context import build_context, build_prompt, exchanges
from chatapp.engine.protocol import ChatMessage, Generate
from chatapp.engine.rerank import BM25Index, Encoder, hybrid

KS = (1, 3, 5, 10)
WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0)
RECENT_TURNS = 6
SYSTEM = "You are a helpful assistant. Answer briefly, using what the user told you earlier."


class Embeddings:
    """Every text embedded once; kept between runs in `cache_dir` (texts as JSON, vectors
    as one .npy array: no pickles)."""

    def __init__(self, encoder: Encoder, cache_dir: Path | None = None) -> None:
        self.encoder = encoder
        self.cache: dict[str, np.ndarray] = {}
        self.cache_dir = cache_dir
        if cache_dir is not None and (cache_dir / "vectors.npy").is_file():
            texts = json.loads((cache_dir / "texts.json").read_text("utf-8"))
            vectors = np.load(cache_dir / "vectors.npy")
            if len(texts) == len(vectors):
                self.cache = dict(zip(texts, vectors, strict=True))

    def save(self) -> None:
        if self.cache_dir is None or not self.cache:
            return
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        texts = list(self.cache)
        np.save(self.cache_dir / "vectors.npy", np.stack([self.cache[t] for t in texts]))
        (self.cache_dir / "texts.json").write_text(json.dumps(texts), "utf-8")

    def warm(self, texts) -> None:
        todo = list(dict.fromkeys(t for t in texts if t not in self.cache))
        for start in range(0, len(todo), 512):
            batch = todo[start : start + 512]
            for text, vector in zip(batch, self.encoder.embed(batch), strict=True):
                self.cache[text] = vector

    def __call__(self, texts) -> np.ndarray:
        self.warm(texts)
        return np.stack([self.cache[t] for t in texts])


def unit_scores(per_message: np.ndarray, groups: list[list[int]]) -> np.ndarray:
    return np.array([max(per_message[i] for i in g) for g in groups])


def rrf(*score_lists: np.ndarray, k: int = 60) -> np.ndarray:
    total = np.zeros(len(score_lists[0]))
    for scores in score_lists:
        ranks = np.empty(len(scores))
        ranks[np.argsort(-scores, kind="stable")] = np.arange(1, len(scores) + 1)
        total += 1 / (k + ranks)
    return total


def rank_of(scores: np.ndarray, target: int) -> int:
    """1-based rank of `target` (ties count against it)."""
    return int((scores > scores[target]).sum() + (scores == scores[target]).sum())


def scorer_recall(args, embed: Embeddings, filler) -> tuple[dict, dict]:
    rng = random.Random(1)
    ranks: dict[str, dict[str, list[int]]] = {"dev": {}, "test": {}}
    for _seed in range(args.seeds):
        for f_index, fact in enumerate(FACTS):
            split = "dev" if f_index % 2 == 0 else "test"
            trial = make_trial(fact, filler, args.exchanges, 20, random.Random(rng.random()))
            texts = [t for _, t in trial.messages]
            body = [ChatMessage(r, t) for r, t in trial.messages]  # type: ignore[arg-type]
            groups = exchanges(body)
            # The newest RECENT_TURNS messages are in the context anyway: rank the rest.
            covered, cut = 0, len(groups)
            while cut > 0 and covered < RECENT_TURNS:
                cut -= 1
                covered += len(groups[cut])
            groups = groups[:cut]
            target = next(i for i, g in enumerate(groups) if trial.fact_index in g)
            vectors = embed(texts)
            query = embed([fact.question])[0]
            cosine = vectors @ query
            bm25_index = BM25Index()
            for i, text in enumerate(texts):
                bm25_index.add(str(i), text)
            bm25 = bm25_index.scores(fact.question, [str(i) for i in range(len(texts))])
            cos_u, bm_u = unit_scores(cosine, groups), unit_scores(bm25, groups)
            scorers = {
                "recency": np.arange(len(groups), dtype=float),
                "bm25": bm_u,
                "encoder (cosine)": cos_u,
                "rrf(encoder, bm25)": rrf(cos_u, bm_u),
            }
            for w in WEIGHTS[1:]:
                scorers[f"hybrid w={w}"] = unit_scores(hybrid(cosine, bm25, w), groups)
            for name, scores in scorers.items():
                ranks[split].setdefault(name, []).append(rank_of(scores, target))
    return ranks["dev"], ranks["test"]


def recall_rows(ranks: dict[str, list[int]]) -> list[list[object]]:
    rows = []
    for name, found in ranks.items():
        row: list[object] = [name]
        row += [sum(r <= k for r in found) / len(found) for k in KS]
        row.append(statistics.mean(1 / r for r in found))
        rows.append(row)
    return rows


def build_time(
    args, embed: Embeddings, filler, tokenizer, min_score: float | None = None
) -> list[list[object]]:
    """Time prepare (scores) + build_context for a 10,000-message history, warm index."""
    from chatapp.engine.prompt import TokenCounter
    from chatapp.engine.protocol import ModelSpec
    from chatapp.engine.recall import Recall, message_key

    texts = [t for pair in filler for t in pair]
    history: list[ChatMessage] = []
    for i in range(10_000):
        history.append(
            ChatMessage("user" if i % 2 == 0 else "assistant", texts[i % len(texts)], id=i + 1)
        )
    questions = [f.question for f in FACTS[:8]]
    embed.warm(texts[:10_000] + questions)
    recall = Recall(load_encoder=lambda spec: embed.encoder)
    encoder_spec = ModelSpec("minilm-l6", embed.encoder.path)
    recall.use_encoder(encoder_spec)
    assert recall.index is not None
    keys = [message_key(m) for m in history]
    recall.index.add(keys, np.stack([embed.cache[m.content] for m in history]))

    tokens = TokenCounter(tokenizer)
    rows = []
    timings: dict[str, list[float]] = {"scores": [], "build": [], "total": [], "cpu": []}
    for n, question in enumerate([questions[0], *questions]):  # the first run warms BM25
        new = ChatMessage("user", question, id=20_000 + n)
        recall.index.add([message_key(new)], embed([question]))  # the embedding, aside
        request = Generate((ChatMessage("system", SYSTEM), *history, new), encoder=encoder_spec)
        c0 = time.process_time()
        t0 = time.perf_counter()
        scores, extras = recall.prepare(request)
        t1 = time.perf_counter()
        built = build_context(
            request.messages,
            tokens.render,
            args.window - args.reserve,
            scores=scores,
            recent_turns=RECENT_TURNS,
            extras=extras,
            count=tokens.count,
            count_batch=tokens.count_batch,
            min_score=min_score,
        )
        t2 = time.perf_counter()
        cpu = time.process_time() - c0
        assert len(built.token_ids) <= args.window - args.reserve
        label = "fill the budget" if min_score is None else f"min score {min_score:g}"
        if n == 0:
            first = [label, "first call", 1000 * (t1 - t0), 1000 * (t2 - t1), 1000 * (t2 - t0)]
            rows.append([*first, 1000 * cpu])
            continue
        timings["scores"].append(t1 - t0)
        timings["build"].append(t2 - t1)
        timings["total"].append(t2 - t0)
        timings["cpu"].append(cpu)
    med = {k: 1000 * statistics.median(v) for k, v in timings.items()}
    best = {k: 1000 * min(v) for k, v in timings.items()}
    worst = {k: 1000 * max(v) for k, v in timings.items()}
    for name, row in ((f"median of {len(questions)}", med), ("best", best), ("worst", worst)):
        rows.append([label, name, row["scores"], row["build"], row["total"], row["cpu"]])
    return rows


def answer_accuracy(args, filler, model_name: str) -> list[list[object]]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from chatapp.engine.prompt import TokenCounter
    from chatapp.engine.recall import Recall

    spec = model_spec(model_name)
    tokenizer = AutoTokenizer.from_pretrained(spec.path)
    if spec.chat_template:
        tokenizer.chat_template = spec.chat_template
    model = AutoModelForCausalLM.from_pretrained(spec.path, dtype=torch.float32).eval()
    encoder_spec = model_spec("minilm-l6")
    recall = Recall()
    budget = args.window - args.reserve

    tokens = TokenCounter(tokenizer)

    def reply(ids: list[int]) -> str:
        with torch.inference_mode():
            out = model.generate(
                torch.tensor([ids]),
                max_new_tokens=args.max_new,
                do_sample=False,
                pad_token_id=tokenizer.eos_token_id,
            )
        return tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True)

    rng = random.Random(7)
    floors = {f"builder, min score {f:g}": f for f in args.min_scores}
    results: dict[str, list[bool]] = {"in window (recency)": [], "builder": []}  # (fills)
    results.update({name: [] for name in floors})
    results["oracle"] = []
    seconds: dict[str, list[float]] = {k: [] for k in results}
    fact_in: dict[str, list[bool]] = {k: [] for k in results}
    tokens: dict[str, list[int]] = {k: [] for k in results}
    for fact in FACTS[: args.facts]:
        trial = make_trial(fact, filler, args.e2e_exchanges, 20, random.Random(rng.random()))
        msgs = [ChatMessage(r, t, id=i + 1) for i, (r, t) in enumerate(trial.messages)]  # type: ignore[arg-type]
        new = ChatMessage("user", fact.question, id=len(msgs) + 1)
        messages = (ChatMessage("system", SYSTEM), *msgs, new)
        fact_id = trial.fact_index + 1
        built_recency = build_prompt(messages, tokens.render, budget)
        request = Generate(messages, encoder=encoder_spec)
        scores, extras = recall.prepare(request)
        prompts = {"in window (recency)": built_recency}
        for name, floor in {"builder": None, **floors}.items():
            prompts[name] = build_context(
                messages,
                tokens.render,
                budget,
                scores=scores,
                recent_turns=RECENT_TURNS,
                extras=extras,
                count=tokens.count,
                count_batch=tokens.count_batch,
                min_score=floor,
            )
        # Oracle: the fact's exchange plus the recent turns, nothing else.
        prompts["oracle"] = build_prompt(
            (
                messages[0],
                msgs[trial.fact_index],
                msgs[trial.fact_index + 1],
                *msgs[-RECENT_TURNS:],
                new,
            ),
            tokens.render,
            budget,
        )
        for name, prompt in prompts.items():
            t0 = time.perf_counter()
            text = reply(prompt.token_ids)
            seconds[name].append(time.perf_counter() - t0)
            ok = any(a in text.lower() for a in fact.answer)
            results[name].append(ok)
            fact_in[name].append(any(m.id == fact_id for m in prompt.messages))
            tokens[name].append(len(prompt.token_ids))
            if args.verbose:
                print(f"[{name}] {fact.question} -> {text!r} {'OK' if ok else 'MISS'}")
    rows = []
    for name, oks in results.items():
        rows.append(
            [
                model_name,
                name,
                f"{sum(fact_in[name])}/{len(oks)}",
                f"{sum(oks)}/{len(oks)}",
                statistics.median(tokens[name]),
                statistics.mean(seconds[name]),
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--exchanges", type=int, default=100, help="exchanges per conversation")
    parser.add_argument("--e2e-exchanges", type=int, default=60)
    parser.add_argument("--window", type=int, default=1024)
    parser.add_argument("--reserve", type=int, default=64)
    parser.add_argument("--max-new", type=int, default=24)
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument("--skip-scorers", action="store_true")
    parser.add_argument("--skip-build-time", action="store_true")
    parser.add_argument("--facts", type=int, default=len(FACTS), help="facts asked end to end")
    parser.add_argument("--no-cache", action="store_true", help="embed everything again")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument(
        "--min-scores",
        type=lambda text: [float(x) for x in text.split(",") if x],
        default=[0.3],
        help="also build with these floors on recalled turns' scores (default 0.3, the "
        "app's [context] min_score)",
    )
    args = parser.parse_args()

    import torch

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    data = chitchat_file(locations.models_dir() / "bench-data")
    filler = filler_exchanges(data, 4000)
    encoder = Encoder(model_spec("minilm-l6").path, "minilm-l6")
    cache_dir = None if args.no_cache else locations.models_dir() / "bench-data" / "minilm-l6"
    embed = Embeddings(encoder, cache_dir)
    t0 = time.perf_counter()
    cached = len(embed.cache)
    if not (args.skip_scorers and args.skip_build_time):
        embed.warm([t for pair in filler for t in pair][:10_000])
    embed.warm([f.question for f in FACTS] + [f.statement for f in FACTS])
    print(
        f"embedded {len(embed.cache) - cached} texts in {time.perf_counter() - t0:.1f} s"
        f" ({cached} from the cache)"
    )
    embed.save()

    if args.skip_scorers:
        dev, test = {}, {}
    else:
        dev, test = scorer_recall(args, embed, filler)
    header = ["scorer", *[f"recall@{k}" for k in KS], "MRR"]
    if dev:
        n_dev, n_test = len(next(iter(dev.values()))), len(next(iter(test.values())))
        print_table(
            f"Scorers, dev half ({n_dev} questions, {args.exchanges} exchanges each)",
            header,
            recall_rows(dev),
        )
        print_table(f"Scorers, test half ({n_test} questions)", header, recall_rows(test))
        both = {k: dev[k] + test[k] for k in dev}
        print_table(f"Scorers, all {n_dev + n_test} questions", header, recall_rows(both))

    if not args.skip_build_time:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_spec(args.models.split(",")[0]).path)
        rows = []
        for floor in (None, *args.min_scores):
            rows += build_time(args, embed, filler, tokenizer, floor)
        print_table(
            f"Context build time, 10,000-message history, window {args.window} (ms)",
            [
                "builder",
                "run",
                "scores (one matmul)",
                "builder (exact counts)",
                "total (wall)",
                "total (CPU)",
            ],
            rows,
        )
    if args.skip_e2e:
        return
    rows = []
    for name in args.models.split(","):
        rows += answer_accuracy(args, filler, name.strip())
    print_table(
        f"Answer accuracy, {min(args.facts, len(FACTS))} planted facts, "
        f"{args.e2e_exchanges} exchanges, "
        f"window {args.window} (reserve {args.reserve}), greedy",
        ["model", "context", "fact in prompt", "answered", "prompt tokens", "s / answer"],
        rows,
    )


if __name__ == "__main__":
    main()
