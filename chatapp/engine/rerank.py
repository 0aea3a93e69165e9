"""Relevance scoring for the context builder: the BERT encoder, a vector index, BM25.

Runs in the worker process only (imports numpy; torch and transformers lazily).

- `Encoder`: all-MiniLM-L6-v2 (or any BERT-style folder) through transformers' AutoModel,
  mean pooling over the attention mask, L2-normalised, batched by length.
- `VectorIndex`: float32 rows keyed by strings ("m:12" a message, "c:7" a chunk,
  "h:<sha1>" text without an id); scoring N rows against a query is one matrix product.
- `BM25Index`: an incremental inverted index (Okapi BM25, k1=1.2, b=0.75).
- `hybrid`: the scorer the builder uses (see bench/recall.py for the measurements).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

ENCODER_MAX_TOKENS = 256
"""all-MiniLM-L6-v2 was trained on inputs of up to 256 word pieces."""

HYBRID_BM25_WEIGHT = 0.0
"""Weight of the max-normalised BM25 score added to the cosine. bench/recall.py measured
0.1-0.3 as no better than the encoder alone (recall@1 0.958 both, MRR 0.972 vs 0.979) and
anything above as worse, so the builder ranks by cosine alone and skips BM25's cost."""


def text_key(text: str) -> str:
    return "h:" + hashlib.sha1(text.encode("utf-8", "replace")).hexdigest()


