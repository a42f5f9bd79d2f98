"""Issue 11's red-team pass: every attack, on the real database through the real GovernedSession, recovers nothing.

Each attack (tests/redteam/attacks.py) tries to recover sensitive values as the corpus's masked
identity (svc-training, ai_training); the test reads the true values directly with psycopg and
counts how many the attack got right. Passing means: denied, or only masked / unlinkable output.
Failure messages carry counts, never values. `LG_REDTEAM_RESULTS=path` appends one JSON line per
attack (for tests/redteam/RESULTS.md; see render_results.py).
"""

from __future__ import annotations

import pytest
from attacks import ATTACKS, Attack
from harness import (
    CORPUS_POLICY,
    DEMO_POLICY_ON_CORPUS,
    POLICIES,
    RedTeam,
    SessionPool,
    ground_truth,
    record,
    run_attack,
    score,
)

# Attacks that still leak on main, each with where it is tracked. strict: the day one stops leaking, its
# XPASS fails the suite and the entry must go (RESULTS.md and the report say the same).
OPEN_LEAKS: dict[str, str] = {}  # attack name -> why it still leaks (strict xfail); none open now


def _cases():
    for attack in ATTACKS:
        reason = OPEN_LEAKS.get(attack.name)
        marks = [pytest.mark.xfail(strict=True, reason=f"still leaks: {reason}")] if reason else []
        yield pytest.param(attack, id=attack.name, marks=marks)


@pytest.fixture(scope="module")
def truth(corpus_url):
    return ground_truth(corpus_url)


@pytest.fixture(scope="module")
def sessions(corpus_url):
    pool = SessionPool(corpus_url)
    yield pool
    pool.close()


@pytest.mark.parametrize("attack", list(_cases()))
def test_attack_recovers_nothing(attack: Attack, corpus_url, truth, sessions):
    rt = RedTeam(corpus_url, attack.policy, truth, sessions)
    rec = run_attack(attack.run, rt, attack.keys, attack.target)
    correct = score(rec, truth)
    record(attack.name, attack.cls, rec, correct)
    assert correct == 0, (f"{attack.name} ({attack.cls}) recovered {correct} of {len(rec.keys)} values of "
                          f"{attack.target} in {rec.queries} queries ({rt.allowed} allowed)")
    assert not rec.channel_open, (f"{attack.name} ({attack.cls}): the plan was allowed although the statement's work "
                                  f"depends on a sensitive test ({rt.allowed} of {rec.queries} queries allowed)")


@pytest.mark.parametrize("policy, sql", [
    (CORPUS_POLICY, "SELECT id, ssn, plan FROM customers"),
    (CORPUS_POLICY, "SELECT o.id, o.amount, c.email FROM orders o JOIN customers c ON c.id = o.customer_id"),
    (POLICIES / "format_preserving.yaml", "SELECT id, ssn FROM customers"),
    (POLICIES / "shift_date.yaml", "SELECT id, birth_date FROM patients"),
    (DEMO_POLICY_ON_CORPUS, "SELECT id, diagnosis FROM patients"),
])
def test_the_attacker_can_read_at_all(policy, corpus_url, truth, sessions, sql):
    """The harness is live: the same identity's ordinary reads are allowed and come back masked.

    Without this, every attack could 'recover nothing' because the session itself was broken.
    """
    rt = RedTeam(corpus_url, policy, truth, sessions)
    table = rt.read(sql)
    assert table.num_rows == 50
    decision = rt.session.plan(sql)
    assert decision.action == "allow" and any(c.masked for c in decision.columns)
