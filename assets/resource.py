"""`GovernedPostgresResource`: lineage_guard's governed reads as a Dagster resource.

Configure the source as a URL or as parts (the password through `dg.EnvVar`, so it is
never stored in the run's config), the policy, the purpose and, optionally, the identity.
Without an identity, each asset reads as the service `dagster:<asset key>` (or
`dagster:<job name>` outside an asset): declare it in the policy with its groups.

Service mode: give `service_url` (`grpc+tls://host:port` of `lineage-guard serve`) and a
credential, `token=dg.EnvVar("LG_TOKEN")` or `token_file=` (a projected service-account token);
the server holds the policy, the database credentials and the keys, and decides the identity from
the token, so the source fields, `policy`, `identity` and `master_key` are not given. Embedded mode
(the path in this process) stays for development.

Example:
    >>> import dagster as dg
    >>> served = GovernedPostgresResource(service_url="grpc+tls://lg.internal:31337", purpose="ai_training",
    ...                                   token_file="/var/run/secrets/tokens/lineage-guard")
    >>> served.service_mode
    True
    >>> clinic = GovernedPostgresResource(
    ...     host="db.internal", database="clinic", user="svc_dagster", password=dg.EnvVar("CLINIC_PW"),
    ...     policy="policy.yaml", purpose="ai_training", identity="svc-training")
    >>> @dg.asset
    ... def patient_counts(clinic: GovernedPostgresResource):              # doctest: +SKIP
    ...     return clinic.read_polars("SELECT diagnosis, count(*) FROM patients GROUP BY 1")
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
from pydantic import Field, PrivateAttr

from lineage_guard.errors import ConfigError
from lineage_guard.identity import Identity
from lineage_guard.run import ParentRun
from lineage_guard.timeouts import SERVICE_TIMEOUT_S

from .failures import governed_failures
from .lineage import DagsterLineage, RefusalsAnnounced, Upstream


class GovernedPostgresResource(dg.ConfigurableResource):
    """Governed, masked, audited reads of PostgreSQL for Dagster assets (plan / read / extract)."""

    url: str | None = Field(default=None, description="postgresql:// URL; or give host/database/user/password")
    host: str | None = None
    port: int = 5432
    database: str | None = None
    user: str | None = None
    password: str | None = Field(default=None, description="use dg.EnvVar('...'): never a literal")
    policy: str | None = Field(default=None, description="path of the lineage_guard policy YAML (embedded mode)")
    purpose: str = Field(description="why the data is read; must be declared in the policy")
    identity: str | None = Field(default=None, description="principal (or kind:name / JSON); default "
                                                           "the service dagster:<asset key>")
    environment: str | None = Field(default=None, description="source environment the policy may distinguish")
    statement_timeout_ms: int = 60_000
    approval_wait_s: float | None = Field(default=None, description="wait this long for a pending approval "
                                                                    "instead of failing at once")
    master_key: str | None = Field(default=None, description="masking master key (dg.EnvVar); default "
                                                             "LINEAGE_GUARD_MASTER_KEY(_FILE)")
    job_namespace: str | None = Field(default=None, description="OpenLineage job namespace; default "
                                                                "$OPENLINEAGE_NAMESPACE or lineage_guard")
    source_asset_prefix: list[str] = Field(default_factory=lambda: ["postgres"],
                                           description="asset key prefix naming source tables in column "
                                                       "lineage: <prefix>/<schema>/<table>")

    service_url: str | None = Field(default=None, description="grpc+tls://host:port of lineage-guard serve: "
                                                              "service mode (no source, key or policy here)")
    token: str | None = Field(default=None, description="service mode: the bearer token; use dg.EnvVar('...')")
    token_file: str | None = Field(default=None, description="service mode: a file holding the token, re-read "
                                                             "each call (e.g. a projected service-account token)")
    ca_file: str | None = Field(default=None, description="service mode: PEM of the CA of the server's "
                                                          "certificate (default: the system store)")
    service_timeout_s: float | None = Field(default=SERVICE_TIMEOUT_S, gt=0, description=(
        "service mode: the longest wait, in seconds, for the service's next message (a call's answer, a "
        "stream's next batch), so a stalled stream fails with a retriable ServiceUnavailable (a RetryPolicy "
        "retries it) instead of waiting forever; it bounds the gap between batches, never a stream with data "
        "flowing. None: no bound (the client's keepalive pings still end a dead connection)"))

    _run: tuple[str | None, str | None] = PrivateAttr(default=(None, None))

    @property
    def service_mode(self) -> bool:
        return bool(self.service_url)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Calls made without a context still name the Dagster run as their parent.
        run = context.dagster_run
        if run is not None:
            self._run = (run.run_id, run.job_name)

    # -- configuration ---------------------------------------------------------------------------

    def source_url(self) -> str:
        """The libpq URL (it holds the password: never log it)."""
        if self.url:
            if self.host or self.database or self.user or self.password:
                raise ConfigError("GovernedPostgresResource: give either url or host/database/user/password, "
                                  "not both")
            return self.url
        if not self.host or not self.database:
            raise ConfigError("GovernedPostgresResource: set url, or host and database (with user and password)")
        from lineage_guard.sources.pg_url import compose_url

        # compose_url: a socket directory as host (/var/run/postgresql) goes in ?host=, as libpq reads it
        return compose_url(host=self.host, port=self.port, database=self.database, user=self.user,
                           password=self.password)

    def identity_for(self, context: Any = None) -> Identity:
        """The configured identity, else the service `dagster:<asset key>` / `dagster:<job>` of `context`."""
        if self.identity:
            return Identity.parse(self.identity)
        name = _asset_name(context) or _job_name(context) or self._run[1]
        if not name:
            raise ConfigError("GovernedPostgresResource: no identity configured and no Dagster context to derive "
                              "one from; set identity= or pass context=")
        return Identity(f"dagster:{name}", "service")

    def policy_path(self) -> Path:
        if not self.policy:
            raise ConfigError("GovernedPostgresResource: set policy= (the policy YAML), or service_url= and a token "
                              "to read through lineage-guard serve")
        path = Path(self.policy).expanduser()
        if not path.is_file():
            raise ConfigError(f"GovernedPostgresResource: policy file {self.policy} does not exist")
        return path

    # -- sessions --------------------------------------------------------------------------------

    def session(self, context: Any = None, *, purpose: str | None = None, identity: str | None = None,
                upstream: Sequence[Upstream] = (), asset: str | None = None, run_context: dict | None = None):
        """A `GovernedSession` for one governed step, tied to the Dagster run in `context`.

        Its runs get their own OpenLineage run ids with the Dagster run as parent; the job is
        named after the asset (`asset`, "a/b" form, overrides the one `context` names). Close it
        when done (it is a context manager). In service mode, a `lineage_guard.client.RemoteSession`
        (`run_context`: the Dagster run the service records as the caller's, see `RemoteSession`).
        """
        if self.service_mode:
            return self._remote(purpose, identity, run_context)
        from lineage_guard.session import GovernedSession

        keyring = None
        if self.master_key:
            from lineage_guard.mask import Keyring
            from lineage_guard.mask.keys import ENV_KEY

            keyring = Keyring.from_env({ENV_KEY: self.master_key})
        who = Identity.parse(identity) if identity else (
            self.identity_for(None) if self.identity or not asset else Identity(f"dagster:{asset}", "service"))
        if not identity and not asset:
            who = self.identity_for(context)
        job = _job_name(context) or self._run[1]
        run_id = (getattr(context, "run_id", None) if context is not None else None) or self._run[0]
        from lineage_guard.audit import Ledger

        lineage = DagsterLineage(upstream)
        ledger = Ledger.open()
        try:
            session = GovernedSession(
                self.source_url(), self.policy_path(), who, purpose or self.purpose,
                keyring=keyring, lineage=lineage, ledger=RefusalsAnnounced(ledger, lineage),
                environment=self.environment, approval_wait=self.approval_wait_s,
                statement_timeout_ms=self.statement_timeout_ms, job_namespace=self.job_namespace,
                job_name=(asset.replace("/", ".") if asset else _asset_name(context, sep=".")) or job or None,
                approval_context={k: v for k, v in {"dagster_job": job, "dagster_run_id": run_id,
                                                    "dagster_asset": asset or _asset_name(context)}.items() if v},
            )
        except BaseException:
            ledger.close()
            raise
        if run_id and job:
            session.parent = ParentRun(run_id=run_id, job_namespace=session.job_namespace, job_name=job)
        return session

    def _remote(self, purpose: str | None, identity: str | None, run_context: dict | None = None):
        """The thin client: the server establishes the identity from the token, so none may be named here."""
        embedded = [name for name in ("url", "host", "database", "user", "password", "master_key", "policy", "identity")
                    if getattr(self, name)]
        if identity:
            embedded.append("identity")
        if embedded:
            raise ConfigError(f"GovernedPostgresResource: service_url is set, so {', '.join(sorted(set(embedded)))} "
                              "must not be: the service holds the source, the policy and the keys, and decides the "
                              "identity from the token (map its subject to an identity in the server's policy)")
        from lineage_guard.client import connect

        options: dict[str, Any] = {"tls_root_certs": self.ca_file} if self.ca_file else {}
        if run_context is not None:
            options["run_context"] = run_context
        options["timeout_s"] = self.service_timeout_s
        if self.token and self.token_file:
            raise ConfigError("GovernedPostgresResource: give token or token_file, not both")
        return connect(self.service_url, purpose=purpose or self.purpose, token=self.token or None,
                       token_file=self.token_file or None, **options)

    def plan(self, sql: str, context: Any = None):
        """Steps 1-4 only: the `Decision` for `sql` (no data read, nothing recorded)."""
        with governed_failures(), self.session(context) as s:
            return s.plan(sql)

    def read_arrow(self, sql: str, parameters: Sequence[Any] | None = None, context: Any = None) -> pa.Table:
        """The masked result as an Arrow table; a denial raises `dagster.Failure`.

        Inside an asset, pass `context=`: the read is then tied to the asset (identity, lineage
        parent) and a `GovernedIOManager` storing what the asset returns knows where each
        column came from and what was already masked.
        """
        with governed_failures(), self.session(context) as s:
            if self.service_mode:
                # The server's provenance document comes back with the receipt: the IO manager stores what
                # was served (and only that) with it in the file's footer.
                table = s.read_arrow(sql, parameters, provenance=context is not None)
                if context is not None and s.last_receipts:
                    _remember_served(context, s.last_receipts[-1], table)
                return table
            table = s.read_arrow(sql, parameters)
            _remember(context, s.lineage, table)
            return table

    def read_polars(self, sql: str, parameters: Sequence[Any] | None = None, context: Any = None):
        """The masked result as a Polars DataFrame; a denial raises `dagster.Failure`."""
        import polars as pl

        return pl.from_arrow(self.read_arrow(sql, parameters, context))

    def extract(self, sql: str, to: str, parameters: Sequence[Any] | None = None, context: Any = None):
        """Read, mask and write Parquet atomically to `to`; returns the `ExtractResult`."""
        with governed_failures(), self.session(context) as s:
            return s.extract(sql, to, parameters)


def _remember(context: Any, lineage: DagsterLineage, table: pa.Table) -> None:
    """Tell this step's IO manager the provenance of what was just read (columns, masks applied)."""
    from .provenance import STEP_INPUTS, Loaded, provenance_of

    step = _step_key(context)
    if step is None or not lineage.completed:
        return
    run = lineage.completed[-1]
    STEP_INPUTS.add(step[0], step[1], Loaded(None, f"memory://{run.run_id}", (),
                                             tuple(provenance_of(run.decision)), table))


def _remember_served(context: Any, receipt: Any, table: pa.Table) -> None:
    """Tell this step's IO manager (service mode) what the service served, with the server's provenance."""
    from .provenance import STEP_INPUTS
    from .served import served_input

    step = _step_key(context)
    if step is not None and receipt.provenance:
        STEP_INPUTS.add(step[0], step[1], served_input(receipt, table))


def _step_key(context: Any) -> tuple[str, str] | None:
    try:
        step = context.get_step_execution_context()
        return step.run_id, step.step.key
    except Exception:  # noqa: BLE001 - no step (a direct call outside a run)
        return None


def _job_name(context: Any) -> str | None:
    try:
        return context.job_name if context is not None else None
    except Exception:  # noqa: BLE001 - contexts built for tests or outside a run have no job
        return None


def _asset_name(context: Any, sep: str = "/") -> str | None:
    if context is None:
        return None
    try:
        return sep.join(context.asset_key.path)
    except Exception:  # noqa: BLE001 - an op without an asset, or a multi-asset without a single key
        return None
