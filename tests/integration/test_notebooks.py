"""The notebooks run from top to bottom without error, each in a fresh kernel, on the session's PostgreSQL.

Notebooks are stored without outputs; a notebook that breaks (an API change, a missing file) fails here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
SCHEMA = "pgvecstore_notebooks"


def _drop_schema(dsn: str) -> None:
    async def drop() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


@pytest.fixture(scope="module")
def notebook_schema(pg_dsn: str) -> Iterator[str]:
    """The notebooks write to one schema; it starts empty and is dropped afterwards."""
    _drop_schema(pg_dsn)
    yield SCHEMA
    _drop_schema(pg_dsn)


def test_the_four_notebooks_exist() -> None:
    names = [path.name for path in NOTEBOOKS]
    assert names == ["01_quickstart.ipynb", "02_langchain_rag.ipynb", "03_llamaindex_query_engine.ipynb",
                     "04_tuning.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_is_stored_without_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for position, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name} cell {position} has outputs; strip them before committing"
            assert cell.execution_count is None, f"{path.name} cell {position} has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_executes(
    path: Path, pg_dsn: str, notebook_schema: str, scifact_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The kernel inherits this environment: it uses the session's server and finds the SciFact files.
    monkeypatch.setenv("DATABASE_URL", pg_dsn)
    monkeypatch.setenv("PGVECSTORE_SCIFACT_DIR", str(scifact_dir))
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK_DIR)}}
    )
    client.execute()  # raises CellExecutionError, naming the cell, when a cell fails

    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    errors = [output for output in outputs if output.output_type == "error"]
    assert not errors
    text = "".join(output.get("text", "") for output in outputs if output.output_type == "stream")
    if path.stem == "01_quickstart":
        assert "Tambora" in text or "volcanoes.txt" in text
    elif path.stem == "02_langchain_rag":
        assert "Dunlop" in text and "bicycles.md" in text
    elif path.stem == "03_llamaindex_query_engine":
        assert "volcanoes.txt" in text
    elif path.stem == "04_tuning":
        images = [output for output in outputs if "image/png" in output.get("data", {})]
        assert images, "the tuning notebook shows no plot"
        assert "recall@10" in text
