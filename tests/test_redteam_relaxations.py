"""Red team round 6: today's two relaxations of the guard, attacked as the corpus's masked identity.

1. Held-back outputs (c5bb792 / 1a1292e): an output column of a view, FROM subquery or inlined CTE that
   nothing references no longer counts as a use of what it computes. The attacks reference such a column
   indirectly (USING, NATURAL, LATERAL, EXISTS, a correlated subquery, a row comparison, the whole row,
   to_jsonb, IS DISTINCT FROM, a named window, GROUP BY / ORDER BY by name) to turn it into a category
   oracle on patients.diagnosis. Each form is checked twice against the real server: PostgreSQL does
   compute the column in that form (an always-failing stand-in raises), so the guard must count it; and
   the unreferenced forms it now allows are never computed there (the same stand-in does not raise).
2. Leakproof pushdown (92bb487): a typed table behind a row filter, with columns whose comparisons a
   loose type reading could take for pg_catalog's leakproof ones (a domain over integer, varchar,
   char(n), smallint), and the reader's own `=` for the pairs pg_catalog lacks (domain = integer,
   varchar = varchar) that raises on equality. Counted: hidden ids told apart through the governed
   session (0), and through a naive pushdown of the same terms on the same database (all of them).

Counts only are reported, never values.
"""

from __future__ import annotations

import pytest
from conftest import CORPUS, require

from lineage_guard import GovernedSession, Identity
from lineage_guard.errors import AccessDenied, ApprovalRequired, SourceError

IDENTITY = Identity("svc-training", "service")
PURPOSE = "ai_training"
HELD = "(SELECT id, {e} AS c FROM patients)"
CATEGORY = "left(diagnosis, 3)"
STAND_IN = "(1 / (length(diagnosis) * 0))::text"   # computed means: division by zero, for every row
# Each references the held-back column `c` (or the whole row) only indirectly; {code} is a guessed category.
INDIRECT = {
    "IS NOT DISTINCT FROM": "SELECT id FROM {s} s WHERE s.c IS NOT DISTINCT FROM '{code}'",
    "JOIN USING": "SELECT s.id FROM {s} s JOIN (SELECT '{code}'::text AS c) k USING (c)",
    "NATURAL JOIN": "SELECT s.id FROM {s} s NATURAL JOIN (SELECT '{code}'::text AS c) k",
    "LATERAL": "SELECT s.id FROM {s} s, LATERAL (SELECT 1 WHERE s.c = '{code}') l",
    "EXISTS": "SELECT id FROM {s} s WHERE EXISTS (SELECT 1 WHERE s.c = '{code}')",
    "correlated scalar": "SELECT id FROM {s} s WHERE (SELECT s.c) = '{code}'",
    "row comparison": "SELECT id FROM {s} s WHERE (s.id, s.c) = (s.id, '{code}')",
    "whole row": "SELECT id FROM {s} s WHERE s = ROW(s.id, '{code}'::text)",
    "to_jsonb": "SELECT id FROM {s} s WHERE to_jsonb(s) ->> 'c' = '{code}'",
    "CTE referenced once": "WITH w AS {s} SELECT id FROM w WHERE c = '{code}'",
    "named window": "SELECT id, rank() OVER w = 1 AND '{code}' <> '' AS r FROM {s} s WINDOW w AS (ORDER BY c)",
    "GROUP BY name": "SELECT min(id) AS id FROM {s} s WHERE '{code}' <> '' GROUP BY c",
    "subquery ORDER BY output name + LIMIT": "SELECT id FROM (SELECT id, {e} AS zip FROM patients ORDER BY zip "
                                              "LIMIT 5) s WHERE '{code}' <> ''",
    "view column": "SELECT id FROM v_patient_summary s WHERE s.category = '{code}'",
    # An output alias shadowing it: window clauses, GROUP BY and ORDER BY expressions read the input column.
    "window ORDER BY, shadowed name": "SELECT id AS c, rank() OVER (ORDER BY c) AS r FROM {s} s WHERE '{code}' <> ''",
    "GROUP BY, shadowed name": "SELECT min(id) AS c FROM {s} s WHERE '{code}' <> '' GROUP BY c",
    "ORDER BY expression, shadowed name": "SELECT id AS c FROM {s} s WHERE '{code}' <> '' ORDER BY c || ''",
}
ORACLES = [f for f, t in INDIRECT.items() if "<> ''" not in t and "ORDER BY zip" not in t]
# Allowed since c5bb792: the held-back column is never referenced, so PostgreSQL never computes it.
UNREFERENCED = {
    "subquery": "SELECT id FROM {s} s",
    "subquery LIMIT": "SELECT id FROM (SELECT id, {e} AS c FROM patients LIMIT 100) s",
    "subquery GROUP BY": "SELECT id FROM (SELECT id, max({e}) AS c FROM patients GROUP BY id) s",
    "CTE referenced once": "WITH w AS {s} SELECT count(*) FROM w",
    "IN subquery": "SELECT id FROM customers WHERE id IN (SELECT id FROM {s} s)",
    # A bare ORDER BY / DISTINCT ON name means the output column first: here `id AS c`, not the held-back c.
    "ORDER BY an output that shadows it": "SELECT id AS c FROM {s} s ORDER BY c",
    "DISTINCT ON an output that shadows it": "SELECT DISTINCT ON (c) id AS c FROM {s} s",
    "renamed through a nested subquery": "SELECT id, c FROM (SELECT id AS c, c AS d, id FROM {s} s) t",
}
ICD = ("B20", "C50", "E11", "F32", "I10", "J45", "Z00")


