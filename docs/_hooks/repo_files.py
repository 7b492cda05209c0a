"""MkDocs hook: the benchmark reports that live beside the code (benchmarks/) are part of the site too.

The pages in docs/ link to them as files of the repository (``../benchmarks/results/1_ingest.png``), which works
when the Markdown is read on a code host. MkDocs only knows files under docs/, so this hook adds the repository's
benchmark Markdown and charts under ``repo/`` in the site and points the pages' links there. A link out of docs/
to anything else is left as written, so `mkdocs build --strict` still reports it as broken.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

# Repository files published with the site, as globs relative to the repository root.
PUBLISHED = ("benchmarks/README.md", "benchmarks/results/*.md", "benchmarks/results/*.png")
PREFIX = "repo"
# A Markdown link or image target: ](target) or ](target "title").
_LINK = re.compile(r"(\]\()([^)\s]+)((?:\s+\"[^\"]*\")?\))")


def _repo_root(config: Any) -> Path:
    return Path(config["docs_dir"]).resolve().parent


def on_files(files: Files, config: Any) -> Files:
    root = _repo_root(config)
    for pattern in PUBLISHED:
        for path in sorted(root.glob(pattern)):
            relative = path.relative_to(root).as_posix()
            files.append(File.generated(config, f"{PREFIX}/{relative}", abs_src_path=str(path)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    source_dir = posixpath.dirname(page.file.src_uri)
    docs_name = Path(config["docs_dir"]).resolve().name

    def rewrite(match: re.Match[str]) -> str:
        target = match.group(2)
        if "://" in target or target.startswith(("#", "/", "mailto:")):
            return match.group(0)
        path, hash_, fragment = target.partition("#")
        if path.endswith("/"):
            # A folder: its README, as a code host shows it (these are published as pages).
            folder = posixpath.normpath(posixpath.join(source_dir, path))
            if files.get_file_from_path(f"{folder}/README.md") is not None:
                return match.group(1) + path + "README.md" + hash_ + fragment + match.group(3)
        resolved = posixpath.normpath(posixpath.join(docs_name, source_dir, path))
        if resolved.startswith("../") or resolved == docs_name or resolved.startswith(f"{docs_name}/"):
            return match.group(0)  # inside docs/ (MkDocs checks it) or outside the repository
        published = f"{PREFIX}/{resolved}"
        if files.get_file_from_path(published) is None:
            return match.group(0)
        new_target = posixpath.relpath(published, source_dir or ".") + hash_ + fragment
        return match.group(1) + new_target + match.group(3)

    return _LINK.sub(rewrite, markdown)
