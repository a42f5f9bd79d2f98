"""Fixtures for the Airflow tests: an isolated Airflow (home, sqlite metadata DB, DAG folder), run once.

Imported by tests/test_airflow*.py (`from airflow_conftest import *`). Airflow reads its
configuration when first imported, so this module sets the AIRFLOW_* environment when it is
imported (test collection, before any test imports Airflow) and the metadata DB is migrated
once per test session, in a subprocess (`airflow db migrate`).
DAGs are the files in tests/airflow_dags/, run with `dag.test()` in-process against the
session's PostgreSQL; OpenLineage events go to a JSONL file through the provider's file
transport.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import TEST_MASTER_KEY, require

DAGS = Path(__file__).resolve().parent / "airflow_dags"
PG_CONN_ID = "lg_test_pg"
OL_NAMESPACE = "lg_airflow_tests"

__all__ = [
    "DAGS",
    "OL_NAMESPACE",
    "PG_CONN_ID",
    "AirflowEnv",
    "DagRunResult",
    "airflow_env",
    "airflow_pg_url",
    "key_from_connection",
    "patients",
    "run_dag_process",
    "task_environment",
]

HOME = Path(tempfile.mkdtemp(prefix="lg_airflow_home_"))
atexit.register(shutil.rmtree, HOME, ignore_errors=True)
OL_FILE = HOME / "openlineage.jsonl"
_ISOLATED = "airflow" not in sys.modules
if _ISOLATED:
    os.environ.update({
        "AIRFLOW_HOME": str(HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{HOME / 'airflow.db'}",
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "file", "log_file_path": str(OL_FILE), "append": True}),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": OL_NAMESPACE,
    })


@dataclass
class DagRunResult:
    state: str
    tasks: dict[str, str]                    # task_id -> final state
    xcoms: dict[str, Any]                    # task_id -> return_value (deserialized)
    events: list[dict] = field(default_factory=list)   # this run's OpenLineage events, in order

    def task_events(self, task_id: str, dag_id: str) -> list[dict]:
        return [e for e in self.events if e["job"]["name"] == f"{dag_id}.{task_id}"]


@dataclass
class AirflowEnv:
    home: Path
    ol_file: Path
    pg_url: str

    def run(self, dag_id: str, conf: dict | None = None) -> DagRunResult:
        """Run the DAG defined in tests/airflow_dags/{dag_id}.py once with `dag.test()`."""
        from airflow.models.xcom import XComModel
        from airflow.sdk.serde import deserialize
        from airflow.utils.session import create_session

        spec = importlib.util.spec_from_file_location(f"lg_dag_{dag_id}", DAGS / f"{dag_id}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        dag = module.dag
        seen = self.ol_file.read_text().count("\n") if self.ol_file.exists() else 0
        dagrun = dag.test(run_conf=conf or {})
        with create_session() as session:
            tasks = {ti.task_id: str(ti.state) for ti in dagrun.get_task_instances(session=session)}
            rows = session.query(XComModel).filter_by(dag_id=dag_id, run_id=dagrun.run_id, key="return_value").all()
            xcoms = {r.task_id: deserialize(XComModel.deserialize_value(r)) for r in rows}
        lines = self.ol_file.read_text().splitlines()[seen:] if self.ol_file.exists() else []
        events = [json.loads(line) for line in lines if line.strip()]
        mine = [e for e in events if e["job"]["name"].startswith(f"{dag_id}.")]
        return DagRunResult(str(dagrun.state), tasks, xcoms, mine)


@pytest.fixture(scope="session")
def airflow_pg_url(new_database):
    """A database of its own for the Airflow tests (their `patients` table must not meet other suites')."""
    return new_database()


@pytest.fixture(scope="session")
def airflow_env(airflow_pg_url) -> AirflowEnv:
    """Airflow configured in a temp home with its metadata DB migrated; the PG connection set as `lg_test_pg`."""
    if not _ISOLATED:
        pytest.fail("airflow was imported before tests/airflow_conftest.py could isolate AIRFLOW_HOME; "
                    "import airflow inside tests, not at module level")
    require("airflow", "airflow")
    env = {
        f"AIRFLOW_CONN_{PG_CONN_ID.upper()}": json.dumps({
            "conn_type": "postgres", **_conn_parts(airflow_pg_url),
            "extra": {"environment": "production", "statement_timeout_ms": 30000},
        }),
        # No lineage_guard extras: the Postgres provider hands every extra to psycopg, which rejects unknown ones.
        f"AIRFLOW_CONN_{PG_CONN_ID.upper()}_PLAIN": json.dumps({"conn_type": "postgres", **_conn_parts(airflow_pg_url)}),
    }
    os.environ.update(env)
    migrate = subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
                             capture_output=True, text=True, env=os.environ.copy(), timeout=300, check=False)
    assert migrate.returncode == 0, migrate.stdout[-2000:] + migrate.stderr[-2000:]
    return AirflowEnv(home=HOME, ol_file=OL_FILE, pg_url=airflow_pg_url)


