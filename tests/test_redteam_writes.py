"""Red team: recovering masked values through guarded writes, in-process and through `lineage-guard serve`.

The writer is the corpus's masked identity (svc-training, ai_training: every sensitive column comes
back tokenized, nothing clear) with the one change that the policy lets it write. Before the write
rule (`lineage_guard/write_rule.py`) a write was judged by the guardrails alone, so the opaque-values
rule never saw what a write computed: each attack below recovered values on main. Every attack
talks to the database only through the governed session (or the service); the test reads the true
values directly with psycopg, scores how many the attack got exactly right, and reports counts only.

Classes: a copy into a place nobody classified (INSERT ... SELECT, UPDATE ... FROM, ON CONFLICT DO
UPDATE, MERGE, WITH ... INSERT, CREATE TABLE AS, CREATE MATERIALIZED VIEW); the affected-row count
and the error of a write as a one-bit oracle (UPDATE / DELETE WHERE, division by zero, a partial
UNIQUE index that fails on a duplicate); chosen plaintext written into a masked column, whose tokens
then name the stored values (a whole zip / birth-date codebook in one INSERT); the same through the
service, with our client and with the ADBC Flight SQL driver.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import TEST_MASTER_KEY, require
from redteam_writer import Refused, Writer

from lineage_guard import GovernedSession, Identity
from lineage_guard.errors import AccessDenied

CORPUS = Path(__file__).parent / "corpus"
ALL = tuple(range(1, 51))
HIV_KEYS = tuple(range(1, 21))  # both answers occur among these (checked by the scorer's constant-answer rule)


def writer_policy(folder: Path) -> Path:
    """The corpus policy with one change: its masked identity may write (no approval in this environment)."""
    text = (CORPUS / "policy.yaml").read_text()
    assert "\nwrites:" not in text
    path = folder / "writer.yaml"
    path.write_text(text + "writes:\n  allowed_groups: [training-jobs]\n")
    return path


TRUTH_SQL = {
    "customers.ssn": "SELECT id, ssn FROM customers",
    "customers.email": "SELECT id, email FROM customers",
    "customers.phone": "SELECT id, phone FROM customers",
    "customers.full_name": "SELECT id, full_name FROM customers",
    "customers.zip": "SELECT id, zip FROM customers",
    "customers.birth_date": "SELECT id, birth_date FROM customers",
    "customers.born_before_1970": "SELECT id, birth_date < date '1970-01-01' FROM customers",
    "patients.hiv": "SELECT id, diagnosis LIKE 'B20%' FROM patients",
    "patients.birth_date": "SELECT id, birth_date FROM patients",
}


@pytest.fixture(scope="module")
def db(new_database):
    psycopg = require("psycopg", "postgres")
    url = new_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute((CORPUS / "schema.sql").read_text())
        conn.execute((CORPUS / "schema_extras.sql").read_text())
        # A table nobody classified, as any warehouse has (staging, scratch, audit notes).
        conn.execute("CREATE TABLE public.rt_loot (id int PRIMARY KEY, v text)")
    return url


class Truth(dict):
    """The true values, read with psycopg for scoring; its repr shows none (pytest prints fixtures on failure)."""

    def __repr__(self) -> str:
        return f"<ground truth of {len(self)} targets>"


@pytest.fixture(scope="module")
def truth(db):
    import psycopg

    with psycopg.connect(db) as conn:
        return Truth({name: dict(conn.execute(sql).fetchall()) for name, sql in TRUTH_SQL.items()})


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    return writer_policy(tmp_path_factory.mktemp("redteam-writes"))


def _scratch(db: str, *sql: str) -> None:
    """Test-side setup between attacks (not the attacker): reset the scratch table, drop what an attack made."""
    import psycopg

    with psycopg.connect(db, autocommit=True) as conn:
        for statement in sql:
            conn.execute(statement)


def _seeded(db: str) -> None:
    _scratch(db, "DELETE FROM rt_loot", "INSERT INTO rt_loot (id) SELECT g FROM generate_series(1, 50) g")


def _unhex(values: dict[int, Any]) -> dict[int, Any]:
    return {k: bytes.fromhex(v).decode() for k, v in values.items() if re.fullmatch(r"(?:[0-9a-f]{2})+", v)}


def _loot(w: Writer, session: GovernedSession | None = None, table: str = "rt_loot") -> dict[int, Any]:
    return {r["id"]: r["v"] for r in w.rows(f"SELECT id, v FROM {table}", session) if r["v"] is not None}


# --- copies into a place nobody classified ------------------------------------------------------------

def insert_select_copy(w: Writer, db: str) -> dict[int, Any]:
    _scratch(db, "DELETE FROM rt_loot")
    w.write("INSERT INTO rt_loot (id, v) SELECT id, ssn FROM customers")
    return _loot(w)


def update_from_copy(w: Writer, db: str) -> dict[int, Any]:
    _seeded(db)  # hex on the way: name/value detection does not know the copy for what it is
    w.write("UPDATE rt_loot SET v = encode(convert_to(c.email, 'UTF8'), 'hex') FROM customers c WHERE c.id = rt_loot.id")
    return _unhex(_loot(w))


def cte_insert_transformed(w: Writer, db: str) -> dict[int, Any]:
    _scratch(db, "DELETE FROM rt_loot")
    w.write("WITH s AS (SELECT id, reverse(ssn) AS r FROM customers) INSERT INTO rt_loot (id, v) SELECT id, r FROM s")
    return {k: v[::-1] for k, v in _loot(w).items()}


def on_conflict_copy(w: Writer, db: str) -> dict[int, Any]:
    _seeded(db)  # hex on the way: name/value detection does not know the copy for what it is
    w.write("INSERT INTO rt_loot (id, v) SELECT id, 'x' FROM customers ON CONFLICT (id) DO UPDATE "
            "SET v = (SELECT encode(convert_to(c.phone, 'UTF8'), 'hex') FROM customers c WHERE c.id = excluded.id)")
    return _unhex(_loot(w))


def merge_copy(w: Writer, db: str) -> dict[int, Any]:
    _seeded(db)  # hex on the way: name/value detection does not know the copy for what it is
    w.write("MERGE INTO rt_loot l USING customers c ON l.id = c.id WHEN MATCHED THEN UPDATE SET v = encode(convert_to(c.full_name, 'UTF8'), 'hex')")
    return _unhex(_loot(w))


def create_table_as(w: Writer, db: str) -> dict[int, Any]:
    _scratch(db, "DROP TABLE IF EXISTS public.rt_ctas")
    try:
        w.write("CREATE TABLE public.rt_ctas AS SELECT id, ssn AS v FROM customers")
        with w.fresh() as later:  # a later session's catalog knows the new table
            return _loot(w, later, "rt_ctas")
    finally:
        _scratch(db, "DROP TABLE IF EXISTS public.rt_ctas")


def create_materialized_view(w: Writer, db: str) -> dict[int, Any]:
    _scratch(db, "DROP MATERIALIZED VIEW IF EXISTS public.rt_mv")
    try:
        w.write("CREATE MATERIALIZED VIEW public.rt_mv AS SELECT id, email AS v FROM customers")
        with w.fresh() as later:
            return _loot(w, later, "rt_mv")
    finally:
        _scratch(db, "DROP MATERIALIZED VIEW IF EXISTS public.rt_mv")


# --- the affected-row count and the error of a write as an oracle --------------------------------------

def update_rowcount_oracle(w: Writer, db: str) -> dict[int, Any]:
    _seeded(db)
    return {k: w.write(f"UPDATE rt_loot SET v = v WHERE id = {k} AND EXISTS (SELECT 1 FROM patients p "
                       f"WHERE p.id = {k} AND p.diagnosis LIKE 'B20%')") == 1 for k in HIV_KEYS}


def delete_rowcount_oracle(w: Writer, db: str) -> dict[int, Any]:
    _seeded(db)
    return {k: w.write(f"DELETE FROM rt_loot WHERE id = {k} AND (SELECT c.birth_date < date '1970-01-01' "
                       f"FROM customers c WHERE c.id = {k})") == 1 for k in ALL}


def division_error_oracle(w: Writer, db: str) -> dict[int, Any]:
    _seeded(db)
    return {k: not w.fails(f"UPDATE rt_loot SET v = v WHERE id = 1 AND 1 / (SELECT count(*) FROM patients p "
                           f"WHERE p.id = {k} AND p.diagnosis LIKE 'B20%')::int = 1") for k in HIV_KEYS}


def partial_unique_index_oracle(w: Writer, db: str) -> dict[int, Any]:
    """A UNIQUE index on a constant fails exactly when two rows meet its predicate: row k0 and, if the guess holds, k."""
    out = {}
    try:
        for k in HIV_KEYS:
            k0 = 50  # a row whose predicate atom is only its id: it is always one of the two
            out[k] = w.fails(f"CREATE UNIQUE INDEX rt_u_{k} ON patients ((true)) "
                             f"WHERE (id = {k} AND diagnosis LIKE 'B20%') OR id = {k0}")
    finally:
        _scratch(db, *[f"DROP INDEX IF EXISTS public.rt_u_{k}" for k in HIV_KEYS])
    return out


# --- chosen plaintext written into a masked column ------------------------------------------------------

def _codebook(w: Writer, db: str, column: str, fill: str) -> dict[int, Any]:
    try:
        w.write(f"INSERT INTO customers (id, {column}) SELECT 100000 + g, {fill} FROM generate_series(0, 99999) g")
        rows = w.rows(f"SELECT id, {column} AS t FROM customers")
        plain = dict(_scratch_rows(db, f"SELECT id, {column} FROM customers WHERE id >= 100000"))
        book = {r["t"]: plain[r["id"]] for r in rows if r["id"] >= 100000}  # the attacker chose these values
        return {r["id"]: book[r["t"]] for r in rows if r["id"] < 100000 and r["t"] in book}
    finally:
        _scratch(db, "DELETE FROM customers WHERE id >= 100000")


def _scratch_rows(db: str, sql: str) -> list[tuple]:
    """What the attacker itself wrote (its own chosen values, which it knows without reading them back)."""
    import psycopg

    with psycopg.connect(db) as conn:
        return conn.execute(sql).fetchall()


def codebook_insert_zip(w: Writer, db: str) -> dict[int, Any]:
    return _codebook(w, db, "zip", "lpad(g::text, 5, '0')")


def codebook_insert_birth_date(w: Writer, db: str) -> dict[int, Any]:
    return _codebook(w, db, "birth_date", "date '1920-01-01' + (g % 36000)")


# --- a writer shapes the groups a declared cohort's floor counts ------------------------------------------

COHORT = "SELECT created_at, count(*) AS n FROM customers WHERE birth_date < '1970-01-01' GROUP BY created_at"
COHORT_KEYS = tuple(range(1, 13))


def _created(w: Writer) -> dict[int, Any]:
    return {r["id"]: r["created_at"] for r in w.rows("SELECT id, created_at FROM customers")}


def cohort_padding_by_copy(w: Writer, db: str) -> dict[int, Any]:
    """Nine copies of k's (masked) birth date beside k's own created_at: k's group passes the floor iff k is in the cohort."""
    try:
        created = _created(w)
        for k in COHORT_KEYS:
            w.write(f"INSERT INTO customers (id, birth_date, created_at) SELECT {k} * 100 + g, c.birth_date, "
                    f"c.created_at FROM customers c, generate_series(1, 9) g WHERE c.id = {k}")
        shown = {r["created_at"] for r in w.rows(COHORT)}
        return {k: created[k] in shown for k in COHORT_KEYS}
    finally:
        _scratch(db, "DELETE FROM customers WHERE id >= 100")


