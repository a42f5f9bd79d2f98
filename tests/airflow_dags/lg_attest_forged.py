"""A governed extract, then a forged training input (conf forge=plain|edited): the attestation must fail
(tests/test_airflow_attest.py). The extract runs first so the ledger exists: the failure is the forged file's."""

from datetime import datetime

from airflow.sdk import DAG, task
from lineage_guard.operators import GovernedAttestOperator, GovernedPostgresOperator

OUT = "{{ dag_run.conf['out_dir'] }}"

with DAG("lg_attest_forged", schedule=None, start_date=datetime(2024, 1, 1), catchup=False) as dag:
    patients = GovernedPostgresOperator(task_id="extract_patients", conn_id="lg_test_pg", policy="policy.yaml",
                                        purpose="ai_training", sql="SELECT id, email, diagnosis FROM patients",
                                        output=f"{OUT}/patients.parquet")

    @task
    def forge(patients: dict, dag_run=None) -> list[str]:
        from pathlib import Path

        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        out = Path(dag_run.conf["out_dir"])
        (out / "model.bin").write_bytes(b"weights")
        if dag_run.conf["forge"] == "plain":      # a Parquet file no governed read wrote
            pq.write_table(pa.table({"id": [1, 2], "diagnosis": ["I10", "E11.9"]}), out / "plain.parquet")
            return [patients["output_uri"], str(out / "plain.parquet")]
        path = patients["output_uri"]   # edited after it was written, its provenance footer copied over
        footer = {k: v for k, v in pq.read_metadata(path).metadata.items() if k.startswith(b"lineage_guard.")}
        table = pq.read_table(path)
        edited = table.set_column(0, "id", pc.add(table["id"], 1)).replace_schema_metadata(footer)
        pq.write_table(edited, path)
        return [patients["output_uri"]]

    GovernedAttestOperator(task_id="attest_model", model=f"{OUT}/model.bin", datasets=forge(patients.output),
                           attestation=f"{OUT}/model.att.json")
