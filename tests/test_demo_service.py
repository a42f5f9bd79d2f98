"""The demo's service stage: both identities through a real `lineage-guard serve`, two spoofing attempts refused."""

import io

from rich.console import Console

from lineage_guard.demo.data import seed
from lineage_guard.demo.run import POLICY, QUERY
from lineage_guard.demo.service_stage import run_service_stage


def test_the_service_stage_reads_as_both_identities_and_refuses_spoofing(new_database, tmp_path):
    pg_url = new_database()
    seed(pg_url, patients=50, customers=10)
    console = Console(file=io.StringIO(), record=True, width=200)
    served = run_service_stage(console, pg_url, POLICY, QUERY, tmp_path / "demo-service")
    training, clinician = served.previews["AI training service"], served.previews["Clinician"]
    assert [r["id"] for r in training] == [r["id"] for r in clinician] == [1, 2, 3]
    for column in ("mrn", "full_name", "email"):   # the clinician sees it clear; the training service never does
        assert not {r[column] for r in training} & {r[column] for r in clinician}, column
    assert all(r["email"].startswith("tok_") for r in training)
    assert [line.split(":")[0] for line in served.refusals] == ["svc-training's token naming dr-grey", "a forged token"]
    assert "x-lineage-guard-identity" in served.refusals[0] or "identity" in served.refusals[0]
    assert served.auth_methods["svc-training"] == "api_token" and served.auth_methods["dr-grey"] == "api_token"
    assert served.auth_methods["unauthenticated"] == "api_token"     # the forged token's refusal, recorded
    text = console.export_text()
    assert "listening on grpc+tls://127.0.0.1:" in text and "chain verified" in text and "Refused" in text
    assert not (tmp_path / "demo-service" / "api_tokens.json").read_text().count("lgt_")  # only hashes stored
