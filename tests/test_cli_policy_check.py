"""`check-policy` (and every command that loads a policy) refuses typos that would make a rule or a
label silently protect nothing: unknown names, bad mask parameters, duplicate YAML keys, and
classifications of tables the schema does not have."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lineage_guard.cli import app
from lineage_guard.errors import PolicyError
from lineage_guard.policy import load_policy

HERE = Path(__file__).parent
CORPUS = HERE / "corpus"
SCHEMA = ["--schema-file", str(CORPUS / "schema.sql"), "--schema-file", str(CORPUS / "schema_extras.sql")]
runner = CliRunner()

GOOD = """\
version: 1
identities:
  svc-training: {kind: service, groups: [training-jobs]}
groups: [training-jobs]
purposes: [ai_training]
classifications:
  public.customers.email: email
  public.customers.ssn: national_id
rules:
  - name: training-tokenizes
    groups: [training-jobs]
    purposes: [ai_training]
    classifications: [email, national_id]
    action: mask
    mask: {method: tokenize}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


def check(path: Path, *args: str):
    return runner.invoke(app, ["check-policy", str(path), *args])


def test_the_good_policy_passes(tmp_path):
    result = check(write(tmp_path, GOOD), *SCHEMA)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("old, new, line, message", [
    ("groups: [training-jobs]\n    purposes", "groups: [training-job]\n    purposes", 11,
     ("rules.0 (training-tokenizes).groups: unknown group 'training-job' (did you mean 'training-jobs'?); "
      "valid: training-jobs")),
    ("purposes: [ai_training]\n    class", "purposes: [ai-training]\n    class", 12,
     ("rules.0 (training-tokenizes).purposes: unknown purpose 'ai-training' (did you mean 'ai_training'?); "
      "valid: ai_training")),
    ("classifications: [email, national_id]", "classifications: [email, natinal_id]", 13,
     ("rules.0 (training-tokenizes).classifications: unknown classification label 'natinal_id' "
      "(did you mean 'national_id'?)")),
    ("mask: {method: tokenize}", "mask: {method: tokenize, params: {lenght: 12}}", 15,
     "rules.0.mask: mask method 'tokenize' has no parameter 'lenght'; valid parameters: length, prefix"),
    ("mask: {method: tokenize}", "mask: {method: tokenize, params: {length: '12'}}", 15,
     "rules.0.mask: mask method 'tokenize': parameter 'length' must be an integer from 8 to 64"),
    ("mask: {method: tokenize}", "mask: {method: partial, params: {keep_last: 500}}", 15,
     "rules.0.mask: mask method 'partial': parameter 'keep_last' must be an integer from 0 to 64"),
])
def test_typos_are_errors_with_file_line_and_the_valid_names(tmp_path, old, new, line, message):
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new))
    result = check(path)
    assert result.exit_code == 1, result.output
    assert f"{path}:{line}: {message}" in result.output
    with pytest.raises(PolicyError):  # the library refuses it too: nothing runs on it
        load_policy(path)


def test_a_duplicated_key_is_an_error_not_a_silent_merge(tmp_path):
    rules = "".join(f"rules:\n  - {{name: r{i}, action: mask, mask: {{method: redact}}}}\n" for i in range(8))
    path = write(tmp_path, "purposes: [a]\n" + rules)
    result = check(path)
    assert result.exit_code == 1
    for i in range(1, 8):  # the 2nd..8th `rules:` each named, with the first's line
        assert f"{path}:{2 + 2 * i}: rules: duplicate key (first at line 2)" in result.output
    nested = write(tmp_path, GOOD.replace("  svc-training: {kind: service, groups: [training-jobs]}\n",
                                          "  svc-training: {kind: service, groups: [training-jobs]}\n"
                                          "  svc-training: {kind: human, groups: [training-jobs]}\n"))
    result = check(nested)
    assert result.exit_code == 1 and f"{nested}:4: identities.svc-training: duplicate key (first at line 3)" in result.output


MISSPELLED_TABLE = GOOD.replace("public.customers.ssn: national_id", "public.custmers.ssn: national_id")


def test_a_classified_table_missing_from_the_schema_is_an_error_offline(tmp_path):
    path = write(tmp_path, MISSPELLED_TABLE)
    assert check(path).exit_code == 0  # nothing to check it against: the names alone are fine
    result = check(path, *SCHEMA)
    assert result.exit_code == 1
    assert f"{path}:8: classifications: public.custmers.ssn: there is no table public.custmers" in result.output
    # The plan refuses to run on it instead of showing the column clear.
    planned = runner.invoke(app, ["plan", "--policy", str(path), "--identity", "svc-training", "--purpose",
                                  "ai_training", *SCHEMA, "--sql", "SELECT ssn FROM customers", "--json"])
    assert planned.exit_code == 1, planned.output
    assert json.loads(planned.stdout)["outcome"] == "error" and "public.custmers.ssn" in planned.output
    column = write(tmp_path, GOOD.replace("public.customers.ssn:", "public.customers.sssn:"))
    result = check(column, *SCHEMA)
    assert result.exit_code == 1 and "public.customers has no column 'sssn' (did you mean 'ssn'?)" in result.output


def test_a_classified_table_missing_from_the_live_catalog_is_an_error(corpus_url, tmp_path):
    path = write(tmp_path, MISSPELLED_TABLE)
    result = check(path, "--source", corpus_url)
    assert result.exit_code == 1
    assert f"{path}:8: classifications: public.custmers.ssn: there is no table public.custmers" in result.output
    assert check(write(tmp_path, GOOD), "--source", corpus_url).exit_code == 0


def test_the_repository_policies_pass(tmp_path):
    for path in [HERE.parent / "examples" / "policy.yaml", HERE.parent / "lineage_guard" / "demo" / "policy.yaml",
                 CORPUS / "policy.yaml", HERE / "airflow_dags" / "policy.yaml"]:
        result = check(path)
        assert result.exit_code == 0, result.output
    demo = HERE.parent / "lineage_guard" / "demo"
    assert check(demo / "policy.yaml", "--schema-file", str(demo / "schema.sql")).exit_code == 0
