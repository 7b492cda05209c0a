"""The offline embedder with the real packaged all-MiniLM-L6-v2 (loaded once for this module), and its views."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from pgvecstore.embeddings import (
    DEFAULT_DIMENSIONS,
    EmbeddingModelError,
    SentenceTransformerEmbedder,
    packaged_model_path,
    resolve_model,
)


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    """The default embedder with its model loaded (torch and the model load once per test session)."""
    return SentenceTransformerEmbedder().load()


def test_the_default_model_is_the_packaged_one_and_its_size_is_known_without_loading() -> None:
    packaged = packaged_model_path()
    assert packaged is not None and (packaged / "model.safetensors").is_file()
    assert resolve_model(None) == str(packaged)
    assert resolve_model("all-MiniLM-L6-v2") == str(packaged)
    fresh = SentenceTransformerEmbedder()
    assert fresh.is_packaged_model
    assert fresh.dimensions == DEFAULT_DIMENSIONS
    assert "not loaded" in repr(fresh)


@pytest.mark.parametrize(
    ("sentence", "paraphrase"),
    [
        ("A man is playing a guitar on stage.", "Someone performs music on a guitar in front of an audience."),
        ("The flight to Madrid was cancelled because of the storm.",
         "Bad weather meant the plane to Madrid did not leave."),
        ("How do I reset my password?", "I forgot my login credentials and need new ones."),
    ],
)
def test_the_nearest_neighbour_of_a_sentence_is_its_paraphrase(
    embedder: SentenceTransformerEmbedder, sentence: str, paraphrase: str
) -> None:
    candidates = [
        "The stock market fell sharply this morning.",
        "A chef is chopping onions in a busy kitchen.",
        paraphrase,
        "Heavy rain flooded the streets of the old town.",
        "The committee approved the new school budget.",
    ]
    query = embedder.embed_query(sentence)
    scores = embedder.embed(candidates) @ query
    assert candidates[int(np.argmax(scores))] == paraphrase


def test_vectors_are_normalised_float32_in_input_order(embedder: SentenceTransformerEmbedder) -> None:
    texts = ["tea", "a long sentence about volcanoes and the year without a summer", "bees"]
    vectors = embedder.embed(texts)
    assert vectors.shape == (3, DEFAULT_DIMENSIONS) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    one_by_one = np.stack([embedder.embed_query(text) for text in texts])
    np.testing.assert_allclose(vectors, one_by_one, atol=1e-5)
    assert embedder.embed([]).shape == (0, DEFAULT_DIMENSIONS)


def test_batches_and_the_progress_bar_do_not_change_the_vectors(
    embedder: SentenceTransformerEmbedder, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = [f"sentence number {i} about topic {i % 7}" for i in range(40)]
    small_batches = SentenceTransformerEmbedder(batch_size=3).embed(texts, show_progress=True)
    assert "embedding" in capsys.readouterr().err  # the tqdm bar
    np.testing.assert_allclose(small_batches, embedder.embed(texts, show_progress=False), atol=1e-5)


def test_the_model_loads_once_per_process(embedder: SentenceTransformerEmbedder) -> None:
    assert SentenceTransformerEmbedder().model is embedder.model


def test_bad_input_is_named(embedder: SentenceTransformerEmbedder) -> None:
    with pytest.raises(TypeError, match="embed_query"):
        embedder.embed("one string, not a list")
    with pytest.raises(TypeError, match="position 1"):
        embedder.embed(["fine", 42])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="batch_size"):
        SentenceTransformerEmbedder(batch_size=0)


def test_a_model_that_is_not_available_locally_fails_without_downloading(tmp_path: Path) -> None:
    with pytest.raises(EmbeddingModelError, match="never downloads"):
        SentenceTransformerEmbedder("pgvecstore-test/no-such-model").embed(["x"])


def test_the_langchain_view_embeds_with_the_same_model(embedder: SentenceTransformerEmbedder) -> None:
    from langchain_core.embeddings import Embeddings

    view = embedder.as_langchain()
    assert isinstance(view, Embeddings) and view is embedder.as_langchain()
    documents = view.embed_documents(["tea", "bees"])
    np.testing.assert_allclose(documents, embedder.embed(["tea", "bees"]), atol=1e-5)
    np.testing.assert_allclose(view.embed_query("tea"), embedder.embed_query("tea"), atol=1e-5)
    np.testing.assert_allclose(asyncio.run(view.aembed_query("tea")), documents[0], atol=1e-5)


def test_the_llamaindex_view_embeds_with_the_same_model(embedder: SentenceTransformerEmbedder) -> None:
    from llama_index.core.base.embeddings.base import BaseEmbedding

    view = embedder.as_llamaindex()
    assert isinstance(view, BaseEmbedding) and view is embedder.as_llamaindex()
    assert view.embedder is embedder and view.model_name == "all-MiniLM-L6-v2"
    batch = view.get_text_embedding_batch(["tea", "bees"])
    np.testing.assert_allclose(batch, embedder.embed(["tea", "bees"]), atol=1e-5)
    np.testing.assert_allclose(view.get_query_embedding("tea"), batch[0], atol=1e-5)
    np.testing.assert_allclose(asyncio.run(view.aget_text_embedding("bees")), batch[1], atol=1e-5)


def test_loading_the_model_leaves_the_process_environment_alone(tmp_path: Path) -> None:
    """The model loads from local files only; the library never writes os.environ (it used to set HF_HUB_OFFLINE)."""
    import os
    import subprocess
    import sys

    code = (
        "import os; from pgvecstore.embeddings import SentenceTransformerEmbedder; "
        "before = dict(os.environ); SentenceTransformerEmbedder().load(); "
        "print(sorted(set(os.environ.items()) ^ set(before.items())))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300,
                          check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"
