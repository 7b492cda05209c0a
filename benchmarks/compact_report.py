"""The report of `compact_scale.py`: Markdown tables, issue 17's targets, a chart, merged across runs.

One entry per corpus size; each holds the latest run of each variant at that size (a run of ``--variants
halfvec`` after one of ``vector`` keeps both). The data lives in a comment at the end of the report.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import text_corpus
from common import RESULTS_DIR, markdown_table, save_chart, write_markdown

DEFAULT_OUTPUT = RESULTS_DIR / "7_compact_scale.md"
DATA_MARK = "<!-- compact_scale data: "
MIB = 2**20
# Issue 17's targets, measured at 1,000,000 x 384.
FILTER_P50_MS, RECALL_TARGET, HALFVEC_RECALL_GAP, HALFVEC_SIZE = 15.0, 0.95, 0.005, 0.55
BINARY_INDEX_SHARE, BINARY_BUILD_SPEEDUP = 0.15, 3.0
COLORS = {"vector": "tab:blue", "halfvec": "tab:orange", "binary": "tab:green"}


def _ms(value: float) -> str:
    return f"{value:,.1f}" if value >= 10 else f"{value:.2f}"


def _s(seconds: float) -> str:
    return f"{seconds:,.1f}" if seconds < 100 else f"{seconds:,.0f}"


def _ratio(num: float | None, den: float | None) -> str:
    return f"{num / den:.2f}" if num is not None and den else ""


def _check(ok: bool) -> str:
    return "yes" if ok else "**no**"


def build_rows(e: dict[str, Any]) -> list[list[str]]:
    base = e["variants"].get("vector")
    out = []
    for name, v in e["variants"].items():
        both = v["table_bytes"] + v["index_bytes"]
        out.append([
            f"{e['rows']:,}", name, _s(v["load_s"]), f"{e['rows'] / v['load_s']:,.0f}",
            _ratio(v.get("raw_copy_s"), v["load_s"]), _s(v["index_s"]),
            _ratio(base["index_s"], v["index_s"]) if base else "",
            f"{v['table_bytes'] / MIB:,.0f}", f"{v['index_bytes'] / MIB:,.0f}",
            _ratio(both, base["table_bytes"] + base["index_bytes"]) if base else "",
            _ratio(v["index_bytes"], base["index_bytes"]) if base else "",
            f"{v['memory_mib']:,.0f}" if v.get("memory_mib") else "n/a",
        ])
    return out


def _core_at(v: dict[str, Any] | None, ef: int) -> dict[str, Any] | None:
    """The core line of variant `v` at this ef_search with its default rerank factor."""
    for line in (v or {}).get("unfiltered", []):
        if line["method"] == "core" and line["ef_search"] == ef and "rerank_factor" not in line:
            return line
    return None


def search_rows(e: dict[str, Any]) -> list[list[str]]:
    base = e["variants"].get("vector")
    out = []
    for name, v in e["variants"].items():
        for line in v["unfiltered"]:
            raw = next((r for r in v["unfiltered"] if r["method"] == "raw" and r["ef_search"] == line["ef_search"]),
                       None)
            ref = _core_at(base, line["ef_search"])
            gap = f"{line['recall'] - ref['recall']:+.4f}" if ref and name != "vector" else ""
            method = "raw asyncpg" if line["method"] == "raw" else "core `search`"
            out.append([
                f"{e['rows']:,}", name, method, str(line["ef_search"]), str(line.get("rerank_factor", "")),
                f"{line['recall']:.4f}", gap, _ms(line["p50"]), _ms(line["p99"]), f"{line['qps']:,.0f}",
                _ratio(raw["p50"], line["p50"]) if raw else "",
            ])
    return out


def filter_rows(e: dict[str, Any]) -> list[list[str]]:
    out = []
    for name, v in e["variants"].items():
        for f in v["filtered"]:
            paths = ", ".join(f"{p} {n}" for p, n in f["paths"].items())
            out.append([
                f"{e['rows']:,}", name, f"{f['kind']} `{f['key']}`", f"{100 * f['share']:g}%", _ms(f["p50"]),
                _ms(f["p99"]), f"{f['returned_min']} / {f['returned_mean']:.1f}", f"{f['recall']:.4f}", paths,
            ])
    return out


def target_rows(e: dict[str, Any]) -> list[list[str]]:
    """Issue 17's targets where this entry measured what they compare."""
    vs, rows = e["variants"], f"{e['rows']:,}"
    out = []
    base, half, binary = vs.get("vector"), vs.get("halfvec"), vs.get("binary")
    if base and half:
        for ef in sorted({line["ef_search"] for line in half["unfiltered"]}):
            a, b = _core_at(half, ef), _core_at(base, ef)
            if a and b:
                gap = a["recall"] - b["recall"]
                out.append([rows, f"halfvec recall@10 within {HALFVEC_RECALL_GAP} of vector, ef_search {ef}",
                            f"{gap:+.4f}", _check(gap >= -HALFVEC_RECALL_GAP)])
        share = (half["table_bytes"] + half["index_bytes"]) / (base["table_bytes"] + base["index_bytes"])
        out.append([rows, f"halfvec table + index <= {HALFVEC_SIZE} of vector", f"{share:.2f}",
                    _check(share <= HALFVEC_SIZE)])
    if base and binary:
        swept = [line for line in binary["unfiltered"] if "rerank_factor" in line]
        good = [line for line in swept if line["recall"] >= RECALL_TARGET]
        best = min(good, key=lambda line: line["rerank_factor"]) if good else max(swept, key=lambda x: x["recall"],
                                                                                     default=None)
        share = binary["index_bytes"] / base["index_bytes"]
        speed = base["index_s"] / binary["index_s"]
        out.append([rows, f"binary index <= {BINARY_INDEX_SHARE} of vector's", f"{share:.2f}",
                    _check(share <= BINARY_INDEX_SHARE)])
        out.append([rows, f"binary build >= {BINARY_BUILD_SPEEDUP:g}x faster", f"{speed:.1f}x",
                    _check(speed >= BINARY_BUILD_SPEEDUP)])
        ref = _core_at(base, 40)
        if best and ref:
            out.append([rows, f"binary recall@10 >= {RECALL_TARGET} (rerank factor {best['rerank_factor']})",
                        f"{best['recall']:.4f}", _check(best["recall"] >= RECALL_TARGET)])
            out.append([rows, "binary q/s >= vector's (ef_search 40), at that factor",
                        f"{best['qps']:,.0f} vs {ref['qps']:,.0f}", _check(best["qps"] >= ref["qps"])])
    for name, v in vs.items():
        for f in v["filtered"]:
            ok = f["p50"] <= FILTER_P50_MS and f["full"] == 1.0 and f["recall"] >= RECALL_TARGET
            out.append([rows, f"{name}, {f['kind']} `{f['key']}` ({100 * f['share']:g}%): p50 <= {FILTER_P50_MS:g} "
                        f"ms, k rows, recall >= {RECALL_TARGET}",
                        f"{_ms(f['p50'])} ms, {f['returned_min']} rows (min), {f['recall']:.3f}", _check(ok)])
    return out


