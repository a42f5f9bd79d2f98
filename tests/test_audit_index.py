"""The ledger's search index: every filter answers exactly what a full scan of the signed entries answers,
keyset pages cover every match once, and a ledger written before the index existed gains it (SQLite, PostgreSQL)."""

from __future__ import annotations

import random
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from lineage_guard.audit import Filters, Ledger
from lineage_guard.audit.index import LedgerIndex, TimelineQuery, words
from lineage_guard.decision import ColumnDecision, Decision
from lineage_guard.identity import Identity
from lineage_guard.mask.spec import MaskSpec
from lineage_guard.run import RunRecord, SourceInfo, new_run_id
from lineage_guard.sql.model import ColumnRef

SOURCE = SourceInfo("postgres", "db.internal", 5432, "clinic", "production")
PEOPLE = [("svc-training", "service", ("ml",)), ("dr-ho", "human", ("clinicians",)), ("ana", "human", ("ml",))]
PURPOSES = ["ai_training", "treatment", "billing"]
OUTCOMES = ["success", "denied", "failed", "needs_approval"]


def run_of(rng: random.Random) -> RunRecord:
    principal, kind, groups = rng.choice(PEOPLE)
    purpose = rng.choice(PURPOSES)
    table = rng.choice(["patients", "visits"])
    masked = rng.random() < 0.5
    email = ColumnRef("public", table, "email")
    columns = (ColumnDecision(0, "id", (ColumnRef("public", table, "id"),), direct=True),
               ColumnDecision(1, "email", (email,), MaskSpec("tokenize", {}, f"purpose:{purpose}") if masked else None,
                              direct=True, labels=("email",)))
    sql = f"SELECT id, email FROM public.{table} WHERE city = 'Bergen'"
    outcome = rng.choice(OUTCOMES)
    action = {"denied": "deny", "needs_approval": "needs_approval"}.get(outcome, "allow")
    return RunRecord(new_run_id(), "lineage_guard", f"extract_{table}", Identity(principal, kind, frozenset(groups)),
                     purpose, SOURCE, Decision(action, (), sql, columns), sql, outcome=outcome,
                     rows=3 if outcome == "success" else 0, ended_at=datetime.now(UTC),
                     key_ids={1: "k1"} if masked else {}, input_schemas={f"public.{table}": [("id", "int")]})


def scan(ledger: Ledger, f: Filters, column_kind: str | None = None, word: str | None = None) -> list[int]:
    """The oracle: every entry, filtered in Python, newest first."""
    out = []
    for e in ledger.entries():
        if not f.matches(e):
            continue
        if column_kind and not any(f.column in c["sources"] and (c["masked"] == (column_kind == "masked"))
                                   for c in e["body"]["columns"]):
            continue
        if word and word not in words(e["body"]["statement"]["text"] + " " + e["body"]["who"]["principal"]
                                      + " " + e["body"]["purpose"] + " " + e["body"]["job"]["name"]):
            continue
        out.append(e["seq"])
    return out[::-1]


@pytest.fixture(params=["sqlite", "postgres"], scope="module")
def filled(request, tmp_path_factory, new_database):
    url = (str(tmp_path_factory.mktemp("idx") / "ledger.sqlite") if request.param == "sqlite" else new_database())
    ledger = Ledger.open(url)
    rng = random.Random(7)
    for _ in range(90):
        ledger.record(run_of(rng))
    yield ledger
    ledger.close()


def all_pages(index: LedgerIndex, q: TimelineQuery) -> list[int]:
    seen, cursor = [], None
    while True:
        page = index.page(TimelineQuery(**{**q.__dict__, "before": cursor, "limit": 7}))
        seen.extend(e["seq"] for e in page.entries)
        if page.next_before is None:
            return seen
        cursor = page.next_before


CASES = [
    (TimelineQuery(), Filters(), None, None),
    (TimelineQuery(identity="dr-ho"), Filters(identity="dr-ho"), None, None),
    (TimelineQuery(identity="ml"), Filters(identity="ml"), None, None),   # a group finds its members' entries
    (TimelineQuery(table="public.visits", outcome="success"), Filters(table="public.visits", outcome="success"), None, None),
    (TimelineQuery(column="public.patients.email", treatment="clear"), Filters(column="public.patients.email"), "clear", None),
    (TimelineQuery(column="public.patients.email", treatment="masked", purpose="ai_training"),
     Filters(column="public.patients.email", purpose="ai_training"), "masked", None),
    (TimelineQuery(text="extract_visits", outcome="denied"), Filters(outcome="denied"), None, "extract_visits"),
]


@pytest.mark.parametrize("q, oracle, kind, word", CASES)
def test_every_filter_matches_a_full_scan_and_pages_cover_each_match_once(filled, q, oracle, kind, word):
    index = LedgerIndex(filled)
    index.sync()
    expected = scan(filled, oracle, kind, word)
    assert expected, "the case must select something, or it proves nothing"
    assert all_pages(index, q) == expected


def test_time_range_and_a_ledger_written_before_the_index(filled):
    entries = list(filled.entries())
    middle = datetime.fromisoformat(entries[40]["recorded_at"])
    later = datetime.fromisoformat(entries[60]["recorded_at"])
    index = LedgerIndex(filled)
    assert index.sync() in (0, 90)  # built now from the entries (or already, by the test before)
    got = all_pages(index, TimelineQuery(since=middle, until=later))
    assert got == [e["seq"] for e in entries if middle <= datetime.fromisoformat(e["recorded_at"]) <= later][::-1]
    assert index.page(TimelineQuery(since=later + timedelta(days=1))).entries == []
    # new entries are picked up by the next sync, and nothing is indexed twice
    filled.record(run_of(random.Random(99)))
    assert index.sync() == 1 and index.sync() == 0
    assert index.page(TimelineQuery(limit=1)).entries[0]["seq"] == len(entries) + 1
    assert filled.verify([filled.signer.public_key]).ok  # the ledger itself is untouched


def test_an_unknown_term_answers_nothing_and_the_text_never_holds_a_literal(filled):
    index = LedgerIndex(filled)
    index.sync()
    assert index.page(TimelineQuery(identity="nobody")).entries == []
    assert index.page(TimelineQuery(text="bergen")).entries == []   # literals are redacted before the ledger


def test_sqlite_side_tables_leave_the_ledger_tables_alone(tmp_path):
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger.open(str(path))
    ledger.record(run_of(random.Random(1)))
    before = sqlite3.connect(path).execute("SELECT sql FROM sqlite_master WHERE name LIKE 'ledger_entries%' "
                                           "OR name LIKE 'ledger_head%' OR name LIKE 'ledger_keys%'").fetchall()
    LedgerIndex(ledger).sync()
    conn = sqlite3.connect(path)
    after = conn.execute("SELECT sql FROM sqlite_master WHERE name LIKE 'ledger_entries%' "
                         "OR name LIKE 'ledger_head%' OR name LIKE 'ledger_keys%'").fetchall()
    assert before == after
    assert conn.execute("SELECT count(*) FROM ledger_terms").fetchone()[0] > 5
