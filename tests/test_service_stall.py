"""A stalled connection ends a thin client's call in a retriable error, never a hang.

The real TLS service on the real PostgreSQL, the client through a TCP proxy that black-holes its connection:
it stops forwarding either way and closes nothing (a pulled cable, a dropped NAT entry, a peer host gone).
The proxy's kernel keeps acknowledging TCP, so nothing but the client's own checks can notice. Before the
fix, such a DoGet waited in grpc::ClientReader::Read forever (py-spy), which is what hung
test_dagster_split for 46 minutes: its proxy's "reset" of the client side never went out (close() does not
end a recv() another thread is in), leaving exactly this silent connection.

Each fault is checked through each mechanism alone: the idle timeout (`timeout_s`, keepalive off) and the
HTTP/2 keepalive (`keepalive_s`, no idle timeout), mid-stream and before the endpoint's first byte. The call
must fail with `ServiceUnavailable` (a fault, not a refusal: orchestrators retry it), and the retry of the
same endpoint must bring its rows. A regression would hang: each call runs under a generous bound
(`HANG_S`) that turns a hang into a failure instead.
"""

from __future__ import annotations

import threading
import time

import pytest
from conftest import require
from fault_proxy import CuttingProxy
from service_helpers import people_service

SQL = "SELECT id, email, ssn, plan FROM people"
ROWS = 40_000
EXCHANGE = """  exchange:
    - {identity: svc-training, tables: [public.people], purposes: [ai_training]}
"""
HANG_S = 120          # not a timing assert: only how long a hang may last before it counts as one
MECHANISMS = {
    "idle timeout": {"timeout_s": 3, "keepalive_s": None},
    "keepalive": {"timeout_s": None, "keepalive_s": 1},
}


@pytest.fixture(scope="module")
def svc(new_database, tmp_path_factory):
    require("jwt", "service")
    with people_service(new_database(), tmp_path_factory.mktemp("stall"), rows=ROWS,
                        extra_policy=EXCHANGE) as service:
        yield service


def session(svc, url=None, **options):
    from lineage_guard.client import connect

    return connect(url or svc.url, purpose="ai_training", token=svc.token, tls_root_certs=svc.tls.pem, **options)


def split(svc, parts: int = 2) -> list:
    with session(svc) as s, s._prepared(SQL, None) as descriptor:
        return list(s.flight_info(descriptor, partitions=parts).endpoints)


def outcome(fn) -> BaseException | object:
    """What `fn()` raised (or returned), failing the test if it is still waiting after HANG_S."""
    box: dict = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - the outcome under test
            box["value"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(HANG_S)
    if worker.is_alive():
        pytest.fail(f"the call still waits after {HANG_S} s on a black-holed connection: a hang")
    return box["value"]


@pytest.mark.parametrize("phase", ["mid-stream", "before the first byte"])
@pytest.mark.parametrize("mechanism", list(MECHANISMS))
def test_a_black_holed_endpoint_fails_retriably_and_its_retry_brings_its_rows(svc, mechanism, phase):
    from lineage_guard.client import ServiceError, ServiceUnavailable
    from lineage_guard.errors import ConfigError

    endpoint, other = split(svc)
    cut_after = 256 * 1024 if phase == "mid-stream" else None   # an endpoint is ~700 KB of Flight data
    port = int(svc.url.rsplit(":", 1)[1])
    with (CuttingProxy(("127.0.0.1", port), cut_after=cut_after, black_hole=True) as proxy,
          session(svc, f"grpc+tls://127.0.0.1:{proxy.port}", **MECHANISMS[mechanism]) as s):
        assert s.health()["status"]          # the connection is up and answering
        if cut_after is None:
            proxy.cut_now()                  # silent from the DoGet's very first byte
        failed = outcome(lambda: s.fetch(endpoint))
        assert isinstance(failed, ServiceUnavailable), repr(failed)
        assert isinstance(failed, ServiceError) and not isinstance(failed, ConfigError)   # retriable, not "fix it"

        # The retry, as an orchestrator's next attempt makes it: a new session on the same address, in the
        # same process, while the black-holed connection is still open (the proxy forwards new ones whole).
        with session(svc, f"grpc+tls://127.0.0.1:{proxy.port}", **MECHANISMS[mechanism]) as again:
            retried = outcome(lambda: (again.fetch(endpoint), again.fetch(other)))
    assert proxy.cuts == 1                       # the fault really happened, once
    assert not isinstance(retried, BaseException), repr(retried)
    (table, receipt), (rest, _) = retried
    assert receipt.receipt_id and table.num_rows > 0
    assert table.num_rows + rest.num_rows == ROWS


def test_the_idle_timeout_bounds_each_wait_not_the_stream(svc):
    """A stream lasting longer than `timeout_s`, with messages flowing, is not a stall: the bound is on each
    wait for the service's next message (a deadline, the old `timeout_s`, cut such a stream). One DoExchange
    whose batches come slower than `timeout_s` completes, every batch masked."""
    import pyarrow as pa

    timeout_s = 3
    raw = [f"user{i}@example.org" for i in range(3)]

    def slow_batches():
        for i, email in enumerate(raw):
            if i:
                time.sleep(timeout_s + 1)   # this process is busy between batches, not waiting on the service
            yield pa.record_batch({"id": pa.array([i], pa.int32()), "email": [email], "plan": ["free"]})

    with session(svc, timeout_s=timeout_s, keepalive_s=1) as s:
        started = time.monotonic()
        masked = list(s.mask_batches(slow_batches(), table="public.people", input_uri="file:///lake/people.parquet"))
        lasted = time.monotonic() - started
        receipt = s.last_receipts[0]
    assert lasted > timeout_s                   # the premise: the stream outlasted timeout_s
    emails = [v for b in masked for v in b.column("email").to_pylist()]
    assert len(emails) == len(raw) and not set(emails) & set(raw) and receipt.receipt_id


def test_the_defaults_bound_every_wait_without_any_setting():
    """No setting is needed for a stalled call to end: the client, the Airflow operators and the Dagster
    resource default to the same finite idle timeout, and the client pings while a call is open."""
    from lineage_guard.client.waits import keepalive_options
    from lineage_guard.timeouts import SERVICE_KEEPALIVE_S, SERVICE_TIMEOUT_S

    require("pyarrow.flight", "service")
    import inspect

    from lineage_guard.client import RemoteSession

    params = inspect.signature(RemoteSession).parameters
    assert params["timeout_s"].default == SERVICE_TIMEOUT_S and 0 < SERVICE_TIMEOUT_S < float("inf")
    assert params["keepalive_s"].default == SERVICE_KEEPALIVE_S
    assert dict(keepalive_options(SERVICE_KEEPALIVE_S))["grpc.http2.max_pings_without_data"] == 0