def to_blob(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def from_blob(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f4")


# --- the encoder ---------------------------------------------------------------------


class Encoder:
    """A sentence encoder: texts -> unit vectors (float32, shape (n, dim))."""

    def __init__(self, path: str, name: str = "", *, batch_size: int = 32) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.name = name or path
        self.path = path
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
        self.model = AutoModel.from_pretrained(path, dtype=torch.float32, trust_remote_code=False)
        self.model.eval()
        self.dim = int(self.model.config.hidden_size)
        self._torch = torch

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        torch = self._torch
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        # Similar lengths together: less padding per batch.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                encoded = self.tokenizer(
                    [texts[i] or " " for i in batch],
                    padding=True,
                    truncation=True,
                    max_length=ENCODER_MAX_TOKENS,
                    return_tensors="pt",
                )
                hidden = self.model(**encoded).last_hidden_state
                mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out[batch] = pooled.numpy()
        return out

    def chunk(self, text: str, size: int = 200, overlap: int = 40) -> list[str]:
        """Cut `text` into windows of `size` encoder tokens overlapping by `overlap`.

        Chunks are slices of the original text (offsets from the tokenizer), so nothing is
        re-spelled; a window ends at a line break or space when one is near.
        """
        return chunk_by_tokens(self.tokenizer, text, size, overlap)


def chunk_by_tokens(tokenizer: Any, text: str, size: int = 200, overlap: int = 40) -> list[str]:
    if not 0 <= overlap < size:
        raise ValueError("overlap must be smaller than the chunk size")
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = encoded["offset_mapping"]
    if not offsets:
        return [text] if text.strip() else []
    chunks = []
    start = 0
    while start < len(offsets):
        end = min(start + size, len(offsets))
        begin_char = offsets[start][0]
        end_char = offsets[end - 1][1] if end == len(offsets) else offsets[end][0]
        piece = text[begin_char:end_char].strip()
        if piece:
            chunks.append(piece)
        if end == len(offsets):
            break
        start = end - overlap
    return chunks


# --- vectors -------------------------------------------------------------------------


class VectorIndex:
    """Rows of unit vectors by key; grows by doubling. Not thread-safe."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._rows: dict[str, int] = {}
        self._matrix = np.zeros((64, dim), dtype=np.float32)

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, key: str) -> bool:
        return key in self._rows

    def add(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        for key, vector in zip(keys, np.asarray(vectors, dtype=np.float32), strict=True):
            row = self._rows.get(key)
            if row is None:
                row = len(self._rows)
                if row >= len(self._matrix):
                    grown = np.zeros((2 * len(self._matrix), self.dim), dtype=np.float32)
                    grown[: len(self._matrix)] = self._matrix
                    self._matrix = grown
                self._rows[key] = row
            self._matrix[row] = vector

    def missing(self, keys: Iterable[str]) -> list[str]:
        return [k for k in keys if k not in self._rows]

    def vector(self, key: str) -> np.ndarray:
        return self._matrix[self._rows[key]].copy()

    def rows(self, keys: Sequence[str]) -> np.ndarray:
        rows = self._rows
        return np.fromiter((rows[k] for k in keys), dtype=np.int64, count=len(keys))

    def scores(self, query: np.ndarray, keys: Sequence[str]) -> np.ndarray:
        """Cosine of `query` (a unit vector) with each key's vector: one matrix product."""
        if not keys:
            return np.zeros(0, dtype=np.float32)
        rows = self.rows(keys)
        query = np.asarray(query, dtype=np.float32)
        if 4 * len(rows) >= len(self._rows):  # most rows: one product, then pick (no copy)
            return (self._matrix[: len(self._rows)] @ query)[rows]
        return self._matrix[rows] @ query

    def all_scores(self, query: np.ndarray) -> tuple[list[str], np.ndarray]:
        keys = list(self._rows)
        return keys, self._matrix[: len(keys)] @ np.asarray(query, dtype=np.float32)


# --- BM25 ----------------------------------------------------------------------------

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
STOPWORDS = frozenset(
    """a about after again all am an and any are as at be been before being below between
    both but by can could did do does doing down during each few for from further had has
    have having he her here hers herself him himself his how i if in into is it its itself
    just me more most my myself no nor not now of off on once only or other our ours out
    over own same she should so some such than that the their theirs them then there these
    they this those through to too under until up very was we were what when where which
    while who whom why will with would you your yours yourself yourselves im ive dont its
    ok okay yeah yes oh really like know get got one also well""".split()  # noqa: SIM905
)


def terms(text: str) -> list[str]:
    """Lower-cased words without stop words, with a light plural/-ing strip."""
    out = []
    for word in _WORD.findall(text.lower()):
        if word in STOPWORDS or len(word) < 2:
            continue
        if len(word) > 4 and word.endswith("ies"):
            word = word[:-3] + "y"
        elif len(word) > 5 and word.endswith("ing"):
            word = word[:-3]
        elif len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        out.append(word)
    return out


class BM25Index:
    """Okapi BM25 over documents added one at a time, keyed like `VectorIndex`."""

    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self._docs: dict[str, int] = {}
        self._lengths: list[int] = []
        self._postings: dict[str, dict[int, int]] = {}
        self._total = 0

    def __contains__(self, key: str) -> bool:
        return key in self._docs

    def __len__(self) -> int:
        return len(self._docs)

    def add(self, key: str, text: str) -> None:
        if key in self._docs:
            return
        doc = len(self._lengths)
        self._docs[key] = doc
        counts = Counter(terms(text))
        length = sum(counts.values())
        self._lengths.append(length)
        self._total += length
        for term, n in counts.items():
            self._postings.setdefault(term, {})[doc] = n

    def scores(self, query: str, keys: Sequence[str]) -> np.ndarray:
        out = np.zeros(len(keys), dtype=np.float32)
        if not keys or not self._docs:
            return out
        position = {self._docs[k]: i for i, k in enumerate(keys) if k in self._docs}
        n_docs = len(self._lengths)
        average = self._total / n_docs if n_docs else 1.0
        k1, b = self.k1, self.b
        for term in set(terms(query)):
            posting = self._postings.get(term)
            if not posting:
                continue
            idf = math.log(1 + (n_docs - len(posting) + 0.5) / (len(posting) + 0.5))
            for doc, tf in posting.items():
                i = position.get(doc)
                if i is None:
                    continue
                norm = k1 * (1 - b + b * self._lengths[doc] / max(average, 1e-9))
                out[i] += idf * tf * (k1 + 1) / (tf + norm)
        return out


def hybrid(cosine: np.ndarray, bm25: np.ndarray, weight: float = HYBRID_BM25_WEIGHT) -> np.ndarray:
    """Cosine plus `weight` times BM25 scaled to [0, 1] by its best candidate."""
    if weight <= 0 or not len(bm25):
        return cosine
    top = float(bm25.max())
    if top <= 0:
        return cosine
    return cosine + weight * (bm25 / top)
