"""Import cost: `import lineage_guard` and `lineage_guard.operators` pull nothing heavy; heavy parts load on first use.

Each check is a fresh interpreter (a real subprocess), so what another test imported cannot hide a
regression. Airflow parses DAG files that import the operators on every scheduler loop, and every
fresh task process pays its imports before its first row: Great Expectations, the Faker pools,
the detection lexicons, Polars, the drivers and OpenLineage load only when a read needs them.
Measured with `python -X importtime` (see benchmarks/README.md, "Cold start").
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("great_expectations", "faker", "polars", "polars_hash", "pandas", "openlineage", "adbc_driver_manager",
         "adbc_driver_postgresql", "psycopg", "airflow", "dagster", "fsspec", "cryptography",
         "lineage_guard.classify.lexicon", "lineage_guard.classify.names", "lineage_guard.classify.detectors",
         "lineage_guard.classify.addresses", "lineage_guard.mask.pseudonymize", "lineage_guard.mask.apply",
         "lineage_guard.mask.keyed", "lineage_guard.integrations.great_expectations")
# A package import: not even the policy model, the SQL parser or Arrow.
BARE = (*HEAVY, "pyarrow", "numpy", "sqlglot", "pydantic", "yaml", "lineage_guard.session", "lineage_guard.policy")

CASES = {
    "import lineage_guard": (BARE, "import lineage_guard"),
    "import lineage_guard.operators": (BARE, "import lineage_guard, lineage_guard.operators"),
    "operators' provider info (Airflow start-up)": (
        BARE, "from lineage_guard.operators.provider import get_provider_info; get_provider_info()"),
    "mask declarations": (BARE, "from lineage_guard.mask import MaskSpec; MaskSpec('tokenize')"),
    # The session module holds the path; the parts a read needs load when it runs.
    "import lineage_guard.session": (HEAVY, "from lineage_guard import GovernedSession, Identity"),
    # A few values (a cold task's first read) take the Python HMAC loop: Polars loads only for the compiled path.
    "keyed masks of a small column": (("polars", "polars_hash"), (
        "import pyarrow as pa; from lineage_guard.mask import Keyring, MaskSpec, mask_array; "
        "[mask_array(pa.array(['a@x.org', None]), MaskSpec(m, p), Keyring(bytes(32))) for m, p in "
        "[('tokenize', {}), ('format_preserving', {}), ('pseudonymize', {'kind': 'email'}), ('partial', {})]]")),
}


def loaded(code: str, prefixes: tuple[str, ...], cwd) -> list[str]:
    probe = code + f"""
import json, sys
print(json.dumps(sorted(m for m in sys.modules if m in {prefixes!r} or m.startswith(tuple(p + "." for p in {prefixes!r})))))
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False,
                          cwd=cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", sorted(CASES))
def test_nothing_heavy_at_import(name, tmp_path):
    forbidden, code = CASES[name]
    assert loaded(code, forbidden, tmp_path) == [], f"{name} loads heavy modules at import; import them on first use"


def test_the_probe_sees_a_heavy_import(tmp_path):
    # The check itself can fail: a process that does load the masking kernels is caught.
    assert "lineage_guard.mask.apply" in loaded("import lineage_guard.mask.apply", HEAVY, tmp_path)
