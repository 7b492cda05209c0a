"""``pgvecstore query``: the passages that best answer a text, by vector, full-text or hybrid search."""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from pgvecstore.cli.app import (
    DEFAULT_SCHEMA,
    DEFAULT_TABLE,
    DsnOption,
    JsonOption,
    ModelOption,
    SchemaOption,
    TableOption,
    Target,
    TenantOption,
    display_path,
    err,
    friendly_errors,
    load_embedder,
    open_store,
    out,
    passage,
    print_json,
)
from pgvecstore.errors import TableNotFoundError
from pgvecstore.results import SearchResult
from pgvecstore.sync import run_sync


class Mode(enum.StrEnum):
    vector = "vector"
    text = "text"
    hybrid = "hybrid"


def _parse_filter(raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not valid JSON ({exc})", param_hint="--filter") from None
    if not isinstance(value, dict):
        raise typer.BadParameter(f"must be a JSON object such as '{{\"file_name\": \"a.md\"}}', got {raw!r}",
                                 param_hint="--filter")
    return value


def result_rows(results: Sequence[SearchResult]) -> list[dict[str, Any]]:
    """Search results as plain dicts (the rows of ``query --json``); ``metadata`` is the row's own metadata."""
    return [
        {
            "rank": rank,
            "id": result.id,
            "score": round(float(result.score), 6),
            "document_id": result.document_id,
            "chunk_index": result.chunk_index,
            "content": result.content,
            "metadata": dict(result.metadata or {}),
        }
        for rank, result in enumerate(results, 1)
    ]


def _results_table(title: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=Text(title), title_justify="left", show_lines=True)
    table.add_column("#", justify="right", style="dim")
    table.add_column("score", justify="right", style="cyan")
    table.add_column("passage", overflow="fold", ratio=1)
    for row in rows:
        shown = Text(f"{display_path(str(row['document_id']))}#{row['chunk_index']}\n", style="green")
        shown.append_text(passage(row["content"]))
        table.add_row(str(row["rank"]), f"{row['score']:.3f}", shown)
    return table


def _search(
    target: Target, text: str, mode: Mode, k: int, core_filter: dict[str, Any] | None, ef_search: int | None
) -> tuple[list[SearchResult], bool]:
    """The results, and whether the table is empty. Full-text search loads no model: the store then takes its
    dimensions from the table, and a table that does not exist yet counts as empty."""
    embedder = None if mode is Mode.text else load_embedder(target.model)
    try:
        with open_store(target, embedder.dimensions if embedder else None) as store:
            vector = embedder.embed_query(text) if embedder else None
            params = {"ef_search": ef_search} if ef_search else None
            results = run_sync(store.search(vector, k=k, filter=core_filter, search_params=params, mode=mode.value,
                                            query_text=None if mode is Mode.vector else text))
            empty = not results and run_sync(store.count()) == 0
    except TableNotFoundError:
        if embedder is not None:
            raise
        return [], True
    return results, empty


@friendly_errors
def query(
    text: Annotated[str, typer.Argument(metavar="TEXT", help="The question or text to search for.")],
    k: Annotated[int, typer.Option("-k", "--k", min=1, max=1000, help="How many passages to return.")] = 5,
    filter: Annotated[
        str | None,
        typer.Option("--filter", help='Metadata filter as JSON, e.g. \'{"file_name": "notes.md"}\'.',
                     show_default=False),
    ] = None,
    mode: Annotated[
        Mode, typer.Option("--mode", help="vector (embeddings), text (full-text) or hybrid (both, fused by RRF).")
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
    core_filter = _parse_filter(filter)
    target = Target(dsn, schema, table, model, tenant)
    results, empty = _search(target, text, mode, k, core_filter, ef_search)
    rows = result_rows(results)
    if json_output:
        print_json(rows)
        return
    if empty:
        err.print(f"{target.schema}.{target.table} is empty: run 'pgvecstore ingest PATH' first")
        return
    out.print(_results_table(f"top {len(rows)} for {text!r}", rows))
