"""The Models page's seam: model attestations, when the attestation work lands.

A source of attestations implements `AttestationSource` and is passed to `build_app(models=...)`;
until then the page says that no attestation source is configured.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class ModelAttestation:
    """What the Models page lists for one attestation."""

    model_digest: str
    datasets: list[str]
    verified: bool
    reason: str | None = None                       # why it does not verify
    receipts: list[str] = field(default_factory=list)   # ledger receipts: the path back to tables and columns


class AttestationSource(Protocol):
    def attestations(self, limit: int) -> list[ModelAttestation]:
        """The newest attestations, verified."""
        ...
