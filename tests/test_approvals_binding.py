"""Approvals bind to the plan, the parameter values and the requesting run (real PostgreSQL, real CLI):
an approval of one value does not cover another, a denial blocks only its own values, another run
cannot use a run's approval, the requester cannot approve under another spelling, and a typed
parameterised write runs (it failed with 42883 and used up its approval before)."""

from __future__ import annotations

import psycopg
import pytest
from typer.testing import CliRunner

from lineage_guard.approvals import ApprovalStore, normalize_principal
from lineage_guard.cli.approvals import app
from lineage_guard.errors import AccessDenied, ApprovalRequired, LineageGuardError
from lineage_guard.identity import Identity
from lineage_guard.policy import parse_policy
from lineage_guard.session import GovernedSession

POLICY = parse_policy("""
purposes: [fulfilment]
groups: [data-eng]
identities:
  svc-etl: {kind: service, groups: [data-eng]}
  airflow:ward.discharge: {kind: service, groups: [data-eng]}
writes:
  allowed_groups: [data-eng]
  approvals:
    - {environments: [production], tables: [public.admissions]}
approvals:
  ttl_seconds: 3600
""")
UPDATE = "UPDATE admissions SET status = 'discharged' WHERE admitted_on = $1"


@pytest.fixture
def ward_url(new_database):
    url = new_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE admissions (id int primary key, admitted_on date NOT NULL, status text NOT NULL)")
        conn.execute("INSERT INTO admissions SELECT g, DATE '2026-03-01' + (g % 3), 'in' FROM generate_series(1, 9) g")
    return url


@pytest.fixture
def store_url(tmp_path):
    return f"sqlite:///{tmp_path}/approvals.sqlite"


def session(url, store_url, who="svc-etl", run=None) -> GovernedSession:
    return GovernedSession(url, POLICY, Identity(who), "fulfilment", environment="production", approval_run=run,
                           approvals=ApprovalStore.open(store_url, config=POLICY.approvals))


def cli(*args, code=0) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


def discharged(url) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT admitted_on::text, count(*) FROM admissions WHERE status = 'discharged' "
                            "GROUP BY 1 ORDER BY 1").fetchall()
    return dict(rows)


def ask(s, sql, params) -> str:
    with pytest.raises(ApprovalRequired) as asked:
        s.execute(sql, params)
    return asked.value.request_id


def test_an_approved_typed_parameterised_write_runs_and_uses_its_approval_once(ward_url, store_url):
    with session(ward_url, store_url) as s:
        req = ask(s, UPDATE, ["2026-03-02"])
        shown = ApprovalStore.open(store_url).get(req)
        assert shown.parameters["count"] == 1 and shown.parameters["types"] == ["str"]
        assert "2026-03-02" not in str(shown.to_json())  # the store never holds a value
        printed = cli("show", req, "--store", store_url)
        assert "1 value(s) (str)" in printed and "2026-03-02" not in printed
        cli("approve", req, "--as", "dana", "--store", store_url)
        assert s.execute(UPDATE, ["2026-03-02"]).rows_affected == 3  # was SQLSTATE 42883 (date = text)
        assert discharged(ward_url) == {"2026-03-02": 3}
        assert ApprovalStore.open(store_url).get(req).status == "used"
        assert ask(s, UPDATE, ["2026-03-02"]) != req  # single use


def test_an_approval_of_one_value_does_not_cover_another(ward_url, store_url):
    with session(ward_url, store_url) as s:
        req = ask(s, UPDATE, ["2026-03-02"])
        cli("approve", req, "--as", "dana", "--store", store_url)
        other = ask(s, UPDATE, ["2026-03-03"])  # same statement, other values: a request of its own
        assert other != req and discharged(ward_url) == {}
        import datetime

        typed = ask(s, UPDATE, [datetime.date(2026, 3, 2)])  # a date is not the text that was approved
        assert typed not in (req, other)
        assert s.execute(UPDATE, ["2026-03-02"]).rows_affected == 3


def test_a_denial_blocks_only_its_own_values(ward_url, store_url):
    with session(ward_url, store_url) as s:
        denied = ask(s, UPDATE, ["2026-03-02"])
        cli("deny", denied, "--as", "dana", "--note", "wrong day", "--store", store_url)
        with pytest.raises(AccessDenied, match="denied by dana"):
            s.execute(UPDATE, ["2026-03-02"])
        other = ask(s, UPDATE, ["2026-03-03"])  # other values may still be asked for
        cli("approve", other, "--as", "dana", "--store", store_url)
        assert s.execute(UPDATE, ["2026-03-03"]).rows_affected == 3
    assert discharged(ward_url) == {"2026-03-03": 3}


