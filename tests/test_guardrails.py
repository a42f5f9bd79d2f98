"""Write guardrails: nobody writes by default, dangerous statements need explicit per-environment relaxation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from lineage_guard.identity import Identity
from lineage_guard.policy.guardrails import DANGERS, GuardrailResult, WritesPolicy, check_write, dangers
from lineage_guard.sql.model import Analysis, TableRef

ORDERS, PATIENTS, STAGING = TableRef("public", "orders"), TableRef("public", "patients"), TableRef("etl", "stage")
ETL = Identity("svc-etl", "service", frozenset({"data-eng"}))
ANALYST = Identity("ana", "human", frozenset({"analysts"}))


def write(kind="insert", written=(ORDERS,), read=(), has_where=True, flags=(), violations=()) -> Analysis:
    return Analysis(f"-- {kind}", kind, False, tables_read=tuple(read), tables_written=tuple(written),
                    has_where=has_where, flags=frozenset(flags), violations=tuple(violations))


def check(analysis, writes=None, identity=ETL, environment="production", sensitive=()) -> GuardrailResult:
    writes = writes if isinstance(writes, WritesPolicy) else WritesPolicy.model_validate(
        writes if writes is not None else {"allowed_groups": ["data-eng"]})
    return check_write(analysis, writes, identity=identity, environment=environment, sensitive_tables=set(sensitive))


def test_nobody_writes_by_default():
    result = check(write(), WritesPolicy())
    assert result.action == "deny"
    assert result.reasons == [("identity 'svc-etl' may not write: add it to writes.allowed_identities "
                              "or one of its groups to writes.allowed_groups in the policy")]


@pytest.mark.parametrize("writes, identity, action", [
    ({"allowed_identities": ["svc-etl"]}, ETL, "allow"),
    ({"allowed_identities": ["svc-*"]}, ETL, "allow"),
    ({"allowed_groups": ["data-eng"]}, ETL, "allow"),
    ({"allowed_groups": ["data-eng"]}, ANALYST, "deny"),
    ({"allowed_identities": ["svc-etl"]}, ANALYST, "deny"),
    ({"allowed_identities": ["*"]}, ANALYST, "allow"),
])
def test_who_may_write(writes, identity, action):
    assert check(write(), writes, identity=identity).action == action


@pytest.mark.parametrize("analysis, danger, words", [
    (write("ddl", flags={"drop"}), "drop", "DROP on public.orders is denied by default"),
    (write("ddl", flags={"truncate"}), "truncate", "TRUNCATE on public.orders is denied by default"),
    (write("ddl", flags={"alter"}), "alter", "ALTER on public.orders"),
    (write("dcl", flags={"grant"}), "grant", "GRANT on public.orders"),
    (write("dcl", flags={"revoke"}), "revoke", "REVOKE on public.orders"),
    (write("dcl"), "grant", "GRANT on public.orders"),  # unnamed privilege statement: treated as GRANT
    (write("copy", flags={"copy_program"}), "copy_program", "COPY ... PROGRAM on public.orders"),
    (write("delete", has_where=False), "delete_without_where", ("DELETE without WHERE on public.orders is denied "
                                                               "by default in environment 'production'; add a WHERE")),
    (write("update", has_where=False), "update_without_where", "UPDATE without WHERE on public.orders"),
    (write("delete", flags={"delete_all"}), "delete_without_where", "DELETE without WHERE"),  # WHERE 1 = 1
])
def test_dangerous_statements_denied_by_default_and_relaxed_per_environment(analysis, danger, words):
    assert dangers(analysis) == [danger]
    denied = check(analysis)
    assert denied.action == "deny" and len(denied.reasons) == 1 and words in denied.reasons[0]
    relaxed = {"allowed_groups": ["data-eng"], "relax": [{"allow": [danger], "environments": ["staging"]}]}
    assert check(analysis, relaxed, environment="staging").action == "allow"
    assert check(analysis, relaxed, environment="production").action == "deny"
    gated = {"allowed_groups": ["data-eng"], "relax": [{"allow": [danger], "environments": ["stag*"], "approval": True}]}
    assert check(analysis, gated, environment="staging").action == "needs_approval"


def test_plain_writes_with_where_are_not_dangerous():
    assert dangers(write("delete")) == dangers(write("update")) == dangers(write("insert")) == []
    assert check(write("delete")).action == check(write("merge")).action == "allow"


def test_relaxing_one_danger_does_not_relax_another():
    both = write("ddl", flags={"drop", "truncate"})
    result = check(both, {"allowed_groups": ["data-eng"], "relax": [{"allow": ["truncate"], "environments": ["*"]}]})
    assert result.action == "deny" and [r.split(" on ")[0] for r in result.reasons] == ["DROP"]


def test_approval_rules_by_table_and_sensitivity_per_environment():
    writes = {"allowed_groups": ["data-eng"], "approvals": [
        {"environments": ["production"], "tables": ["public.orders"]},
        {"environments": ["production"], "sensitive": True},
    ]}
    assert check(write(written=(ORDERS,)), writes).reasons == [
        "writes touching public.orders in environment 'production' need an approval"]
    assert check(write(written=(ORDERS,)), writes, environment="staging").action == "allow"
    # a write into a plain table that reads a sensitive one still touches it
    gated = check(write(written=(STAGING,), read=(PATIENTS,)), writes, sensitive={PATIENTS})
    assert gated.action == "needs_approval"
    assert gated.reasons == [("writes touching sensitive table(s) public.patients in environment 'production' "
                             "need an approval")]
    assert check(write(written=(STAGING,), read=(PATIENTS,)), writes, sensitive=set()).action == "allow"


def test_denial_wins_over_approval_and_lists_every_reason():
    writes = {"allowed_identities": ["someone-else"], "approvals": [{"environments": ["*"], "tables": ["public.*"]}]}
    result = check(write("delete", has_where=False), writes)
    assert result.action == "deny" and len(result.reasons) == 2
    assert not any("approval" in r for r in result.reasons)


def test_fails_closed_on_unknown_kind_violations_and_missing_environment():
    assert check(write("other")).action == "deny"
    assert "could not be determined" in check(write("other")).reasons[0]
    assert check(write(violations=["more than one statement"])).reasons == [
        "the SQL analysis refused this statement: more than one statement"]
    assert check(write(), environment=" ").action == "deny"


@pytest.mark.parametrize("writes, message", [
    ({"relax": [{"allow": ["truncate"]}]}, "environments"),
    ({"relax": [{"allow": ["truncate"], "environments": []}]}, "at least one"),
    ({"relax": [{"allow": ["vacuum"], "environments": ["staging"]}]}, "truncate"),
    ({"relax": [{"allow": [], "environments": ["staging"]}]}, "allow must name"),
    ({"approvals": [{"environments": ["production"]}]}, "tables"),
    ({"approvals": [{"environments": ["production"], "tables": ["orders"]}]}, "schema.table"),
    ({"allowed_users": ["x"]}, "Extra inputs"),
])
def test_invalid_writes_policy_says_what_to_fix(writes, message):
    with pytest.raises(ValidationError, match=message):
        WritesPolicy.model_validate(writes)


KINDS = ["insert", "update", "delete", "merge", "copy", "ddl", "dcl", "call", "other"]
FLAGS = ["drop", "truncate", "alter", "grant", "revoke", "copy_program", "delete_all", "update_all", "create",
         "returning", "copy_from"]


@given(kind=st.sampled_from(KINDS), flags=st.sets(st.sampled_from(FLAGS)), has_where=st.booleans(),
       relaxed=st.sets(st.sampled_from(list(DANGERS))), env=st.sampled_from(["production", "staging"]),
       member=st.booleans())
def test_fail_closed_invariants(kind, flags, has_where, relaxed, env, member):
    writes = WritesPolicy.model_validate({
        "allowed_groups": ["data-eng"],
        "relax": [{"allow": sorted(relaxed), "environments": ["staging"]}] if relaxed else [],
    })
    analysis = write(kind, has_where=has_where, flags=flags)
    result = check(analysis, writes, identity=ETL if member else ANALYST, environment=env)
    unrelaxed = set(dangers(analysis)) - (relaxed if env == "staging" else set())
    if not member or unrelaxed or kind == "other":
        assert result.action == "deny" and result.reasons
    else:
        assert result.action == "allow"
