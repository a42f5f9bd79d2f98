"""How long a thin client of `lineage-guard serve` waits by default: one value for the client and for the
Airflow and Dagster integrations, which must not import the client (pyarrow.flight) just to know it.

See `lineage_guard.client.waits` for what each bounds and why these values.
"""

# The longest wait for the service's next message (a unary call's answer, a stream's next batch). Above the
# server's default statement timeout (service.limits.statement_timeout_s, 600 s): a slow query is ended by
# the server, with its reason, before the client gives up on it.
SERVICE_TIMEOUT_S = 900.0
# HTTP/2 keepalive ping interval while a call is open: a dead connection fails within it plus 20 s.
SERVICE_KEEPALIVE_S = 60.0
