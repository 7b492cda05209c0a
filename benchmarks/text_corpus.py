"""A reproducible corpus for text, vector and hybrid search at any size: SciFact plus synthetic chunks like it.

`scifact()` returns the real SciFact corpus (BEIR layout, ``../shared/data/scifact`` beside the checkout): its
5,183 documents (id, content ``title + " " + text``, the precomputed all-MiniLM-L6-v2 embedding), the test queries
with qrels (id, text, embedding) and the relevance judgments, read by `retrieval_quality.load_scifact`.

`synthetic(n, seed)` yields `n` more chunks in batches of ``(ids, contents, vectors)``, made like this:

- Words: SciFact's own unigram distribution. The vocabulary is every token of the corpus contents (``title + " " +
  text`` of each document) split on whitespace, with surrounding punctuation (ASCII punctuation and typographic
  quotes, dashes and ellipses) stripped and case kept; empty tokens dropped. Each token's probability is its
  count over the total, so term statistics (document frequencies, Zipf's law, stop words) follow the real corpus.
- Contents: 180 words drawn i.i.d. from that distribution, in sentences of 12 to 20 words (uniform, inclusive):
  a period is appended to the last word of each sentence and to the 180th word. No other structure: a chunk is
  a bag of realistic words, so a query's terms match synthetic chunks as often as their frequencies say.
- Vectors: ``normalize(e_j + noise)``, 384-d float32 unit vectors, where ``e_j`` is the embedding of a SciFact
  document drawn uniformly at random (independently of the words) and ``noise`` is Gaussian with standard deviation
  ``sqrt(3 / 384)`` in each dimension, so ``|noise|^2`` is about 3 and ``cos(vector, e_j)`` about 0.5: synthetic
  chunks sit around the real documents at the distance of a loosely related text, and compete with them on the
  vector side as their words do on the text side. They are never relevant in the qrels.
- Ids: ``syn-0000000``, ``syn-0000001``, ... (SciFact's ids are numbers, so they never collide).
- Reproducible: each of the four random streams (words, sentence lengths, documents, noise) is its own
  ``numpy.random.default_rng([seed, stream])`` drawn in order, so the same `seed` gives the same chunks whatever
  the `batch` size.
"""

from __future__ import annotations

import functools
import string
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from retrieval_quality import DEFAULT_DATA, SciFact, load_scifact

WORDS_PER_CHUNK = 180
SENTENCE_WORDS = (12, 20)  # inclusive bounds of a sentence's length in words
TARGET_COSINE = 0.5  # expected cosine between a synthetic vector and the document embedding it was made from
STRIP = string.punctuation + "“”‘’«»…–—"
_STREAMS = {"words": 1, "sentences": 2, "documents": 3, "noise": 4}


def scifact(path: Path = DEFAULT_DATA, queries: int | None = None) -> SciFact:
    """The real SciFact corpus, the first `queries` test queries (all 300 by default) and their qrels."""
    return load_scifact(Path(path), queries)


@functools.lru_cache(maxsize=4)
def _vocabulary(contents: tuple[str, ...]) -> tuple[list[str], np.ndarray]:
    """The distinct tokens of `contents` (sorted) and, for every token occurrence of the corpus, the number of its
    word: a uniform draw from that array is a draw from the unigram distribution (see the module doc)."""
    counts: Counter[str] = Counter()
    for text in contents:
        counts.update(token for token in (raw.strip(STRIP) for raw in text.split()) if token)
    words = sorted(counts)
    occurrences = np.repeat(np.arange(len(words), dtype=np.int32), [counts[w] for w in words])
    return words, occurrences


def noise_scale(dims: int, cosine: float = TARGET_COSINE) -> float:
    """Per-dimension standard deviation of the noise that puts normalize(e + noise) at about `cosine` from the
    unit vector e: ``cos ~ 1 / sqrt(1 + dims * sigma^2)``."""
    return float(np.sqrt((1 / cosine**2 - 1) / dims))


