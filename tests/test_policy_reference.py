"""docs/policy-reference.md is generated from the policy model and must match it."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, create_model

from lineage_guard.policy import reference
from lineage_guard.policy.model import Policy

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "policy-reference.md"
FIX = "run `make docs` (.venv/bin/python -m lineage_guard.policy.reference --output docs/policy-reference.md) and commit it"


def test_committed_reference_is_current():
    assert DOC.exists(), f"docs/policy-reference.md is missing: {FIX}"
    assert DOC.read_text() == reference.render(), f"docs/policy-reference.md is stale: {FIX}"


def test_every_policy_field_is_in_the_reference():
    text = reference.render()
    for name in Policy.model_fields:
        assert f"| `{name}` |" in text, name
    # a nested model's fields too, reached through lists and maps
    for key in ("`rules[]`", "`service.identity_limits.<name>`", "| `max_days` |", "| `url_env` |"):
        assert key in text, key


def test_a_new_field_appears_with_its_comment_type_and_default():
    # What another helper adding a field gets: a row, from a comment or a description.
    extended = create_model(
        "Extended", __base__=Policy,
        row_filters=(list[str], Field(default_factory=list, description="filters added to every read")),
    )
    text = reference._section(extended, ["policy (top level)"])
    assert "| `row_filters` | list of string | `[]` | filters added to every read |" in text
    assert "| `min_group_size` | integer | `10` | the smallest group a declared sensitive predicate may return (≥ 2) |" in text


def test_check_mode_names_the_fix(tmp_path, capsys):
    stale = tmp_path / "ref.md"
    stale.write_text("old\n")
    assert reference.main(["--output", str(stale), "--check"]) == 1
    assert "make docs" in capsys.readouterr().err
    assert reference.main(["--output", str(stale)]) == 0
    assert reference.main(["--output", str(stale), "--check"]) == 0
    assert stale.read_text() == reference.render()


def test_a_docstring_example_is_kept_as_a_yaml_block():
    text = reference.render()
    assert "```yaml\nsensitive_uses:\n  - {name: cohort-by-birth-date," in text