def _execute(url: str, sql: str, *, pinned: bool = False) -> list:
    psycopg = require("psycopg", "postgres")
    with psycopg.connect(url, autocommit=True) as conn:
        if pinned:
            conn.execute("SET search_path = pg_catalog, public, pg_temp")
        cur = conn.execute(sql)
        return cur.fetchall() if cur.description else []


def _fill(template: str, e: str, code: str = "B20") -> str:
    return template.format(s=HELD.format(e=e), e=e, code=code)


@pytest.fixture(scope="module")
def session(corpus_url):
    with GovernedSession(corpus_url, CORPUS / "policy.yaml", IDENTITY, PURPOSE) as s:
        yield s


@pytest.mark.parametrize("form", INDIRECT)
def test_a_held_back_column_referenced_indirectly_counts(form, corpus_url, session):
    truth = dict(_execute(corpus_url, "SELECT id, left(diagnosis, 3) FROM patients"))
    template = INDIRECT[form]
    if form != "view column":   # the premise: in this form PostgreSQL computes the column, so it must count
        psycopg = require("psycopg", "postgres")
        with pytest.raises(psycopg.errors.DivisionByZero):
            _execute(corpus_url, _fill(template, STAND_IN))
    recovered: dict[int, str] = {}
    direct: dict[int, str] = {}
    refused = 0
    for code in ICD:
        sql = _fill(template, CATEGORY, code)
        for i, *_ in _execute(corpus_url, sql):   # the same oracle with no guard: what it would give
            direct.setdefault(i, code)
        try:
            ids = session.read_arrow(sql).column("id").to_pylist()
        except (AccessDenied, ApprovalRequired):
            refused += 1
            continue
        for i in ids:
            recovered.setdefault(i, code)
    right = sum(1 for i, code in recovered.items() if truth.get(i) == code)
    if form in ORACLES:   # the probe is live: unguarded, it names categories
        assert sum(1 for i, code in direct.items() if truth.get(i) == code) > 0, f"{form}: the oracle is dead"
    assert right == 0 and refused == len(ICD), f"{form}: {right} categories recovered, {refused} of {len(ICD)} refused"


@pytest.mark.parametrize("form", UNREFERENCED)
def test_an_unreferenced_held_back_column_is_never_computed(form, corpus_url, session):
    """What c5bb792 allows: the same stand-in does not raise, so the column's value is never read."""
    _execute(corpus_url, _fill(UNREFERENCED[form], STAND_IN))
    assert session.read_arrow(_fill(UNREFERENCED[form], CATEGORY)).num_rows > 0


# --- leakproof pushdown: type confusion ------------------------------------------------------------------

