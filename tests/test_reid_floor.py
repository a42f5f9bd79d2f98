"""A purpose's re-identification floor (purpose_requirements): k-anonymity / l-diversity measured on the masked
output before the sink is committed, against a hand-computed table and on the real database; below the floor the
extract fails with nothing written, a ledger entry, and a value-free error naming the columns and class sizes."""

from __future__ import annotations

import datetime as dt
import json
import random

import polars as pl
import pyarrow as pa
import pytest
from conftest import TEST_MASTER_KEY
from typer.testing import CliRunner

from lineage_guard.attest.floor import FloorCheck
from lineage_guard.audit import Ledger
from lineage_guard.audit.signing import write_key_file
from lineage_guard.cli import app
from lineage_guard.errors import AccessDenied, PolicyError, ReidentificationRisk
from lineage_guard.identity import Identity
from lineage_guard.policy import parse_policy
from lineage_guard.policy.purposes import DiversityFloor, PurposeRequirement
from lineage_guard.session import GovernedSession

# -- the measure itself, against classes computed by hand -----------------------------------------------------

# classes over (zip3, year, sex), counted by hand:
#   (021**, 1980, f): rows 0,1,2      -> 3 rows, people {a, b}   dx {flu, cold}
#   (021**, 1975, m): rows 3,4        -> 2 rows, people {c}      dx {flu}
#   (946**, 1990, f): rows 5,6,7,8    -> 4 rows, people {d,e,f,g} dx {flu, cold, gout}
HAND = pa.record_batch({
    "zip": ["021**", "021**", "021**", "021**", "021**", "946**", "946**", "946**", "946**"],
    "year": [1980, 1980, 1980, 1975, 1975, 1990, 1990, 1990, 1990],
    "sex": ["f", "f", "f", "m", "m", "f", "f", "f", "f"],
    "dx": ["flu", "cold", "flu", "flu", "flu", "flu", "cold", "gout", "gout"],
    "who": ["a", "a", "b", "c", "c", "d", "e", "f", "g"],
})
QUASI = [(0, "zip"), (1, "year"), (2, "sex")]


def _check(req: PurposeRequirement, batches=(HAND,), **kw) -> tuple[dict, ReidentificationRisk | None]:
    check = FloorCheck(req, "ai_training", quasi=kw.pop("quasi", QUASI), **kw)
    for batch in batches:
        check.observe(batch)
    return check.measure()


def test_k_and_l_match_the_hand_computed_classes():
    summary, error = _check(PurposeRequirement(k_anonymity=2, l_diversity=DiversityFloor(attribute="diagnosis", l=2)),
                            sensitive=[(3, "dx")])
    assert (summary["k"], summary["l"], summary["classes"], summary["rows"]) == (2, 1, 3, 9)
    assert summary["smallest_classes"] == [{"size": 2, "classes": 1}, {"size": 3, "classes": 1},
                                           {"size": 4, "classes": 1}]
    assert "k-anonymity" not in str(error) and "l-diversity" in str(error)   # k = 2 holds; l = 1 does not
    # split across batches: the same classes
    again, _ = _check(PurposeRequirement(k_anonymity=2), batches=(HAND.slice(0, 4), HAND.slice(4)))
    assert (again["k"], again["classes"]) == (2, 3)


def test_below_k_names_the_columns_and_sizes_never_a_value():
    summary, error = _check(PurposeRequirement(k_anonymity=4))
    assert isinstance(error, ReidentificationRisk) and isinstance(error, AccessDenied)
    text = str(error)
    assert "k-anonymity >= 4 over (zip, year, sex)" in text and "k = 2" in text
    assert "2 of its 3 combinations of these columns are too rare (1 of 2 row(s), 1 of 3 row(s); 5 of 9 rows)" in text
    assert (summary["classes_below_k"], summary["rows_below_k"]) == (2, 5)
    assert not any(v in text + json.dumps(summary) for v in ("021", "946", "1980", "1975", "1990", "flu", "gout"))


def test_l_diversity_floor():
    summary, error = _check(PurposeRequirement(l_diversity=DiversityFloor(attribute="diagnosis", l=2)),
                            sensitive=[(3, "dx")])
    assert summary["l"] == 1                        # (021**, 1975, m) holds only one diagnosis
    assert "l-diversity >= 2 of dx (diagnosis)" in str(error) and "l = 1" in str(error)
    _, fine = _check(PurposeRequirement(l_diversity=DiversityFloor(attribute="diagnosis", l=2)),
                     sensitive=[(3, "dx")], quasi=[(0, "zip")])   # 021**: {flu, cold}; 946**: {flu, cold, gout}
    assert fine is None


