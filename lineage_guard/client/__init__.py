"""Thin clients of `lineage-guard serve`: the same plan/stream/read/extract API, no secret but a credential.

A client process holds its own credential (a token, a token file such as a projected Kubernetes
service-account token, or `$LINEAGE_GUARD_TOKEN`) and nothing else: no masking key, no database
driver or password, no Great Expectations. The server decides who the caller is from the
credential; the client only says which purpose it reads for.

Example:
    >>> from lineage_guard.client import connect
    >>> with connect("grpc+tls://lg.internal:31337", purpose="ai_training",
    ...              token_file="/var/run/secrets/tokens/lineage-guard") as s:      # doctest: +SKIP
    ...     s.plan("SELECT id, email FROM patients").action
    ...     table = s.read_arrow("SELECT id, email FROM patients LIMIT 10")
    ...     s.extract("SELECT * FROM patients", to="patients.parquet").receipt_id
"""

from __future__ import annotations

from ..extras import needs_extra

with needs_extra("lineage_guard.client (the thin client of lineage-guard serve)", "service"):
    from .session import (
        InvalidRequest,
        NotAuthenticated,
        RemoteColumn,
        RemoteExtractResult,
        RemotePlan,
        RemoteSession,
        RemoteWriteResult,
        ServiceError,
        ServiceUnavailable,
        UnknownTicket,
        connect,
    )

__all__ = ["InvalidRequest", "NotAuthenticated", "RemoteColumn", "RemoteExtractResult", "RemotePlan",
           "RemoteSession", "RemoteWriteResult", "ServiceError", "ServiceUnavailable", "UnknownTicket", "connect"]