TYPED = """
DROP TABLE IF EXISTS public.lg_rt_typed; DROP DOMAIN IF EXISTS public.lg_rt_dint CASCADE;
CREATE DOMAIN public.lg_rt_dint AS integer;
CREATE TABLE public.lg_rt_typed (id int PRIMARY KEY, d public.lg_rt_dint, v varchar(20), b char(6), s smallint,
                                 plan text);
INSERT INTO public.lg_rt_typed SELECT g, g, g::text, g::text, g, CASE WHEN g % 3 = 0 THEN 'pro' ELSE 'free' END
  FROM generate_series(1, 40) g;
CREATE FUNCTION public.lg_rt_eq_d(a public.lg_rt_dint, b int) RETURNS boolean LANGUAGE plpgsql IMMUTABLE
  COST 0.0000001 AS $$ BEGIN IF a::int = b THEN RAISE EXCEPTION 'row exists'; END IF; RETURN false; END $$;
CREATE OPERATOR public.= (LEFTARG = public.lg_rt_dint, RIGHTARG = int, FUNCTION = public.lg_rt_eq_d);
CREATE FUNCTION public.lg_rt_eq_v(a varchar, b varchar) RETURNS boolean LANGUAGE plpgsql IMMUTABLE
  COST 0.0000001 AS $$ BEGIN IF a::text = b::text THEN RAISE EXCEPTION 'row exists'; END IF; RETURN false; END $$;
CREATE OPERATOR public.= (LEFTARG = varchar, RIGHTARG = varchar, FUNCTION = public.lg_rt_eq_v);
"""
TYPED_FILTER = """row_filters:
  - {name: free-only, table: public.lg_rt_typed, groups: [training-jobs], predicate: "plan = 'free'"}
"""
# Each resolves (search_path pg_catalog, public) to the reader's raising `=`, or is a pg_catalog pair that
# must stay harmless inside the fence (char(n), smallint, unary minus, a string literal).
TYPE_PROBES = {
    "domain over integer": "d = {k}",
    "varchar = literal": "v = '{k}'",
    "varchar = varchar column": "v = v AND id = {k} AND v = '{k}'",
    "domain BETWEEN": "d BETWEEN {k} AND {k} AND d = {k}",
    "domain IN list": "d IN ({k}, {k}) AND d = {k}",
    "char(n) then varchar": "b = '{k}' AND v = '{k}'",
    "smallint then domain": "s = {k} AND d = {k}",
    "negated literal": "d = - -{k}",
    "quoted column name": "\"d\" = {k}",
    "table-qualified": "lg_rt_typed.d = {k}",
}


@pytest.fixture(scope="module")
def typed_world(new_database, tmp_path_factory):
    url = new_database()
    _execute(url, (CORPUS / "schema.sql").read_text())
    _execute(url, (CORPUS / "schema_extras.sql").read_text())
    _execute(url, TYPED)
    policy = tmp_path_factory.mktemp("redteam-typed") / "policy.yaml"
    policy.write_text((CORPUS / "policy.yaml").read_text() + TYPED_FILTER)
    hidden = [k for (k,) in _execute(url, "SELECT id FROM lg_rt_typed WHERE plan <> 'free' ORDER BY 1")]
    return url, policy, hidden


@pytest.mark.parametrize("probe", TYPE_PROBES)
def test_pushdown_type_confusion_says_nothing_about_hidden_rows(typed_world, probe):
    url, policy, hidden = typed_world
    psycopg = require("psycopg", "postgres")
    where = TYPE_PROBES[probe]

    def naive(k: int) -> bool:   # the term inside the fence, next to the filter, as a loose type reading would
        w = where.format(k=k)
        try:
            _execute(url, f"SELECT id FROM (SELECT * FROM lg_rt_typed WHERE ({w}) AND plan = 'free' OFFSET 0) "
                          f"lg_rt_typed WHERE {w}", pinned=True)
        except psycopg.Error:
            return True
        return False

    told = ran = 0
    with GovernedSession(url, policy, IDENTITY, PURPOSE) as s:
        for k in hidden:
            try:
                s.read_arrow(f"SELECT id FROM lg_rt_typed WHERE {where.format(k=k)}")
                ran += 1
            except (AccessDenied, ApprovalRequired):
                continue
            except SourceError:
                ran += 1
                told += 1
    naive_told = sum(naive(k) for k in hidden)
    print(f"\n{probe}: governed {told} of {len(hidden)} hidden ids told apart ({ran} ran); naive {naive_told}")
    assert ran, f"{probe}: the probe never ran"
    assert told == 0, f"{probe}: {told} of {len(hidden)} hidden ids told apart through the governed session"


def test_the_type_probes_are_live_naively(typed_world):
    """A naive pushdown of the reader's-operator probes finds every hidden id: the exact-type rule stops it."""
    url, _, hidden = typed_world
    psycopg = require("psycopg", "postgres")
    live = 0
    for probe in ("domain over integer", "varchar = literal", "char(n) then varchar", "smallint then domain"):
        w = TYPE_PROBES[probe].format(k=hidden[0])
        try:
            _execute(url, f"SELECT id FROM (SELECT * FROM lg_rt_typed WHERE ({w}) AND plan = 'free' OFFSET 0) t "
                          f"WHERE {w}", pinned=True)
        except psycopg.Error:
            live += 1
    assert live == 4