def short_plan(lines: list[str]) -> list[str]:
    """A plan's lines with the query vector's literal (384 numbers, inlined by the planner) elided."""
    return [re.sub(r"'\[[-0-9.e, ]{200,}\]'", "'[...]'", line) for line in lines]


def explain_parts(e: dict[str, Any]) -> list[str]:
    parts: list[str] = []
    for name, v in e["variants"].items():
        for x in v.get("explain", []):
            parts += [
                "", f"<details><summary>{e['rows']:,} rows, {name}, filter <code>{json.dumps(x['filter'])}</code>, "
                f"{x['path']} path: <code>EXPLAIN (ANALYZE, BUFFERS)</code> ({len(x['plan'])} lines)</summary>",
                "", "```", *short_plan(x["plan"]), "```", "", "</details>",
            ]
    return parts


def render(entries: list[dict[str, Any]]) -> str:
    """The report of `entries` (one per corpus size, smallest first)."""
    builds = [r for e in entries for r in build_rows(e)]
    searches = [r for e in entries for r in search_rows(e)]
    filters = [r for e in entries for r in filter_rows(e)]
    targets = [r for e in entries for r in target_rows(e)]
    runs = [[f"{e['rows']:,}", name, v["date"], str(v["queries"]), str(v["filter_queries"]), f"`{v['command']}`"]
            for e in entries for name, v in e["variants"].items()]
    last = next(iter(entries[-1]["variants"].values()))
    parts = [
        "## 7. Compact vectors and selective filters by corpus size (issue 17)",
        "",
        "One table per variant (its store options in the data below), SciFact's 300 test query embeddings, one "
        "client, k=10, HNSW (m=16, ef_construction=64). The machine has 2 CPUs shared with other work: compare "
        "lines of one run more than runs of different days. Issue 17's targets are for 1,000,000 rows.",
        "",
        markdown_table(["rows", "variant", "load s", "load rows/s", "raw COPY s / load s", "HNSW build s",
                        "build speed-up vs vector", "table MiB", "HNSW index MiB", "table + index vs vector",
                        "index vs vector", "server memory (PSS) MiB"], builds, align="ll" + "r" * 10),
        "",
        "Load: `add_vectors` in batches of 10,000 (text ids, metadata), timed inside the calls; raw COPY: asyncpg "
        "`copy_records_to_table` of the same rows in the same batches into a table made `LIKE` the store's, records "
        "built inside the clock. Table: `pg_table_size` (heap, TOAST, maps; the primary key and other support indexes "
        "not counted); index: `pg_relation_size` of the HNSW index. Memory: the sum of the proportional set sizes of "
        "the embedded server's processes after the variant's queries (shared memory counted once).",
        "",
        markdown_table(["rows", "variant", "method", "ef_search", "rerank factor", "recall@10",
                        "recall vs vector", "p50 ms", "p99 ms", "q/s", "raw p50 / p50"], searches,
                       align="lllrrrrrrrr"),
        "",
        "Unfiltered: one client; every query once untimed, then every query timed, the core and the raw query "
        "taking turns query by query (the order rotating); q/s is one over the mean latency. Recall@10 against the "
        "exact cosine top 10 (numpy, float32). raw asyncpg: `ORDER BY embedding <=> $1 LIMIT 10` on a held "
        "connection (only where the HNSW index is on the column itself).",
        "",
        markdown_table(["rows", "variant", "filter", "share", "p50 ms", "p99 ms", "rows returned (min / mean)",
                        "recall@10", "paths (search_tuning.record_paths)"], filters,
                       align="lllrrrrrl"),
        "",
        "Filtered: `store.search(q, k=10, filter={key: value})`, 3 untimed searches, then one per query; recall@10 "
        "against the exact top 10 among the matching rows. Paths: `exact` (the planner's estimate chose the exact "
        "scan), `index` (HNSW with the iterative scan), `index+exact` (the index came back short).",
        "",
        markdown_table(["rows", "target", "measured", "met"], targets, align="llrl") if targets else "",
        "",
        f"Data (`benchmarks/compact_scale.py`, seed {last['seed']}): SciFact's 5,183 MiniLM document embeddings, "
        "then synthetic vectors made as `text_corpus.synthetic` makes them (its vectors only). Row i has the id "
        "`str(i)` and the metadata `{\"n\": i, \"bucket\": i % 100, \"rare\": i % 1000}` (with `--filter-indexes "
        "column` also `c_bucket`, `c_rare`, the same values in indexed columns); query q filters `bucket = q % 100` "
        "(1%) and `rare = q % 1000` (0.1%).",
        "",
        text_corpus.describe(last["seed"]),
    ]
    if any(e.get("png") for e in entries):
        parts += ["", "![Recall against queries/s](7_compact_scale.png)"]
    for e in entries:
        parts += explain_parts(e)
    parts += ["", markdown_table(["rows", "variant", "measured", "queries", "filter queries", "command"], runs,
                                 align="rllrrl"),
              "", f"Server: {last['server']}. Machine: {last['machine']}."]
    return "\n".join(parts) + "\n"


