"""The demo policy loads and decides what its two identities see (planning only, no data)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lineage_guard import demo
from lineage_guard.identity import Identity
from lineage_guard.planner import plan
from lineage_guard.policy import load_policy
from lineage_guard.sql.catalog import Catalog

HERE = Path(demo.__file__).parent
POLICY = load_policy(HERE / "policy.yaml")
CATALOG = Catalog.from_ddl(HERE / "schema.sql", search_path=POLICY.search_path)  # lineage_guard_demo
TRAINING = Identity("svc-training", "service")
GREY = Identity("dr-grey", "human")


def methods(sql, identity, purpose):
    decision = plan(sql, catalog=CATALOG, policy=POLICY, identity=identity, purpose=purpose)
    assert decision.action == "allow", decision.reasons
    return {c.name: c.mask.describe() if c.mask else "clear" for c in decision.columns}


def test_training_sees_nothing_sensitive_in_clear():
    assert methods("SELECT * FROM customers", TRAINING, "ai_training") == {
        "id": "clear", "full_name": "pseudonymize(kind=name)", "email": "tokenize",
        "phone": "pseudonymize(kind=phone)", "ssn": "tokenize", "birth_date": "generalize(to=year)",
        "zip": "generalize(keep=3)", "plan": "clear", "created_at": "clear"}
    patients = methods("SELECT * FROM patients", TRAINING, "ai_training")
    assert [n for n, m in patients.items() if m == "clear"] == ["id"]
    assert patients["diagnosis"] == "tokenize" and patients["admitted_at"] == "generalize(to=month)"
    assert methods("SELECT id, amount, card_number FROM orders", TRAINING, "ai_training") == {
        "id": "clear", "amount": "clear", "card_number": "tokenize"}


def test_clinician_sees_the_record_and_last_four():
    patients = methods("SELECT * FROM patients", GREY, "treatment")
    assert set(patients.values()) == {"clear"}
    assert methods("SELECT full_name, ssn FROM customers", GREY, "treatment") == {
        "full_name": "clear", "ssn": "partial(keep_last=4)"}


@pytest.mark.parametrize("identity, purpose", [(GREY, "ai_training"), (TRAINING, "treatment")])
def test_wrong_purpose_gets_the_strongest_mask(identity, purpose):
    assert methods("SELECT mrn, id FROM patients", identity, purpose) == {"mrn": "redact", "id": "clear"}


def test_undeclared_identity_is_denied():
    decision = plan("SELECT id FROM patients", catalog=CATALOG, policy=POLICY,
                    identity=Identity("mallory", "human"), purpose="treatment")
    assert decision.action == "deny"
