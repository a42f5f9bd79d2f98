"""Red-team attacks on `lineage-guard serve` found in review, each tested against the real server subprocess.

1. Prepared statements and per-identity limits: every limit that holds for a plain statement holds
   for a prepared one (rows, statement timeout, concurrent streams), and the server memory a caller
   can pin is bounded: prepared handles and unfetched tickets per identity (`open_handles`), the
   parameter rows of one prepared write (`max_parameter_rows`, at most `max_rows`), refused before
   anything is written. Before the fix a caller could create prepared statements without end and
   bind any number of parameter rows to one write.
2. Tables GetTables hides from a caller: the plan action and a denial said which columns such a
   table has (names, sources, classifications) and why it was refused; now a statement naming a
   hidden table gets the same answer as one naming a table that does not exist. The ledger keeps
   the full reasons for the auditors.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pyarrow as pa
import pytest
from conftest import TEST_MASTER_KEY, require
from pyarrow import flight
from service_helpers import make_tls, seed_people, service_policy, start_server

from lineage_guard.audit import Ledger
from lineage_guard.client import ServiceError, connect
from lineage_guard.errors import AccessDenied
from lineage_guard.service import flightsql as fs

SLOW = "SELECT count(*) AS n FROM generate_series(1, 200000) AS a CROSS JOIN generate_series(1, $1::int) AS b"


@pytest.fixture(scope="module")
def red(new_database, tmp_path_factory):
    require("jwt", "service")
    root = tmp_path_factory.mktemp("service-redteam")
    url = new_database()
    seed_people(url)
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        # A materialized view stores rows of people; `outsider` reads people through a row filter, so the
        # stored rows cannot be filtered for it: the view is denied to it, and GetTables hides it.
        conn.execute("CREATE MATERIALIZED VIEW people_mv AS SELECT id, email, ssn FROM people")
        conn.execute("CREATE TABLE batch_notes (id int PRIMARY KEY, note text NOT NULL)")
        # Outside the policy's schema: a table anyone may read and views of people outsider may not;
        # `vault` holds only such a view, so outsider is not told it exists.
        conn.execute("CREATE SCHEMA sales")
        conn.execute("CREATE TABLE sales.orders (id int, amount int)")
        conn.execute("INSERT INTO sales.orders VALUES (1, 10), (2, 20)")
        conn.execute("CREATE MATERIALIZED VIEW sales.people_copy AS SELECT id, email FROM people")
        conn.execute("CREATE SCHEMA vault")
        conn.execute("CREATE MATERIALIZED VIEW vault.people_archive AS SELECT id, ssn FROM people")
    text = service_policy("https://issuer.invalid", "https://issuer.invalid/jwks.json")
    text = text.replace("  hasty: {kind: service, groups: [training-jobs]}\n",
                        "  hasty: {kind: service, groups: [training-jobs]}\n"
                        "  outsider: {kind: service, groups: [training-jobs]}\n")
    text = text.replace("hasty: [ai_training]}", "hasty: [ai_training], outsider: [ai_training]}")
    text = text.replace("identity_limits: {limited: {concurrent_streams: 1, max_rows: 2}, hasty: {statement_timeout_s: 1}}",
                        "identity_limits: {limited: {concurrent_streams: 1, max_rows: 2, open_handles: 5}, "
                        "hasty: {statement_timeout_s: 1}, writer: {max_parameter_rows: 5}}")
    text += ("row_filters:\n"
             "  - {name: gold-only, table: public.people, identities: [outsider], predicate: \"plan = 'gold'\"}\n")
    policy = root / "policy.yaml"
    policy.write_text(text)
    home = root / "home"
    home.mkdir()
    server = start_server(policy, url, make_tls(root / "tls"), home, TEST_MASTER_KEY)
    from lineage_guard.service.tokens import TokenStore

    store = TokenStore(home / "api_tokens.json")
    tokens = {who: store.create(who) for who in ("svc-training", "limited", "hasty", "writer", "outsider")}
    tls_pem = (root / "tls" / "server.pem").read_bytes()
    yield SimpleNamespace(url=server.url, tls_pem=tls_pem, home=home, db=url, tokens=tokens)
    server.stop()


def _client(red, who: str, purpose: str = "ai_training"):
    return connect(red.url, purpose=purpose, token=red.tokens[who], tls_root_certs=red.tls_pem)


def _raw(red, who: str, purpose: str = "ai_training"):
    raw = flight.FlightClient(red.url, tls_root_certs=red.tls_pem)
    options = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {red.tokens[who]}".encode()),
                                                (b"x-lineage-guard-purpose", purpose.encode())], timeout=30)
    return raw, options


def _create(raw, options, sql: str) -> bytes:
    body = fs.pack(fs.MESSAGES.ActionCreatePreparedStatementRequest(query=sql))
    result = list(raw.do_action(flight.Action(fs.ACTION_CREATE_PREPARED_STATEMENT, body), options))
    return fs.unpack(result[0].body.to_pybytes())[1].prepared_statement_handle


def _close(raw, options, handle: bytes) -> None:
    body = fs.pack(fs.MESSAGES.ActionClosePreparedStatementRequest(prepared_statement_handle=handle))
    list(raw.do_action(flight.Action(fs.ACTION_CLOSE_PREPARED_STATEMENT, body), options))


def _entries(red) -> list[dict]:
    with Ledger.open(f"sqlite:///{red.home / 'ledger.sqlite'}", create=False) as led:
        return [e["body"] for e in led.entries()]


# -- 1. prepared statements obey every per-identity limit --------------------------------------------


def test_a_prepared_statement_obeys_the_row_limit_and_the_statement_timeout(red):
    with _client(red, "limited") as s:
        assert s.read_arrow("SELECT id FROM people WHERE id <= $1", [2]).num_rows == 2
        with pytest.raises(ServiceError, match="max_rows"):
            s.read_arrow("SELECT id FROM people WHERE id >= $1", [1])     # prepared: 3 rows, limit 2
    with _client(red, "hasty") as s, pytest.raises(ServiceError, match="57014"):
        s.read_arrow(SLOW, [200000])                                         # prepared: a 1 s timeout


def test_a_prepared_statement_holds_one_of_the_identitys_stream_slots(red):
    with _client(red, "limited") as s, s.stream("SELECT id FROM people WHERE id = $1", [1]):
        with pytest.raises(ServiceError, match="concurrent_streams"):
            s.read_arrow("SELECT id FROM people WHERE id = $1", [2])


def test_prepared_handles_per_identity_are_bounded(red):
    """Attack: create prepared statements without end (each is server memory, kept until closed)."""
    raw, options = _raw(red, "limited")
    handles = []
    try:
        with pytest.raises(flight.FlightUnavailableError, match="open_handles"):
            for _ in range(50):
                handles.append(_create(raw, options, "SELECT id FROM people WHERE id = $1 " + "/* pad */" * 1000))
        assert len(handles) == 5                 # the identity's limit
        _close(raw, options, handles.pop())      # closing one frees its place
        handles.append(_create(raw, options, "SELECT 1 AS one"))
        # Another identity is not affected by this one's handles.
        other, other_options = _raw(red, "svc-training")
        _close(other, other_options, _create(other, other_options, "SELECT 1 AS one"))
        other.close()
    finally:
        for handle in handles:
            _close(raw, options, handle)
        raw.close()


def test_unfetched_tickets_count_as_open_handles(red):
    raw, options = _raw(red, "limited")
    try:
        infos = []
        with pytest.raises(flight.FlightUnavailableError, match="open_handles"):
            for _ in range(20):   # metadata results wait in the server for their DoGet
                command = fs.pack(fs.MESSAGES.CommandGetTables(include_schema=True))
                infos.append(raw.get_flight_info(flight.FlightDescriptor.for_command(command), options))
        assert len(infos) == 5
        for info in infos:        # fetching them frees the places
            raw.do_get(info.endpoints[0].ticket, options).read_all()
        command = fs.pack(fs.MESSAGES.CommandGetTables())
        info = raw.get_flight_info(flight.FlightDescriptor.for_command(command), options)
        assert raw.do_get(info.endpoints[0].ticket, options).read_all().num_rows >= 1
    finally:
        raw.close()


def _notes(red) -> int:
    import psycopg

    with psycopg.connect(red.db) as conn:
        return conn.execute("SELECT count(*) FROM audit_notes WHERE note LIKE 'bulk-%'").fetchone()[0]


def _open_put(raw, options, command: bytes, batch: pa.RecordBatch):
    return raw.do_put(flight.FlightDescriptor.for_command(command), batch.schema, options)


def _bind_parameters(writer, reader, batch: pa.RecordBatch) -> None:
    """Send one batch of parameters to a prepared statement the raw Flight way (the server answers at once)."""
    writer.write_batch(batch)
    writer.done_writing()
    reader.read()
    writer.close()


def test_a_prepared_write_binds_at_most_max_parameter_rows_and_writes_nothing_past_it(red):
    """Attack: one prepared write with any number of parameter rows (each row one more write)."""
    raw, options = _raw(red, "writer", purpose="maintenance")
    handle = _create(raw, options, "INSERT INTO audit_notes VALUES ($1, $2)")
    try:
        command = fs.pack(fs.MESSAGES.CommandPreparedStatementUpdate(prepared_statement_handle=handle))
        batch = pa.record_batch({"p1": pa.array(range(100, 150), pa.int32()),
                                 "p2": pa.array([f"bulk-{i}" for i in range(50)])})
        writer, reader = _open_put(raw, options, command, batch)
        with pytest.raises(flight.FlightServerError, match="max_parameter_rows"):
            _bind_parameters(writer, reader, batch)
    finally:
        _close(raw, options, handle)
        raw.close()
    assert _notes(red) == 0                      # refused before any row was written
    with _client(red, "writer", purpose="maintenance") as s:   # within the limit it works
        assert s.execute("INSERT INTO audit_notes VALUES ($1, $2)", [200, "bulk-ok"]).rows_affected == 1


def _batch_notes(red) -> list[tuple]:
    import psycopg

    with psycopg.connect(red.db) as conn:
        return conn.execute("SELECT id, note FROM batch_notes ORDER BY id").fetchall()


def _batch_entries(red) -> list[dict]:
    return [e for e in _entries(red) if "batch_notes" in e["statement"]["text"]]


def test_a_prepared_write_with_several_parameter_rows_is_all_or_nothing(red):
    """Defect: each parameter row of a prepared write ran as its own transaction, so a batch whose row 2
    violates the primary key left row 1 written (and a success entry for it). Now the batch is one
    transaction with one ledger entry: nothing written and a failed entry, or every row and their count."""
    raw, options = _raw(red, "writer", purpose="maintenance")
    handle = _create(raw, options, "INSERT INTO batch_notes VALUES ($1, $2)")
    command = fs.pack(fs.MESSAGES.CommandPreparedStatementUpdate(prepared_statement_handle=handle))
    before = len(_batch_entries(red))
    try:
        clash = pa.record_batch({"p1": pa.array([1, 1, 2], pa.int32()), "p2": pa.array(["one", "again", "two"])})
        writer, reader = _open_put(raw, options, command, clash)
        with pytest.raises(flight.FlightError, match="23505"):
            _bind_parameters(writer, reader, clash)
        assert _batch_notes(red) == []                           # the old code left (1, 'one') behind
        failed = _batch_entries(red)[before:]   # the intent, recorded before the batch ran, then the failure
        assert [(e["outcome"], e["rows"]) for e in failed] == [("open", 0), ("failed", 0)]
        assert failed[1]["run_id"] == failed[0]["run_id"] and failed[1]["parameter_rows"] == 3
        good = pa.record_batch({"p1": pa.array([1, 2, 3], pa.int32()), "p2": pa.array(["one", "two", "three"])})
        writer, reader = _open_put(raw, options, command, good)
        writer.write_batch(good)
        writer.done_writing()
        result = fs.MESSAGES.DoPutUpdateResult.FromString(reader.read().to_pybytes())
        writer.close()
        assert result.record_count == 3
    finally:
        _close(raw, options, handle)
        raw.close()
    assert _batch_notes(red) == [(1, "one"), (2, "two"), (3, "three")]
    done = _batch_entries(red)[before + 2:]
    assert [(e["outcome"], e["rows"], e["parameter_rows"]) for e in done] == [("open", 0, 3), ("success", 3, 3)]


def test_a_prepared_query_binds_one_parameter_row(red):
    raw, options = _raw(red, "svc-training")
    handle = _create(raw, options, "SELECT id FROM people WHERE id = $1")
    try:
        command = fs.pack(fs.MESSAGES.CommandPreparedStatementQuery(prepared_statement_handle=handle))
        batch = pa.record_batch({"p1": pa.array(range(100_000), pa.int32())})
        writer, reader = _open_put(raw, options, command, batch)
        with pytest.raises(flight.FlightError, match="one parameter row"):
            _bind_parameters(writer, reader, batch)
    finally:
        _close(raw, options, handle)
        raw.close()


# -- 2. nothing about tables GetTables hides ------------------------------------------------------


def _tables(red, who: str) -> list[str]:
    raw, options = _raw(red, who)
    try:
        info = raw.get_flight_info(flight.FlightDescriptor.for_command(fs.pack(fs.MESSAGES.CommandGetTables())),
                                   options)
        return sorted(raw.do_get(info.endpoints[0].ticket, options).read_all().column("table_name").to_pylist())
    finally:
        raw.close()


def test_plans_and_denials_say_nothing_about_a_table_get_tables_hides(red):
    assert "people_mv" in _tables(red, "svc-training")
    assert "people_mv" not in _tables(red, "outsider")
    with _client(red, "outsider") as s:
        hidden = s.plan("SELECT * FROM people_mv")
        absent = s.plan("SELECT * FROM no_such_table")
        assert hidden.action == "deny" and hidden.columns == () and absent.columns == ()
        assert hidden.reasons == absent.reasons
        # No column oracle: an existing and a made-up column of the hidden table get the same answer.
        assert s.plan("SELECT ssn FROM people_mv").reasons == s.plan("SELECT made_up FROM people_mv").reasons
        assert s.plan("SELECT p.id FROM people p JOIN people_mv m ON m.id = p.id").columns == ()
        with pytest.raises(AccessDenied) as refused:
            s.read_arrow("SELECT id, email, ssn FROM people_mv")
        with pytest.raises(AccessDenied) as refused_absent:
            s.read_arrow("SELECT id, email, ssn FROM no_such_table")
        with pytest.raises(AccessDenied) as refused_prepared:
            s.read_arrow("SELECT email FROM people_mv WHERE id = $1", [1])
        # What it may read keeps its full plan.
        visible = s.plan("SELECT id, email FROM people")
        assert visible.action == "allow" and [c.name for c in visible.columns] == ["id", "email"]
    said = " ".join([*hidden.reasons, *refused.value.reasons, *refused_prepared.value.reasons])
    for word in ("email", "ssn", "materialized", "row filter", "public.people"):
        assert word not in said
    assert refused.value.reasons == refused_absent.value.reasons == refused_prepared.value.reasons
    # The auditors' ledger entry keeps the real reason.
    denied = [e for e in _entries(red) if e["outcome"] == "denied" and e["who"]["principal"] == "outsider"]
    assert any("materialized view" in " ".join(e["decision"]["reasons"]) for e in denied)
    # A caller that may read the view sees its plan as before.
    with _client(red, "svc-training") as s:
        plan = s.plan("SELECT * FROM people_mv")
        assert plan.action == "allow" and [c.name for c in plan.columns] == ["id", "email", "ssn"]


OUTSIDER_READS = [("public", "audit_notes"), ("public", "batch_notes"), ("public", "people"), ("sales", "orders")]
HIDDEN_FROM_OUTSIDER = [("public", "people_mv"), ("sales", "people_copy"), ("vault", "people_archive")]


def test_get_tables_lists_exactly_what_the_caller_may_read_in_every_schema(red):
    """Tables outside the policy's schema were never listed, though the caller may read them by name."""
    with _client(red, "outsider") as s:
        assert s.read_arrow("SELECT id, amount FROM sales.orders ORDER BY id").num_rows == 2
        assert s.tables() == OUTSIDER_READS
        assert s.schemas() == ["public", "sales"]               # vault holds nothing outsider may read
        assert s.tables("sal%") == [("sales", "orders")]
        assert s.tables("vault") == []
        for schema, name in HIDDEN_FROM_OUTSIDER:               # what is not listed is not readable
            assert s.plan(f"SELECT * FROM {schema}.{name}").action == "deny"
    with _client(red, "svc-training") as s:
        assert s.tables() == sorted(OUTSIDER_READS + HIDDEN_FROM_OUTSIDER)
        assert s.schemas() == ["public", "sales", "vault"]
        assert s.plan("SELECT * FROM vault.people_archive").action == "allow"


