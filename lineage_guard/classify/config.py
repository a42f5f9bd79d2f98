"""Detection settings, embedded in the policy as `detection:`.

Example (policy YAML):

    detection:
      enabled: true
      threshold: 0.8          # a detected label counts from this confidence up
      sample_rows: 1000       # rows sampled per table (TABLESAMPLE SYSTEM + LIMIT)
      disabled_sources: ["postgres://warehouse:5432/analytics"]

    >>> DetectionConfig(threshold=0.9).applies_to("postgresql://u:pw@db:5432/app")
    True
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


def source_key(url: str) -> str:
    """A source's identity without credentials: `postgres://host:port/database`.

    Read the way libpq reads the URL (`PgUrl.parse`): a host percent-encoded in the authority or given as
    `?host=` counts, and a Unix-socket directory names the local machine, as lineage does. Two spellings of
    one server give one key, so its cached detections and `disabled_sources` entries match either.

    Example:
        >>> source_key("postgresql://svc:secret@db.internal/app?sslmode=require")
        'postgres://db.internal:5432/app'
        >>> source_key("postgresql://svc@/app?host=%2Fvar%2Frun%2Fpostgresql&port=5433")
        'postgres://localhost:5433/app'
    """
    from ..sources.pg_url import PgUrl

    parsed = PgUrl.parse(url)
    return f"postgres://{parsed.host}:{parsed.port}/{parsed.database or 'postgres'}"


class DetectionConfig(BaseModel):
    """Whether and how columns the policy does not classify are detected. Policy-declared labels always win."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    threshold: float = Field(0.8, ge=0.0, le=1.0, description="minimum confidence for a detected label to count")
    sample_rows: int = Field(1000, ge=1, le=100_000, description="rows sampled per table")
    disabled_sources: list[str] = Field(
        default_factory=list,
        description="sources (URLs, or postgres://host:port/database keys) where detection is off",
    )

    def applies_to(self, url: str) -> bool:
        """True when detection should run for this source (credentials in `url` are ignored)."""
        if not self.enabled:
            return False
        key = source_key(url)
        return all(source_key(s) != key for s in self.disabled_sources)
