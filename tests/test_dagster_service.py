"""GovernedPostgresResource in service mode: real `materialize()` reading through `lineage-guard serve`.

A real server subprocess (TLS, a JWKS issuer over HTTP on 127.0.0.1) holds the policy, the database
URL and the master key; this process holds only a token, from `dg.EnvVar` or from a token file, with
the master key taken out of its environment. The embedded-mode tests are beside this one
(tests/test_dagster.py).
"""

import pytest
from conftest import TEST_MASTER_KEY, require
from service_helpers import RAW_SENSITIVE, Issuer, make_tls, seed_people, server_key, service_policy, start_server

dg = require("dagster", "dagster")

from lineage_guard.assets import GovernedIOManager, GovernedPostgresResource  # noqa: E402
from lineage_guard.audit import Ledger  # noqa: E402
from lineage_guard.errors import ConfigError  # noqa: E402

pytestmark = pytest.mark.dagster
TRAINER = "system:serviceaccount:ml:trainer"


@pytest.fixture(scope="module")
def served(new_database, tmp_path_factory):
    require("jwt", "service")
    root = tmp_path_factory.mktemp("dagster-service")
    url = new_database()
    seed_people(url)
    tls = make_tls(root / "tls")
    issuer = Issuer()
    policy = root / "policy.yaml"
    policy.write_text(service_policy(issuer.url, issuer.jwks_url))
    home = root / "home"
    home.mkdir()
    server = start_server(policy, url, tls, home, TEST_MASTER_KEY)
    yield server, issuer, tls
    assert server.stop() == 0
    issuer.close()


@pytest.fixture(autouse=True)
def no_secrets_here(tmp_path, monkeypatch):
    """A Dagster process in service mode: its own Dagster home, no master key, no database URL."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.delenv("LINEAGE_GUARD_MASTER_KEY", raising=False)
    monkeypatch.delenv("LINEAGE_GUARD_TEST_POSTGRES_URL", raising=False)


def test_assets_materialize_masked_data_through_the_service(served, tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    server, issuer, tls = served
    monkeypatch.setenv("LG_SERVICE_TOKEN", issuer.token(TRAINER))
    token_file = tmp_path / "projected-token"
    token_file.write_text(issuer.token(TRAINER))
    by_env = GovernedPostgresResource(service_url=server.url, purpose="ai_training",
                                      token=dg.EnvVar("LG_SERVICE_TOKEN"), ca_file=str(tls.cert))
    by_file = GovernedPostgresResource(service_url=server.url, purpose="ai_training", token_file=str(token_file),
                                       ca_file=str(tls.cert))
    out = tmp_path / "people.parquet"

    @dg.asset
    def people(context: dg.AssetExecutionContext, governed: GovernedPostgresResource):
        table = governed.read_arrow("SELECT id, email, ssn FROM people ORDER BY id", context=context)
        context.add_output_metadata({"rows": table.num_rows})
        return table.to_pylist()

    @dg.asset
    def people_file(filed: GovernedPostgresResource) -> dg.MaterializeResult:
        result = filed.extract("SELECT id, email, full_name FROM people", to=str(out))
        return dg.MaterializeResult(metadata={"receipt": result.receipt_id, "rows": result.rows})

    result = dg.materialize([people, people_file], resources={"governed": by_env, "filed": by_file})
    assert result.success
    rows = result.output_for_node("people")
    assert [r["id"] for r in rows] == [1, 2, 3]
    cells = {str(v) for r in rows for v in r.values()}
    assert not cells & set(RAW_SENSITIVE) and all(r["email"].startswith("tok_") for r in rows)
    written = pq.read_table(out)
    assert written.num_rows == 3 and not {str(v) for c in written.columns for v in c.to_pylist()} & set(RAW_SENSITIVE)
    [file_event] = [e for e in result.get_asset_materialization_events() if e.asset_key.path == ["people_file"]]
    receipt = file_event.materialization.metadata["receipt"].value
    with Ledger.open(f"sqlite:///{server.home / 'ledger.sqlite'}", create=False) as led:
        check = led.verify_receipt(receipt, server_key(led))
        assert check.ok, check
        reads = [e["body"] for e in led.entries() if e["body"]["statement"]["text"].startswith("SELECT id, email, ssn")]
    assert check.entry["body"]["who"]["principal"] == "svc-training"
    assert check.entry["body"]["who"]["auth"] == {**check.entry["body"]["who"]["auth"], "method": "jwt",
                                                  "subject": TRAINER}
    assert reads and reads[-1]["who"]["auth"]["method"] == "jwt" and reads[-1]["outcome"] == "success"


def test_service_mode_refuses_embedded_settings_and_the_in_process_io_manager(served, tmp_path):
    server, issuer, tls = served
    spoof = GovernedPostgresResource(service_url=server.url, purpose="treatment", token=issuer.token(TRAINER),
                                     ca_file=str(tls.cert), identity="dr-grey")
    with pytest.raises(ConfigError, match="identity"):
        spoof.session()
    keyed = GovernedPostgresResource(service_url=server.url, purpose="ai_training", token=issuer.token(TRAINER),
                                     ca_file=str(tls.cert), master_key="00" * 32, url="postgresql://x/y")
    with pytest.raises(ConfigError, match="master_key, url"):
        keyed.session()
    # Without the identity field, asking for another purpose than the token's identity may use is refused by the server.
    honest = GovernedPostgresResource(service_url=server.url, purpose="treatment", token=issuer.token(TRAINER),
                                      ca_file=str(tls.cert))
    with pytest.raises(dg.Failure, match="may not request purpose 'treatment'"):
        honest.read_arrow("SELECT full_name FROM people")

    served_io = GovernedPostgresResource(service_url=server.url, purpose="ai_training", token=issuer.token(TRAINER),
                                         ca_file=str(tls.cert))

    @dg.asset
    def stored():
        return [{"id": 1}]

    result = dg.materialize([stored], resources={"io_manager": GovernedIOManager(governed=served_io,
                                                                                 base_path=str(tmp_path))},
                            raise_on_error=False)
    assert not result.success and not list(tmp_path.rglob("*.parquet"))
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert "keeps free of keys" in str(failure)
