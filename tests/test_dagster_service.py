"""GovernedPostgresResource in service mode: real `materialize()` reading through `lineage-guard serve`.

A real server subprocess (TLS, a JWKS issuer over HTTP on 127.0.0.1) holds the policy, the database
URL and the master key; this process holds only a token, from `dg.EnvVar` or from a token file, with
the master key taken out of its environment. The IO manager in service mode stores what the server
served, with the server's provenance footer, and refuses what it did not serve. The embedded-mode
tests are beside this one (tests/test_dagster.py).
"""

import json

import pytest
from conftest import TEST_MASTER_KEY, require
from service_helpers import RAW, RAW_SENSITIVE, people_service, server_key

dg = require("dagster", "dagster")

from lineage_guard.assets import GovernedIOManager, GovernedPostgresResource

from lineage_guard.audit import Ledger
from lineage_guard.errors import ConfigError

pytestmark = pytest.mark.dagster
TRAINER = "system:serviceaccount:ml:trainer"


@pytest.fixture(scope="module")
def served(new_database, tmp_path_factory):
    require("jwt", "service")
    with people_service(new_database(), tmp_path_factory.mktemp("dagster-service"), principals=()) as svc:
        yield svc.server, svc.issuer, svc.tls
        assert svc.server.stop() == 0


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
        import pyarrow as pa

        return pa.table({"id": [1]})       # made here, not served: nothing to vouch for it

    result = dg.materialize([stored], resources={"io_manager": GovernedIOManager(governed=served_io,
                                                                                 base_path=str(tmp_path))},
                            raise_on_error=False)
    assert not result.success and not list(tmp_path.rglob("*.parquet"))
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert "column(s) id were not served by lineage-guard serve" in str(failure)


def _failure(result) -> str:
    return str(result.get_step_failure_events()[0].step_failure_data.error)


