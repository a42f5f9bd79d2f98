"""Proof after masking with real Great Expectations on really masked (and unmasked) output."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pyarrow as pa
import pytest
from conftest import OPENLINEAGE_SPEC, require
from faker import Faker

from lineage_guard.decision import ColumnDecision, Decision
from lineage_guard.errors import ConfigError, MaskingError
from lineage_guard.mask import Keyring, MaskSpec, mask_batch
from lineage_guard.sql.model import ColumnRef

pytestmark = pytest.mark.gx
require("great_expectations", "gx")
from lineage_guard.integrations.great_expectations import (
    ColumnExpectation,
    expectations_for,
    leak_regex,
    ledger_summary,
    to_openlineage_facet,
    validate_masked_output,
)

ROWS = 40
MASKS = {  # output position -> (label, spec)
    0: ("national_id", MaskSpec("tokenize", scope="purpose:ai_training")),
    1: ("email", MaskSpec("tokenize", {"prefix": "em_", "length": 16}, scope="purpose:ai_training")),
    2: ("payment_card", MaskSpec("partial", {"keep_last": 4})),
    3: ("phone", MaskSpec("redact")),
    4: ("person_name", MaskSpec("null")),
    5: ("iban", MaskSpec("drop")),
}


@pytest.fixture(scope="module")
def raw() -> pa.Table:
    f = Faker("en_US")
    f.seed_instance(8)
    return pa.table({
        "ssn": [f.ssn() for _ in range(ROWS)],
        "email": [f.email() for _ in range(ROWS)],
        "card": [f.credit_card_number() for _ in range(ROWS)],
        "phone": [f.phone_number() for _ in range(ROWS)],
        "name": [f.name() for _ in range(ROWS)],
        "iban": [f.iban() for _ in range(ROWS)],
        "amount": [float(i) for i in range(ROWS)],
    })


@pytest.fixture(scope="module")
def decision(raw) -> Decision:
    cols = []
    for pos, name in enumerate(raw.column_names):
        label, spec = MASKS.get(pos, (None, None))
        cols.append(ColumnDecision(pos, name, (ColumnRef("public", "people", name),), spec, True, (label,) if label else ()))
    return Decision("allow", (), "SELECT * FROM people", tuple(cols))


def assert_value_free(raw: pa.Table, *texts: str) -> None:
    values = {str(v) for col in raw.columns[:6] for v in col.to_pylist()}
    for text in texts:
        assert not any(v in text for v in values), "a raw value reached the report"


def test_masked_output_passes(raw, decision, master_key):
    masked = mask_batch(raw, {p: spec for p, (_, spec) in MASKS.items()}, Keyring(master_key))
    expectations = expectations_for(decision)
    assert [(e.column, e.label, e.method) for e in expectations][:2] == [("ssn", "national_id", "tokenize"),
                                                                        ("email", "email", "tokenize")]
    report = validate_masked_output(masked, expectations, ROWS)
    assert report.success, report.failures
    got = {(a.assertion, a.column) for a in report.results}
    assert got == {
        ("row_count", None), ("no_national_id_values", "ssn"), ("token_format", "ssn"), ("no_email_values", "email"),
        ("token_format", "email"), ("no_payment_card_values", "card"), ("no_phone_values", "phone"),
        ("redacted", "phone"), ("all_null", "name"), ("dropped", "iban"),
    }
    report.raise_for_failure()  # no-op
    facet = to_openlineage_facet(report)
    _validate_facet(facet)
    assert facet["assertions"][0] == {"assertion": "row_count", "success": True, "severity": "error",
                                      "expected": str(ROWS), "actual": str(ROWS)}
    assert ledger_summary(report) == {"suite": "lineage_guard_masked_output", "success": True, "checks": 10, "failed": []}
    # pandas input gives the same verdicts
    assert validate_masked_output(masked.to_pandas(), expectations, ROWS).success


def test_unmasked_output_fails_without_echoing_values(raw, decision):
    report = validate_masked_output(raw, expectations_for(decision), ROWS)
    assert not report.success
    failed = {(a.assertion, a.column): a.unexpected_count for a in report.failures}
    assert failed == {
        ("no_national_id_values", "ssn"): ROWS, ("token_format", "ssn"): ROWS, ("no_email_values", "email"): ROWS,
        ("token_format", "email"): ROWS, ("no_payment_card_values", "card"): ROWS, ("redacted", "phone"): ROWS,
        ("all_null", "name"): ROWS, ("dropped", "iban"): None,
    } | {k: v for k, v in failed.items() if k == ("no_phone_values", "phone")}
    assert failed.get(("no_phone_values", "phone"), 0) >= ROWS * 0.8   # Faker's odd formats aside, phones leak
    with pytest.raises(MaskingError) as err:
        report.raise_for_failure()
    assert "no_national_id_values on ssn (40 values)" in str(err.value)
    facet = to_openlineage_facet(report)
    _validate_facet(facet)
    assert_value_free(raw, str(err.value), json.dumps(facet), json.dumps(ledger_summary(report)),
                      json.dumps([asdict(a) for a in report.results]))


def test_row_count_and_columns(raw):
    masked = pa.table({"ssn": ["tok_" + "a" * 24] * 3})
    exp = [ColumnExpectation("ssn", "national_id", "tokenize"), ColumnExpectation("email", "email", "hash")]
    report = validate_masked_output(masked, exp, expected_rows=4)
    assert {(a.assertion, a.column, a.success) for a in report.failures} == {("row_count", None, False),
                                                                             ("column_exists", "email", False)}
    assert report.results[0].actual == "3"
    # realistic masks are not held to "no value looks like the label" (they look like it by design)
    fake_emails = pa.table({"email": ["ann@example.org", "bo@example.net"]})
    ok = validate_masked_output(fake_emails, [ColumnExpectation("email", "email", "pseudonymize")], 2)
    assert ok.success and [a.assertion for a in ok.results] == ["row_count"]
    # an explicit token format
    custom = validate_masked_output(masked, [ColumnExpectation("ssn", token_format=r"^tok_a{24}$")], 3)
    assert custom.success


def test_leak_regexes_are_the_detectors():
    import re

    email = re.compile(leak_regex("email"))
    assert email.search("ann@example.org") and not email.search("tok_4f26202ad2e56965fef32a2a")
    street = re.compile(leak_regex("street_address"))
    assert street.search("12 Baker Street") and street.search("Hauptstraße 5") and not street.search("[REDACTED]")
    assert leak_regex("date_of_birth") is None
    assert leak_regex("ssn") == leak_regex("national_id") and leak_regex("plan_tier") is None  # policy vocabularies


def _validate_facet(facet: dict) -> None:
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    spec = OPENLINEAGE_SPEC
    core = json.loads((spec / "OpenLineage.json").read_text())
    schema = json.loads((spec / "facets" / "DataQualityAssertionsDatasetFacet.json").read_text())
    registry = Registry().with_resources([(core["$id"], Resource.from_contents(core)),
                                          (schema["$id"], Resource.from_contents(schema))])
    validator = Draft202012Validator({"$ref": facet["_schemaURL"]}, registry=registry)
    errors = list(validator.iter_errors(facet))
    assert not errors, errors[0].message
    assert Path(facet["_schemaURL"].split("#")[0]).name == "DataQualityAssertionsDatasetFacet.json"


def test_max_rows_checks_a_spread_sample_and_the_full_count():
    n = 5000
    leaky = ["tok_" + "b" * 24] * n
    leaky[4321] = "123-45-6789"          # one raw value deep in the output
    table = pa.table({"ssn": leaky})
    exp = [ColumnExpectation("ssn", "national_id", "tokenize")]
    full = validate_masked_output(table, exp, n)
    assert {(a.assertion, a.unexpected_count) for a in full.failures} == {("no_national_id_values", 1), ("token_format", 1)}
    sampled = validate_masked_output(table, exp, n, max_rows=500)       # every 10th row: 4321 is not among them
    assert sampled.success and sampled.results[0].actual == str(n)
    assert not validate_masked_output(table, exp, n + 1, max_rows=500).success
    with pytest.raises(ConfigError, match="max_rows"):
        validate_masked_output(table, exp, n, max_rows=0)
