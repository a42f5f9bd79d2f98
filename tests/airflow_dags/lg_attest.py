"""Two governed extracts -> a small numpy training step -> GovernedAttestOperator (tests/test_airflow_attest.py)."""

from datetime import datetime

from airflow.sdk import DAG, task
from lineage_guard.operators import GovernedAttestOperator, GovernedPostgresOperator

OUT = "{{ dag_run.conf['out_dir'] }}"

with DAG("lg_attest", schedule=None, start_date=datetime(2024, 1, 1), catchup=False,
         default_args={"conn_id": "lg_test_pg", "policy": "policy.yaml"}) as dag:
    patients = GovernedPostgresOperator(task_id="extract_patients", purpose="ai_training",
                                        sql="SELECT id, email, diagnosis FROM patients ORDER BY id",
                                        output=f"{OUT}/patients.parquet")
    cities = GovernedPostgresOperator(task_id="extract_cities", purpose="ai_training",
                                      sql="SELECT id, city FROM patients ORDER BY id", output=f"{OUT}/cities.parquet")

    @task
    def train(patients: dict, cities: dict, dag_run=None) -> str:
        """A real (tiny) model on the masked files: diagnosis frequencies per city, as a numpy table."""
        import json
        from pathlib import Path

        import numpy as np
        import polars as pl

        frame = pl.read_parquet(patients["output_uri"]).join(pl.read_parquet(cities["output_uri"]), on="id")
        dx, city = sorted(set(frame["diagnosis"])), sorted(set(frame["city"]))
        counts = np.zeros((len(city), len(dx)))
        for c, d in frame.select("city", "diagnosis").iter_rows():
            counts[city.index(c), dx.index(d)] += 1
        model = Path(dag_run.conf["out_dir"]) / "model"
        model.mkdir()
        np.save(model / "weights.npy", (counts + 1) / (counts + 1).sum(axis=1, keepdims=True))
        (model / "config.json").write_text(json.dumps({"classes": len(dx), "cities": len(city)}))
        return str(model)

    GovernedAttestOperator(task_id="attest_model", model=train(patients.output, cities.output),
                           datasets=[patients.output, cities.output], attestation=f"{OUT}/model.att.json")
