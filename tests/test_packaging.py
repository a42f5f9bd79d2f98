"""Packaging: the integration folders install inside the lineage_guard namespace; core stays light."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from wheel_build import build_wheel

ROOT = Path(__file__).resolve().parents[1]


def test_core_imports_no_orchestrator_or_gx():
    code = (
        "import sys, lineage_guard.session, lineage_guard.cli, lineage_guard.planner, lineage_guard.audit, "
        "lineage_guard.lineage, lineage_guard.approvals, lineage_guard.classify, lineage_guard.mask; "
        "heavy = [m for m in ('airflow', 'dagster', 'great_expectations') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_wheel_maps_integration_folders_into_the_namespace(tmp_path):
    # The PEP 517 backend itself, as any installer would call it (a normal, non-editable build),
    # run on a copy so that no build/ is left in the checkout.
    before = (ROOT / "build").exists()
    wheel = build_wheel(tmp_path)
    assert (ROOT / "build").exists() == before, "building the wheel wrote build/ into the source tree"
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "lineage_guard/operators/operator.py",
        "lineage_guard/assets/io_manager.py",
        "lineage_guard/integrations/great_expectations.py",
        "lineage_guard/integrations/polars.py",
        "lineage_guard/lineage/schemas/AccessRunFacet.json",
        "lineage_guard/attest/schemas/TrainingDataPredicate.json",
        "lineage_guard/attest/attestation.py",
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


# --- every import is declared -------------------------------------------------------------------
# `uv sync --all-extras` installs everything, so an undeclared import (numpy was one) only shows
# when a user runs plain `pip install lineage-guard[...]`. This walks the source and checks each
# imported distribution against pyproject.toml, area by area.

# Which extras may provide an import, by source folder (first match wins). A module-level import
# in core must be a core dependency; core may import an extra's package lazily, inside the
# function that needs it (psycopg, adbc, pgserver), so `import lineage_guard` never needs one.
AREAS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("lineage_guard/service/", ("service",)),
    ("lineage_guard/client/", ("service",)),  # the client speaks Flight SQL messages (protobuf)
    ("lineage_guard/console/config.py", ()),  # the policy model imports it: core only
    ("lineage_guard/console/", ("console",)),
    ("operators/", ("airflow",)),
    ("assets/", ("dagster",)),
    ("integrations/great_expectations.py", ("gx",)),
    ("integrations/spark.py", ("spark",)),
    ("integrations/ray.py", ("ray",)),
    ("integrations/", ()),
)
# CPython's private hash modules, imported with a hashlib fallback (their names changed in 3.12).
CPYTHON_PRIVATE = {"_sha2", "_sha256"}


def _declared() -> dict[str, set[str]]:
    """Extra name ('' for core) -> the normalized distribution names it installs, self-references expanded."""
    import re
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()  # PEP 503
    raw = {"": project["dependencies"], **project["optional-dependencies"]}

    def expand(extra: str, seen: frozenset[str] = frozenset()) -> set[str]:
        out: set[str] = set()
        for req in raw[extra]:
            m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?", req)
            assert m, f"pyproject.toml: cannot read the requirement {req!r}"
            name, extras = norm(m.group(1)), m.group(2)
            if name == norm(project["name"]):
                for sub in (e.strip() for e in (extras or "").split(",") if e.strip()):
                    assert sub not in seen, f"pyproject.toml: extra {extra!r} includes itself"
                    out |= expand(sub, seen | {extra})
            else:
                out.add(name)
        return out

    return {extra: expand(extra) for extra in raw}


def _runtime_imports(path: Path) -> list[tuple[int, str, bool]]:
    """(line, top-level module, at module level?) for each absolute import that runs at run time."""
    import ast

    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str, bool]] = []

    def visit(node: ast.AST, module_level: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for stmt in child.orelse:
                    visit(stmt, module_level)
                continue
            if isinstance(child, ast.Import):
                found.extend((child.lineno, a.name.split(".")[0], module_level) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                found.append((child.lineno, child.module.split(".")[0], module_level))
            nested = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            visit(child, module_level and not nested)

    visit(tree, True)
    return found


def test_every_import_is_a_declared_dependency_of_its_extra():
    import importlib.metadata
    import re

    declared = _declared()
    provides = importlib.metadata.packages_distributions()  # top-level module -> distributions
    own = {"lineage_guard", "__future__"}
    problems: list[str] = []
    files = sorted(
        p for folder in ("lineage_guard", "operators", "assets", "integrations") for p in (ROOT / folder).rglob("*.py")
    )
    assert len(files) > 50, "the walk found too few source files"
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        extras = next((e for prefix, e in AREAS if rel.startswith(prefix)), None)
        for line, module, module_level in _runtime_imports(path):
            if module in own or module in sys.stdlib_module_names or module in CPYTHON_PRIVATE:
                continue
            dists = {re.sub(r"[-_.]+", "-", d).lower() for d in provides.get(module, ())}
            if not dists:
                problems.append(f"{rel}:{line}: imports {module!r}, which no installed distribution provides")
                continue
            if extras is None:  # core
                allowed = declared[""] if module_level else set().union(
                    *(v for k, v in declared.items() if k not in ("dev", "all"))
                )
                where = "core dependencies" if module_level else "core or an extra (a lazy import)"
            else:
                allowed = declared[""].union(*(declared[e] for e in extras))
                where = "core or [" + ", ".join(extras) + "]" if extras else "core dependencies"
            if not dists & allowed:
                problems.append(
                    f"{rel}:{line}: imports {module!r} (distribution {', '.join(sorted(dists))}), "
                    f"not declared in {where} in pyproject.toml"
                )
    assert not problems, "undeclared imports:\n" + "\n".join(problems)


def test_the_import_check_sees_an_undeclared_import(tmp_path):
    # The walk itself must find a nested, module-level and TYPE_CHECKING-guarded import correctly.
    src = tmp_path / "m.py"
    src.write_text(
        "import numpy as np\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pandas\n"
        "def f():\n    import psycopg\n"
    )
    assert _runtime_imports(src) == [(1, "numpy", True), (2, "typing", True), (6, "psycopg", False)]
    assert "numpy" in _declared()[""] and "pandas" in _declared()["gx"]
    assert "psycopg" not in _declared()[""] and "psycopg" in _declared()["airflow"]


def test_constraints_txt_pins_exactly_the_lock():
    # README "Install with pip" gives pip constraints.txt; it must be uv.lock's versions, all of them.
    import re
    import tomllib

    fix = "run `make constraints` (uv export --frozen --all-extras --no-hashes --no-emit-project) and commit constraints.txt"
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    locked = {(p["name"], p["version"]) for p in lock["package"] if "registry" in p.get("source", {})}
    pinned = set()
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        m = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        if m:
            pinned.add((re.sub(r"[-_.]+", "-", m.group(1)).lower(), m.group(2)))
    assert len(locked) > 100, "uv.lock lists too few registry packages"
    assert pinned == locked, (
        f"constraints.txt is stale against uv.lock: {fix}. "
        f"In the lock only: {sorted(locked - pinned)[:10]}; in constraints.txt only: {sorted(pinned - locked)[:10]}"
    )