def cohort_rekey_differencing(w: Writer, db: str) -> dict[int, Any]:
    """Only clear columns written: every row but k re-keyed to one marker, then k too; the two counts differ by k."""
    marker = "2001-01-01 00:00:00+00"
    created = _created(w)
    out = {}
    try:
        w.write(f"UPDATE customers SET created_at = '{marker}' WHERE id > 0")
        for k in COHORT_KEYS:
            w.write(f"UPDATE customers SET created_at = '{created[k].isoformat()}' WHERE id = {k}")
            without = {r["created_at"].year: r["n"] for r in w.rows(COHORT)}.get(2001, 0)
            w.write(f"UPDATE customers SET created_at = '{marker}' WHERE id = {k}")
            with_k = {r["created_at"].year: r["n"] for r in w.rows(COHORT)}.get(2001, 0)
            out[k] = with_k - without == 1
    finally:
        _scratch(db, *[f"UPDATE customers SET created_at = '{t.isoformat()}' WHERE id = {i}" for i, t in created.items()])
    return out


def codebook_through_view(w: Writer, db: str) -> dict[int, Any]:
    """The codebook through an updatable view: v_patient_summary.dob is patients.birth_date under another name."""
    try:
        w.write("INSERT INTO v_patient_summary (id, dob) SELECT 100000 + g, date '1920-01-01' + g "
                "FROM generate_series(0, 35999) g")
        rows = w.rows("SELECT id, birth_date AS t FROM patients")
        book = {r["t"]: datetime.date(1920, 1, 1) + datetime.timedelta(days=r["id"] - 100000)
                for r in rows if r["id"] >= 100000}
        return {r["id"]: book[r["t"]] for r in rows if r["id"] < 100000 and r["t"] in book}
    finally:
        _scratch(db, "DELETE FROM patients WHERE id >= 100000")


