"""Differential oracle on shuffled twins: an allowed statement's clear output must not depend on who owns a value.

Database A is the corpus. Pairing 1: database S, the same rows with each sensitive column shuffled
across rows independently (same values, different owners). Pairing 2: database P, where each
classification gets one consistent permutation of its values across all its columns, so equality
between sensitive columns (a permitted disclosure: equi-joins) is preserved while the values and
their order are not; the generator for pairing 2 adds equi-joins on sensitive columns.

A seeded generator (tests/oracle_gen.py) writes >= 10,000 statements; each is planned offline
first, and only the allowed ones run, on both databases of its pairing, exactly as the session
would send them (`analysis.executed_sql`). Any allowed statement whose UNMASKED output columns
differ (rows, order under ORDER BY, or row count), or that fails on one database and not the
other (or with another SQLSTATE), is a failure. Physical row order is the same in all databases
(clustered on the key), so only data, never layout, can make outputs differ.
"""

from __future__ import annotations

import collections
import json
import multiprocessing
import os
import random
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest
from conftest import CORPUS, require
from oracle_gen import Generator

from lineage_guard.identity import Identity
from lineage_guard.planner import plan
from lineage_guard.policy import load_policy
from lineage_guard.sql.catalog import Catalog

POLICY = CORPUS / "policy.yaml"
SENSITIVE = {  # table -> sensitive columns (the corpus policy's classifications)
    "customers": ["full_name", "email", "ssn", "phone", "birth_date", "zip"],
    "orders": ["card_number"],
    "patients": ["mrn", "full_name", "diagnosis", "notes", "birth_date"],
}
PAIRINGS = {"shuffled": (20261201, 6000, False), "permuted": (20261202, 4000, True)}   # seed, statements, equi-joins
SEED = 11


def _load(url: str) -> None:
    psycopg = require("psycopg", "postgres")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute((CORPUS / "schema.sql").read_text())
        conn.execute((CORPUS / "schema_extras.sql").read_text())


def _rewrite(url: str, mapping) -> None:
    """Set every sensitive value to mapping(table, column, rows) -> {id: new value}; then cluster on the key."""
    psycopg = require("psycopg", "postgres")
    with psycopg.connect(url) as conn:
        for table, cols in SENSITIVE.items():
            for col in cols:
                rows = conn.execute(f"SELECT id, {col} FROM {table} ORDER BY id").fetchall()
                new = mapping(table, col, rows)
                conn.cursor().executemany(f"UPDATE {table} SET {col} = %s WHERE id = %s",
                                          [(v, k) for k, v in new.items()])
        conn.execute("REFRESH MATERIALIZED VIEW mv_zip_plan")
        conn.commit()


def _cluster(url: str) -> None:
    psycopg = require("psycopg", "postgres")
    with psycopg.connect(url, autocommit=True) as conn:
        for table in SENSITIVE:
            conn.execute(f"CLUSTER {table} USING {table}_pkey")
            conn.execute(f"ANALYZE {table}")


def shuffle_rows(rng: random.Random):
    """Pairing 1: each column's values move to other rows (same multiset, different owners)."""
    def mapping(table, col, rows):
        ids, values = [r[0] for r in rows], [r[1] for r in rows]
        rng.shuffle(values)
        return dict(zip(ids, values))
    return mapping


def permute_values(url: str, rng: random.Random):
    """Pairing 2: one permutation of each classification's distinct values, applied to all its columns."""
    psycopg = require("psycopg", "postgres")
    labels = load_policy(POLICY).labels()
    by_label: dict[str, list] = collections.defaultdict(list)
    with psycopg.connect(url) as conn:
        for ref, label in labels.items():
            by_label[label] += [v for (v,) in conn.execute(f"SELECT DISTINCT {ref.column} FROM {ref.table} "
                                                           f"WHERE {ref.column} IS NOT NULL")]
    perms = {}
    for label, values in by_label.items():
        distinct = sorted(set(values), key=repr)
        shuffled = distinct[:]
        rng.shuffle(shuffled)
        perms[label] = dict(zip(distinct, shuffled))
    label_of = {(ref.table, ref.column): label for ref, label in labels.items()}

    def mapping(table, col, rows):
        perm = perms[label_of[(table, col)]]
        return {k: (perm[v] if v is not None else None) for k, v in rows}
    return mapping