def _conn_parts(url: str) -> dict:
    from lineage_guard.sources.pg_url import url_parts

    parts = url_parts(url)  # a socket URL's host is in ?host= (the embedded server's is)
    return {"host": parts["host"], "port": parts["port"], "login": parts["user"] or "",
            "password": parts["password"] or "", "schema": parts["database"]}


@pytest.fixture(scope="session")
def patients(airflow_pg_url) -> list[dict]:
    """A small fake `public.patients` table (Faker, fixed seed); returns its rows."""
    psycopg = require("psycopg", "postgres")
    from faker import Faker

    fake = Faker()
    Faker.seed(1234)
    rows = [
        {"id": i, "mrn": f"MRN-{fake.unique.random_number(digits=8, fix_len=True)}", "full_name": fake.name(),
         "email": fake.unique.email(), "diagnosis": fake.random_element(["J45.909", "E11.9", "I10", "M54.5"]),
         "birth_date": fake.date_of_birth(minimum_age=18, maximum_age=90), "city": fake.city()}
        for i in range(1, 41)
    ]
    with psycopg.connect(airflow_pg_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS public.patients")
        conn.execute("CREATE TABLE public.patients (id int PRIMARY KEY, mrn text NOT NULL, full_name text NOT NULL, "
                     "email text, diagnosis text, birth_date date, city text)")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO public.patients VALUES (%(id)s, %(mrn)s, %(full_name)s, %(email)s, "
                            "%(diagnosis)s, %(birth_date)s, %(city)s)", rows)
    return rows


@pytest.fixture
def key_from_connection(monkeypatch):
    """The masking key only as the Airflow connection `lineage_guard_master_key` (not in the environment)."""
    monkeypatch.setenv("AIRFLOW_CONN_LINEAGE_GUARD_MASTER_KEY",
                       json.dumps({"conn_type": "generic", "password": TEST_MASTER_KEY}))
    monkeypatch.delenv("LINEAGE_GUARD_MASTER_KEY", raising=False)
    return TEST_MASTER_KEY


RUN = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("lg_dag_" + sys.argv[3], sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
dagrun = module.dag.test(run_conf=json.loads(sys.argv[2]))
from airflow.models.xcom import XComModel
from airflow.sdk.serde import deserialize
from airflow.utils.session import create_session
with create_session() as session:
    tis = dagrun.get_task_instances(session=session)
    tasks = {ti.task_id: str(ti.state) for ti in tis if ti.map_index < 0}
    instances = [{"task_id": ti.task_id, "map_index": ti.map_index, "state": str(ti.state),
                  "try_number": ti.try_number} for ti in tis]
    rows = session.query(XComModel).filter_by(dag_id=sys.argv[3], run_id=dagrun.run_id, key="return_value").all()
    xcoms = {r.task_id: deserialize(XComModel.deserialize_value(r)) for r in rows if r.map_index < 0}
    mapped = {}
    for r in rows:
        if r.map_index >= 0:
            mapped.setdefault(r.task_id, {})[str(r.map_index)] = deserialize(XComModel.deserialize_value(r))
print("LG-RESULT " + json.dumps({"tasks": tasks, "instances": instances, "xcoms": xcoms, "mapped_xcoms": mapped},
                                default=str))
"""


def run_dag_process(dag_id: str, env: dict, conf: dict) -> tuple[dict, str]:
    """`dag.test()` of tests/airflow_dags/{dag_id}.py in a fresh process with `env` only; returns its result
    (`tasks` {task_id: state} of unmapped tasks, `instances` [{task_id, map_index, state, try_number}],
    `xcoms`, `mapped_xcoms` {task_id: {map_index: value}}) and its output."""
    done = subprocess.run([sys.executable, "-c", RUN, str(DAGS / f"{dag_id}.py"), json.dumps(conf), dag_id], env=env,
                          capture_output=True, text=True, timeout=600, check=False, cwd=tempfile.gettempdir())
    lines = [line for line in done.stdout.splitlines() if line.startswith("LG-RESULT ")]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(lines[-1].removeprefix("LG-RESULT ")), done.stdout + done.stderr


def task_environment(airflow_env: AirflowEnv, **connections) -> dict:
    """Airflow's own settings and the given connections; nothing of lineage_guard, no database credential."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
    env = {k: v for k, v in os.environ.items() if k in keep or k.startswith("AIRFLOW__")}
    env["AIRFLOW_HOME"] = str(airflow_env.home)
    env.update({f"AIRFLOW_CONN_{name.upper()}": json.dumps(conn) for name, conn in connections.items()})
    return env
