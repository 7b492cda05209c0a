"""A plain-Python BM25 text search, written from the rule in the docstring of `pgvecstore.sql.text_query` (not from
its SQL): the oracle the tests compare the store's text search with.

A row is its id, its domain (None: no domain) and its lexeme counts (lexeme -> tf, tf at least 1: the number of
positions of the lexeme in the row's tsvector). The query is its lexemes in order (the server's ``to_tsvector`` of
the query text, ordered by first position, then lexeme). Lexemes compare by code point, as the "C" collation does.
The rule is exact only while no index scan matches more than `ROWS_PER_SCAN` rows and the candidates are at most
`MAX_CANDIDATES` (past either, the server keeps rows of its choosing): `candidates` refuses such inputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pgvecstore.sql.text_query import (
    K1,
    MAX_CANDIDATES,
    MAX_SCANS,
    MAX_TEXT_QUERY_TERMS,
    PAIRS_ESTIMATE,
    RARE_TERMS_DF,
    ROWS_PER_SCAN,
    B,
)


@dataclass(frozen=True)
class Row:
    id: str
    domain: str | None
    tf: Mapping[str, int]  # lexeme -> count (at least 1)


@dataclass(frozen=True)
class Candidates:
    """The terms read as one OR'ed scan, the pairs each read as a scan of their own, and the rows they find."""

    singles: list[str]
    pairs: list[tuple[str, str]]
    ids: set[str]


def scope_rows(rows: Sequence[Row], domain: str | None) -> list[Row]:
    """The rows a store sees: its domain's, or every row for a store without a domain."""
    return [row for row in rows if domain is None or row.domain == domain]


def document_frequencies(rows: Sequence[Row], terms: Sequence[str]) -> dict[str, int]:
    """df of each term that some row holds (terms no row holds are left out)."""
    df = {term: sum(1 for row in rows if term in row.tf) for term in terms}
    return {term: n for term, n in df.items() if n > 0}


def candidates(rows: Sequence[Row], query: Sequence[str]) -> Candidates:
    """Step 3: the rarest terms while their dfs add up to at most RARE_TERMS_DF (always the rarest one), then pairs
    of the other terms, fewest expected matches first, while the estimates add up to at most PAIRS_ESTIMATE."""
    df = document_frequencies(rows, query[:MAX_TEXT_QUERY_TERMS])
    by_rarity = sorted(df, key=lambda term: (df[term], term))
    singles: list[str] = []
    total = 0
    for term in by_rarity:
        total += df[term]
        if total <= RARE_TERMS_DF or not singles:
            singles.append(term)
    rest = sorted(set(df) - set(singles))
    all_pairs = [(a, b) for i, a in enumerate(rest) for b in rest[i + 1:]]
    all_pairs.sort(key=lambda pair: (df[pair[0]] * df[pair[1]], pair[0], pair[1]))
    pairs: list[tuple[str, str]] = []
    estimate = 0.0
    for a, b in all_pairs:
        estimate += df[a] * df[b] / len(rows)
        if estimate > PAIRS_ESTIMATE or len(pairs) == MAX_SCANS - 1:
            break
        pairs.append((a, b))
    scans = [{row.id for row in rows if any(term in row.tf for term in singles)}] if singles else []
    scans += [{row.id for row in rows if a in row.tf and b in row.tf} for a, b in pairs]
    if any(len(scan) > ROWS_PER_SCAN for scan in scans):
        raise ValueError("a scan matches more than ROWS_PER_SCAN rows: the server keeps rows of its choosing")
    found = set().union(*scans)
    if len(found) > MAX_CANDIDATES:
        raise ValueError("more than MAX_CANDIDATES candidates: the server keeps rows of its choosing")
    return Candidates(singles, pairs, found)


def search(rows: Sequence[Row], domain: str | None, query: Sequence[str]) -> list[tuple[str, float]]:
    """(id, BM25 score) of every candidate row of the store's scope, best first, ties by id."""
    seen = scope_rows(rows, domain)
    n = len(seen)
    avgdl = sum(len(row.tf) for row in seen) / max(n, 1)
    df = document_frequencies(seen, query[:MAX_TEXT_QUERY_TERMS])
    idf = {term: math.log(1 + (n - d + 0.5) / (d + 0.5)) for term, d in df.items()}
    found = candidates(seen, query).ids
    scored = []
    for row in seen:
        if row.id not in found:
            continue
        dl = len(row.tf)  # distinct lexemes
        score = sum(
            idf[term] * row.tf[term] * (K1 + 1) / (row.tf[term] + K1 * (1 - B + B * dl / avgdl))
            for term in idf if term in row.tf
        )
        scored.append((row.id, score))
    return sorted(scored, key=lambda hit: (-hit[1], hit[0]))