@pytest.fixture(scope="module")
def twins(new_database):
    psycopg = require("psycopg", "postgres")
    a, s, p = new_database(), new_database(), new_database()
    for url in (a, s, p):
        _load(url)
    _rewrite(s, shuffle_rows(random.Random(SEED)))
    _rewrite(p, permute_values(p, random.Random(SEED + 1)))
    for url in (a, s, p):
        _cluster(url)
    conns = {}
    for name, url in (("a", a), ("shuffled", s), ("permuted", p)):
        conn = psycopg.connect(url, autocommit=True)
        conn.execute("SET default_transaction_read_only = on")
        conn.execute("SET statement_timeout = '3s'")
        conns[name] = conn
    yield conns
    for conn in conns.values():
        conn.close()


def _run(conn, sql: str):
    psycopg = require("psycopg", "postgres")
    try:
        return conn.execute(sql).fetchall(), None
    except psycopg.Error as err:
        return None, err.sqlstate   # the SQLSTATE only: server text may quote a value


def _clear_view(rows, clear: list[int], ordered: bool):
    view = [tuple(r[i] for i in clear) for r in rows]
    return view if ordered else sorted(view, key=repr)


def _run_all(conn, statements: list[str]) -> list:
    return [_run(conn, sql) for sql in statements]


_PLANNER: tuple | None = None


def _plan_chunk(statements: list[str]) -> tuple[list[tuple[str, str | None, list[int]]], float]:
    """Plan statements offline (in a worker process): (action, SQL to execute, clear positions) each."""
    global _PLANNER
    started = time.process_time()
    if _PLANNER is None:
        policy = load_policy(POLICY)
        catalog = Catalog.from_ddl(CORPUS / "schema.sql", CORPUS / "schema_extras.sql", search_path=("public",))
        _PLANNER = (policy, catalog, policy.resolve_identity(Identity("svc-training", "service")))
    policy, catalog, me = _PLANNER
    out = []
    for sql in statements:
        decision = plan(sql, catalog=catalog, policy=policy, identity=me, purpose="ai_training")
        executed = getattr(decision.analysis, "executed_sql", None) or sql
        out.append((decision.action, executed, [c.position for c in decision.columns if not c.masked]))
    return out, time.process_time() - started


def _plan_all(statements: list[str]) -> tuple[list[tuple[str, str | None, list[int]]], float]:
    """Two worker processes (the machine class has two cores), spawned: forking a test process that may hold
    other tests' threads can deadlock. Results come back in statement order."""
    half = len(statements) // 2
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        parts = list(pool.map(_plan_chunk, [statements[:half], statements[half:]]))
    return [d for part, _ in parts for d in part], sum(cpu for _, cpu in parts)


def test_no_allowed_statement_depends_on_who_owns_a_value(twins):
    tally = collections.Counter()
    # Phase 1, offline: plan everything; keep the allowed statements as the session would execute them.
    generated = {pairing: Generator(seed, equijoins=equijoins).statements(count)
                 for pairing, (seed, count, equijoins) in PAIRINGS.items()}
    flat = [sql for sqls in generated.values() for sql in sqls]
    decisions, planned = _plan_all(flat)
    allowed: dict[str, list[tuple[str, str, list[int], bool]]] = {p: [] for p in PAIRINGS}
    pairing_of = [p for p, sqls in generated.items() for _ in sqls]
    for pairing, sql, (action, executed, clear) in zip(pairing_of, flat, decisions):
        tally["generated"] += 1
        tally[action] += 1
        if action == "allow":
            allowed[pairing].append((sql, executed, clear, " ORDER BY " in sql.rsplit(")", 1)[-1]))
    # Phase 2: run each pairing on its two databases at once (one thread per connection).
    failures: list[str] = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        for pairing, items in allowed.items():
            executed = [e for _, e, _, _ in items]
            on_a, on_b = pool.submit(_run_all, twins["a"], executed), pool.submit(_run_all, twins[pairing], executed)
            for (sql, _, clear, ordered), (rows_a, err_a), (rows_b, err_b) in zip(items, on_a.result(), on_b.result()):
                if err_a or err_b:
                    tally["failed_in_db"] += 1
                    if err_a != err_b:
                        failures.append(f"[{pairing}] fails differently (SQLSTATE {err_a} vs {err_b}): {sql}")
                    continue
                tally["compared"] += 1
                if len(rows_a) != len(rows_b):
                    failures.append(f"[{pairing}] row count differs ({len(rows_a)} vs {len(rows_b)}): {sql}")
                elif _clear_view(rows_a, clear, ordered) != _clear_view(rows_b, clear, ordered):
                    failures.append(f"[{pairing}] a clear column differs: {sql}")
    tally["failures"] = len(failures)
    summary = (f"oracle: {tally['generated']} statements, {tally['allow']} allowed ({tally['compared']} compared, "
               f"{tally['failed_in_db']} failed alike on both), {tally['deny']} denied, "
               f"{tally['needs_approval']} need approval; {len(failures)} failures; planning {planned:.0f} s CPU over 2 processes")
    print(summary)
    if os.environ.get("LG_REDTEAM_RESULTS"):
        with open(os.environ["LG_REDTEAM_RESULTS"], "a") as out:
            out.write(json.dumps({"oracle": dict(tally)}) + "\n")
    assert tally["generated"] >= 10_000
    assert not failures, summary + "\n" + "\n".join(failures[:10])


