"""The service benchmarks' common world: a scratch database served by `lineage-guard serve`.

`benchmarks/service.py`, `service_steps.py` and `scale_out.py` each time reads through a real server
subprocess (TLS, API token) on a `people` table of a chosen size; this makes and removes that world.

    with served_people(rows=1000, label="steps") as world:
        connect(world.server.url, purpose="ai_training", token=world.token, tls_root_certs=world.tls.pem)
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from service_helpers import make_tls, seed_people, service_policy, start_server


@contextmanager
def served_people(rows: int, label: str, master_key: str | None = None) -> Iterator[SimpleNamespace]:
    """A database `lg_bench_<label>_<random>` on $LINEAGE_GUARD_TEST_POSTGRES_URL with `people` seeded to
    `rows` rows, served over TLS by a server subprocess holding `master_key` (a fresh one if None).

    Yields url (the database), base_url and database (its server's URL and its name), root (a temp
    folder), tls, policy_path, server, server_proc (psutil, for its CPU time) and token (an API token
    for svc-training). On exit the server is stopped and the database dropped (FORCE), also when the
    set-up fails part way.
    """
    import psycopg

    from lineage_guard.service.tokens import TokenStore

    base = os.environ.get("LINEAGE_GUARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"lg_bench_{label}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = base.rsplit("/", 1)[0] + "/" + name
    root = Path(tempfile.mkdtemp(prefix=f"lg-bench-{label}-"))
    server = None
    try:
        seed_people(url, extra_rows=max(0, rows - 3))
        tls = make_tls(root / "tls")
        policy_path = root / "policy.yaml"
        policy_path.write_text(service_policy("https://issuer.invalid", "https://issuer.invalid/jwks.json"))
        home = root / "server"
        home.mkdir()
        token = TokenStore(home / "api_tokens.json").create("svc-training")
        server = start_server(policy_path, url, tls, home, master_key or secrets.token_hex(32))
        yield SimpleNamespace(url=url, base_url=base, database=name, root=root, tls=tls, policy_path=policy_path,
                              server=server, server_proc=psutil.Process(server.proc.pid), token=token)
    finally:
        if server is not None:
            server.stop()
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
