"""``pgvecstore demo``: ingest the shipped corpus, then answer questions through the core, LangChain and
LlamaIndex, with their scores side by side."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from pgvecstore.chunking import demo_corpus_path, find_files
from pgvecstore.cli.app import (
    DEFAULT_SCHEMA,
    DEMO_TABLE,
    DsnOption,
    SchemaOption,
    TableOption,
    Target,
    err,
    fail,
    friendly_errors,
    load_embedder,
    open_store,
    out,
    passage,
)
from pgvecstore.cli.ingest import ingest_files
from pgvecstore.cli.query import result_rows
from pgvecstore.store import PgVectorStore
from pgvecstore.sync import run_sync

if TYPE_CHECKING:
    from pgvecstore.embeddings import SentenceTransformerEmbedder

DEMO_QUESTIONS = (
    "How does a forager bee tell the hive where the flowers are?",
    "Which volcanic eruption caused the year without a summer?",
    "What does ef_search change in an HNSW index?",
    "Where did people first drink tea?",
    "How can readers and writers use PostgreSQL at the same time?",
    "Who made the first practical pneumatic tyre?",
)

Hits = dict[str, float] | str  # row id -> score, or why the framework is unavailable
Search = Callable[[str], Hits] | str  # question -> hits, or why the framework is unavailable


def demo_files() -> list[tuple[Path, str]]:
    """The shipped corpus as (path, document id) pairs; ids are ``demo_corpus/<file name>``."""
    root = demo_corpus_path()
    return [(path, f"demo_corpus/{path.name}") for path in find_files([root])]


# -- the framework paths ------------------------------------------------------------------------------------------
def _langchain_search(store: PgVectorStore, embedder: SentenceTransformerEmbedder, k: int) -> Search:
    """A function from question to the passages the LangChain retriever returns, with their scores from the
    same LangChain vector store; or why LangChain is unavailable."""
    try:
        from langchain_pgvecstore import PgVecStore
    except ImportError:
        return 'not installed (pip install "pgvecstore[langchain]")'
    vector_store = PgVecStore(embedder.as_langchain(), store=store)
    retriever = vector_store.as_retriever(search_kwargs={"k": k})

    def search(question: str) -> Hits:
        documents = retriever.invoke(question)
        scores = {doc.id: score for doc, score in vector_store.similarity_search_with_score(question, k=k)}
        return {str(doc.id): scores.get(doc.id, float("nan")) for doc in documents}

    return search


def _llamaindex_search(store: PgVectorStore, embedder: SentenceTransformerEmbedder, k: int) -> Search:
    """A function from question to the source nodes (id -> score) of a LlamaIndex query engine over the store,
    with MockLLM (nothing to download); or why LlamaIndex is unavailable."""
    try:
        from llama_index.core import VectorStoreIndex
        from llama_index.core.llms import MockLLM

        from llama_index.vector_stores.pgvecstore import PgVecStore
    except ImportError:
        return 'not installed (pip install "pgvecstore[llamaindex]")'
    index = VectorStoreIndex.from_vector_store(PgVecStore(store), embed_model=embedder.as_llamaindex())
    engine = index.as_query_engine(llm=MockLLM(), similarity_top_k=k)

    def search(question: str) -> Hits:
        response = engine.query(question)
        return {node.node.node_id: float(node.score or 0.0) for node in response.source_nodes}

    return search


# -- output -------------------------------------------------------------------------------------------------------
def _scores_cell(core: float, lc_hits: Hits, li_hits: Hits, row_id: str) -> Text:
    """The core's score, then the LangChain and LlamaIndex scores of the same passage (or why there is none)."""
    cell = Text(f"{core:.3f}", style="bold cyan")
    for label, hits in (("LC", lc_hits), ("LI", li_hits)):
        cell.append(f"\n{label} ", style="dim")
        if isinstance(hits, str):
            cell.append("—", style="dim")
        elif row_id not in hits:
            cell.append("miss", style="yellow")
        else:
            cell.append(f"{hits[row_id]:.3f}", style="cyan")
    return cell


def _load_model(embedder: SentenceTransformerEmbedder) -> None:
    """Say which model embeds the texts, and load it."""
    source = "packaged, offline" if embedder.is_packaged_model else embedder.source
    out.print(Text(f"model:  {embedder.model_name} ({embedder.dimensions} dimensions, {source})"))
    started = time.perf_counter()
    with err.status("loading the embedding model"):
        embedder.load()
    out.print(Text(f"        loaded in {time.perf_counter() - started:.1f} s"))


