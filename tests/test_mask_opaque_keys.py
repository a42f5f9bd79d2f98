"""Attacks on deterministic masks, on the real database with the corpus tables.

Each attack leaked on the code before keys per (scope, classification) and lineage-bound
`shift_date` subjects (one tokenize key per scope; the subject taken from an output column
NAME); each test says what it showed there. Raw corpus values are read only to compare, never
printed.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from lineage_guard.audit import Ledger
from lineage_guard.errors import AccessDenied
from lineage_guard.identity import Identity
from lineage_guard.mask import Keyring
from lineage_guard.policy import load_policy, parse_policy
from lineage_guard.session import GovernedSession

CORPUS_POLICY = Path(__file__).parent / "corpus" / "policy.yaml"
WHO, WHY = Identity("svc-training", "service"), "ai_training"


def raw(url: str, sql: str) -> list:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute(sql).fetchall()]


def read(session: GovernedSession, sql: str) -> list:
    """The masked first column, or [] when the plan denies the statement (a denial leaks nothing)."""
    try:
        return session.read_arrow(sql).column(0).to_pylist()
    except AccessDenied:
        return []


def test_constants_pushed_through_another_columns_key_never_give_a_sensitive_token(corpus_url):
    # Old code: one key per scope, so `substr(email, 1, 0) || guess` was tokenized with the key of
    # `ssn`: every guess that was a real SSN came back as that SSN's token (a codebook).
    ssns = raw(corpus_url, "SELECT ssn FROM customers WHERE ssn IS NOT NULL")
    guesses = ", ".join(f"('{v}')" for v in ssns)
    with GovernedSession(corpus_url, CORPUS_POLICY, WHO, WHY) as s:
        tokens = set(read(s, "SELECT ssn FROM customers"))
        assert len(tokens) == len(set(ssns)) and all(t.startswith("tok_") for t in tokens)
        probe = read(s, f"SELECT substr(email, 1, 0) || g.guess AS probe FROM customers "
                        f"CROSS JOIN (VALUES {guesses}) AS g(guess)")
        assert not tokens & set(probe)
        # The same through a set operation beside the column itself: the branches are of two
        # classifications, so the column gets the non-linkable default mask.
        mixed = read(s, f"SELECT ssn FROM customers UNION ALL SELECT substr(email, 1, 0) || g.guess "
                        f"FROM customers CROSS JOIN (VALUES {guesses}) AS g(guess)")
        assert not tokens & set(mixed)


def test_tokens_join_within_a_classification_and_the_ledger_names_each_key(corpus_url):
    with GovernedSession(corpus_url, CORPUS_POLICY, WHO, WHY) as s:
        direct = s.read_arrow("SELECT id, email, ssn FROM customers ORDER BY id").to_pylist()
        joined = s.read_arrow("SELECT o.customer_id, c.email FROM orders o JOIN customers c ON c.id = o.customer_id"
                              ).to_pylist()
        names = s.plan("SELECT c.full_name, p.full_name FROM customers c, patients p").columns
    by_id = {r["id"]: r["email"] for r in direct}
    assert joined and all(by_id[r["customer_id"]] == r["email"] for r in joined)  # a join on tokens works
    assert names[0].mask == names[1].mask and names[0].mask.classification == "person_name"
    assert {r["email"] for r in direct}.isdisjoint({r["ssn"] for r in direct})
    with Ledger.open() as ledger:
        entry = next(e for e in ledger.entries() if [c["name"] for c in e["body"]["columns"]] == ["id", "email", "ssn"])
    key_ids = {c["name"]: c["key_id"] for c in entry["body"]["columns"]}
    assert key_ids["email"] != key_ids["ssn"] and all(key_ids[n].startswith("k1-t3-") for n in ("email", "ssn"))
    first_ssn = raw(corpus_url, "SELECT ssn FROM customers ORDER BY id LIMIT 1")[0]
    assert Keyring.from_env().verify_token(first_ssn, direct[0]["ssn"], "purpose:ai_training",
                                           classification="national_id") == key_ids["ssn"]


SHIFT_POLICY = CORPUS_POLICY.read_text().replace(
    "rules:\n",
    "rules:\n"
    "  - {groups: [training-jobs], classifications: [date_of_birth], action: mask,\n"
    "     mask: {method: shift_date, params: {subject: id}}}\n", 1)


@pytest.fixture
def shifted(corpus_url):
    policy = parse_policy(SHIFT_POLICY)
    with GovernedSession(corpus_url, policy, WHO, WHY) as s:
        yield s


def offsets(session, url, sql) -> list:
    """Per row, the shift applied (masked - true), or None where the date came back null."""
    true = raw(url, "SELECT birth_date FROM patients ORDER BY id")
    out = session.read_arrow(sql).to_pylist()
    return [None if r["birth_date"] is None else (r["birth_date"] - t).days for r, t in zip(out, true, strict=True)]


def test_shift_date_subject_is_bound_through_lineage(shifted, corpus_url):
    bound = offsets(shifted, corpus_url, "SELECT id, birth_date FROM patients ORDER BY id")
    assert None not in bound and len(set(bound)) > 1 and 0 not in bound  # a keyed offset per patient
    again = offsets(shifted, corpus_url, "SELECT birth_date, id AS patient FROM patients ORDER BY id")
    assert again == bound  # bound by lineage, whatever the output is called or where it sits


@pytest.mark.parametrize("sql", [
    # Old code: the subject was the output NAMED `id`, so everyone got the offset of the constant 1:
    # one known birth date gave all of them.
    "SELECT 1 AS id, birth_date FROM patients ORDER BY patients.id",
    "SELECT id + 0 AS id, birth_date FROM patients ORDER BY patients.id",          # derived, not the stored id
    "SELECT birth_date FROM patients ORDER BY id",                                 # subject not in the output
    # A self-join pairs every date with patient 1's id (old code: one offset for all).
    "SELECT p.id, q.birth_date FROM patients p CROSS JOIN patients q WHERE p.id = 1 ORDER BY q.id",
])
def test_a_subject_that_is_not_the_rows_own_stored_id_never_gives_a_shared_offset(shifted, corpus_url, sql):
    decision = shifted.plan(sql)
    date = next(c for c in decision.columns if c.name == "birth_date")
    assert date.mask.method == "null"
    assert any("masked null, not date-shifted" in r for r in decision.reasons)
    assert all(o is None for o in offsets(shifted, corpus_url, sql))


def test_keyless_hash_and_identifying_generalizations_in_the_shipped_policies():
    from lineage_guard.errors import PolicyError

    with pytest.raises(PolicyError, match=r"p.yaml:3: rules.0.mask: mask method 'hash' is keyless"):
        parse_policy("rules:\n  - action: mask\n    mask: {method: hash}\n", "p.yaml")
    assert parse_policy("rules:\n  - action: mask\n    mask: {method: hash, params: {allow_keyless: true}}\n")
    root = Path(__file__).parent.parent
    shipped = [root / "examples" / "policy.yaml", root / "lineage_guard" / "demo" / "policy.yaml",
               root / "examples" / "airflow" / "dags" / "policy.yaml", *root.glob("tests/**/policy.yaml")]
    for path in shipped:
        policy = load_policy(path)
        for rule in policy.rules:
            if rule.mask is None or rule.mask.method != "generalize":
                continue
            # A kept prefix of a condition code is the condition (B20** is HIV).
            assert not {"diagnosis", "*"} & set(rule.classifications), (path, rule.name)
