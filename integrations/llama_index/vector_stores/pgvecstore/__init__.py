"""LlamaIndex vector store backed by pgvecstore (PostgreSQL + pgvector): ``from llama_index.vector_stores.pgvecstore
import PgVecStore``."""

from llama_index.vector_stores.pgvecstore.base import PgVecStore
from llama_index.vector_stores.pgvecstore.filters import metadata_filters_to_dict

__all__ = ["PgVecStore", "metadata_filters_to_dict"]