def _ingest_corpus(store: PgVectorStore, embedder: SentenceTransformerEmbedder) -> None:
    """Ingest the shipped corpus (unchanged files are skipped) and say what the table now holds."""
    files = demo_files()
    report = ingest_files(store, embedder, files)
    rows = run_sync(store.count())
    out.print(Text(
        f"corpus: {len(files)} files, {rows} passages ({report.written_files} file(s) embedded now, "
        f"{report.unchanged_files} unchanged) from {demo_corpus_path()}"
    ))


def _ask(
    store: PgVectorStore, embedder: SentenceTransformerEmbedder, searches: Mapping[str, Search], number: int,
    text: str, k: int,
) -> bool:
    """Answer one question through every path and print the core's passages with all scores; True when every
    available framework returned the same passages as the core."""
    rows_shown = result_rows(run_sync(store.search(embedder.embed_query(text), k=k)))
    hits = {name: search if isinstance(search, str) else search(text) for name, search in searches.items()}
    table_view = Table(title=Text(f"{number}. {text}", style="bold"), title_justify="left", show_lines=True)
    table_view.add_column("#", justify="right", style="dim")
    table_view.add_column("score", justify="right", no_wrap=True)
    table_view.add_column("passage", overflow="fold", ratio=1)
    for row in rows_shown:
        shown = Text(f"{row['document_id']}#{row['chunk_index']}\n", style="green")
        # The best passage in full (it holds the answer), the others shortened.
        shown.append_text(passage(row["content"], 2000 if row["rank"] == 1 else 200))
        scores = _scores_cell(row["score"], hits["LangChain"], hits["LlamaIndex"], row["id"])
        table_view.add_row(str(row["rank"]), scores, shown)
    out.print(table_view)
    ids = sorted(row["id"] for row in rows_shown)
    return all(isinstance(h, str) or sorted(h) == ids for h in hits.values())


def _print_summary(searches: Mapping[str, Search], agree: int, questions: int, table: str) -> None:
    names = ["The core", *(name for name, search in searches.items() if not isinstance(search, str))]
    compared = " and ".join(names) if len(names) < 3 else f"{', '.join(names[:-1])} and {names[-1]}"
    out.print(Text(f"{compared} returned the same passages for {agree} of {questions} questions.", style="bold"))
    out.print(Text(f'Next: pgvecstore query "your question" --table {table}    (or ingest your own files: '
                   "pgvecstore ingest PATH, then pgvecstore query ...)"))


# -- the command --------------------------------------------------------------------------------------------------
@friendly_errors
def demo(
    question: Annotated[
        list[str] | None,
        typer.Option("--question", "-q", help="Ask your own question (repeatable) instead of the built-in ones."),
    ] = None,
    k: Annotated[int, typer.Option("-k", "--k", min=1, max=20, help="Passages per question.")] = 3,
    dsn: DsnOption = None,
    schema: SchemaOption = DEFAULT_SCHEMA,
    table: TableOption = DEMO_TABLE,
) -> None:
    """Ingest the shipped corpus, then answer questions through the core, LangChain and LlamaIndex."""
    questions = list(question or DEMO_QUESTIONS)
    if any(not text.strip() for text in questions):
        fail("a question (-q) is empty: give a question, e.g. -q \"how do bees dance?\"", 2)
    target = Target(dsn, schema, table)
    out.rule("[bold]pgvecstore demo")
    out.print(Text(f"store:  {target.describe()}"))
    embedder = load_embedder(None)
    _load_model(embedder)
    with open_store(target, embedder.dimensions, create=True) as store:
        _ingest_corpus(store, embedder)
        out.print(Text("Each question goes to the core (PgVectorStore.search), the LangChain retriever (LC) and a "
                       "LlamaIndex query engine with MockLLM (LI); scores are cosine similarities, the LC and LI "
                       "lines give each one's score for the same passage.", style="dim"))
        searches = {"LangChain": _langchain_search(store, embedder, k),
                    "LlamaIndex": _llamaindex_search(store, embedder, k)}
        for name, search in searches.items():
            if isinstance(search, str):
                out.print(Text(f"{name}: {search}; its scores are left out", style="yellow"))
        agree = sum(_ask(store, embedder, searches, number, text, k) for number, text in enumerate(questions, 1))
    _print_summary(searches, agree, len(questions), table)