@dataclass(frozen=True)
class Attack:
    name: str
    cls: str
    target: str
    run: Callable[[Writer, str], dict[int, Any]]
    keys: tuple[int, ...] = ALL


ATTACKS = (
    Attack("insert_select_copy", "copy into an unclassified place", "customers.ssn", insert_select_copy),
    Attack("update_from_copy", "copy into an unclassified place", "customers.email", update_from_copy),
    Attack("cte_insert_transformed", "copy into an unclassified place", "customers.ssn", cte_insert_transformed),
    Attack("on_conflict_copy", "copy into an unclassified place", "customers.phone", on_conflict_copy),
    Attack("merge_copy", "copy into an unclassified place", "customers.full_name", merge_copy),
    Attack("create_table_as", "copy into an unclassified place", "customers.ssn", create_table_as),
    Attack("create_materialized_view", "copy into an unclassified place", "customers.email",
           create_materialized_view),
    Attack("update_rowcount_oracle", "write as an oracle", "patients.hiv", update_rowcount_oracle, HIV_KEYS),
    Attack("delete_rowcount_oracle", "write as an oracle", "customers.born_before_1970", delete_rowcount_oracle),
    Attack("division_error_oracle", "write as an oracle", "patients.hiv", division_error_oracle, HIV_KEYS),
    Attack("partial_unique_index_oracle", "write as an oracle", "patients.hiv", partial_unique_index_oracle,
           HIV_KEYS),
    Attack("codebook_insert_zip", "chosen plaintext", "customers.zip", codebook_insert_zip),
    Attack("codebook_insert_birth_date", "chosen plaintext", "customers.birth_date", codebook_insert_birth_date),
    Attack("codebook_through_view", "chosen plaintext", "patients.birth_date", codebook_through_view),
    Attack("cohort_padding_by_copy", "cohort floor shaped by writes", "customers.born_before_1970",
           cohort_padding_by_copy, COHORT_KEYS),
    Attack("cohort_rekey_differencing", "cohort floor shaped by writes", "customers.born_before_1970",
           cohort_rekey_differencing, COHORT_KEYS),
)


