"""Compact vectors: the column types and quantizations of pgvector the store offers, and their limits.

``vector_type`` is the column's type (``vector``: float32, ``halfvec``: float16, half the heap and index).
``quantization="binary"`` indexes ``binary_quantize(embedding)::bit(d)`` with HNSW and Hamming distance; searches
take ``k * rerank_factor`` candidates from it and re-rank them by the store's metric on the stored vectors, in one
statement. docs/compact-vectors.md has the measurements behind the defaults.

Every name here is a fixed word checked against these tables, so SQL builders may use them as type and operator
class names.
"""

from __future__ import annotations

from pgvecstore.errors import InvalidOptionError

VECTOR_TYPES = ("vector", "halfvec")
DEFAULT_VECTOR_TYPE = "vector"
QUANTIZATIONS = ("binary",)
# Candidates per requested row that a binary-quantized search re-ranks. With the binary index's defaults below,
# on 1,000,000 x 384 MiniLM-like vectors, recall@10 is 0.953 at 64 and 0.946 at 48; the more rows, the more
# candidates the same recall takes (docs/compact-vectors.md).
DEFAULT_RERANK_FACTOR = 64
# HNSW build parameters of the binary index when the store's index_params leave them out (the float index keeps
# 16 and 64). At 1,000,000 rows: an index 0.13 of the float one, built 3.6x faster, recall 0.953 after re-ranking;
# m=12 builds slower for no more recall after re-ranking, m=8 loses recall the re-ranking cannot win back.
BINARY_HNSW_DEFAULTS = {"m": 10, "ef_construction": 40}
RERANK_FACTOR_RANGE = (1, 1000)

# Most dimensions a column of each type holds, and an index of each method on it (pgvector 0.8; the binary index
# is on bit(d), whose limit is 64,000, so it is bounded by the column's 16,000).
MAX_COLUMN_DIMENSIONS = {"vector": 16000, "halfvec": 16000}
MAX_INDEX_DIMENSIONS = {"vector": 2000, "halfvec": 4000, "bit": 64000}

# The operator class suffix of each metric (pgvector: <type>_<suffix>); the binary index's own class.
_OPCLASS_SUFFIX = {"cosine": "cosine_ops", "euclidean": "l2_ops", "inner_product": "ip_ops"}
BINARY_OPCLASS = "bit_hamming_ops"
HAMMING_OPERATOR = "<~>"


def check_vector_type(vector_type: str) -> str:
    """`vector_type` when it is one of `VECTOR_TYPES`, else an `InvalidOptionError` naming the option."""
    if vector_type not in VECTOR_TYPES:
        raise InvalidOptionError(
            f"vector_type must be one of {', '.join(map(repr, VECTOR_TYPES))}, got {vector_type!r}"
        )
    return vector_type


def opclass(vector_type: str, metric: str) -> str:
    """The operator class of an index on a `vector_type` column for `metric` (``halfvec_cosine_ops`` ...)."""
    return f"{check_vector_type(vector_type)}_{_OPCLASS_SUFFIX[str(metric)]}"


def index_kind(index_type: str, quantization: str | None) -> str:
    """The kind of vector index a store builds: its method, with ``_binary`` for a binary-quantized one."""
    return f"{index_type}_binary" if quantization == "binary" else index_type


def check_index(index_type: str, vector_type: str, quantization: str | None, dimensions: int | None) -> None:
    """Refuse an index pgvector cannot build, naming the options: IVFFlat with binary quantization, or more
    dimensions than the index method takes on the indexed type."""
    if index_type not in ("hnsw", "ivfflat"):
        return
    if quantization == "binary" and index_type != "hnsw":
        raise InvalidOptionError(
            f"quantization='binary' needs index_type='hnsw' (or 'none'), got index_type={index_type!r}: the "
            "store re-ranks the candidates of an HNSW index on the quantized vectors"
        )
    if dimensions is None:
        return
    indexed = "bit" if quantization == "binary" else vector_type
    limit = MAX_INDEX_DIMENSIONS[indexed]
    if dimensions > limit:
        hint = (
            "; vector_type='halfvec' indexes up to 4,000 and quantization='binary' up to 16,000"
            if indexed == "vector"
            else "; quantization='binary' indexes up to 16,000" if indexed == "halfvec" else ""
        )
        raise InvalidOptionError(
            f"index_type={index_type!r} with vector_type={vector_type!r}"
            f"{', quantization=' + repr(quantization) if quantization else ''} indexes at most {limit:,} "
            f"dimensions (pgvector), but dimensions={dimensions}{hint}"
        )