def test_a_subject_counts_people_not_rows():
    rows, _ = _check(PurposeRequirement(k_anonymity=2))
    people, error = _check(PurposeRequirement(k_anonymity=2, subject="medical_record_number"), subject=(4, "who"))
    assert rows["k"] == 2 and people["k"] == 1    # (021**, 1975, m) is two rows of one person
    assert people["counted"] == "people" and "counted in people" in str(error) and "1 of 1 person(s)" in str(error)


def test_no_quasi_identifier_left_or_no_rows_holds():
    assert _check(PurposeRequirement(k_anonymity=50), quasi=[])[1] is None
    assert _check(PurposeRequirement(k_anonymity=50), batches=(HAND.slice(0, 0),))[1] is None


# -- the policy ----------------------------------------------------------------------------------------------------

BASE = """version: 1
identities:
  svc-training: {kind: service, groups: [training-jobs]}
groups: [training-jobs]
purposes: [ai_training]
classifications:
  public.floor_patients.mrn: medical_record_number
  public.floor_patients.zip: postal_code
  public.floor_patients.birth_date: date_of_birth
  public.floor_patients.sex: sex
  public.floor_patients.diagnosis: diagnosis
"""


def test_policy_names_are_checked_with_file_and_line():
    text = BASE + """quasi_identifiers: [postal_code, date_of_brith, sex]
purpose_requirements:
  ai_trainig:
    k_anonymity: 5
  ai_training:
    k_anonymity: 5
    l_diversity: {attribute: diagnosys, l: 2}
"""
    with pytest.raises(PolicyError) as err:
        parse_policy(text, "p.yaml")
    msg = str(err.value)
    assert "p.yaml:12: quasi_identifiers: unknown classification label 'date_of_brith' (did you mean 'date_of_birth'?)" in msg
    assert "p.yaml:14: purpose_requirements.ai_trainig: unknown purpose 'ai_trainig'" in msg
    assert "p.yaml:18: purpose_requirements.ai_training.l_diversity.attribute: unknown classification label 'diagnosys'" in msg


@pytest.mark.parametrize("extra, wanted", [
    ("purpose_requirements: {ai_training: {k_anonymity: 5}}\n", "no classification is a quasi-identifier"),
    ("quasi_identifiers: [sex]\npurpose_requirements: {ai_training: {subject: medical_record_number}}\n",
     "set `k_anonymity: K` too"),
    ("quasi_identifiers: [sex]\npurpose_requirements: {ai_training: {k_anonymity: 1}}\n", "greater than or equal to 2"),
    ("quasi_identifiers: [sex, diagnosis]\npurpose_requirements: {ai_training: {l_diversity: {attribute: diagnosis, l: 2}}}\n",
     "also a quasi-identifier"),
])
def test_policy_shape_errors(extra, wanted):
    with pytest.raises(PolicyError, match=wanted):
        parse_policy(BASE + extra, "p.yaml")


