"""``pgvecstore query``: the passages that best answer a text, by vector, full-text or hybrid search."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from pgvecstore.cli.app import (
    DEFAULT_SCHEMA,
    DEFAULT_TABLE,
    DsnOption,
    FilterOption,
    JsonOption,
    ModelOption,
    SchemaOption,
    TableOption,
    Target,
    TenantOption,
    display_path,
    err,
    fail,
    friendly_errors,
    load_embedder,
    open_store,
    out,
    parse_filter,
    passage,
    print_json,
)
from pgvecstore.errors import SchemaMismatchError
from pgvecstore.results import SearchResult
from pgvecstore.sync import run_sync


class Mode(enum.StrEnum):
    vector = "vector"
    text = "text"
    hybrid = "hybrid"


# The score column of each mode: a similarity (vector), a BM25 score (text) or a fusion of the two (hybrid: the
# weighted sum of both sides' min-max normalised scores, which orders results but measures no similarity).
SCORE_HEADERS = {Mode.vector: "score", Mode.text: "text score", Mode.hybrid: "fusion score"}


def result_rows(results: Sequence[SearchResult], mode: Mode = Mode.vector) -> list[dict[str, Any]]:
    """Search results as plain dicts (the rows of ``query --json``); ``metadata`` is the row's own metadata.

    In hybrid mode ``score`` is the fusion score, and the row says so with a ``fusion_score`` key of the same
    value."""
    rows = []
    for rank, result in enumerate(results, 1):
        score = round(float(result.score), 6)
        row: dict[str, Any] = {"rank": rank, "id": result.id, "score": score}
        if mode is Mode.hybrid:
            row["fusion_score"] = score
        row.update(
            document_id=result.document_id,
            chunk_index=result.chunk_index,
            content=result.content,
            metadata=dict(result.metadata or {}),
        )
        rows.append(row)
    return rows


def _results_table(title: str, rows: list[dict[str, Any]], mode: Mode) -> Table:
    table = Table(title=Text(title), title_justify="left", show_lines=True)
    table.add_column("#", justify="right", style="dim")
    table.add_column(SCORE_HEADERS[mode], justify="right", style="cyan")
    table.add_column("passage", overflow="fold", ratio=1)
    for row in rows:
        shown = Text(f"{display_path(str(row['document_id']))}#{row['chunk_index']}\n", style="green")
        shown.append_text(passage(row["content"]))
        table.add_row(str(row["rank"]), f"{row['score']:.3f}", shown)
    return table


def _search(
    target: Target, text: str, mode: Mode, k: int, core_filter: dict[str, Any] | None, ef_search: int | None
) -> tuple[list[SearchResult], bool]:
    """The results, and whether the table is empty.

    The table must exist (a missing one is an error that lists the server's tables, and is not created); its
    dimensions come from the table, so the model loads only once the table is found, and only to embed (vector
    and hybrid modes)."""
    with open_store(target) as store:
        vector = None
        if mode is not Mode.text:
            embedder = load_embedder(target.model)
            if embedder.dimensions != store.dimensions:
                raise SchemaMismatchError(
                    f"{target.name} holds vectors of {store.dimensions} dimensions, but the model "
                    f"{embedder.model_name} makes {embedder.dimensions}: query with the --model it was ingested with"
                )
            vector = embedder.embed_query(text)
        params = {"ef_search": ef_search} if ef_search else None
        results = run_sync(store.search(vector, k=k, filter=core_filter, search_params=params, mode=mode.value,
                                        query_text=None if mode is Mode.vector else text))
        empty = not results and run_sync(store.count()) == 0
    return results, empty


@friendly_errors
def query(
    text: Annotated[str, typer.Argument(metavar="TEXT", help="The question or text to search for.")],
    k: Annotated[int, typer.Option("-k", "--k", min=1, max=1000, help="How many passages to return.")] = 5,
    filter: FilterOption = None,
    mode: Annotated[
        Mode,
        typer.Option("--mode", help="vector (embeddings), text (full-text, BM25) or hybrid (both, fused: the score "
                     "is then a fusion score, not a similarity)."),
    ] = Mode.vector,
    ef_search: Annotated[
        int | None, typer.Option("--ef-search", min=1, max=1000, help="HNSW candidate list size for this query.")
    ] = None,
    json_output: JsonOption = False,
    dsn: DsnOption = None,
    schema: SchemaOption = DEFAULT_SCHEMA,
    table: TableOption = DEFAULT_TABLE,
    model: ModelOption = None,
    tenant: TenantOption = None,
) -> None:
    """Find the passages that best answer TEXT."""
    if not text.strip():
        fail("the query is empty: give a question or words to search for, e.g. pgvecstore query \"how do bees "
             "dance?\"", 2)
    core_filter = parse_filter(filter)
    target = Target(dsn, schema, table, model, tenant)
    results, empty = _search(target, text, mode, k, core_filter, ef_search)
    rows = result_rows(results, mode)
    if json_output:
        print_json(rows)
        return
    if empty:
        err.print(Text(f"{target.name} is empty: run '{target.ingest_hint()}' first"))
        return
    title = f"top {len(rows)} for {text!r}"
    if mode is Mode.hybrid:
        title += " (hybrid: fusion scores of the vector and full-text ranks)"
    out.print(_results_table(title, rows, mode))
