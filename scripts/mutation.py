"""Mutation testing (issue 20): mutate the filter compiler, the tenant scoping or the search planner with
cosmic-ray and list the mutants the tests let through. Not in CI: run it before resolving a change to those parts.

    scripts/mutation.sh filters [tenancy planner]      (nice -n 19 scripts/mutation.sh ... on a shared machine)

scripts/mutation.sh runs this file with the mutation tool's own virtualenv (.venv/mutation); the tests run with
the project's interpreter ($PGVECSTORE_PYTHON) against ONE embedded PostgreSQL started here for the whole run
(PGVECSTORE_TEST_DSN), so no mutant's test run starts a server of its own. Each scope mutates a copy of the
checkout (build/mutation/<scope>/tree), never the checkout itself, runs only that scope's tests (unit tests
first, `-x`, a timeout per mutant) and writes build/mutation/<scope>.md: counts and every surviving mutant (file,
line, operator, the change), marked when scripts/mutation_explained.py says why it does not matter. After adding
tests, `scripts/mutation.sh --recheck SCOPE` runs the last run's unexplained survivors again, and whatever an
interrupted run left, without starting over (the mutated code must be unchanged).
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from mutation_explained import EXPLAINED  # noqa: E402  (beside this file)


@dataclass(frozen=True)
class Scope:
    """What one scope mutates and which tests judge its mutants.

    ``modules`` maps a file (a glob, relative to the checkout) to the functions mutated in it ("name" or
    "Class.method"; empty: the whole file). ``tests`` run in this order with ``-x``: the fast unit tests first.
    """

    modules: dict[str, tuple[str, ...]]
    tests: tuple[str, ...]
    timeout: float = 120.0


# The table to edit when the code moves. The filter compiler: the parser (sql/filters.py), the targets
# (sql/filter_targets.py) and the indexed-metadata target (sql/indexed_target.py).
SCOPES: dict[str, Scope] = {
    "filters": Scope(
        {"src/pgvecstore/sql/filter*.py": (), "src/pgvecstore/sql/indexed_target.py": ()},
        ("tests/unit/test_filters.py", "tests/unit/test_indexed_filters.py", "tests/integration/test_filters_db.py",
         "tests/integration/test_indexed_metadata.py"),
    ),
    "tenancy": Scope(
        {
            "src/pgvecstore/sql/queries.py": (
                "scope", "stats", "rows_by_ids", "delete", "update_metadata", "upsert_from_staging",
                "document_chunk_counts",
            ),
            "src/pgvecstore/pool.py": ("PoolRegistry.start", "PoolRegistry.connection", "PoolRegistry.read"),
            "src/pgvecstore/sql/ddl.py": ("support_indexes", "enable_row_security", "create_tenant_policy"),
            "src/pgvecstore/bootstrap.py": ("TableBootstrap._row_security",),
        },
        # test_planner: a domain makes every search a filtered one (queries.scope's `restricts`); the pooler test
        # (its own server and PgBouncer: slow, so last) sets the tenant in every transaction.
        ("tests/unit/test_sql.py", "tests/unit/test_planner.py", "tests/integration/test_tenancy.py",
         "tests/integration/test_hardening.py::test_a_tenants_stats_and_text_scores_do_not_depend_on_other_tenants",
         "tests/integration/test_transaction_pooler.py::test_row_level_security_tenant_travels_in_each_transaction_behind"
         "_pgbouncer"),
    ),
    "planner": Scope(
        {"src/pgvecstore/planner.py": (), "src/pgvecstore/search_tuning.py": ()},
        ("tests/unit/test_planner.py", "tests/integration/test_filtered_search.py"),
        timeout=180.0,
    ),
}

# Operators that only make noise here: arithmetic swaps that raise TypeError on strings or mean nothing for the
# code under test (kept: + -, * /, // /, | &), comparison swaps other than the boundary and the negation, unary
# swaps other than removing a `not`, removed decorators (frozen dataclasses, properties: caught at once or
# equivalent) and the random variable inserters.
KEPT_BINARY = ("Add_Sub", "Sub_Add", "Mul_Div", "Div_Mul", "FloorDiv_Div", "BitOr_BitAnd", "BitAnd_BitOr")
KEPT_COMPARE = (
    "Eq_NotEq", "NotEq_Eq", "Lt_LtE", "LtE_Lt", "Gt_GtE", "GtE_Gt", "Lt_GtE", "GtE_Lt", "Gt_LtE", "LtE_Gt",
    "Is_IsNot", "IsNot_Is", "In_NotIn", "NotIn_In",
)
EXCLUDED_OPERATORS = (
    "core/ReplaceBinaryOperator_(?!(" + "|".join(KEPT_BINARY) + ")$)",
    "core/ReplaceComparisonOperator_(?!(" + "|".join(KEPT_COMPARE) + ")$)",
    "core/ReplaceUnaryOperator_(?!Delete_Not$)",
    "core/RemoveDecorator",
    "core/VariableReplacer",
    "core/VariableInserter",
)


def function_lines(path: Path, names: tuple[str, ...]) -> list[tuple[int, int]]:
    """Line ranges (first, last) of the named functions ("f" or "Class.method") in the file at `path`."""
    tree = ast.parse(path.read_text())
    found: dict[str, tuple[int, int]] = {}
    for node in tree.body:
        members = node.body if isinstance(node, ast.ClassDef) else [node]
        prefix = f"{node.name}." if isinstance(node, ast.ClassDef) else ""
        for member in members:
            if isinstance(member, ast.FunctionDef | ast.AsyncFunctionDef):
                found[prefix + member.name] = (member.lineno, member.end_lineno or member.lineno)
    missing = [name for name in names if name not in found]
    if missing:
        raise SystemExit(f"mutation: {path}: no function {', '.join(missing)} (update SCOPES in {__file__})")
    return [found[name] for name in names]


def annotations(path: Path) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """The spans ((line, column), (end line, end column)) of the file's annotations: never evaluated (every module
    has ``from __future__ import annotations``), so a mutant inside one is equivalent by construction."""
    spans = []
    for node in ast.walk(ast.parse(path.read_text())):
        found = []
        if isinstance(node, ast.arg | ast.AnnAssign) and node.annotation is not None:
            found.append(node.annotation)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns is not None:
            found.append(node.returns)
        spans += [((a.lineno, a.col_offset), (a.end_lineno or a.lineno, a.end_col_offset or 0)) for a in found]
    return spans


def scope_files(scope: Scope, tree: Path) -> dict[Path, list[tuple[int, int]] | None]:
    """The files a scope mutates (relative to `tree`) and the line ranges within each (None: all of it)."""
    files: dict[Path, list[tuple[int, int]] | None] = {}
    for pattern, names in scope.modules.items():
        matches = sorted(tree.glob(pattern))
        if not matches:
            raise SystemExit(f"mutation: nothing matches {pattern} (update SCOPES in {__file__})")
        for path in matches:
            files[path.relative_to(tree)] = function_lines(path, names) if names else None
    return files


def copy_checkout(tree: Path) -> None:
    """A fresh copy of what the tests need, so mutants never touch the checkout."""
    if tree.exists():
        shutil.rmtree(tree)
    tree.mkdir(parents=True)
    for name in ("src", "integrations", "tests", "pyproject.toml"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tree / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, tree / name)


def test_command(python: str, scope: Scope) -> str:
    return f"{python} -m pytest -q -x -p no:cacheprovider " + " ".join(scope.tests)


def write_config(path: Path, files: list[Path], command: str, timeout: float) -> None:
    modules = ", ".join(f'"{file}"' for file in files)
    excluded = ", ".join(f"'{pattern}'" for pattern in EXCLUDED_OPERATORS)
    path.write_text(
        "[cosmic-ray]\n"
        f"module-path = [{modules}]\n"
        f"timeout = {timeout}\n"
        "excluded-modules = []\n"
        f'test-command = "{command}"\n\n'
        "[cosmic-ray.distributor]\n"
        'name = "local"\n\n'
        "[cosmic-ray.filters.operators-filter]\n"
        f"exclude-operators = [{excluded}]\n"
    )


def skip_outside(session: Path, tree: Path, files: dict[Path, list[tuple[int, int]] | None]) -> None:
    """Mark every mutant outside the scope's functions, or inside an annotation, as skipped."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    spans = {path: annotations(tree / path) for path in files}
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item in list(db.pending_work_items):
            for mutation in item.mutations:
                path = Path(mutation.module_path)
                ranges, line = files.get(path), mutation.start_pos[0]
                why = None
                if ranges is not None and not any(first <= line <= last for first, last in ranges):
                    why = "outside the scope's functions"
                elif any(start <= tuple(mutation.start_pos) < end for start, end in spans.get(path, [])):
                    why = "inside an annotation"
                if why:
                    db.set_result(item.job_id, WorkResult(output=why, worker_outcome=WorkerOutcome.SKIPPED))
                    break


