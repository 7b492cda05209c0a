"""Passwords never reach a repr, a log line or an error message, whatever characters they hold."""

from __future__ import annotations

import traceback

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding

from langchain_pgvecstore import PgVecStore as LangChainStore
from llama_index.vector_stores.pgvecstore import PgVecStore as LlamaIndexStore
from pgvecstore import InvalidOptionError, PgVectorStore
from pgvecstore.config import redact_dsn

SECRET = "S3C/RET#X?Y@Z"
RAW_URL = f"postgresql://alice:{SECRET}@db.example.com:5432/app"


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        ("postgresql://u:S3C/RET@host/db", "postgresql://u:***@host/db"),
        ("postgresql://u:a#b?c@d@host:5432/db?sslmode=require", "postgresql://u:***@host:5432/db?sslmode=require"),
        ("postgres://u:p:q@host/db", "postgres://u:***@host/db"),
        ("postgresql://u@host/db", "postgresql://u@host/db"),
        ("postgresql://host:5432/db", "postgresql://host:5432/db"),
        ("postgresql://u:pw@host/db?password=x", "postgresql://u:***@host/db?password=***"),
        ("host=db user=bob password=hunter2 dbname=x", "host=db user=bob password=*** dbname=x"),
        ("host=db password='two words' dbname=x", "host=db password=*** dbname=x"),
    ],
)
def test_redact_dsn_hides_passwords_with_special_characters(dsn: str, shown: str) -> None:
    assert redact_dsn(dsn) == shown


def _secret_parts() -> list[str]:
    return ["S3C", "RET", "X?Y", "Z@db"]


def test_adapter_reprs_hide_the_password() -> None:
    store = LangChainStore(DeterministicFakeEmbedding(size=4), connection_string=RAW_URL)
    retriever = store.as_retriever()
    index_store = LlamaIndexStore(connection_string=RAW_URL, dimensions=4)
    shown = [repr(store), str(store), repr(retriever), str(retriever), repr(index_store), str(index_store),
             str(index_store.model_dump()), repr(PgVectorStore(connection_string=RAW_URL)),
             repr(PgVectorStore(connection_string=RAW_URL).config)]
    for text in shown:
        assert not any(part in text for part in _secret_parts()), text
    assert "alice:***@db.example.com" in repr(store)


@pytest.mark.parametrize("password", ["S3C/RET", "S3C#RET", "S3C?RET", "S3C@RET"])
async def test_unencoded_special_characters_are_refused_before_connecting(password: str) -> None:
    store = PgVectorStore(connection_string=f"postgresql://u:{password}@localhost:1/db", dimensions=4)
    with pytest.raises(InvalidOptionError, match="percent-encode") as caught:
        await store.initialize()
    text = "".join(traceback.format_exception(caught.value))
    assert "S3C" not in text and "RET" not in text
    char = password[3]
    assert repr(char) in str(caught.value)  # names the character to encode


async def test_an_unparsable_url_names_no_part_of_the_password() -> None:
    # A port that is not a number: asyncpg's own ValueError would quote it.
    store = PgVectorStore(connection_string="postgresql://u:hunter2@localhost:notaport/db", dimensions=4)
    with pytest.raises(InvalidOptionError, match="not a valid PostgreSQL URL") as caught:
        await store.initialize()
    text = "".join(traceback.format_exception(caught.value))
    assert "hunter2" not in text
