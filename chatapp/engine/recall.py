"""The worker's side of context recall: vectors for the branch, chunks and other sessions,
scores for the builder, attachments, search, and the idle-time backlog of missing vectors.

Vectors live in memory (`VectorIndex`, keyed "m:<message id>", "c:<chunk id>" or
"h:<sha1 of text>") and, when the request names the database, in its `embeddings` table,
so each message is embedded once. Everything here runs in the worker process.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from chatapp.engine.context import Extra
from chatapp.engine.protocol import (
    Attach,
    Attached,
    ChatMessage,
    Generate,
    ModelSpec,
    Search,
    SearchHit,
    SearchResults,
)
from chatapp.engine.rerank import (
    HYBRID_BM25_WEIGHT,
    BM25Index,
    Encoder,
    VectorIndex,
    from_blob,
    hybrid,
    text_key,
    to_blob,
)

CHUNK_TOKENS = 200
CHUNK_OVERLAP = 40
MAX_EXTRAS = 24
"""Chunks and other sessions' exchanges offered to the builder (the best-scored)."""
MAX_EMBED_NOW = 512
"""Missing vectors of other sessions computed during a request; the rest wait for idle."""
BACKLOG_BATCH = 32

_scratch_ids = itertools.count(-1, -1)


def message_key(message: ChatMessage, database: str | None = None) -> str:
    """A stored message's key is its id; without a database (ids that are not stored
    ones, or none), the hash of its text."""
    if message.id is not None and database is not None:
        return f"m:{message.id}"
    return text_key(message.content)


@dataclass
class _MemoryChunk:
    chunk_id: int
    name: str
    ordinal: int
    text: str


