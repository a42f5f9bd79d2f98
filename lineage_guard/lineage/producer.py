"""The `producer` URI stamped on every event and facet lineage_guard emits."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("lineage-guard")
except PackageNotFoundError:  # running from a source tree that was never installed
    VERSION = "0.0.0"

PRODUCER = f"https://lineage-guard.dev/producer/{VERSION}"