def read_entries(path: Path) -> list[dict[str, Any]]:
    """The runs recorded in an earlier report at `path` (none if there is none or it has no data)."""
    if not path.exists():
        return []
    match = re.search(re.escape(DATA_MARK) + r"(.*?) -->", path.read_text(), re.DOTALL)
    entries: list[dict[str, Any]] = json.loads(match.group(1)) if match else []
    for e in entries:
        for v in e["variants"].values():
            for x in v.get("explain", []):
                x["plan"] = short_plan(x["plan"])
    return entries


def draw_chart(path: Path, entries: list[dict[str, Any]]) -> bool:
    """Recall@10 against queries/s of every unfiltered core line of the largest size; False without matplotlib."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    e = entries[-1]

    def draw(ax: Any) -> None:
        for name, v in e["variants"].items():
            lines = [line for line in v["unfiltered"] if line["method"] == "core"]
            ax.plot([line["qps"] for line in lines], [line["recall"] for line in lines], "o",
                    color=COLORS.get(name, "tab:gray"), label=name)
            for line in lines:
                label = f"rf {line['rerank_factor']}" if "rerank_factor" in line else f"ef {line['ef_search']}"
                ax.annotate(label, (line["qps"], line["recall"]), fontsize=7, xytext=(4, 3),
                            textcoords="offset points")
        ax.axhline(RECALL_TARGET, color="k", linestyle=":", linewidth=1, label=f"recall {RECALL_TARGET}")
        ax.set_xlabel("queries/s (one client, k=10)")
        ax.set_ylabel("recall@10")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)

    save_chart(path, draw, f"Unfiltered search, {e['rows']:,} rows: recall@10 against queries/s")
    return True


def merge(path: Path, entry: dict[str, Any]) -> list[Path]:
    """Merge `entry` into the report at `path` (variant by variant) and draw the chart; the files written."""
    entries = {e["rows"]: e for e in read_entries(path)}
    if entry["rows"] in entries:
        entries[entry["rows"]]["variants"].update(entry["variants"])
    else:
        entries[entry["rows"]] = entry
    ordered = [entries[rows] for rows in sorted(entries)]
    written = [path]
    chart = path.with_suffix(".png")
    if draw_chart(chart, ordered):
        written.append(chart)
        for e in ordered:
            e["png"] = True
    write_markdown(path, render(ordered) + f"\n{DATA_MARK}{json.dumps(ordered)} -->\n")
    return written