def run_exec(tree: Path, config: Path, session: Path) -> None:
    """`cosmic-ray exec`, with a line of progress every minute."""
    from cosmic_ray.work_db import WorkDB, use_db

    with use_db(str(session), WorkDB.Mode.open) as db:
        total = sum(1 for _ in db.pending_work_items)
    started = time.monotonic()
    proc = subprocess.Popen([tool("cosmic-ray"), "exec", str(config), str(session)], cwd=tree)
    shown = 0
    try:
        while proc.poll() is None:
            time.sleep(5)
            if time.monotonic() - started >= 60 * (shown + 1):
                shown += 1
                with use_db(str(session), WorkDB.Mode.open) as db:
                    left = sum(1 for _ in db.pending_work_items)
                print(f"mutation: {total - left}/{total} mutants run, {time.monotonic() - started:.0f} s", flush=True)
    finally:  # interrupted: stop the run (the session keeps what it did; --recheck goes on from there)
        if proc.poll() is None:
            proc.terminate()
            proc.wait()
    if proc.returncode != 0:
        raise SystemExit(f"mutation: cosmic-ray exec failed ({proc.returncode})")


def tool(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def explanation(path: str, source_line: str, operator: str, diff: str) -> str | None:
    for entry in EXPLAINED:
        if (entry.path == path and entry.line == source_line.strip() and operator.startswith(entry.operator)
                and entry.change in diff):
            return entry.why
    return None


def report(name: str, tree: Path, session: Path, seconds: float, out: Path) -> tuple[int, int, int, int]:
    """Write the scope's report; returns (killed, survived, explained, skipped)."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome

    counts: Counter[str] = Counter()
    survivors: list[str] = []
    explained = 0
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item, result in db.completed_work_items:
            if result.worker_outcome == WorkerOutcome.SKIPPED:
                counts["skipped"] += 1
                continue
            if result.test_outcome != TestOutcome.SURVIVED:
                outcome = result.test_outcome.value if result.test_outcome else "incompetent"
                counts["timeout" if result.output == "timeout" else outcome] += 1
                continue
            counts["survived"] += 1
            mutation = item.mutations[0]
            line = mutation.start_pos[0]
            text = (tree / mutation.module_path).read_text().splitlines()[line - 1]
            why = explanation(str(mutation.module_path), text, mutation.operator_name, result.diff or "")
            explained += why is not None
            survivors.append(
                f"### {mutation.module_path}:{line} {mutation.operator_name} (occurrence {mutation.occurrence})\n\n"
                + (f"Explained: {why}\n\n" if why else "**Not explained: kill it with a test or explain it.**\n\n")
                + f"```diff\n{(result.diff or '').strip()}\n```\n"
            )
        pending = sum(1 for _ in db.pending_work_items)
    killed = counts["killed"] + counts["timeout"] + counts["incompetent"]
    out.write_text(
        f"# Mutation testing: {name}\n\n{time.strftime('%Y-%m-%d %H:%M')} UTC, {seconds / 60:.1f} minutes. "
        f"Tests: {' '.join(SCOPES[name].tests)}\n\n"
        f"- killed: {killed} (of which timeouts {counts['timeout']}, incompetent {counts['incompetent']})\n"
        f"- survived: {counts['survived']} (explained {explained}, not explained {counts['survived'] - explained})\n"
        f"- skipped (outside the scope's functions, in an annotation or a noisy operator): {counts['skipped']}\n"
        f"- not run yet (an interrupted run; `--recheck` runs them): {pending}\n\n"
        + "\n".join(survivors)
    )
    return killed, counts["survived"], explained, counts["skipped"]


def check_baseline(tree: Path, command: str) -> None:
    """The unmutated tree must pass its tests, with the copy's code (not an installed pgvecstore)."""
    probe = subprocess.run(
        [command.split()[0], "-c", "import pgvecstore; print(pgvecstore.__file__)"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    if not probe.startswith(str(tree)):
        raise SystemExit(f"mutation: the tests would import {probe}, not the copy in {tree}")
    if subprocess.run(command.split(), cwd=tree).returncode != 0:
        raise SystemExit(f"mutation: the tests fail without any mutant: {command}")


def fingerprint(tree: Path, files: list[Path]) -> str:
    """The mutated files' content: a re-check needs the code the session's mutants were made from."""
    digest = hashlib.sha256()
    for file in files:
        digest.update(str(file).encode() + b"\0" + (tree / file).read_bytes())
    return digest.hexdigest()


def reset_survivors(session: Path, tree: Path) -> int:
    """Make the last run's unexplained survivors pending again (to check that new tests kill them); returns how
    many. Explained ones keep their result: they survive by design."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome

    unexplained = []
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item, result in db.completed_work_items:
            if result.test_outcome == TestOutcome.SURVIVED:
                mutation = item.mutations[0]
                text = (tree / mutation.module_path).read_text().splitlines()[mutation.start_pos[0] - 1]
                if explanation(str(mutation.module_path), text, mutation.operator_name, result.diff or "") is None:
                    unexplained.append(item.job_id)
    with sqlite3.connect(session) as db:
        db.executemany("DELETE FROM work_results WHERE job_id = ?", [(job,) for job in unexplained])
    return len(unexplained)


def run_scope(name: str, python: str, build: Path, recheck: bool) -> None:
    scope = SCOPES[name]
    tree = build / name / "tree"
    copy_checkout(tree)
    files = scope_files(scope, tree)
    os.environ["PYTHONPATH"] = f"{tree / 'src'}{os.pathsep}{tree / 'integrations'}"
    command = test_command(python, scope)
    check_baseline(tree, command)
    subprocess.run([python, "-m", "compileall", "-q", str(tree / "src")], check=True)
    config, session = build / name / "config.toml", build / name / "session.sqlite"
    stamp = build / name / "fingerprint"
    if recheck:
        if not session.exists() or not stamp.exists() or stamp.read_text() != fingerprint(tree, list(files)):
            raise SystemExit(f"mutation: {name}: the code changed since the last full run; run it in full")
        write_config(config, list(files), command, scope.timeout)  # the scope's tests as they are now
        print(f"mutation: {name}: re-checking {reset_survivors(session, tree)} survivors", flush=True)
        skip_outside(session, tree, files)  # as a full run would now (the skip rules may have changed)
    else:
        session.unlink(missing_ok=True)
        write_config(config, list(files), command, scope.timeout)
        subprocess.run([tool("cosmic-ray"), "init", str(config), str(session)], cwd=tree, check=True)
        subprocess.run([tool("cr-filter-operators"), str(session), str(config)], cwd=tree, check=True)
        skip_outside(session, tree, files)
        stamp.write_text(fingerprint(tree, list(files)))
    started = time.monotonic()
    run_exec(tree, config, session)
    out = build / f"{name}.md"
    killed, survived, explained, skipped = report(name, tree, session, time.monotonic() - started, out)
    print(f"mutation: {name}: killed {killed}, survived {survived} (explained {explained}), skipped {skipped}; "
          f"report in {out}", flush=True)


def start_server(python: str, data: Path) -> tuple[subprocess.Popen[str], str]:
    """One embedded PostgreSQL for the whole run, held by a child that stops it on SIGTERM."""
    code = (
        "import signal, sys\n"
        "from pgvecstore.server import embedded_dsn\n"
        "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})\n"
        "print(embedded_dsn(sys.argv[1]), flush=True)\n"
        "signal.sigwait({signal.SIGTERM, signal.SIGINT})\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    server = subprocess.Popen([python, "-c", code, str(data / "pgdata")], stdout=subprocess.PIPE, text=True, env=env)
    assert server.stdout is not None
    dsn = server.stdout.readline().strip()
    if not dsn:
        raise SystemExit("mutation: the embedded server did not start")
    return server, dsn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scopes", nargs="+", choices=sorted(SCOPES))
    parser.add_argument("--recheck", action="store_true",
                        help="run the last run's survivors (and what it left) again, with the current tests")
    parser.add_argument("--report", action="store_true",
                        help="only write the last run's report again (after editing mutation_explained.py)")
    parser.add_argument("--python", default=os.environ.get("PGVECSTORE_PYTHON", sys.executable),
                        help="the interpreter that runs the tests (has pgvecstore's dependencies)")
    args = parser.parse_args()
    build = ROOT / "build" / "mutation"
    build.mkdir(parents=True, exist_ok=True)
    if args.report:  # the last run's report again, with the explanations as they are now
        for name in args.scopes:
            report(name, build / name / "tree", build / name / "session.sqlite", 0.0, build / f"{name}.md")
        return
    data = Path(tempfile.mkdtemp(prefix="pgvecstore-mutation-"))
    server, dsn = start_server(args.python, data)
    os.environ["PGVECSTORE_TEST_DSN"] = dsn
    os.environ["PGVECSTORE_DATA_DIR"] = str(data)  # a test that asks for the embedded default finds this server
    try:
        for name in args.scopes:
            run_scope(name, args.python, build, args.recheck)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
