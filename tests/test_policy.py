"""Policy loading: valid files load; invalid ones name file, line, field and what is valid."""

import pytest

from lineage_guard.errors import PolicyError
from lineage_guard.identity import Identity
from lineage_guard.policy import load_policy, parse_policy
from lineage_guard.sql.model import ColumnRef


@pytest.mark.parametrize(
    "text, expected",
    [
        ("purposes: [a]\nbogus: 1\n", "p.yaml:2: bogus: unknown field; valid here: version"),
        ("rules:\n  - action: mask\n    classifications: [email]\n", "p.yaml:2: rules.0: a rule with action 'mask' needs"),
        ("rules:\n  - action: mask\n    mask: {method: tokenise}\n", "p.yaml:3: rules.0.mask.method: unknown mask method 'tokenise'; valid: tokenize"),
        ("classifications:\n  customers.email: email\n", "must be schema.table.column"),
        ("inference: loose\n", "p.yaml:1: inference: must be 'lenient', 'default' or 'strict'"),
        ("a: [\n", "p.yaml:2: not valid YAML"),
        ("rules:\n - action: clear\n   colour: 1\n", "p.yaml:3: rules.0.colour: unknown field; valid here: name, classifications"),
        ("groups: [a]\nidentities:\n  x: {groups: [b]}\n", "names undeclared group(s) ['b']"),
        ("keys: {scope: tenant}\n", "keys.scope 'tenant' needs keys.tenant"),
        ("", "the policy is empty"),
        ("- 1\n", "must be a mapping"),
    ],
)
def test_invalid_policy_errors_say_where_and_what(text, expected):
    with pytest.raises(PolicyError) as exc:
        parse_policy(text, "p.yaml")
    assert expected in str(exc.value)


def test_missing_file_is_a_policy_error(tmp_path):
    with pytest.raises(PolicyError, match="policy file not found"):
        load_policy(tmp_path / "nope.yaml")


def test_corpus_policy_loads_and_resolves():
    from pathlib import Path

    policy = load_policy(Path(__file__).parent / "corpus" / "policy.yaml")
    who = policy.resolve_identity(Identity("svc-training", groups=frozenset({"admins"})))
    assert (who.kind, who.groups) == ("service", frozenset({"training-jobs"}))  # the caller cannot add groups
    email = ColumnRef("public", "customers", "email")
    assert policy.labels()[email] == "email"
    rule = policy.first_rule("email", email, who, "ai_training")
    assert rule.action == "mask" and policy.mask_spec(rule.mask, who, "ai_training").scope == "purpose:ai_training"
    assert policy.first_rule("email", email, who, "analytics") is None


def test_scopes():
    policy = parse_policy("keys: {scope: group}\n")
    assert policy.scope_for(Identity("a", groups=frozenset({"z", "b"})), "p") == "group:b"
    assert policy.scope_for(Identity("a"), "p") == "identity:a"
    assert policy.scope_for(Identity("a"), "p", "global") == "global"


def test_approval_is_asked_only_for_columns_that_would_come_back_clear():
    from lineage_guard.planner import plan
    from lineage_guard.sql.catalog import Catalog

    policy = parse_policy("""
identities: {dr-grey: {kind: human}}
purposes: [treatment]
classifications: {public.p.notes: clinical_note, public.p.ssn: national_id}
rules:
  - {classifications: [clinical_note], action: clear, approval: true}
  - {classifications: [national_id], action: mask, mask: {method: tokenize}}
""")
    catalog = Catalog.from_ddl_text("CREATE TABLE p (id int, notes text, ssn text);")
    who = Identity("dr-grey")
    assert plan("SELECT notes FROM p", catalog=catalog, policy=policy, identity=who, purpose="treatment").action == "needs_approval"
    mixed = plan("SELECT coalesce(notes, ssn) AS h FROM p", catalog=catalog, policy=policy, identity=who, purpose="treatment")
    assert mixed.action == "allow" and mixed.columns[0].masked


IDENTITY_POLICY = """
identities:
  dr-grey: {kind: human, groups: [clinicians], attributes: {ward: "3"}}
groups: [clinicians]
purposes: [treatment]
classifications: {public.p.ssn: national_id}
rules:
  - {groups: [clinicians], classifications: [national_id], action: clear}
"""
IDENTITY_DDL = "CREATE TABLE p (id int, ssn text);"


def test_identities_must_be_declared_by_default_and_the_refusal_names_the_file(tmp_path):
    from lineage_guard.planner import plan
    from lineage_guard.sql.catalog import Catalog

    path = tmp_path / "clinic.yaml"
    path.write_text(IDENTITY_POLICY)
    policy = load_policy(path)
    assert policy.require_declared_identities  # the default: nothing in the file turns it on
    catalog = Catalog.from_ddl_text(IDENTITY_DDL)
    # An undeclared caller claiming the clinicians group: denied, and told exactly what to edit.
    eve = Identity("eve", "service", frozenset({"clinicians"}))
    decision = plan("SELECT ssn FROM p", catalog=catalog, policy=policy, identity=eve, purpose="treatment")
    assert decision.action == "deny" and decision.columns[0].masked
    (reason,) = decision.reasons
    assert f"identity 'eve' is not declared in {path}" in reason
    assert "identities: {eve: {kind: service, groups: [...]}}" in reason
    declared = plan("SELECT ssn FROM p", catalog=catalog, policy=policy, identity=Identity("dr-grey"), purpose="treatment")
    assert declared.action == "allow" and not declared.columns[0].masked


def test_groups_and_attributes_come_only_from_the_policy():
    from lineage_guard.planner import plan
    from lineage_guard.sql.catalog import Catalog

    policy = parse_policy(IDENTITY_POLICY)
    who = policy.resolve_identity(Identity("dr-grey", "agent", frozenset({"admins"}), {"ward": "9", "shift": "night"}))
    assert (who.kind, who.groups, who.attributes) == ("human", frozenset({"clinicians"}), {"ward": "3", "shift": "night"})
    # Opting out admits undeclared identities, but with no groups: a claimed group matches no rule.
    open_policy = parse_policy(IDENTITY_POLICY + "require_declared_identities: false\n")
    eve = Identity("eve", "human", frozenset({"clinicians"}))
    assert open_policy.resolve_identity(eve).groups == frozenset()
    decision = plan("SELECT ssn FROM p", catalog=Catalog.from_ddl_text(IDENTITY_DDL), policy=open_policy,
                    identity=eve, purpose="treatment")
    assert decision.action == "allow" and decision.columns[0].mask is not None  # default_mask, not clear
