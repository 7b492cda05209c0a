"""SQL text of the store, built in one package from validated, quoted identifiers and bound parameters only.

- `params`: `Params` hands out the ``$n`` placeholder of each bound value; `Statement` is SQL text with its values.
- `table`: `TableRef`, the table's quoted names (columns, indexes, policy, advisory-lock key).
- `filters`: the metadata filter language, compiled to a boolean expression whose values are all bound.
- `ddl`: schema, table, indexes, text-search column, row-level security policy (no parameters: names and
  validated integers only).
- `catalog`: what the store reads about the server and its table (extension, columns, indexes, settings).
- `queries`: reads and writes of rows (vector search, get, count, stats, delete, update, upsert, estimates).
- `hybrid`: full-text and hybrid search.

Every builder that takes values allocates their placeholders itself and returns a `Statement`, so no caller
pairs placeholders with values by position. DDL, which PostgreSQL cannot parameterise, renders only validated
names (`pgvecstore.identifiers`) and integers.
"""
