"""`Metric`: everything the store knows about a distance metric, in one place.

pgvector's distance operator and index operator class, and the similarity score the store reports, both as a
Python function of a distance and as the same formula in SQL: cosine ``1 - d``, euclidean ``1 / (1 + d)``,
inner product the raw product (pgvector's ``<#>`` is its negative).
"""

from __future__ import annotations

import enum
from collections.abc import Callable


class Metric(enum.StrEnum):
    """A distance metric of pgvector; compares equal to its name (``Metric.COSINE == "cosine"``)."""

    COSINE = "cosine"
    EUCLIDEAN = "euclidean"
    INNER_PRODUCT = "inner_product"

    def __repr__(self) -> str:
        return repr(self.value)

    @property
    def operator(self) -> str:
        """pgvector's distance operator (smaller is nearer), the one its indexes serve in ORDER BY."""
        return _OPERATORS[self]

    @property
    def opclass(self) -> str:
        """The operator class of a vector index for this metric."""
        return _OPCLASSES[self]

    @property
    def score(self) -> Callable[[float], float]:
        """The similarity score of a distance (higher is nearer): a plain function, cheap per row."""
        return _SCORES[self]

    def score_sql(self, distance: str) -> str:
        """The same score as a SQL expression of the SQL expression `distance`."""
        return _SCORE_SQL[self].format(distance)


_OPERATORS = {Metric.COSINE: "<=>", Metric.EUCLIDEAN: "<->", Metric.INNER_PRODUCT: "<#>"}
_OPCLASSES = {
    Metric.COSINE: "vector_cosine_ops",
    Metric.EUCLIDEAN: "vector_l2_ops",
    Metric.INNER_PRODUCT: "vector_ip_ops",
}


def _cosine(distance: float) -> float:
    return 1.0 - distance


def _euclidean(distance: float) -> float:
    return 1.0 / (1.0 + distance)


def _inner_product(distance: float) -> float:
    return -distance


_SCORES: dict[Metric, Callable[[float], float]] = {
    Metric.COSINE: _cosine,
    Metric.EUCLIDEAN: _euclidean,
    Metric.INNER_PRODUCT: _inner_product,
}
_SCORE_SQL = {Metric.COSINE: "(1 - {0})", Metric.EUCLIDEAN: "(1 / (1 + {0}))", Metric.INNER_PRODUCT: "(-{0})"}
