"""`*` over USING / NATURAL joins: the plan's output columns are PostgreSQL's, position by position.

PostgreSQL puts the merged (join) columns first, in the USING list's order, or for NATURAL in the
order of the left side; then the left side's other columns, then the right side's. A plan that
ordered NATURAL's common columns by the right side masked the wrong position: in
`(SELECT id, zip FROM customers) a NATURAL JOIN (SELECT zip, id FROM customers) b` it believed
output 2 was `id` (clear) where PostgreSQL returns `zip`: every zip code in the clear. The attack is proven on the real database; the
column lists are compared with the server's own (`cursor.description`), and the executed SQL now
writes `*` out as the columns judged (merged names unqualified, as PostgreSQL's join columns).
"""

from __future__ import annotations

import pytest
from conftest import require
from test_corpus import ME, live, offline, policy  # noqa: F401 (fixtures)

from lineage_guard.planner import plan

LEAK = "SELECT * FROM (SELECT id, zip FROM customers) a NATURAL JOIN (SELECT zip, id FROM customers) b"

STATEMENTS = [
    LEAK,
    "SELECT * FROM customers c NATURAL JOIN (SELECT birth_date, id FROM patients) p",
    "SELECT * FROM customers c JOIN (SELECT birth_date, id FROM patients) p USING (birth_date, id)",
    "SELECT * FROM customers c JOIN (SELECT birth_date, id FROM patients) p USING (id, birth_date)",
    "SELECT * FROM (SELECT id, plan FROM customers) a NATURAL JOIN (SELECT plan, id FROM customers) b",
    "SELECT * FROM orders o JOIN customers c USING (id)",
    "SELECT * FROM orders NATURAL JOIN customers",
    "SELECT * FROM customers NATURAL LEFT JOIN orders",
    "SELECT * FROM orders o FULL JOIN customers c USING (id, created_at)",
    "SELECT * FROM orders o RIGHT JOIN (SELECT created_at, id, plan FROM customers) c USING (created_at)",
    "SELECT * FROM orders JOIN customers USING (id) JOIN patients USING (id)",
    ("SELECT * FROM (SELECT id, plan FROM customers) a NATURAL JOIN (SELECT plan, id FROM customers) b "
     "NATURAL JOIN (SELECT plan, created_at FROM customers) d"),
    "SELECT * FROM (orders o JOIN customers c USING (id)) j",
    "SELECT j.* FROM (orders o JOIN customers c USING (id)) j",
    "SELECT c.*, o.* FROM orders o JOIN customers c USING (id)",
    "SELECT * FROM (orders JOIN customers USING (id)) NATURAL JOIN (SELECT plan, id FROM customers) b",
    "SELECT x.* FROM (SELECT * FROM customers c NATURAL JOIN (SELECT birth_date, id FROM patients) p) x",
]


def _run(url: str, sql: str):
    psycopg = require("psycopg", "postgres")
    with psycopg.connect(url) as conn:
        conn.read_only = True
        cur = conn.execute(sql)
        rows, names = cur.fetchall(), [d.name for d in cur.description]
        conn.rollback()
    return names, rows


@pytest.mark.parametrize("sql", STATEMENTS)
def test_star_over_using_and_natural_matches_postgres(corpus_url, live, policy, sql):  # noqa: F811
    decision = plan(sql, catalog=live, policy=policy, identity=ME, purpose="ai_training")
    assert decision.action == "allow", decision.reasons
    as_written, _ = _run(corpus_url, sql)
    executed, _ = _run(corpus_url, decision.analysis.executed_sql)
    assert [c.name for c in decision.columns] == as_written == executed
    for col in decision.columns:  # each position's lineage names its own column
        assert all(src.column == col.name for src in col.sources), (col.name, col.sources)


def test_natural_join_no_longer_returns_a_zip_code_in_the_clear(corpus_url, live, policy):  # noqa: F811
    _, stored = _run(corpus_url, "SELECT zip FROM customers WHERE zip IS NOT NULL")
    zips = {z for (z,) in stored}
    _, rows = _run(corpus_url, LEAK)
    assert len(zips & {row[1] for row in rows}) >= 10  # as written, position 2 of the result IS the zip code
    decision = plan(LEAK, catalog=live, policy=policy, identity=ME, purpose="ai_training")
    assert "*" not in decision.analysis.executed_sql  # written out as judged, merged names unqualified
    clear = [c.position for c in decision.columns if not c.masked]
    assert 1 not in clear  # position 2 (zip) is masked
    _, rows = _run(corpus_url, decision.analysis.executed_sql)
    assert rows and not any(row[i] in zips for row in rows for i in clear)
