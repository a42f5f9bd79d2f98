"""Flight DoExchange against the real TLS server: lake Parquet files masked as a governed table's columns.

The client holds no key: the server masks the file's batches under the policy and keys of the table the
caller names (the same tokens as a database read of that table), records one ledger entry and one
OpenLineage run (input: the file, output: the masked file). Attacks: an identity not granted the table,
a purpose not allowed, a client lying about a column, an unmapped sensitive column.
"""

from __future__ import annotations

import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import require
from lineage_check import assert_valid_events
from service_helpers import people_service, server_key

from lineage_guard.audit import Ledger
from lineage_guard.client import ServiceError, connect
from lineage_guard.errors import AccessDenied, ConfigError

GRANTS = """  exchange:
    - {identity: svc-training, tables: [public.people], purposes: [ai_training]}
    - {identity: dr-grey, tables: [public.people], purposes: [ai_training]}
"""
EXTRA_ROWS = 60


@pytest.fixture(scope="module")
def svc(new_database, tmp_path_factory):
    require("jwt", "service")
    with people_service(new_database(), tmp_path_factory.mktemp("exchange"), rows=3 + EXTRA_ROWS,
                        extra_policy=GRANTS) as world:
        yield world


def client(svc, who: str = "svc-training", purpose: str = "ai_training", token: str | None = None):
    return connect(svc.url, purpose=purpose, token=token or svc.tokens[who], tls_root_certs=svc.tls.pem)


def entries(svc) -> list[dict]:
    with Ledger.open(f"sqlite:///{svc.home / 'ledger.sqlite'}", create=False) as led:
        return [e["body"] for e in led.entries()]


def _lake_people(svc, path) -> pa.Table:
    """The people table as a lake job would have it: a Parquet file, written in two row groups."""
    import psycopg

    with psycopg.connect(svc.db) as conn:
        rows = conn.execute("SELECT id, full_name, email, ssn, plan FROM people ORDER BY id").fetchall()
    table = pa.table({name: [r[i] for r in rows] for i, name in enumerate(["id", "full_name", "email", "ssn", "plan"])},
                     schema=pa.schema([("id", pa.int32()), ("full_name", pa.string()), ("email", pa.string()),
                                       ("ssn", pa.string()), ("plan", pa.string())]))
    pq.write_table(table, path, row_group_size=25)
    return table


def test_a_lake_file_is_masked_with_the_tables_tokens_and_recorded(svc, tmp_path):
    src, dst = tmp_path / "lake" / "people.parquet", tmp_path / "masked" / "people.parquet"
    src.parent.mkdir()
    raw = _lake_people(svc, src)
    with client(svc) as s:
        result = s.mask_file(src, dst, table="people")
        from_db = s.read_arrow("SELECT id, full_name, email, ssn, plan FROM people ORDER BY id")
    masked = pq.read_table(dst)
    assert masked.num_rows == raw.num_rows == EXTRA_ROWS + 3 == result.rows
    assert set(result.masked_columns) == {"full_name", "email", "ssn"}
    for name in ("id", "full_name", "email", "ssn", "plan"):   # the same values as a governed read of the table
        assert masked.column(name).to_pylist() == from_db.column(name).to_pylist(), name
    cells = {str(v) for col in masked.columns for v in col.to_pylist()}
    raw_sensitive = {str(v) for name in ("full_name", "email", "ssn") for v in raw.column(name).to_pylist()}
    assert not cells & raw_sensitive
    footer = pq.read_metadata(dst).metadata
    assert footer[b"lineage_guard.receipt_id"] == result.receipt_id.encode()
    assert not [p for p in dst.parent.iterdir() if p.name.endswith(".lg-tmp")]
    with Ledger.open(f"sqlite:///{svc.home / 'ledger.sqlite'}", create=False) as led:
        check = led.verify_receipt(result.receipt_id, server_key(led))
        assert check.ok, check
        body = check.entry["body"]
    assert body["outcome"] == "success" and body["rows"] == raw.num_rows
    assert body["exchange"] == {"input": src.as_uri(), "governed_as": "public.people", "unmapped": []}
    assert body["sink"]["uri"] == dst.as_uri()
    assert {c["name"]: c["masked"] for c in body["columns"]} == {"id": False, "full_name": True, "email": True,
                                                                 "ssn": True, "plan": False}
    from lineage_guard.lineage.outbox import Outbox

    events = Outbox(svc.home / "outbox.sqlite").events(run_id=result.run_id)
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    assert_valid_events(events)
    done = events[-1]
    assert [(d["namespace"], d["name"]) for d in done["inputs"]] == [("file", str(src))]
    assert [(d["namespace"], d["name"]) for d in done["outputs"]] == [("file", str(dst))]
    fields = done["outputs"][0]["facets"]["columnLineage"]["fields"]
    assert fields["email"]["inputFields"][0]["name"] == str(src) and fields["email"]["inputFields"][0]["field"] == "email"
    text = str(events) + str(body)
    assert not any(v in text for v in raw_sensitive)