def test_the_twins_really_differ_and_keep_their_structure(twins):
    """The oracle can fail: the twins' sensitive columns differ row by row, the clear ones never."""
    q = "SELECT id, ssn, zip, plan, created_at FROM customers ORDER BY id"
    a, s, p = (twins[k].execute(q).fetchall() for k in ("a", "shuffled", "permuted"))
    assert sum(x[1] != y[1] for x, y in zip(a, s)) >= 40 and sum(x[1] != y[1] for x, y in zip(a, p)) >= 40
    assert [x[3:] for x in a] == [x[3:] for x in s] == [x[3:] for x in p]
    assert sorted(x[1] for x in a) == sorted(x[1] for x in s)          # shuffled: same values
    eq = "SELECT count(*) FROM customers c JOIN patients p ON p.birth_date = c.birth_date"
    assert twins["a"].execute(eq).fetchone() == twins["permuted"].execute(eq).fetchone()   # equality kept
    leak = "SELECT id FROM customers ORDER BY ssn"
    assert twins["a"].execute(leak).fetchall() != twins["shuffled"].execute(leak).fetchall()


# What "covering every operator class" means here, as text each class leaves in a statement.
FEATURES = {
    "set operations": [" UNION ", " UNION ALL ", " INTERSECT ", " EXCEPT "], "scalar subquery": ["(SELECT count(*)"],
    "LATERAL": ["LATERAL ("], "VALUES": ["(VALUES "], "CASE": ["CASE WHEN"], "window": [" OVER ("],
    "comparison": [" <> ", " <= ", " IS DISTINCT FROM ", " BETWEEN ", " IN ("],
    "arithmetic": [" % nullif", "(@ ", "(|/ ", "(||/ ", " ^ 2"], "bit": [" & ", " # ", "(~ ", " << 2", " >> 2"],
    "string": [" || ", "upper(", "split_part("], "pattern": [" LIKE ", " ILIKE ", " SIMILAR TO ", " ^@ "],
    "regex": [" ~ '", " ~* '", " !~ '", " !~* '", "regexp_replace("],
    "json/jsonb": [" ->> ", " #>> ", " -> ", " #- ", " ? 'a'", " ?| ", "jsonb_build_object("],
    "array": [" = ANY (", "ARRAY[", "array_append(", "cardinality("], "range": [" -|- ", "int4range(", " * int4range"],
    "date/time": [" OVERLAPS ", "interval '", "date_trunc(", "date_part("], "aggregates": [" FILTER (WHERE ", "string_agg("],
}


def test_generator_covers_every_class():
    """Deterministic, and each listed construct occurs in at least 20 of the statements the oracle runs."""
    assert Generator(1).statements(50) == Generator(1).statements(50)
    statements = [sql for seed, count, eq in PAIRINGS.values() for sql in Generator(seed, equijoins=eq).statements(count)]
    missing = {f"{cls}: {token!r}": n for cls, tokens in FEATURES.items() for token in tokens
               if (n := sum(token in sql for sql in statements)) < 20}
    assert not missing, missing
    assert sum(" JOIN customers c2 ON " in s or " JOIN patients p ON p." in s for s in statements) >= 200  # equi-joins


# --- writes: the same oracle for guarded writes (lineage_guard/write_rule.py) --------------------------------

# Expressions over customers' columns (sensitive and clear) a write may store or test, and conditions.
_WRITE_TEXT = ["ssn", "upper(email)", "reverse(zip)", "left(phone, 3)", "encode(convert_to(full_name, 'UTF8'), 'hex')",
               "birth_date::text", "CASE WHEN ssn > '5' THEN 'a' ELSE 'b' END", "coalesce(phone, plan)", "plan || 'x'",
               "'x'", "NULL", "plan"]
_WRITE_NUMBER = ["length(ssn)", "ascii(zip)", "extract(year FROM birth_date)", "length(email) * 2", "id", "7"]
_WRITE_WHERE = ["{t}ssn LIKE '9%'", "{t}zip < '99950'", "{t}birth_date < '1970-01-01'", "length({t}email) > 25",
                "position('a' IN {t}full_name) > 3", "{t}phone IS NULL", "substr({t}ssn, 5, 1) = '4'", "{t}id < 20",
                "{t}plan = 'pro'", "{t}created_at < now()"]


