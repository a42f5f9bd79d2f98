"""Packaging: the integration folders install inside the lineage_guard namespace; core stays light."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_core_imports_no_orchestrator_or_gx():
    code = (
        "import sys, lineage_guard.session, lineage_guard.cli, lineage_guard.planner, lineage_guard.audit, "
        "lineage_guard.lineage, lineage_guard.approvals, lineage_guard.classify, lineage_guard.mask; "
        "heavy = [m for m in ('airflow', 'dagster', 'great_expectations') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_wheel_maps_integration_folders_into_the_namespace(tmp_path):
    # The PEP 517 backend itself, as any installer would call it (a normal, non-editable build).
    build = f"from setuptools import build_meta; print(build_meta.build_wheel({str(tmp_path)!r}))"
    done = subprocess.run([sys.executable, "-c", build], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    wheel = next(tmp_path.glob("lineage_guard-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "lineage_guard/operators/operator.py",
        "lineage_guard/assets/io_manager.py",
        "lineage_guard/integrations/great_expectations.py",
        "lineage_guard/integrations/polars.py",
        "lineage_guard/lineage/schemas/AccessRunFacet.json",
        "lineage_guard/demo/policy.yaml",
        "lineage_guard/demo/schema.sql",
    ):
        assert expected in names, expected
    assert not any(n.startswith(("operators/", "assets/", "integrations/", "tests/")) for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "lineage-guard = lineage_guard.cli:main" in text and "apache_airflow_provider" in text


def test_editable_install_resolves_the_mapped_packages():
    import lineage_guard.assets
    import lineage_guard.integrations
    import lineage_guard.operators

    assert Path(lineage_guard.operators.__file__).parent == ROOT / "operators"
    assert Path(lineage_guard.assets.__file__).parent == ROOT / "assets"
    assert Path(lineage_guard.integrations.__file__).parent == ROOT / "integrations"