@pytest.mark.filterwarnings("ignore:Cannot disable autocommit")   # Flight SQL has no transactions here
def test_adbc_get_objects_shows_the_same_tables_with_their_columns(red):
    require("adbc_driver_flightsql", "dev")
    from adbc_driver_flightsql import DatabaseOptions
    from adbc_driver_flightsql.dbapi import connect as adbc_connect

    options = {DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {red.tokens['outsider']}",
               DatabaseOptions.TLS_ROOT_CERTS.value: red.tls_pem.decode(),
               f"{DatabaseOptions.RPC_CALL_HEADER_PREFIX.value}x-lineage-guard-purpose": "ai_training"}
    with adbc_connect(red.url, db_kwargs=options) as conn:
        objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
        orders = conn.adbc_get_table_schema("orders", db_schema_filter="sales")
    listed = sorted((s["db_schema_name"], t["table_name"]) for c in objects for s in c["catalog_db_schemas"]
                    for t in s["db_schema_tables"])
    assert listed == OUTSIDER_READS
    assert sorted(s["db_schema_name"] for c in objects for s in c["catalog_db_schemas"]) == ["public", "sales"]
    columns = {(s["db_schema_name"], t["table_name"]): [col["column_name"] for col in t["table_columns"]]
               for c in objects for s in c["catalog_db_schemas"] for t in s["db_schema_tables"]}
    assert columns[("sales", "orders")] == ["id", "amount"]
    assert orders.names == ["id", "amount"]


def test_concurrent_prepared_reads_keep_their_own_parameters(red):
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            with _client(red, "svc-training") as s:
                for _ in range(3):
                    assert s.read_arrow("SELECT id FROM people WHERE id = $1", [1 + i % 3]).column("id").to_pylist() == [1 + i % 3]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