def write_statements() -> list[str]:
    """Every write template over every expression and condition: copies, oracles, errors, CREATE ... AS."""
    out = []
    for where in _WRITE_WHERE:
        p, cp = where.format(t=""), where.format(t="c.")
        out += [f"DELETE FROM orders WHERE customer_id IN (SELECT id FROM customers WHERE {p})",
                f"DELETE FROM orders o USING customers c WHERE c.id = o.customer_id AND {cp}",
                f"CREATE UNIQUE INDEX rt_oracle_u ON customers ((true)) WHERE {p}",
                f"UPDATE customers SET plan = 'seen' WHERE {p}"]
        for e in _WRITE_TEXT:
            out += [f"UPDATE customers SET plan = {e} WHERE {p}",
                    f"INSERT INTO customers (id, plan) SELECT id + 1000, {e} FROM customers WHERE {p}",
                    (f"INSERT INTO customers (id, plan) SELECT id, 'x' FROM customers WHERE {p} "
                    f"ON CONFLICT (id) DO UPDATE SET plan = {e}")]
        for n in _WRITE_NUMBER:
            out += [f"INSERT INTO orders (customer_id, amount) SELECT id, {n} FROM customers WHERE {p}",
                    (f"MERGE INTO orders o USING (SELECT id AS cid, {n} AS n FROM customers WHERE {p}) c "
                    "ON o.customer_id = c.cid WHEN MATCHED THEN UPDATE SET amount = c.n"),
                    f"UPDATE customers SET plan = plan WHERE id = 1 AND 1 / ({n} - 57) > 0 AND {p}"]
    for e in ("contact", "upper(callback)", "'x'", "plan"):   # through an updatable view that renames columns
        for p in ("contact LIKE 'a%'", "callback IS NULL", "id < 20", "length(contact) > 25"):
            out += [f"UPDATE v_customer_contact SET plan = {e} WHERE {p}",
                    f"DELETE FROM orders WHERE customer_id IN (SELECT id FROM v_customer_contact WHERE {p})"]
    for e in _WRITE_TEXT:
        out += [f"UPDATE customers SET plan = {e} WHERE id = 3",
                f"CREATE TABLE public.rt_oracle_t AS SELECT id, {e} AS v FROM customers"]
    return out


_OBSERVE = ["SELECT id, plan, created_at FROM customers ORDER BY id", "SELECT id, customer_id, amount FROM orders ORDER BY id"]


def _write_observed(conn, sql: str):
    """What the writer sees of one write: its row count or SQLSTATE, then every clear column it could read after."""
    psycopg = require("psycopg", "postgres")
    conn.execute("BEGIN READ WRITE")
    try:
        try:
            count = conn.execute(sql).rowcount
        except psycopg.Error as err:
            return ("error", err.sqlstate)
        seen = [conn.execute(q).fetchall() for q in _OBSERVE]
        if "rt_oracle_t" in sql:
            seen.append(conn.execute("SELECT * FROM public.rt_oracle_t ORDER BY 1").fetchall())
        return ("ok", count, seen)
    finally:
        conn.execute("ROLLBACK")


def test_no_allowed_write_depends_on_who_owns_a_value(twins, tmp_path):
    """The corpus identity, allowed to write: an allowed write's count, error and clear aftermath are the same
    on the corpus and on its shuffled twin (any difference is a sensitive value read through a write)."""
    policy_path = tmp_path / "writer.yaml"
    policy_path.write_text(POLICY.read_text() + "writes:\n  allowed_groups: [training-jobs]\n")
    policy = load_policy(policy_path)
    catalog = Catalog.from_ddl(CORPUS / "schema.sql", CORPUS / "schema_extras.sql", search_path=("public",))
    me = policy.resolve_identity(Identity("svc-training", "service"))
    statements = write_statements()
    tally, failures = collections.Counter(), []
    for sql in statements:
        decision = plan(sql, catalog=catalog, policy=policy, identity=me, purpose="ai_training")
        tally[decision.action] += 1
        if decision.action != "allow":
            continue
        if _write_observed(twins["a"], sql) != _write_observed(twins["shuffled"], sql):
            failures.append(sql)
    summary = (f"write oracle: {len(statements)} writes, {tally['allow']} allowed, {tally['deny']} denied; "
               f"{len(failures)} failures")
    print(summary)
    if os.environ.get("LG_REDTEAM_RESULTS"):
        with open(os.environ["LG_REDTEAM_RESULTS"], "a") as out:
            out.write(json.dumps({"write_oracle": {**tally, "failures": len(failures)}}) + "\n")
    assert tally["allow"] >= 60  # the writer still writes: the oracle compares something
    assert not failures, summary + "\n" + "\n".join(failures[:10])
