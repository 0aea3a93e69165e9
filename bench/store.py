"""Benchmark the saved-sessions store on a big database.

Builds (once; reused with --db) a database of 1,000 sessions x 100 messages of
chat-like text, then times opening the store, listing the first page of sessions and
full-text search, next to naive versions of the same (a scan of every message, LIKE
'%word%') measured in the same run.

    .venv/bin/python bench/store.py                   # build in a temp dir, measure
    .venv/bin/python bench/store.py --db /tmp/big.db  # keep the database between runs

Goal: open + list < 100 ms, search < 50 ms.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import print_table

from chatapp.store import Store

COMMON = """the be to of and a in that have I it for not on with he as you do at this but his by
from they we say her she or an will my one all would there their what so up out if about who get
which go me when make can like time no just him know take people into year your good some could
them see other than then now look only come its over think also back after use two how our work
first well way even new want because any these give day most us is are was were been has had did
does model token prompt reply context window memory python function error code file data list
string number value return class import install version system server request response query
table index database search result question answer example explain why how should would could
recipe bread flour water starter oven bake dough yeast salt sugar butter travel trip city train
hotel flight museum beach mountain weather rain sun walk map plan budget week month morning night
music song guitar piano note chord rhythm book chapter story character plot write read poem line
""".split()  # noqa: SIM905

QUERIES = ("zeppelin", "quasar", "marmalade", "flour water", "bread", "the", "pyth", "ma")
PREFIXES = ("pyth", "ma")  # as typed: the store matches the last word as a prefix

# Rare words planted a known number of times, to search for.
PLANTED = {"zeppelin": 12, "quasar": 40, "marmalade": 300}


def _vocabulary(rng: random.Random) -> tuple[list[str], list[float]]:
    syllables = ["ka", "lo", "mi", "ten", "ra", "vo", "sel", "dun", "pri", "ox", "an", "ge"]
    rare = {"".join(rng.choices(syllables, k=rng.randint(2, 4))) for _ in range(6000)}
    words = [*COMMON, *sorted(rare - set(COMMON))]
    weights = [1.0 / (rank + 1) ** 1.05 for rank in range(len(words))]  # Zipf-like
    return words, weights


def _sentence(rng: random.Random, words: list[str], weights: list[float]) -> str:
    picked = rng.choices(words, weights, k=rng.randint(5, 18))
    text = " ".join(picked)
    return text[0].upper() + text[1:] + rng.choice([".", ".", ".", "?", "!"])


def _message(rng: random.Random, words: list[str], weights: list[float], role: str) -> str:
    count = rng.randint(1, 3) if role == "user" else rng.randint(3, 12)
    text = " ".join(_sentence(rng, words, weights) for _ in range(count))
    if role == "assistant" and rng.random() < 0.15:
        text += "\n\n```python\ndef example(value):\n    return value * 2\n```"
    return text


def build(path: Path, sessions: int, per_session: int, seed: int = 1) -> float:
    rng = random.Random(seed)
    words, weights = _vocabulary(rng)
    total = sessions * per_session
    plant_at = {word: set(rng.sample(range(total), count)) for word, count in PLANTED.items()}
    started = time.perf_counter()
    now = time.time() - sessions * 3600
    with Store(path) as store, store.transaction() as conn:
        n = 0
        for s in range(sessions):
            created = now + s * 3600
            cur = conn.execute(
                "INSERT INTO sessions (title, created_at, updated_at, model, settings) "
                "VALUES ('', ?, ?, 'smollm2-360m', '{}')",
                (created, created + per_session * 30),
            )
            session_id = cur.lastrowid
            parent = None
            title = ""
            for m in range(per_session):
                role = "user" if m % 2 == 0 else "assistant"
                text = _message(rng, words, weights, role)
                for word, where in plant_at.items():
                    if n in where:
                        text += f" Something about the {word} here."
                if not title:
                    title = text.split(".")[0][:60]
                cur = conn.execute(
                    "INSERT INTO messages (session_id, parent_id, role, content, model, "
                    "status, created_at) VALUES (?, ?, ?, ?, ?, 'complete', ?)",
                    (session_id, parent, role, text, "smollm2-360m", created + m * 30),
                )
                parent = cur.lastrowid
                n += 1
            conn.execute(
                "UPDATE sessions SET title = ?, current_leaf_id = ? WHERE id = ?",
                (title, parent, session_id),
            )
    with Store(path) as store:
        store._db.execute("PRAGMA optimize")
        store._db.execute("INSERT INTO messages_fts(messages_fts) VALUES ('optimize')")
        store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return time.perf_counter() - started


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float, object]:
    """(first call, median of the rest) in milliseconds, and the last result."""
    result = None
    samples = []
    for _ in range(repeat + 1):
        start = time.perf_counter()
        result = fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples[0], statistics.median(samples[1:]), result


NAIVE_LIST = """
SELECT s.id, s.title, agg.last, agg.n FROM sessions s
JOIN (SELECT session_id, max(created_at) AS last, count(*) AS n
      FROM messages GROUP BY session_id) agg ON agg.session_id = s.id
