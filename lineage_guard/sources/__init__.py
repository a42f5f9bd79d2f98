"""Step 6: sources. `PostgresSource` streams Arrow batches from PostgreSQL, read-only.

Example:
    >>> from lineage_guard.sources import PostgresSource
    >>> PostgresSource("postgresql://u@db/shop").info.namespace
    'postgres://db:5432'
"""

from .postgres import BatchStream, PostgresSource

__all__ = ["BatchStream", "PostgresSource", "embedded_url"]


def embedded_url(*args, **kwargs) -> str:
    """See `lineage_guard.sources.embedded.embedded_url` (imported lazily: pgserver is an extra)."""
    from .embedded import embedded_url as _embedded_url

    return _embedded_url(*args, **kwargs)
