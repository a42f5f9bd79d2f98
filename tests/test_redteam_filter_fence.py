"""Red team: a row-filtered reader learns which hidden rows exist from an error in its own WHERE clause.

The reader (the corpus's svc-training, ai_training) sees only the customers on the free plan. The row
filter wraps the table in a subquery, which PostgreSQL flattens into the outer query: its planner may
then evaluate the caller's cheaper qual before the filter's, on every row, so an error the caller's
qual raises only for row k (`1 / (id - k)`) answers whether hidden row k exists. The rule: the filter's
subquery is an optimization fence (`OFFSET 0`, as PostgreSQL's own security_barrier views), so no outer
qual sees a row the filter has not passed. The truth is read with psycopg; only counts are reported.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import CORPUS, require

from lineage_guard import GovernedSession, Identity
from lineage_guard.errors import AccessDenied, SourceError

ROW_FILTER = """row_filters:
  - {name: free-plan-only, table: public.customers, groups: [training-jobs], predicate: "lower(plan) = 'free'"}
"""
PROBES = {
    "division by zero": "SELECT id FROM customers WHERE 1 / (id - {k}) > -100",
    "integer overflow": "SELECT id FROM customers WHERE (id - {k}) * 2147483647 + 1 > 0 AND id = {k}",
    "division, no comparison": "SELECT id FROM customers WHERE (1 / (id - {k})) IS NOT NULL",
    "bad cast": "SELECT id FROM customers WHERE CASE WHEN id = {k} THEN 'x'::int ELSE 1 END = 1",
}


def _execute(url: str, sql: str) -> list:
    psycopg = require("psycopg", "postgres")
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql)
        return cur.fetchall() if cur.description else []


@pytest.fixture(scope="module")
def world(new_database, tmp_path_factory) -> tuple[str, Path, list[int]]:
    url = new_database()
    _execute(url, (CORPUS / "schema.sql").read_text())
    _execute(url, (CORPUS / "schema_extras.sql").read_text())
    _execute(url, "DELETE FROM orders WHERE customer_id % 3 = 0; DELETE FROM customers WHERE id % 3 = 0; ANALYZE")
    policy = tmp_path_factory.mktemp("redteam-fence") / "policy.yaml"
    policy.write_text((CORPUS / "policy.yaml").read_text() + ROW_FILTER)
    hidden_or_absent = [k for (k,) in _execute(url, "SELECT g FROM generate_series(1, 60) g EXCEPT "
                                                    "SELECT id FROM customers WHERE lower(plan) = 'free' ORDER BY 1")]
    return url, policy, hidden_or_absent


@pytest.mark.parametrize("probe", PROBES)
def test_an_error_in_the_callers_qual_says_nothing_about_hidden_rows(world, probe):
    url, policy, candidates = world
    exists = {k for (k,) in _execute(url, "SELECT id FROM customers")}
    told = right = 0
    with GovernedSession(url, policy, Identity("svc-training", "service"), "ai_training") as s:
        for k in candidates:
            try:
                s.read_arrow(PROBES[probe].format(k=k))
                errored = False
            except AccessDenied:
                continue   # refused outright: tells nothing
            except SourceError:
                errored = True
            told += 1
            right += errored == (k in exists)
    hidden = sum(k in exists for k in candidates)
    assert hidden and told                  # there are hidden rows to find, and the probe runs
    # Guessing "absent" every time scores len(candidates) - hidden; an oracle scores more than that.
    assert right <= told - hidden, f"{probe}: {right} of {told} hidden-or-absent ids told apart"
