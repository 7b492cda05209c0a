"""LangChain vector store over pgvecstore: PostgreSQL + pgvector with zero set-up.

>>> from langchain_pgvecstore import PgVecStore
>>> store = PgVecStore.from_documents(docs, embeddings)  # embedded PostgreSQL when no DSN is given
"""

from langchain_pgvecstore.retriever import PgVecStoreRetriever
from langchain_pgvecstore.vectorstores import PgVecStore

__all__ = ["PgVecStore", "PgVecStoreRetriever"]