class Recall:
    def __init__(self, load_encoder: Callable[[ModelSpec], Encoder] | None = None) -> None:
        self._load = load_encoder or (lambda spec: Encoder(spec.path, spec.name))
        self.encoder: Encoder | None = None
        self.index: VectorIndex | None = None
        self.bm25 = BM25Index()
        self._stores: dict[str, object] = {}
        self._memory_chunks: dict[int | None, list[_MemoryChunk]] = {}
        self.backlog: dict[tuple[str, str], ModelSpec] = {}
        self.bm25_weight: float | None = None
        """None: `HYBRID_BM25_WEIGHT`."""
        self._text_keys: dict[str, str] = {}

    # --- resources -----------------------------------------------------------------

    def use_encoder(self, spec: ModelSpec) -> Encoder:
        if self.encoder is None or self.encoder.path != spec.path:
            self.encoder = None
            encoder = self._load(spec)
            self.encoder, self.index = encoder, VectorIndex(encoder.dim)
        assert self.encoder is not None
        return self.encoder

    def store(self, database: str):  # -> chatapp.store.Store
        from chatapp.store.sessions import Store

        store = self._stores.get(database)
        if store is None:
            store = self._stores[database] = Store(database, recover=False)
        return store

    def close(self) -> None:
        for store in self._stores.values():
            with contextlib.suppress(Exception):
                store.close()  # type: ignore[attr-defined]
        self._stores.clear()

    # --- vectors -------------------------------------------------------------------

    def ensure(self, items: Sequence[tuple[str, str]], database: str | None) -> None:
        """Make sure every (key, text) has a vector in the index: from the database when
        it has one, else computed (and saved, for stored messages and chunks)."""
        assert self.encoder is not None and self.index is not None
        index, encoder = self.index, self.encoder
        missing = {k: t for k, t in items if k not in index}
        if not missing:
            return
        if database is not None:
            from chatapp.store import recall as db

            store = self.store(database)
            for prefix, chunks in (("m:", False), ("c:", True)):
                ids = [int(k[2:]) for k in missing if k.startswith(prefix)]
                if ids:
                    found = db.get_vectors(store, encoder.name, ids, chunks=chunks)
                    dim_ok = {i: b for i, b in found.items() if len(b) == 4 * encoder.dim}
                    if dim_ok:
                        keys = [f"{prefix}{i}" for i in dim_ok]
                        index.add(keys, np.stack([from_blob(b) for b in dim_ok.values()]))
                        for key in keys:
                            missing.pop(key, None)
        if not missing:
            return
        keys = list(missing)
        vectors = encoder.embed([missing[k] for k in keys])
        index.add(keys, vectors)
        if database is not None:
            from chatapp.store import recall as db

            store = self.store(database)
            for prefix, chunks in (("m:", False), ("c:", True)):
                rows = [
                    (int(k[2:]), to_blob(v))
                    for k, v in zip(keys, vectors, strict=True)
                    if k.startswith(prefix)
                ]
                if rows:
                    db.put_vectors(store, encoder.name, encoder.dim, rows, chunks=chunks)

    @property
    def weight(self) -> float:
        return HYBRID_BM25_WEIGHT if self.bm25_weight is None else self.bm25_weight

    def scores(self, query: str, query_vector: np.ndarray, keys: Sequence[str]) -> np.ndarray:
        assert self.index is not None
        cosine = self.index.scores(query_vector, keys)
        if self.weight <= 0:
            return cosine
        return hybrid(cosine, self.bm25.scores(query, keys), self.weight)

    def _bm25_add(self, items: Sequence[tuple[str, str]]) -> None:
        if self.weight <= 0:
            return
        for key, text in items:
            self.bm25.add(key, text)

    def key(self, message: ChatMessage, database: str | None) -> str:
        if message.id is not None and database is not None:
            return f"m:{message.id}"
        key = self._text_keys.get(message.content)
        if key is None:
            if len(self._text_keys) > 200_000:
                self._text_keys.clear()
            key = self._text_keys[message.content] = text_key(message.content)
        return key

    # --- requests ------------------------------------------------------------------

    def prepare(self, request: Generate) -> tuple[list[float | None], list[Extra]]:
        """Scores for the request's messages (aligned with them) and the extra candidates."""
        assert request.encoder is not None
        self.use_encoder(request.encoder)
        messages = request.messages
        new = messages[-1]
        database = request.database
        positions = [i for i, m in enumerate(messages[:-1]) if m.role != "system" and m.content]
        keys = [self.key(messages[i], database) for i in positions]
        new_key = self.key(new, database)
        items = [(k, messages[i].content) for k, i in zip(keys, positions, strict=True)]
        self.ensure([*items, (new_key, new.content)], request.database)
        self._bm25_add(items)
        assert self.index is not None
        query_vector = self.index.vector(new_key)
        scores: list[float | None] = [None] * len(messages)
        for i, value in zip(
            positions, self.scores(new.content, query_vector, keys).tolist(), strict=True
        ):
            scores[i] = value
        extras = self._chunk_extras(request, query_vector)
        if request.cross_session and request.database and request.session_id is not None:
            extras += self._session_extras(request, query_vector)
        return scores, extras

    def _chunk_extras(self, request: Generate, query_vector: np.ndarray) -> list[Extra]:
        found: list[tuple[str, int, str, int, str]] = []  # key, chunk id, name, ordinal, text
        if request.database and request.session_id is not None:
            from chatapp.store import recall as db

            for chunk in db.session_chunks(self.store(request.database), request.session_id):
                found.append((f"c:{chunk.id}", chunk.id, chunk.name, chunk.ordinal, chunk.content))
        else:
            for chunk in self._memory_chunks.get(request.session_id, []):
                found.append(
                    (text_key(chunk.text), chunk.chunk_id, chunk.name, chunk.ordinal, chunk.text)
                )
        if not found:
            return []
        items = [(k, text) for k, _, _, _, text in found]
        self.ensure(items, request.database)
        self._bm25_add(items)
        scores = self.scores(request.messages[-1].content, query_vector, [k for k, *_ in found])
        best = np.argsort(-scores)[:MAX_EXTRAS]
        return [
            Extra(
                "chunk",
                float(scores[i]),
                text=found[i][4],
                label=found[i][2],
                chunk_id=found[i][1],
                order=found[i][3],
            )
            for i in best
        ]

    def _session_extras(self, request: Generate, query_vector: np.ndarray) -> list[Extra]:
        from chatapp.store import recall as db

        assert request.database is not None and request.session_id is not None
        assert self.encoder is not None
        store = self.store(request.database)
        others = db.other_session_messages(store, request.session_id)
        if not others:
            return []
        keys = [f"m:{m.id}" for m in others]
        assert self.index is not None
        missing = [(k, m.content) for k, m in zip(keys, others, strict=True) if k not in self.index]
        self.ensure(missing[-MAX_EMBED_NOW:], request.database)  # the newest first
        if len(missing) > MAX_EMBED_NOW:
            self.backlog[(self.encoder.name, request.database)] = request.encoder  # type: ignore[assignment]
        usable = [(k, m) for k, m in zip(keys, others, strict=True) if k in self.index]
        self._bm25_add([(k, m.content) for k, m in usable])
        scores = self.scores(request.messages[-1].content, query_vector, [k for k, _ in usable])
        score_of = {m.id: float(s) for (_, m), s in zip(usable, scores, strict=True)}
        # An exchange: a user message and its first reply.
        reply_of: dict[int, object] = {}
        for m in others:
            if m.role == "assistant" and m.parent_id is not None:
                reply_of.setdefault(m.parent_id, m)
        units = []
        for m in others:
            if m.role != "user" or m.id not in score_of:
                continue
            reply = reply_of.get(m.id)
            members = [m] if reply is None else [m, reply]
            score = max(score_of.get(x.id, -1.0) for x in members)  # type: ignore[attr-defined]
            units.append((score, members))
        units.sort(key=lambda u: -u[0])
        return [
            Extra(
                "session",
                score,
                messages=tuple(ChatMessage(x.role, x.content, id=x.id) for x in members),  # type: ignore[attr-defined]
                session_id=members[0].session_id,  # type: ignore[attr-defined]
                order=members[0].id,  # type: ignore[attr-defined]
            )
            for score, members in units[:MAX_EXTRAS]
        ]

    def attach(self, request: Attach) -> Attached:
        encoder = self.use_encoder(request.encoder)
        chunks = encoder.chunk(request.text, CHUNK_TOKENS, CHUNK_OVERLAP)
        if not chunks:
            raise ValueError(f"{request.name} has no text to attach")
        tokens = len(encoder.tokenizer(request.text, add_special_tokens=False)["input_ids"])
        if request.database and request.session_id is not None:
            from chatapp.store import recall as db

            digest = hashlib.sha256(request.text.encode("utf-8")).hexdigest()
            attachment_id, chunk_ids = db.add_attachment(
                self.store(request.database),
                request.session_id,
                request.name,
                request.text,
                chunks,
                path=request.path,
                size=len(request.text.encode("utf-8")),
                sha256=digest,
            )
            self.ensure(
                [(f"c:{i}", text) for i, text in zip(chunk_ids, chunks, strict=True)],
                request.database,
            )
        else:
            attachment_id = None
            kept = self._memory_chunks.setdefault(request.session_id, [])
            for ordinal, text in enumerate(chunks):
                kept.append(_MemoryChunk(next(_scratch_ids), request.name, ordinal, text))
            self.ensure([(text_key(t), t) for t in chunks], None)
        return Attached(request.request_id, request.name, attachment_id, len(chunks), tokens)

    def search(self, request: Search) -> SearchResults:
        from chatapp.store import recall as db

        encoder = self.use_encoder(request.encoder)
        store = self.store(request.database)
        query = encoder.embed([request.query])[0]
        rows = db.all_message_vectors(store, encoder.name)
        if not rows:
            return SearchResults(request.request_id, ())
        matrix = np.frombuffer(b"".join(r[2] for r in rows), dtype="<f4").reshape(len(rows), -1)
        scores = matrix @ query
        best = np.argsort(-scores)[: request.limit]
        hits = tuple(SearchHit(rows[i][0], rows[i][1], float(scores[i])) for i in best)
        return SearchResults(request.request_id, hits)

    # --- the idle-time backlog -----------------------------------------------------

    def queue_reindex(self, spec: ModelSpec, database: str) -> int:
        from chatapp.store import recall as db

        self.backlog[(spec.name, database)] = spec
        return db.count_missing(self.store(database), spec.name)

    def work_backlog(self) -> bool:
        """Embed one batch of missing vectors; False when there is nothing left to do."""
        from chatapp.store import recall as db

        while self.backlog:
            (name, database), spec = next(iter(self.backlog.items()))
            encoder = self.use_encoder(spec)
            store = self.store(database)
            for chunks in (False, True):
                todo = db.missing_vectors(store, encoder.name, BACKLOG_BATCH, chunks=chunks)
                if todo:
                    vectors = encoder.embed([text for _, text in todo])
                    rows = [(i, to_blob(v)) for (i, _), v in zip(todo, vectors, strict=True)]
                    db.put_vectors(store, encoder.name, encoder.dim, rows, chunks=chunks)
                    return True
            del self.backlog[(name, database)]
        return False
