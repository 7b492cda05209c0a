"""Layout versions without a server: the table comment's record is read back, a table without one is inferred from
its text-search parts, and the upgrade's statements quote names, bind values and refuse bad batch sizes."""

from __future__ import annotations

import re

import pytest

from pgvecstore import InvalidInputError
from pgvecstore.layout import CURRENT_LAYOUT, LayoutVersion, comment_text, read_version
from pgvecstore.sql import upgrade_ddl
from pgvecstore.sql.table import TableRef
from pgvecstore.upgrade import check_batch_size

TABLE = TableRef.plain("my schema", 'we"ird', id_type="text")


def test_the_comment_records_the_layout_and_an_unfinished_upgrade() -> None:
    assert comment_text(2) == "pgvecstore layout 2"
    assert comment_text(1, 2) == "pgvecstore layout 1, upgrading to 2"
    parts = {"has_text_column": True, "generated": True, "text_complete": False, "has_terms_column": False}
    assert read_version("pgvecstore layout 2", **parts) == LayoutVersion(2, None, True)  # the record wins
    upgrading = read_version("pgvecstore layout 1, upgrading to 2", **parts)
    assert upgrading == LayoutVersion(1, 2, True) and not upgrading.current
    assert read_version(" pgvecstore layout 3 ", **parts).current


@pytest.mark.parametrize(("comment", "column", "generated", "complete", "terms", "version"), [
    (None, False, False, False, False, 3),  # text_search=False: nothing to upgrade
    (None, True, False, True, False, 3),  # every part of layout 3
    (None, True, False, False, True, 2),  # made by 0.2.0: the statistics and the term-frequency column
    (None, True, True, False, False, 1),  # made by 0.1: a generated column
    (None, True, False, False, False, 1),  # a plain column without the statistics
    ("my own notes", True, True, False, False, 1),  # not a record: inferred
])
def test_a_table_without_a_record_is_read_from_its_parts(
    comment: str | None, column: bool, generated: bool, complete: bool, terms: bool, version: int
) -> None:
    found = read_version(comment, has_text_column=column, generated=generated, text_complete=complete,
                         has_terms_column=terms)
    assert found == LayoutVersion(version, None, False)
    assert found.current == (version == CURRENT_LAYOUT)


def test_upgrade_statements_quote_names_and_bind_values() -> None:
    assert upgrade_ddl.set_comment(TABLE, 1, 2) == (
        'COMMENT ON TABLE "my schema"."we""ird" IS \'pgvecstore layout 1, upgrading to 2\'')
    assert upgrade_ddl.grant_select(TABLE, "t_text_docs", 'app"; DROP TABLE x; --') == (
        'GRANT SELECT ON "my schema"."t_text_docs" TO "app""; DROP TABLE x; --"')
    assert upgrade_ddl.grant_select(TABLE, "t_text_docs", None).endswith(" TO PUBLIC")
    hostile = "'); DROP TABLE x; --"
    step = upgrade_ddl.next_step(TABLE, 10, hostile)
    assert hostile not in step.sql and step.args == (hostile, 10)
    assert upgrade_ddl.next_step(TABLE, 10, None).args == (10,)
    for statement in upgrade_ddl.count_step(TABLE, hostile, hostile + "z"):
        assert hostile not in statement.sql and statement.args == (hostile + "z", hostile)
        assert set(map(int, re.findall(r"\$(\d+)", statement.sql))) == {1, 2}
    assert upgrade_ddl.import_snapshot("00000003-0000001B-1'; --").sql == (
        "SET TRANSACTION SNAPSHOT '00000003-0000001B-1''; --'")


@pytest.mark.parametrize("size", [0, -1, 1_000_001, 2.5, "10", True])
def test_a_bad_batch_size_is_refused_by_name(size: object) -> None:
    with pytest.raises(InvalidInputError, match="batch_size"):
        check_batch_size(size)
    assert check_batch_size(1) == 1 and check_batch_size(1_000_000) == 1_000_000