def score(values: dict[int, Any], keys: tuple[int, ...], real: dict[int, Any]) -> int:
    """How many attacked rows the attack got exactly right; one answer for every row is no information."""
    guesses = [values[k] for k in keys if k in values]
    if len(keys) > 1 and len({repr(g) for g in guesses}) <= 1:
        return 0
    return sum(1 for k in keys if k in values and values[k] == real.get(k))


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_write_attack_recovers_nothing(attack: Attack, db, truth, policy):
    w = Writer(db, policy)
    refused = None
    try:
        values = attack.run(w, db)
    except Refused as why:
        values, refused = {}, str(why)
    finally:
        w.session.close()
    correct = score(values, attack.keys, truth[attack.target])
    assert correct == 0, (f"{attack.name} ({attack.cls}) recovered {correct} of {len(attack.keys)} values of "
                          f"{attack.target} in {w.statements} statements")
    assert refused, f"{attack.name}: not refused, though it recovered nothing"


@pytest.mark.parametrize("sql", [
    "UPDATE rt_loot SET v = 'checked' WHERE id = 3",
    "DELETE FROM rt_loot WHERE id = 4",
    "INSERT INTO rt_loot (id, v) SELECT id, plan FROM customers WHERE id = 7 ON CONFLICT (id) DO UPDATE SET v = excluded.v",
    "UPDATE orders o SET amount = 0 FROM customers c WHERE c.id = o.customer_id AND c.plan = 'free' AND o.id = 1",
    "INSERT INTO customers (id, plan, ssn, zip) VALUES (9001, 'free', NULL, DEFAULT)",
    "UPDATE customers SET ssn = NULL WHERE id = 9001",
    "INSERT INTO orders (customer_id, amount) SELECT customer_id, amount FROM orders WHERE id = 2",
    "MERGE INTO rt_loot l USING customers c ON l.id = c.id WHEN MATCHED AND c.plan = 'pro' THEN UPDATE SET v = c.plan",
])
def test_the_writer_still_writes(sql, db, policy):
    """The rule refuses what moves or tests hidden values, not writes: these run."""
    _seeded(db)
    with Writer(db, policy).session as s:
        decision = s.plan(sql)
        assert decision.action == "allow", decision.reasons
        s.execute(sql)