def synthetic(
    n: int, seed: int = 0, batch: int = 5000, corpus: SciFact | None = None
) -> Iterator[tuple[list[str], list[str], np.ndarray]]:
    """`n` synthetic chunks in batches of at most `batch`: ``(ids, contents, vectors)`` (see the module doc).
    `corpus` is the SciFact corpus they are made from (default: `scifact()`)."""
    if n < 0 or batch < 1:
        raise ValueError("n must be >= 0 and batch >= 1")
    data = corpus if corpus is not None else scifact()
    words, occurrences = _vocabulary(tuple(data.contents))
    # Word number i, and i + len(words) for the same word ending a sentence.
    ended = np.array(words + [w + "." for w in words], dtype=object)
    docs = np.asarray(data.doc_vectors, dtype=np.float32)
    sigma = np.float32(noise_scale(docs.shape[1]))
    rng = {name: np.random.default_rng([seed, stream]) for name, stream in _STREAMS.items()}
    low, high = SENTENCE_WORDS
    most_sentences = -(-WORDS_PER_CHUNK // low)
    for start in range(0, n, batch):
        size = min(batch, n - start)
        drawn = occurrences[rng["words"].integers(0, len(occurrences), (size, WORDS_PER_CHUNK))]
        ends = np.cumsum(rng["sentences"].integers(low, high + 1, (size, most_sentences)), axis=1) - 1
        sentence_end = np.zeros((size, WORDS_PER_CHUNK), dtype=bool)
        rows, cols = np.nonzero(ends < WORDS_PER_CHUNK)
        sentence_end[rows, ends[rows, cols]] = True
        sentence_end[:, -1] = True
        drawn = drawn + sentence_end * len(words)
        contents = [" ".join(row) for row in ended[drawn].tolist()]
        picked = rng["documents"].integers(0, len(docs), size)
        vectors = docs[picked] + rng["noise"].standard_normal((size, docs.shape[1]), dtype=np.float32) * sigma
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        ids = [f"syn-{start + i:07d}" for i in range(size)]
        yield ids, contents, vectors


def synthetic_vectors(
    n: int, seed: int = 0, batch: int = 100_000, corpus: SciFact | None = None
) -> Iterator[np.ndarray]:
    """The vectors of `synthetic(n, seed)` alone, in batches of at most `batch` rows: the same values (the same
    two random streams, drawn in the same order), without the cost of making the words."""
    if n < 0 or batch < 1:
        raise ValueError("n must be >= 0 and batch >= 1")
    data = corpus if corpus is not None else scifact()
    docs = np.asarray(data.doc_vectors, dtype=np.float32)
    sigma = np.float32(noise_scale(docs.shape[1]))
    documents = np.random.default_rng([seed, _STREAMS["documents"]])
    noise = np.random.default_rng([seed, _STREAMS["noise"]])
    for start in range(0, n, batch):
        size = min(batch, n - start)
        vectors = docs[documents.integers(0, len(docs), size)]
        vectors = vectors + noise.standard_normal((size, docs.shape[1]), dtype=np.float32) * sigma
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        yield vectors


def describe(seed: int = 0) -> str:
    """One paragraph on how the synthetic chunks are made, for reports."""
    return (
        f"Synthetic chunks (`benchmarks/text_corpus.py`, seed {seed}): {WORDS_PER_CHUNK} words each, drawn i.i.d. "
        f"from SciFact's own unigram distribution (whitespace tokens of its titles and abstracts, surrounding "
        f"punctuation stripped, case kept), a period after every {SENTENCE_WORDS[0]}-{SENTENCE_WORDS[1]} words; "
        f"vector = normalize(e_j + Gaussian noise), e_j the MiniLM embedding of a random SciFact document, noise "
        f"scaled so that cos(vector, e_j) is about {TARGET_COSINE}. The 5,183 real SciFact documents are in the "
        f"same table; only they are judged relevant."
    )