def test_the_io_manager_stores_what_the_service_served_with_its_provenance_footer(served, tmp_path, monkeypatch):
    """Service mode, the IO manager: masked Parquet with the server's provenance, nothing masked or keyed here."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from lineage_guard.attest.provenance import read_provenance

    server, issuer, tls = served
    monkeypatch.setenv("LG_SERVICE_TOKEN", issuer.token(TRAINER))
    governed = GovernedPostgresResource(service_url=server.url, purpose="ai_training",
                                        token=dg.EnvVar("LG_SERVICE_TOKEN"), ca_file=str(tls.cert))
    lake = tmp_path / "lake"
    io = GovernedIOManager(governed=governed, base_path=str(lake))

    @dg.asset
    def people(context: dg.AssetExecutionContext, governed: GovernedPostgresResource) -> pa.Table:
        return governed.read_arrow("SELECT id, email, ssn, plan FROM people ORDER BY id", context=context)

    @dg.asset
    def gold_people(people: pa.Table) -> pa.Table:     # loaded by the IO manager, filtered, two columns kept
        return people.filter(pc.equal(people["plan"], "gold")).select(["id", "email"])

    result = dg.materialize([people, gold_people], resources={"governed": governed, "io_manager": io})
    assert result.success
    stored, gold = lake / "people.parquet", lake / "gold_people.parquet"
    table = pq.read_table(stored)
    assert table.column("id").to_pylist() == [1, 2, 3] and table.column("plan").to_pylist() == ["gold", "free", "gold"]
    cells = {str(v) for c in table.columns for v in c.to_pylist()}
    assert not cells & set(RAW_SENSITIVE) and all(v.startswith("tok_") for v in table.column("email").to_pylist())
    assert pq.read_table(gold).column("id").to_pylist() == [1, 3]

    # the footer: the server's provenance document, its receipt in the server's ledger
    doc = read_provenance(stored)
    assert doc["identity"]["principal"] == "svc-training" and doc["identity"]["auth"]["method"] == "jwt"
    assert doc["purpose"] == "ai_training" and doc["written_by"] == "client"
    assert {c["name"]: c["treatment"] for c in doc["columns"]} == {"id": "clear", "email": "masked",
                                                                   "ssn": "masked", "plan": "clear"}
    assert [c["name"] for c in read_provenance(gold)["columns"]] == ["id", "email"]
    assert read_provenance(gold)["receipt_id"] == doc["receipt_id"]
    footer_text = json.dumps(doc)
    assert TEST_MASTER_KEY not in footer_text and not any(v in footer_text for v in RAW_SENSITIVE)
    with Ledger.open(f"sqlite:///{server.home / 'ledger.sqlite'}", create=False) as led:
        check = led.verify_receipt(doc["receipt_id"], server_key(led))
        assert check.ok, check
        intent = [e for e in led.entries() if e["id"] == doc["ledger_entry"]["id"]]
    assert check.entry["body"]["run_id"] == doc["run_id"] and intent and intent[0]["body"]["outcome"] == "open"
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.path == ["people"]]
    meta = event.materialization.metadata
    assert meta["lineage_guard/receipt_id"].value == doc["receipt_id"]
    assert sorted(meta["lineage_guard/masked_columns"].value) == ["email", "ssn"]
    deps = meta["dagster/column_lineage"].value.deps_by_column
    assert deps["email"][0].asset_key.path == ["postgres", "public", "people"]


def test_the_service_mode_io_manager_refuses_what_the_service_did_not_serve(served, tmp_path, monkeypatch):
    """Attacks on the service-mode IO manager: a computed column, raw values under a served column's name,
    and a file written for another identity (clear for dr-grey) loaded by svc-training."""
    import pyarrow as pa
    import pyarrow.compute as pc

    server, issuer, tls = served
    trainer = GovernedPostgresResource(service_url=server.url, purpose="ai_training", token=issuer.token(TRAINER),
                                       ca_file=str(tls.cert))
    lake = tmp_path / "lake"

    @dg.asset
    def with_domain(context: dg.AssetExecutionContext, governed: GovernedPostgresResource) -> pa.Table:
        table = governed.read_arrow("SELECT id, email FROM people", context=context)
        return table.append_column("domain", pc.utf8_slice_codeunits(table["email"], 0, 3))

    @dg.asset
    def smuggled(context: dg.AssetExecutionContext, governed: GovernedPostgresResource) -> pa.Table:
        table = governed.read_arrow("SELECT id, email FROM people ORDER BY id", context=context)
        return table.set_column(1, "email", pa.array([r[2] for r in RAW]))     # raw values, the served name

    for asset, column in ((with_domain, "domain"), (smuggled, "email")):
        result = dg.materialize([asset], resources={"governed": trainer,
                                                    "io_manager": GovernedIOManager(governed=trainer,
                                                                                    base_path=str(lake))},
                                raise_on_error=False)
        assert not result.success and f"column(s) {column} were not served" in _failure(result)
    assert not list(tmp_path.rglob("*.parquet")) and not list(tmp_path.rglob("*.lg-tmp"))

    # dr-grey (a clinician, purpose treatment) stores clear data; svc-training's IO manager must not load it
    grey = GovernedPostgresResource(service_url=server.url, purpose="treatment", ca_file=str(tls.cert),
                                    token=issuer.token("user:grey@clinic", email_verified="true"))

    @dg.asset
    def chart(context: dg.AssetExecutionContext, governed: GovernedPostgresResource) -> pa.Table:
        return governed.read_arrow("SELECT id, full_name FROM people", context=context)

    @dg.asset
    def names(chart: pa.Table) -> pa.Table:
        return chart

    wrote = dg.materialize([chart], resources={"governed": grey,
                                               "io_manager": GovernedIOManager(governed=grey, base_path=str(lake))})
    assert wrote.success and (lake / "chart.parquet").exists()
    result = dg.materialize([chart, names], selection=[names], raise_on_error=False,
                            resources={"governed": trainer,
                                       "io_manager": GovernedIOManager(governed=trainer, base_path=str(lake))})
    assert not result.success
    assert "was written for dr-grey, not for svc-training" in _failure(result)
    assert not (lake / "names.parquet").exists()
