"""lineage_guard's own OpenLineage facets, as openlineage-python attrs classes.

Each class's `_schemaURL` is the immutable, versioned `$id` of a JSON schema
shipped in `lineage_guard/lineage/schemas/` (bump the version in the URL and add
a new file for any change; never edit a published one). Every field is listed in
`_additional_skip_redact` because the content is value-free by construction, and
Airflow's secrets masker would otherwise rewrite names that merely look sensitive.

Example:
    >>> f = MaskingOutputDatasetFacet(maskedColumns=0, clearColumns=1, fields={})
    >>> f._schemaURL.endswith("1-0-0/MaskingOutputDatasetFacet.json#/$defs/MaskingOutputDatasetFacet")
    True
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import attr
from openlineage.client.facet_v2 import InputDatasetFacet, OutputDatasetFacet, RunFacet

from .producer import PRODUCER

SPEC_BASE = "https://lineage-guard.dev/spec/facets"
ACCESS_KEY = "lineageGuard_access"
MASKING_KEY = "lineageGuard_masking"
ROW_FILTER_KEY = "lineageGuard_rowFilter"
ATTESTATION_KEY = "lineageGuard_attestation"


def schema_dir() -> Path:
    """The folder holding the facets' JSON schemas (pass it to check_lineage.py `--facet-schemas`)."""
    return Path(str(resources.files("lineage_guard.lineage.schemas")))


def _url(version: str, name: str) -> str:
    return f"{SPEC_BASE}/{version}/{name}.json#/$defs/{name}"


@attr.define
class AccessRunFacet(RunFacet):
    """`lineageGuard_access`: who saw what in this run (identity, purpose, decision, receipt, columns)."""

    identity: dict[str, Any]
    purpose: str
    decision: dict[str, Any]
    outcome: str
    statementHash: str
    columns: list[dict[str, Any]] = attr.field(factory=list)
    approvalId: str | None = attr.field(default=None)
    receipt: dict[str, str] | None = attr.field(default=None)

    _additional_skip_redact: ClassVar[list[str]] = [
        "identity", "purpose", "decision", "outcome", "statementHash", "columns", "approvalId", "receipt",
    ]

    def __attrs_post_init__(self) -> None:
        self._producer = self._producer or PRODUCER
        self._schemaURL = self._get_schema()

    @staticmethod
    def _get_schema() -> str:
        return _url("1-0-0", "AccessRunFacet")


@attr.define
class MaskingOutputDatasetFacet(OutputDatasetFacet):
    """`lineageGuard_masking`: per masked output column, the method, key scope and key id used."""

    maskedColumns: int
    clearColumns: int
    fields: dict[str, dict[str, str]] = attr.field(factory=dict)

    _additional_skip_redact: ClassVar[list[str]] = ["maskedColumns", "clearColumns", "fields"]

    def __attrs_post_init__(self) -> None:
        self._producer = self._producer or PRODUCER
        self._schemaURL = self._get_schema()

    @staticmethod
    def _get_schema() -> str:
        return _url("1-0-0", "MaskingOutputDatasetFacet")


@attr.define
class RowFilterInputDatasetFacet(InputDatasetFacet):
    """`lineageGuard_rowFilter`: the policy row filters applied to this input (names, digest, attribute names)."""

    filters: list[str]
    combine: str
    digest: str
    attributes: list[str] = attr.field(factory=list)
    columns: list[str] = attr.field(factory=list)
    references: int = 1

    _additional_skip_redact: ClassVar[list[str]] = ["filters", "combine", "digest", "attributes", "columns",
                                                    "references"]

    def __attrs_post_init__(self) -> None:
        self._producer = self._producer or PRODUCER
        self._schemaURL = self._get_schema()

    @staticmethod
    def _get_schema() -> str:
        return _url("1-0-0", "RowFilterInputDatasetFacet")


@attr.define
class AttestationRunFacet(RunFacet):
    """`lineageGuard_attestation`: the signed training-data statement of a training run (digests and ids only)."""

    predicateType: str
    statementSha256: str
    keyId: str
    attestedAt: str
    model: dict[str, Any]
    datasets: list[dict[str, str]]
    ledgerHead: dict[str, Any]
    attestation: str | None = attr.field(default=None)
    trainingRunId: str | None = attr.field(default=None)

    _additional_skip_redact: ClassVar[list[str]] = [
        "predicateType", "statementSha256", "keyId", "attestedAt", "model", "datasets", "ledgerHead",
        "attestation", "trainingRunId",
    ]

    def __attrs_post_init__(self) -> None:
        self._producer = self._producer or PRODUCER
        self._schemaURL = self._get_schema()

    @staticmethod
    def _get_schema() -> str:
        return _url("1-0-0", "AttestationRunFacet")