def test_a_masked_value_is_never_copied(db, policy):
    """Not even unchanged into its own column: a copy multiplies a person's record (cohort_padding_by_copy)."""
    with Writer(db, policy).session as s:
        decision = s.plan("INSERT INTO orders (customer_id, amount, card_number) SELECT customer_id, amount, "
                          "card_number FROM orders WHERE id = 3")
        assert decision.action == "deny" and "never stores a value masked for you" in " ".join(decision.reasons)


def test_a_writer_gets_no_declared_cohort(db, policy, tmp_path):
    """The same cohort read is honoured for the identity when it may not write, refused when it may."""
    with Writer(db, policy).session as s:
        decision = s.plan(COHORT)
        assert decision.action == "deny" and "may write" in " ".join(decision.reasons)
    with GovernedSession(db, CORPUS / "policy.yaml", Identity("svc-training", "service"), "ai_training") as reader:
        assert reader.plan(COHORT).action == "allow"


# --- the same through the service -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def served(new_database, tmp_path_factory):
    require("jwt", "service")
    from service_helpers import make_tls, seed_people, service_policy, start_server

    root = tmp_path_factory.mktemp("redteam-writes-service")
    url = new_database()
    seed_people(url)
    text = service_policy("https://issuer.invalid", "https://issuer.invalid/jwks.json")
    # As the shipped example: writes touching sensitive tables wait for a human in production only.
    text, n = re.subn(r"approvals: \[\{environments: \[default\], tables: \[public.people\]\}\]",
                      "approvals: [{environments: [production], sensitive: true}]", text)
    assert n == 1
    path = root / "policy.yaml"
    path.write_text(text)
    home = root / "home"
    home.mkdir()
    tls = make_tls(root / "tls")
    server = start_server(path, url, tls, home, TEST_MASTER_KEY)
    from lineage_guard.service.tokens import TokenStore

    token = TokenStore(home / "api_tokens.json").create("writer")
    yield server.url, tls.pem, token, url
    server.stop()