ORDER BY agg.last DESC LIMIT 50
"""
NAIVE_SEARCH = """
SELECT m.session_id, m.id, s.title, substr(m.content, 1, 80) FROM messages m
JOIN sessions s ON s.id = m.session_id
WHERE m.content LIKE ? ORDER BY m.id DESC LIMIT 20
"""

FRESH_PROCESS = """
import sys, time
t = time.perf_counter()
from chatapp.store import Store
with Store(sys.argv[1]) as store:
    store.list_sessions(limit=50)
print((time.perf_counter() - t) * 1000)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, help="database to build or reuse")
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=100, help="messages per session")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    workdir = None
    if args.db is None:
        workdir = tempfile.TemporaryDirectory(prefix="chatapp-bench-")
        args.db = Path(workdir.name) / "bench.db"
    if not args.db.exists():
        seconds = build(args.db, args.sessions, args.messages)
        size = args.db.stat().st_size / 1e6
        print(
            f"built {args.db}: {args.sessions} x {args.messages} messages, {size:.0f} MB, "
            f"{seconds:.1f} s"
        )

    rows: list[list[object]] = []

    def add(what: str, how: str, fn: Callable[[], object], note: str = "") -> None:
        first, median, result = timed(fn, args.repeat)
        if isinstance(result, list) and not note:
            note = f"{len(result)} rows"
        rows.append([what, how, first, median, note])

    def open_close() -> None:
        Store(args.db).close()

    def open_list() -> list:
        with Store(args.db) as s:
            return s.list_sessions(limit=50)

    add("open", "Store(path)", open_close)
    add("open + list 50", "store", open_list)
    fresh = [
        float(
            subprocess.run(
                [sys.executable, "-c", FRESH_PROCESS, str(args.db)],
                capture_output=True,
                text=True,
                check=True,
                cwd=Path(__file__).resolve().parent.parent,
            ).stdout
        )
        for _ in range(5)
    ]
    rows.append(
        ["open + list 50", "fresh process (import incl.)", fresh[0], statistics.median(fresh), ""]
    )
    with Store(args.db) as store:
        conn = store._db
        add("list 50", "store (indexed updated_at)", lambda: store.list_sessions(limit=50))
        add("list 50", "naive (aggregate all msgs)", lambda: conn.execute(NAIVE_LIST).fetchall())
        for query in (
            "zeppelin",
            "quasar",
            "marmalade",
            "flour water",
            "bread",
            "the",
            "pyth",
            "ma",
        ):
            hits = store.search(query, limit=20)
            total = conn.execute(
                "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH ?",
                (" ".join(f'"{w}"' for w in query.split()) + ("*" if query in PREFIXES else ""),),
            ).fetchone()[0]
            add(
                f"search {query!r}",
                "store (FTS5, bm25)",
                lambda q=query: store.search(q, limit=20),
                f"{len(hits)} of {total} matches",
            )
            like = "%" + query.replace(" ", "%") + "%"
            add(
                f"search {query!r}",
                "naive (LIKE scan)",
                lambda p=like: conn.execute(NAIVE_SEARCH, (p,)).fetchall(),
            )
        middle = store.list_sessions(limit=1, offset=args.sessions // 2)[0].id
        add(
            "search 'the', one session",
            "store (FTS5, rowid span)",
            lambda: store.search("the", limit=20, session_id=middle),
        )
        messages = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
    size = args.db.stat().st_size / 1e6
    print(
        "naive LIKE stops after 20 hits, so it is quick for common words and scans the whole "
        "table for rare ones; the store's cost stays flat."
    )
    print_table(
        f"store: {messages:,} messages in {args.sessions:,} sessions, {size:.0f} MB "
        f"(ms; first call, then median of {args.repeat})",
        ["operation", "how", "first ms", "median ms", "note"],
        rows,
    )
    if workdir is not None:
        workdir.cleanup()


if __name__ == "__main__":
    main()
