"""Context recall: the MiniLM encoder, BM25, the vector store, and the real worker."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from chatapp.engine.protocol import (
    Attach,
    Attached,
    ChatMessage,
    ContextItem,
    Done,
    Failed,
    Generate,
    GenerationSettings,
    LoadModel,
    ModelReady,
    ModelSpec,
    Reindex,
    Reindexed,
    Search,
    SearchResults,
    Started,
    new_request_id,
)
from chatapp.engine.rerank import BM25Index, VectorIndex, from_blob, hybrid, terms, to_blob
from chatapp.store import Store
from chatapp.store import recall as db
from chatapp.store.migrations import apply_migrations
from tests.conftest import collect, real_model_dir

MINILM = real_model_dir("minilm-l6")
SMOLLM = real_model_dir("smollm2-135m-instruct")
needs_minilm = pytest.mark.skipif(MINILM is None, reason="minilm-l6 is not pulled")
needs_smollm = pytest.mark.skipif(SMOLLM is None, reason="smollm2-135m-instruct is not pulled")

FACT = "By the way, my sister's cat is named Pistachio and she is eleven years old."
QUESTION = "What was the name of my sister's pet again?"
FILLER = [
    ("Any tips for growing tomatoes on a balcony?", "Use a deep pot and water daily."),
    ("What's a good stretch for a stiff neck?", "Try slow chin tucks and side tilts."),
    ("Can you suggest a weekend hike near a lake?", "A loop trail around the lake is nice."),
    ("How do I make cold brew coffee?", "Steep coarse grounds in cold water overnight."),
    ("Which board games work for two players?", "Patchwork and Jaipur are great for two."),
]


@pytest.fixture(scope="module")
def encoder():
    from chatapp.engine.rerank import Encoder

    if MINILM is None:
        pytest.skip("minilm-l6 is not pulled")
    return Encoder(str(MINILM), "minilm-l6")


# --- the encoder (real MiniLM) ---------------------------------------------------------


@needs_minilm
def test_paraphrase_scores_above_unrelated(encoder):
    vectors = encoder.embed(
        [
            "How do I reset my router's password?",
            "What is the way to change the admin password on my wifi router?",
            "The recipe needs two cups of flour and an egg.",
        ]
    )
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    sims = vectors @ vectors[0]
    assert sims[1] > 0.5 > sims[2] and sims[1] - sims[2] > 0.3


@needs_minilm
def test_batching_does_not_change_vectors(encoder):
    texts = [f"sentence number {i} about {'cats ' * (i % 7)}" for i in range(40)]
    together = encoder.embed(texts)
    alone = np.stack([encoder.embed([t])[0] for t in texts[:5]])
    assert np.allclose(together[:5], alone, atol=1e-5)
    assert encoder.embed([]).shape == (0, 384)


@needs_minilm
def test_fact_ranks_first_among_filler(encoder):
    texts = [FACT] + [t for pair in FILLER for t in pair]
    index = VectorIndex(encoder.dim)
    keys = [f"m:{i}" for i in range(len(texts))]
    index.add(keys, encoder.embed(texts))
    scores = index.scores(encoder.embed([QUESTION])[0], keys)
    assert int(np.argmax(scores)) == 0


@needs_minilm
def test_chunks_overlap_and_cover_the_text(encoder):
    text = "\n".join(f"Line {i}: the quick brown fox jumps over dog {i}." for i in range(200))
    chunks = encoder.chunk(text, 100, 20)
    assert len(chunks) > 5
    assert chunks[0].startswith("Line 0:") and chunks[-1].endswith("dog 199.")
    assert all(
        len(encoder.tokenizer(c, add_special_tokens=False)["input_ids"]) <= 101 for c in chunks
    )
    tail = chunks[0][-20:]
    assert tail in chunks[1]  # the overlap


# --- BM25 and the index (no model) ---------------------------------------------------


def test_bm25_prefers_rare_matching_words():
    index = BM25Index()
    index.add("a", "I love pizza with mushrooms")
    index.add("b", "The weather is nice today")
    index.add("c", "Mushrooms grow in the forest after rain")
    index.add("d", "Pizza pizza pizza everywhere")
    scores = index.scores("which mushrooms did I put on the pizza?", ["a", "b", "c", "d"])
    assert scores[0] == scores.max() and scores[1] == 0
    assert terms("The Cities were running") == ["city", "runn"]


def test_vector_index_grows_and_scores_by_key():
    index = VectorIndex(4)
    vectors = np.eye(4, dtype=np.float32)
    for i in range(100):
        index.add([f"k{i}"], vectors[[i % 4]])
    assert len(index) == 100 and "k99" in index
    scores = index.scores(vectors[1], ["k1", "k2", "k5"])
    assert scores.tolist() == [1.0, 0.0, 1.0]
    assert hybrid(np.array([0.5, 0.5]), np.array([0.0, 2.0]), 0.3).tolist() == pytest.approx(
        [0.5, 0.8]
    )
    assert np.array_equal(from_blob(to_blob(vectors[2])), vectors[2])


# --- the store ---------------------------------------------------------------------


def test_store_pins_attachments_vectors(tmp_path: Path):
    with Store(tmp_path / "c.db") as store:
        session = store.create_session("m")
        other = store.create_session("m")
        m1 = store.add_message(session.id, "user", "hello", None)
        m2 = store.add_message(session.id, "assistant", "hi", m1.id)
        o1 = store.add_message(other.id, "user", "elsewhere", None)
        db.set_recall_mode(store, m1.id, "pinned")
        db.set_recall_mode(store, m2.id, "excluded")
        db.set_recall_mode(store, m2.id, "pinned")
        assert db.recall_modes(store, session.id) == {m1.id: "pinned", m2.id: "pinned"}
        db.set_recall_mode(store, m1.id, None)
        assert db.recall_modes(store, session.id) == {m2.id: "pinned"}
        with pytest.raises(ValueError):
            db.set_recall_mode(store, m1.id, "sometimes")  # type: ignore[arg-type]

        aid, chunk_ids = db.add_attachment(store, session.id, "a.md", "one two", ["one", "two"])
        assert [c.content for c in db.session_chunks(store, session.id)] == ["one", "two"]
        assert db.attachments(store, session.id)[0].chunks == 2

        blob = to_blob(np.ones(3, dtype=np.float32))
        assert db.count_missing(store, "enc") == 5
        assert db.put_vectors(store, "enc", 3, [(m1.id, blob), (999, blob)]) == 1
        db.put_vectors(store, "enc", 3, [(chunk_ids[0], blob)], chunks=True)
        assert db.get_vectors(store, "enc", [m1.id, m2.id]) == {m1.id: blob}
        assert db.get_vectors(store, "other", [m1.id]) == {}
        assert {i for i, _ in db.missing_vectors(store, "enc")} == {m2.id, o1.id}
        assert db.count_missing(store, "enc") == 3
        assert [m.id for m in db.other_session_messages(store, session.id)] == [o1.id]
        # Deleting cascades to vectors, pins and chunks.
        store.delete_message(m1.id)
        db.remove_attachment(store, aid)
        assert db.get_vectors(store, "enc", [m1.id]) == {}
        assert db.recall_modes(store, session.id) == {}
        assert db.session_chunks(store, session.id) == []


def test_version_2_database_upgrades(tmp_path: Path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    apply_migrations(conn, target=2)
    conn.execute("INSERT INTO sessions (created_at, updated_at) VALUES (1, 1)")
    conn.execute(
        "INSERT INTO messages (session_id, role, content, created_at) VALUES (1, 'user', 'x', 1)"
    )
    conn.close()
    with Store(path) as store:
        assert db.count_missing(store, "enc") == 1
        assert store.messages(1)[0].content == "x"


def test_context_item_json_round_trip():
    item = ContextItem("recalled", message_id=4, score=0.123456, session_id=2)
    assert item.to_json() == {"kind": "recalled", "message_id": 4, "session_id": 2, "score": 0.1235}
    assert ContextItem.from_json(item.to_json()) == ContextItem(
        "recalled", message_id=4, score=0.1235, session_id=2
    )
    with pytest.raises(ValueError):
        ContextItem.from_json({"kind": "nope"})


# --- end to end through the real worker ---------------------------------------------


def long_conversation(store: Store) -> tuple[int, list[ChatMessage], int]:
    """A session: the fact, then 40 turns of filler; returns (session, branch, fact id)."""
    session = store.create_session("smollm2")
    fact = store.add_message(session.id, "user", FACT, None)
    parent = store.add_message(session.id, "assistant", "Pistachio is a lovely name!", fact.id)
    for i in range(20):
        question, answer = FILLER[i % len(FILLER)]
        q = store.add_message(session.id, "user", f"{question} (take {i})", parent.id)
        parent = store.add_message(session.id, "assistant", answer, q.id)
    new = store.add_message(session.id, "user", QUESTION, parent.id)
    branch = [ChatMessage(m.role, m.content, id=m.id) for m in store.branch(session.id, new.id)]
    return session.id, branch, fact.id


@needs_minilm
@needs_smollm
async def test_fact_from_40_turns_ago_is_recalled(client, tmp_path: Path):
    spec = ModelSpec("smollm2", str(SMOLLM), context_window=2048)
    encoder = ModelSpec("minilm-l6", str(MINILM), context_window=256)
    assert isinstance((await collect(client, LoadModel(spec)))[-1], ModelReady)
    database = tmp_path / "chat.db"
    with Store(database) as store:
        session_id, branch, fact_id = long_conversation(store)
    assert len(branch) == 43
    # A window that holds only the recent turns and a few more: the fact is 40 turns back.
    request = Generate(
        (ChatMessage("system", "You are a helpful assistant."), *branch),
        GenerationSettings(temperature=0.0, max_new_tokens=8),
        encoder=encoder,
        session_id=session_id,
        database=str(database),
        recent_turns=4,
        context_window=300,
        reply_reserve=8,
    )
    events = await collect(client, request)
    assert isinstance(events[-1], Done), events[-1]
    started = next(e for e in events if isinstance(e, Started))
    assert started.prompt_tokens <= 300 - 8
    recalled = {i.message_id: i for i in started.context if i.kind == "recalled"}
    assert fact_id in recalled and fact_id + 1 in recalled  # the fact with its reply
    assert recalled[fact_id].score == max(i.score for i in started.context if i.score is not None)
    assert started.dropped_messages > 20
    # Every message of the branch got a vector in the database, under the encoder's name.
    with Store(database) as store:
        assert db.count_missing(store, "minilm-l6") == 0

    # With a floor on scores, the fact is still recalled, and the chit-chat around it not.
    floored = dataclasses.replace(request, min_score=0.3, request_id=new_request_id())
    events = await collect(client, floored)
    started_floored = next(e for e in events if isinstance(e, Started))
    recalled_floored = {i.message_id for i in started_floored.context if i.kind == "recalled"}
    assert {fact_id, fact_id + 1} <= recalled_floored < set(recalled)
    assert started_floored.prompt_tokens < started.prompt_tokens

    # The recency-only builder (no encoder) loses the fact.
    plain = Generate(request.messages, request.settings, context_window=300, reply_reserve=8)
    events = await collect(client, plain)
    started = next(e for e in events if isinstance(e, Started))
    assert started.context == () and started.prompt_tokens <= 292


@needs_minilm
@needs_smollm
async def test_attach_search_reindex_through_the_worker(client, tmp_path: Path):
    spec = ModelSpec("smollm2", str(SMOLLM), context_window=2048)
    encoder = ModelSpec("minilm-l6", str(MINILM), context_window=256)
    await collect(client, LoadModel(spec))
    database = tmp_path / "chat.db"
    with Store(database) as store:
        session = store.create_session("smollm2")
        other = store.create_session("smollm2")
        m = store.add_message(other.id, "user", "The spare key is under the blue flowerpot.", None)
        store.add_message(session.id, "user", "hello", None)
    (event,) = await collect(client, Reindex(encoder, str(database)))
    assert isinstance(event, Reindexed) and event.missing == 2
    notes = "# Deploy notes\n\n" + "\n".join(
        f"Step {i}: run the migration script number {i}." for i in range(150)
    )
    notes += "\nThe staging server password rotates every Tuesday at noon.\n"
    (attached,) = await collect(
        client, Attach("notes.md", notes, encoder, session_id=session.id, database=str(database))
    )
    assert isinstance(attached, Attached) and attached.chunks > 3 and attached.attachment_id
    (results,) = await collect(
        client, Search("where did I hide the key?", encoder, str(database), limit=5)
    )
    assert isinstance(results, SearchResults) and results.hits[0].message_id == m.id
    request = Generate(
        (ChatMessage("user", "When does the staging password change?", id=None),),
        GenerationSettings(temperature=0.0, max_new_tokens=4),
        encoder=encoder,
        session_id=session.id,
        database=str(database),
        context_window=400,
        reply_reserve=4,
        cross_session=True,
    )
    events = await collect(client, request)
    started = next(e for e in events if isinstance(e, Started))
    chunks = [i for i in started.context if i.kind == "chunk"]
    with Store(database) as store:
        texts = db.get_chunks(store, [i.chunk_id for i in chunks])
    assert any("Tuesday" in c.content for c in texts.values())
    assert not any(isinstance(e, Failed) for e in events)


# --- the worker's Recall with a fake encoder (fast) -----------------------------------


class FakeEncoder:
    """Bag-of-letters vectors: texts that share letters score high."""

    dim = 26
    name = "fake"
    path = "fake"

    def __init__(self) -> None:
        self.embedded: list[str] = []

    def embed(self, texts):
        self.embedded.extend(texts)
        out = np.zeros((len(texts), 26), dtype=np.float32)
        for i, text in enumerate(texts):
            for ch in text.lower():
                if "a" <= ch <= "z":
                    out[i, ord(ch) - 97] += 1
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-9)

    def chunk(self, text, size, overlap):
        return [p for p in text.split("\n\n") if p.strip()]

    @property
    def tokenizer(self):
        return lambda text, add_special_tokens=False: {"input_ids": text.split()}


def test_recall_embeds_once_and_keeps_vectors_in_the_database(tmp_path: Path):
    from chatapp.engine.recall import Recall

    encoder = FakeEncoder()
    recall = Recall(load_encoder=lambda spec: encoder)
    spec = ModelSpec("fake", "fake")
    database = tmp_path / "c.db"
    with Store(database) as store:
        session = store.create_session("m")
        a = store.add_message(session.id, "user", "zzz zebra", None)
        b = store.add_message(session.id, "assistant", "qqq", a.id)
        c = store.add_message(session.id, "user", "zebra?", b.id)
    messages = tuple(ChatMessage(m.role, m.content, id=m.id) for m in (a, b, c))
    request = Generate(messages, encoder=spec, database=str(database), session_id=session.id)
    scores, extras = recall.prepare(request)
    assert scores[0] > scores[1] and scores[2] is None and extras == []
    assert len(encoder.embedded) == 3
    recall.prepare(request)
    assert len(encoder.embedded) == 3  # in memory now
    fresh = Recall(load_encoder=lambda spec: encoder)
    fresh.prepare(request)
    assert len(encoder.embedded) == 3  # read back from the database
    with Store(database) as store:
        assert db.count_missing(store, "fake") == 0


def test_recall_without_a_database_keys_by_text_and_keeps_attachments_in_memory():
    from chatapp.engine.recall import Recall

    encoder = FakeEncoder()
    recall = Recall(load_encoder=lambda spec: encoder)
    spec = ModelSpec("fake", "fake")
    attached = recall.attach(Attach("n.md", "xylophone xyz\n\nbanana bread", spec, session_id=-1))
    assert attached.chunks == 2 and attached.attachment_id is None
    # Ids without a database are not stored ids: the same id with other text is not confused.
    one = Generate(
        (ChatMessage("user", "aaa", id=1), ChatMessage("user", "xylophone")),
        encoder=spec,
        session_id=-1,
    )
    two = Generate(
        (ChatMessage("user", "xyz xyz", id=1), ChatMessage("user", "xylophone")), encoder=spec
    )
    s1, extras = recall.prepare(one)
    s2, _ = recall.prepare(two)
    assert s2[0] > s1[0]
    assert extras[0].text == "xylophone xyz"
    assert recall.prepare(two)[1] == []  # another session: no chunks


def test_backlog_fills_missing_vectors(tmp_path: Path):
    from chatapp.engine.recall import Recall

    encoder = FakeEncoder()
    recall = Recall(load_encoder=lambda spec: encoder)
    database = tmp_path / "c.db"
    with Store(database) as store:
        session = store.create_session("m")
        parent = None
        for i in range(70):
            parent = store.add_message(session.id, "user", f"message {i}", parent).id
    assert recall.queue_reindex(ModelSpec("fake", "fake"), str(database)) == 70
    steps = 0
    while recall.work_backlog():
        steps += 1
    assert steps == 3 and not recall.backlog
    with Store(database) as store:
        assert db.count_missing(store, "fake") == 0
