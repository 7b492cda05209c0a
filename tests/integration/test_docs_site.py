"""The documentation site builds with `mkdocs build --strict`, and the README's links lead somewhere.

`--strict` turns every MkDocs warning into a failure: a broken link or anchor between pages, a page missing from the
navigation, a docstring the API reference (mkdocstrings) cannot render. The README is not part of the site, so its
links to the pages are checked here, against the files and the built pages' anchors.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
# Markdown links and images: ](target)
_LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once for this module into a temporary directory (never into the checkout's site/)."""
    site_dir = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's notice about MkDocs 2, printed on every build
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--clean", "--site-dir", str(site_dir)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    return site_dir


def test_the_site_builds_strictly(site: Path) -> None:
    assert (site / "index.html").is_file()
    for page in ("quickstart", "core", "options", "filters", "langchain", "llamaindex", "hybrid", "tenancy", "cli",
                 "production", "upgrading", "benchmarks", "architecture", "development"):
        assert (site / page / "index.html").is_file(), page


def test_the_api_reference_is_generated_from_the_docstrings(site: Path) -> None:
    core = (site / "api" / "pgvecstore" / "index.html").read_text()
    import pgvecstore

    for name in pgvecstore.__all__:
        assert f'id="pgvecstore.{name}"' in core, f"pgvecstore.{name} is missing from the API reference"
    assert 'id="pgvecstore.PgVectorStore.search"' in core
    assert "Vectors with metadata in one PostgreSQL table" in core  # PgVectorStore's docstring
    langchain = (site / "api" / "langchain" / "index.html").read_text()
    assert 'id="langchain_pgvecstore.PgVecStore"' in langchain
    assert 'id="langchain_pgvecstore.PgVecStore.as_retriever"' in langchain
    llamaindex = (site / "api" / "llamaindex" / "index.html").read_text()
    assert 'id="llama_index.vector_stores.pgvecstore.PgVecStore"' in llamaindex
    assert 'id="llama_index.vector_stores.pgvecstore.metadata_filters_to_dict"' in llamaindex


def test_the_benchmark_reports_are_published_with_their_charts(site: Path) -> None:
    page = (site / "benchmarks" / "index.html").read_text()
    assert 'src="../repo/benchmarks/results/1_ingest.png"' in page
    assert (site / "repo" / "benchmarks" / "results" / "1_ingest.png").is_file()
    assert (site / "repo" / "benchmarks" / "results" / "index.html").is_file()


def test_the_readme_starts_with_the_two_commands() -> None:
    """CI (.ci/run) and the guide rely on these two being the README's first commands."""
    text = README.read_text()
    blocks = re.findall(r"^```(\w*)\n(.*?)^```$", text, re.S | re.M)
    assert blocks[:2] == [("bash", "bash scripts/demo.sh\n"), ("bash", "bash scripts/test.sh\n")]
    assert text.index("**Run the demo**") < text.index("**Run the tests**") < text.index("## ")


def test_the_readme_links_lead_to_pages_and_their_sections(site: Path) -> None:
    targets = [target for target in _LINK.findall(README.read_text()) if "://" not in target]
    assert targets
    for target in targets:
        path, _, anchor = target.partition("#")
        assert (ROOT / path).exists(), f"README links to {target}, which does not exist"
        if anchor:
            assert path.startswith("docs/") and path.endswith(".md"), target
            page = Path(path).relative_to("docs").with_suffix("")
            html = site / ("index.html" if page.name == "index" else page / "index.html")
            assert f'id="{anchor}"' in html.read_text(), f"README links to {target}: no such section"