def test_an_approval_binds_to_the_requesting_run(ward_url, store_url):
    run_a = "airflow:ward/scheduled__2026-03-02/discharge"
    run_b = "airflow:ward/scheduled__2026-03-03/discharge"
    with session(ward_url, store_url, run=run_a) as s:
        req = ask(s, UPDATE, ["2026-03-02"])
    assert ApprovalStore.open(store_url).get(req).run == run_a
    cli("approve", req, "--as", "dana", "--store", store_url)
    with session(ward_url, store_url, run=run_b) as other:
        assert ask(other, UPDATE, ["2026-03-02"]) != req  # another run cannot use it
    with session(ward_url, store_url) as unbound:
        assert ask(unbound, UPDATE, ["2026-03-02"]) != req  # nor a run with no orchestrator run
    with session(ward_url, store_url, run=run_a) as s:
        assert s.execute(UPDATE, ["2026-03-02"]).rows_affected == 3


def test_an_approval_binds_to_the_plan(ward_url, store_url):
    strict = parse_policy("""
purposes: [fulfilment]
groups: [data-eng]
identities:
  svc-etl: {kind: service, groups: [data-eng]}
classifications: {public.admissions.status: diagnosis}
rules:
  - {classifications: [diagnosis], action: mask, mask: {method: redact}}
writes:
  allowed_groups: [data-eng]
approvals:
  ttl_seconds: 3600
""")
    read = "SELECT id, status FROM admissions WHERE admitted_on = $1"
    from lineage_guard.approvals import plan_digest

    with session(ward_url, store_url) as s:
        first = s.plan(read)
    changed = GovernedSession(ward_url, strict, Identity("svc-etl"), "fulfilment", environment="production")
    with changed:
        second = changed.plan(read)
    assert first.statement == second.statement and plan_digest(first) != plan_digest(second)
    # An approval given for the first plan covers nothing once the same statement is planned differently.
    store = ApprovalStore.open(store_url)
    source = s.source.info
    req = store.request(identity="svc-etl", statement=read, purpose="fulfilment", source=source, reasons=["r"],
                        plan=plan_digest(first))
    store.approve(req.id, "dana")
    from lineage_guard.approvals import fingerprint

    assert store.claim(fingerprint("svc-etl", read, "fulfilment", source, plan=plan_digest(second))) is None
    assert store.claim(fingerprint("svc-etl", read, "fulfilment", source, plan=plan_digest(first))) is not None


@pytest.mark.parametrize("spelling", ["service:airflow:ward.discharge", " AIRFLOW:Ward.Discharge ",
                                      "airflow:ward. discharge", "ａｉｒｆｌｏｗ:ward.discharge", "agent:service:airflow:ward.discharge"])
def test_the_requester_cannot_approve_under_another_spelling(ward_url, store_url, spelling):
    with session(ward_url, store_url, who="airflow:ward.discharge") as s:
        req = ask(s, UPDATE, ["2026-03-02"])
    out = cli("approve", req, "--as", spelling, "--store", store_url, code=1)
    assert "cannot decide it" in out
    assert ApprovalStore.open(store_url).get(req).status == "pending"
    assert normalize_principal(spelling) == normalize_principal("airflow:ward.discharge")
    cli("approve", req, "--as", "dana", "--store", store_url)


def test_a_run_that_fails_before_doing_the_work_hands_the_approval_back(ward_url, store_url):
    with session(ward_url, store_url) as s:
        bad = "UPDATE admissions SET status = NULL WHERE admitted_on = $1"  # NOT NULL: the write fails
        req = ask(s, bad, ["2026-03-02"])
        cli("approve", req, "--as", "dana", "--store", store_url)
        with pytest.raises(LineageGuardError):
            s.execute(bad, ["2026-03-02"])
        kept = ApprovalStore.open(store_url).get(req)
        assert (kept.status, kept.uses, kept.claimed_by) == ("approved", 0, None)
        with pytest.raises(LineageGuardError):  # still approved: the next attempt may use it (and fails again)
            s.execute(bad, ["2026-03-02"])
        assert ApprovalStore.open(store_url).get(req).status == "approved"
    assert discharged(ward_url) == {}


def test_a_claimed_single_use_approval_serves_one_run_at_a_time(store_url):
    from lineage_guard.run import SourceInfo

    store = ApprovalStore.open(store_url)
    source = SourceInfo("postgres", "db", 5432, "ward", "production")
    req = store.request(identity="svc-etl", statement="UPDATE t SET a = 1", purpose="p", source=source,
                        reasons=["r"], run="run-1")
    store.approve(req.id, "dana")
    assert store.claim(req.fingerprint, "run-2") is None  # bound to run-1
    first = store.claim(req.fingerprint, "run-1")
    assert first.claimed_by == "run-1" and store.claim(req.fingerprint, "run-1") is None  # taken
    store.settle(req.id, done=False)
    assert store.claim(req.fingerprint, "run-1") is not None
    assert store.settle(req.id, done=True).status == "used"