def test_check_policy_cli_reports_the_line(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(BASE + "quasi_identifiers: [postal_cod]\n")
    done = CliRunner().invoke(app, ["check-policy", str(path)])
    assert done.exit_code != 0
    assert f"{path}:12: quasi_identifiers: unknown classification label 'postal_cod'" in done.output


# -- on the real database ------------------------------------------------------------------------------------------

REQUIRE = """quasi_identifiers: [postal_code, date_of_birth, sex]
purpose_requirements:
  ai_training:
    no_sensitive_clear: true
    k_anonymity: 5
    l_diversity: {{attribute: diagnosis, l: 2}}
rules:
  - {{classifications: [medical_record_number, diagnosis], groups: [training-jobs], action: mask, mask: {{method: tokenize}}}}
  - {{classifications: [postal_code], groups: [training-jobs], action: mask, mask: {{method: generalize, params: {{keep: {keep}}}}}}}
  - {{classifications: [date_of_birth], groups: [training-jobs], action: mask, mask: {{method: generalize, params: {{to: {to}}}}}}}
  - {{classifications: [sex], groups: [training-jobs], action: clear}}
"""
ZIPS = ["02139", "02141", "02142", "94107", "94110", "94117"]
DIAGNOSES = ["J06.9", "E11.9", "I10", "M54.5"]
# 240 made-up people drawn with a fixed seed: fine generalizations (5-digit zip, birth month) leave many
# combinations of one row; coarse ones (zip -> 3 digits, birth date -> year) leave 16 classes of 7 or more.
_DRAW = random.Random(13)
PEOPLE = [(i, f"MRN{i:05d}", _DRAW.choice(ZIPS),
           dt.date(_DRAW.choice((1970, 1980, 1990, 2000)), _DRAW.randint(1, 12), _DRAW.randint(1, 28)),
           _DRAW.choice("fm"), _DRAW.choice(DIAGNOSES)) for i in range(240)]
COLUMNS = "SELECT mrn, zip, birth_date, sex, diagnosis FROM floor_patients"


@pytest.fixture(scope="module")
def floor_db(pg_url):
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS floor_patients")
        conn.execute("CREATE TABLE floor_patients (id int primary key, mrn text, zip text, birth_date date, "
                     "sex text, diagnosis text)")
        conn.cursor().executemany("INSERT INTO floor_patients VALUES (%s, %s, %s, %s, %s, %s)", PEOPLE)
    return pg_url


@pytest.fixture
def env(tmp_path, monkeypatch):
    key_file = tmp_path / "ledger-signing.key"
    write_key_file(key_file)
    monkeypatch.setenv("LINEAGE_GUARD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LINEAGE_GUARD_MASTER_KEY", TEST_MASTER_KEY)
    monkeypatch.setenv("LINEAGE_GUARD_LEDGER_SIGNING_KEY_FILE", str(key_file))
    ledger = Ledger.open(str(tmp_path / "ledger.sqlite"))
    yield tmp_path, ledger
    ledger.close()


def _session(url, ledger, *, keep=3, to="year", extra=""):
    policy = parse_policy(BASE + REQUIRE.format(keep=keep, to=to) + extra)
    return GovernedSession(url, policy, Identity("svc-training"), "ai_training", ledger=ledger)


def _runs(ledger) -> list[dict]:
    """The bodies of the ledger's run entries, in chain order."""
    return [e["body"] for e in ledger.entries() if "run_id" in e.get("body", {})]


def _by_hand(keep: int, to: str) -> int:
    """k computed straight from the raw rows, independently of the masks: the smallest class."""
    frame = pl.DataFrame(PEOPLE, schema=["id", "mrn", "zip", "birth_date", "sex", "dx"], orient="row")
    key = [pl.col("zip").str.slice(0, keep), pl.col("birth_date").dt.truncate("1y" if to == "year" else "1mo"),
           pl.col("sex")]
    return int(frame.group_by(key).len()["len"].min())


def test_a_too_rare_extract_fails_with_nothing_written_and_a_ledger_entry(floor_db, env):
    root, ledger = env
    target = root / "out" / "patients.parquet"
    with _session(floor_db, ledger, keep=5, to="month") as s, pytest.raises(ReidentificationRisk) as err:
        s.extract(COLUMNS, to=target)
    text = str(err.value)
    expected_k = _by_hand(5, "month")
    assert expected_k < 5
    assert f"k-anonymity >= 5 over (zip, birth_date, sex), counted in rows; the masked output has k = {expected_k}" in text
    assert not target.exists() and not list((root / "out").glob("*"))       # nothing written, no temp file left
    entries = _runs(ledger)
    final = entries[-1]
    assert final["outcome"] == "failed" and final["error"]["class"] == "ReidentificationRisk"
    assert final["reidentification"]["k"] == expected_k and final["reidentification"]["required_k"] == 5
    assert final["reidentification"]["quasi_identifiers"] == ["zip", "birth_date", "sex"]
    assert "output_sha256" not in final
    raw = [v for p in PEOPLE for v in (p[1], p[2], p[3].isoformat(), p[5])]
    dumped = text + json.dumps(entries)
    assert not [v for v in raw if v in dumped]


def test_generalized_enough_passes_and_the_ledger_has_the_measure(floor_db, env):
    root, ledger = env
    target = root / "patients.parquet"
    with _session(floor_db, ledger) as s:
        result = s.extract(COLUMNS, to=target)
    assert result.rows == 240 and target.exists()
    final = _runs(ledger)[-1]
    measured = final["reidentification"]
    assert final["outcome"] == "success" and measured["k"] == _by_hand(3, "year") >= 5
    assert measured["l"] >= 2 and measured["sensitive"] == ["diagnosis"]
    # the file says the same through `lineage-guard risk`
    done = CliRunner().invoke(app, ["risk", str(target), "--quasi", "zip,birth_date,sex", "--sensitive", "diagnosis",
                                    "--json"])
    assert done.exit_code == 0, done.output
    assert (json.loads(done.stdout)["k"], json.loads(done.stdout)["l"]) == (measured["k"], measured["l"])


def test_a_stream_holds_its_batches_until_the_floor_is_measured(floor_db, env):
    _, ledger = env
    got = []
    with (_session(floor_db, ledger, keep=5, to="month") as s, pytest.raises(ReidentificationRisk),
          s.stream(COLUMNS) as batches):
        got.extend(batches)
    assert got == []                                             # not one batch left before the measure
    with _session(floor_db, ledger) as s, s.stream(COLUMNS) as batches:
        assert sum(b.num_rows for b in batches) == 240


def test_no_sensitive_clear_denies_at_plan_time(floor_db, env):
    _, ledger = env
    clear_dx = "  - {classifications: [diagnosis], groups: [training-jobs], action: clear}\n"
    policy = parse_policy(BASE + REQUIRE.format(keep=3, to="year").replace("rules:\n", "rules:\n" + clear_dx))
    with GovernedSession(floor_db, policy, Identity("svc-training"), "ai_training", ledger=ledger) as s:
        decision = s.plan(COLUMNS)
        assert decision.action == "deny"
        assert any("requires no sensitive column clear" in r and "'diagnosis' (diagnosis)" in r for r in decision.reasons)
        with pytest.raises(AccessDenied):
            s.extract(COLUMNS, to=env[0] / "x.parquet")
        # sex is clear too, but it is a quasi-identifier: held to k, not refused
        assert s.plan("SELECT sex FROM floor_patients").action == "allow"


def test_a_subject_column_is_required_and_counts_people(floor_db, env):
    root, ledger = env
    extra = "    subject: medical_record_number\n"
    policy_text = BASE + REQUIRE.format(keep=3, to="year").replace("    l_diversity", extra + "    l_diversity")
    policy = parse_policy(policy_text)
    with GovernedSession(floor_db, policy, Identity("svc-training"), "ai_training", ledger=ledger) as s:
        no_key = s.plan("SELECT zip, birth_date, sex, diagnosis FROM floor_patients")
        assert no_key.action == "deny" and any("add it to the query" in r for r in no_key.reasons)
        s.extract(COLUMNS, to=root / "people.parquet")
    measured = _runs(ledger)[-1]["reidentification"]
    assert measured["counted"] == "people" and measured["k"] == _by_hand(3, "year")  # one row per person here


def test_the_measure_is_signed_in_the_attestation_and_shown_by_audit_model(floor_db, env):
    import base64

    import jsonschema

    from lineage_guard.attest.attestation import attest, predicate_schema

    root, ledger = env
    target = root / "patients.parquet"
    with _session(floor_db, ledger) as s:
        s.extract(COLUMNS, to=target)
    model = root / "model.bin"
    model.write_bytes(b"a model trained on the generalized extract")
    envelope = attest(model, [target], out=root / "model.att.json", ledger=ledger, lineage=False)
    predicate = json.loads(base64.b64decode(envelope["payload"]))["predicate"]
    jsonschema.validate(predicate, predicate_schema())
    measured = predicate["datasets"][0]["reidentification"]
    assert measured["k"] == _by_hand(3, "year") >= measured["requiredK"] == 5
    assert measured["l"] >= measured["requiredL"] == 2 and measured["sensitive"] == ["diagnosis"]
    assert measured["quasiIdentifiers"] == ["zip", "birth_date", "sex"] and measured["counted"] == "rows"
    assert measured["smallestClasses"][0]["size"] == measured["k"]
    # the schema holds the measure to its shape: a value smuggled in is refused
    bad = json.loads(json.dumps(predicate))
    bad["datasets"][0]["reidentification"]["smallestClasses"][0]["zip"] = "02139"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, predicate_schema())
    args = ["audit", "model", str(model), "--attestation", str(root / "model.att.json"), "--ledger",
            str(root / "ledger.sqlite")]
    shown = CliRunner().invoke(app, args)
    assert shown.exit_code == 0, shown.output
    assert (f"re-identification: k-anonymity {measured['k']} (required 5) over (zip, birth_date, sex), counted in "
            f"rows; l-diversity of diagnosis {measured['l']} (required 2)") in " ".join(shown.stdout.split())
    as_json = json.loads(CliRunner().invoke(app, [*args, "--json"]).stdout)
    assert as_json["datasets"][0]["reidentification"] == measured
    classes = {c["name"]: (c["treatment"], c["classifications"]) for c in as_json["datasets"][0]["columns"]}
    assert classes["sex"] == ("clear", ["sex"]) and classes["zip"][0] == "masked"
