"""Airflow provider metadata: how `airflow providers list` and the connection form know lineage_guard.

Registered through the `apache_airflow_provider` entry point in pyproject.toml. Airflow calls
`get_provider_info()` at start-up; keep it import-light (no Airflow import here).

Example:
    >>> get_provider_info()["connection-types"][0]["connection-type"]
    'lineage_guard_postgres'
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

CONNECTION_TYPE = "lineage_guard_postgres"
HOOK_CLASS = "lineage_guard.operators.hooks.GovernedPostgresHook"
SERVICE_CONNECTION_TYPE = "lineage_guard_service"
SERVICE_HOOK_CLASS = "lineage_guard.operators.service.GovernedServiceHook"


def _version() -> str:
    try:
        return version("lineage-guard")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0"


def get_provider_info() -> dict:
    """The provider description Airflow's ProvidersManager reads."""
    return {
        "package-name": "lineage-guard",
        "name": "lineage_guard",
        "description": "Governed, masked, audited PostgreSQL reads and guarded writes, with OpenLineage.",
        "versions": [_version()],
        "integrations": [
            {"integration-name": "lineage_guard", "tags": ["software"],
             "external-doc-url": "https://github.com/lineage-guard/lineage-guard"},
        ],
        "operators": [
            {"integration-name": "lineage_guard", "python-modules": ["lineage_guard.operators.operator",
                                                              "lineage_guard.operators.attest"]},
        ],
        "hooks": [
            {"integration-name": "lineage_guard", "python-modules": ["lineage_guard.operators.hooks",
                                                          "lineage_guard.operators.service"]},
        ],
        "triggers": [
            {"integration-name": "lineage_guard", "python-modules": ["lineage_guard.operators.triggers"]},
        ],
        "connection-types": [
            {
                "hook-class-name": HOOK_CLASS,
                "hook-name": "lineage_guard PostgreSQL",
                "connection-type": CONNECTION_TYPE,
                "ui-field-behaviour": {"relabeling": {"schema": "Database"}},
            },
            {
                "hook-class-name": SERVICE_HOOK_CLASS,
                "hook-name": "lineage_guard service",
                "connection-type": SERVICE_CONNECTION_TYPE,
                "ui-field-behaviour": {"hidden_fields": ["schema", "login"]},
            },
        ],
    }