def test_an_identity_not_granted_the_table_is_refused_and_recorded(svc, tmp_path):
    src = tmp_path / "people.parquet"
    _lake_people(svc, src)
    with client(svc, "limited") as s, pytest.raises(AccessDenied) as refused:
        s.mask_file(src, tmp_path / "out.parquet", table="people")
    assert "service.exchange" in str(refused.value)
    assert not (tmp_path / "out.parquet").exists()
    denied = [e for e in entries(svc) if e["who"]["principal"] == "limited" and e.get("exchange")]
    assert denied and denied[-1]["outcome"] == "denied" and denied[-1]["rows"] == 0


def test_a_purpose_not_allowed_is_refused(svc, tmp_path):
    src = tmp_path / "people.parquet"
    _lake_people(svc, src)
    # The service does not let svc-training ask for `treatment` at all...
    with client(svc, purpose="treatment") as s, pytest.raises(ServiceError, match="purpose"):
        s.mask_file(src, tmp_path / "out.parquet", table="people")
    # ...and dr-grey may ask for `treatment` (clear names for clinicians) but is granted exchange only for
    # ai_training: masking lake data for treatment would hand out the clinician's clear view of a file.
    grey = svc.issuer.token("user:grey@example.org", email_verified=True)
    with client(svc, purpose="treatment", token=grey) as s, pytest.raises(AccessDenied, match="service.exchange"):
        s.mask_file(src, tmp_path / "out.parquet", table="people")
    assert not (tmp_path / "out.parquet").exists()


def _ssns(n: int) -> list[str]:
    r = random.Random(7)
    return [f"{r.randint(1, 665):03d}-{r.randint(1, 99):02d}-{r.randint(1, 9999):04d}" for _ in range(n)]


def test_a_client_lying_about_a_column_is_refused(svc, tmp_path):
    """Social security numbers sent as `plan` (a clear column) would come back clear in a 'masked' file."""
    n = 50
    src = tmp_path / "lie.parquet"
    pq.write_table(pa.table({"id": list(range(n)), "plan": _ssns(n)}), src)
    with client(svc) as s, pytest.raises(AccessDenied, match="'plan' would leave clear .* national_id"):
        s.mask_file(src, tmp_path / "out.parquet", table="people")
    assert not (tmp_path / "out.parquet").exists()
    # The same values mapped to the column they are (ssn) are masked as that column.
    with client(svc) as s:
        s.mask_file(src, tmp_path / "out.parquet", table="people", columns={"plan": "ssn"})
    out = pq.read_table(tmp_path / "out.parquet").column("plan").to_pylist()
    assert out[0].startswith("***") and not set(out) & set(_ssns(n))


def test_an_unmapped_sensitive_column_is_refused_and_a_plain_one_passes(svc, tmp_path):
    n = 50
    emails = [f"person{i}@example.org" for i in range(n)]
    src = tmp_path / "extra.parquet"
    pq.write_table(pa.table({"id": list(range(n)), "contact": emails, "score": [i % 7 for i in range(n)]}), src)
    with client(svc) as s, pytest.raises(AccessDenied, match="'contact' would leave clear .* email .* not a column"):
        s.mask_file(src, tmp_path / "out.parquet", table="people")
    assert not (tmp_path / "out.parquet").exists()
    failed = [e for e in entries(svc) if e.get("exchange", {}).get("unmapped") == ["contact", "score"]]
    assert failed[-1]["outcome"] == "failed" and failed[-1]["delivered_rows"] == 0
    assert not any(v in str(failed) for v in emails)
    with client(svc) as s:
        s.mask_file(src, tmp_path / "out.parquet", table="people", columns={"contact": "email"})
    out = pq.read_table(tmp_path / "out.parquet")
    assert all(v.startswith("tok_") for v in out.column("contact").to_pylist())
    assert out.column("score").to_pylist() == [i % 7 for i in range(n)]   # not sensitive, not the table's: clear


def test_bad_requests_say_what_to_fix(svc, tmp_path):
    src = tmp_path / "people.parquet"
    _lake_people(svc, src)
    with client(svc) as s:
        with pytest.raises(ServiceError, match="maps 'email' to 'mail'"):
            s.mask_file(src, tmp_path / "out.parquet", table="people", columns={"email": "mail"})
        with pytest.raises(ServiceError, match="'columns' names"):
            s.mask_file(src, tmp_path / "out.parquet", table="people", columns={"nope": "email"})
        with pytest.raises(ConfigError, match="cannot read the Parquet file"):
            s.mask_file(tmp_path / "missing.parquet", tmp_path / "out.parquet", table="people")
    assert not (tmp_path / "out.parquet").exists()