def _served_ssn(db: str) -> dict[int, str]:
    import psycopg

    with psycopg.connect(db) as conn:
        return dict(conn.execute("SELECT id, ssn FROM people").fetchall())


def _client_copy(url, pem, token) -> dict[int, Any]:
    from lineage_guard.client import connect

    with connect(url, purpose="maintenance", token=token, tls_root_certs=pem) as s:
        s.execute("INSERT INTO audit_notes (id, note) SELECT id, ssn FROM people")
        return {r["id"]: r["note"] for r in s.read_arrow("SELECT id, note FROM audit_notes").to_pylist()}


def _adbc_copy(url, pem, token) -> dict[int, Any]:
    require("adbc_driver_flightsql", "dev")
    from adbc_driver_flightsql import DatabaseOptions
    from adbc_driver_flightsql.dbapi import connect as adbc_connect

    options = {DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {token}",
               DatabaseOptions.TLS_ROOT_CERTS.value: pem.decode(),
               f"{DatabaseOptions.RPC_CALL_HEADER_PREFIX.value}x-lineage-guard-purpose": "maintenance"}
    with adbc_connect(url, db_kwargs=options) as conn, conn.cursor() as cur:
        # DB-API execute() asks for a result set (a read); a write goes through the statement's ExecuteUpdate.
        cur.adbc_statement.set_sql_query("UPDATE audit_notes SET note = p.email FROM people p "
                                         "WHERE p.id = audit_notes.id")
        cur.adbc_statement.execute_update()
        cur.execute("SELECT id, note FROM audit_notes")
        return dict(cur.fetchall())


@pytest.mark.parametrize("how", ["client", "adbc"])
def test_service_write_attack_recovers_nothing(how, served):
    """The writer reads people's email and ssn masked; a copy into audit_notes would read them back clear."""
    from lineage_guard.client import ServiceError

    url, pem, token, db = served
    _scratch(db, "DELETE FROM audit_notes", "INSERT INTO audit_notes (id) SELECT id FROM people")
    import psycopg

    with psycopg.connect(db) as conn:
        real = dict(conn.execute(f"SELECT id, {'ssn' if how == 'client' else 'email'} FROM people").fetchall())
    refused = False
    try:
        values = (_client_copy if how == "client" else _adbc_copy)(url, pem, token)
    except (ServiceError, AccessDenied) as err:
        values, refused = {}, True
        assert "masked for you" in str(err), type(err).__name__
    except Exception as err:  # the ADBC driver raises its own DB-API errors for a refused statement
        if type(err).__module__.split(".")[0] not in ("adbc_driver_manager", "adbc_driver_flightsql"):
            raise
        values, refused = {}, True
        assert "masked for you" in str(err), type(err).__name__
    correct = score(values, tuple(real), real)
    assert correct == 0, f"through the service ({how}) a write recovered {correct} of {len(real)} values"
    assert refused


def test_served_writer_reads_people_masked(served):
    """The harness is live: the writer's own reads of people come back masked (so a clear copy would be a leak)."""
    from lineage_guard.client import connect

    url, pem, token, db = served
    real = set(_served_ssn(db).values())
    with connect(url, purpose="maintenance", token=token, tls_root_certs=pem) as s:
        rows = s.read_arrow("SELECT id, ssn FROM people").to_pylist()
    assert len(rows) == len(real) and not any(r["ssn"] in real for r in rows)


assert len({a.name for a in ATTACKS}) == len(ATTACKS)
