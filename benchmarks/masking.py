"""Masking speed: every method on 2,000,000-row Arrow columns, against per-value Python baselines measured in the same run.

    .venv/bin/python benchmarks/masking.py                 # full run, a few minutes on 2 cores
    .venv/bin/python benchmarks/masking.py --rows 200000   # quick look
    .venv/bin/python benchmarks/masking.py --only tokenize # one method's rows (and the tokenize path crossing)

Columns: `high` = every row a distinct email; `low` = 5,000 distinct emails repeated.
Baselines: a per-value `hmac.new(key, v.encode(), sha256).hexdigest()` loop over the same
column (what a hand-written UDF does), and for pseudonymize a "seed Faker per value" loop
timed on a subsample and extrapolated to the full column (said so in the table).
Also checks pseudonymize makes zero collisions over the high-cardinality column.
Prints the median of N repeats; nothing here is asserted, it is not a test.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import platform
import statistics
import sys
import time

import numpy as np
import pyarrow as pa

from lineage_guard.mask import Keyring, MaskSpec, mask_array, mask_batch

LOW_DISTINCT = 5_000
FAKER_SAMPLE = 20_000


def timed(fn, repeats: int) -> tuple[float, object]:
    runs, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs), out


def emails(ids: np.ndarray) -> pa.Array:
    return pa.array(np.char.add(np.char.add("user", ids.astype(str)), "@example.org").astype(object), pa.string())


def hmac_loop(column: pa.Array, key: bytes) -> pa.Array:
    return pa.array([None if v is None else hmac.new(key, v.encode(), hashlib.sha256).hexdigest()
                     for v in column.to_pylist()])


def faker_per_value(values: list[str], key: bytes) -> list[str]:
    from faker import Faker

    fake = Faker("en_US")
    out = []
    for v in values:
        fake.seed_instance(int.from_bytes(hmac.new(key, v.encode(), hashlib.sha256).digest()[:8], "big"))
        out.append(fake.email())
    return out


def openssl_hmac_rate(length: int) -> float:
    """HMAC-SHA256 per second on one core from `openssl speed -hmac sha256` at `length`-byte inputs (NaN without openssl)."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        return float("nan")
    out = subprocess.run(["openssl", "speed", "-seconds", "3", "-bytes", str(length), "-hmac", "sha256"],
                         capture_output=True, text=True, check=False).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("hmac(sha256)")), "")
    if not line:
        return float("nan")
    kbytes = float(line.split()[-1].rstrip("k"))
    return kbytes * 1000 / length


def cryptography_loop(column: pa.Array, key: bytes) -> None:
    """OpenSSL's HMAC through `cryptography`, one call per value of the same inputs (a Python loop around C)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives import hmac as chmac

    sha = hashes.SHA256()
    for v in column.to_pylist():
        h = chmac.HMAC(key, sha)
        h.update(v.encode())
        h.finalize()


class _one_thread:
    """Both compiled HMAC paths on one thread (the CPU comparison), restored afterwards."""

    def __enter__(self):
        from lineage_guard.mask import keyed, native

        self._saved = keyed.THREADS, native.THREADS
        keyed.THREADS = native.THREADS = 1

    def __exit__(self, *exc):
        from lineage_guard.mask import keyed, native

        keyed.THREADS, native.THREADS = self._saved


class _kernel:
    """Force the kernel on (`native`, the project's C kernel) or off (polars-hash), restored afterwards."""

    def __init__(self, on: bool):
        self.on = on

    def __enter__(self):
        from lineage_guard.mask import native

        self._saved = native.AVAILABLE
        native.AVAILABLE = self.on and native._kernel is not None

    def __exit__(self, *exc):
        from lineage_guard.mask import native

        native.AVAILABLE = self._saved


def tokenize_paired(column: pa.Array, keyring: Keyring, key: bytes, pairs: int) -> None:
    """tokenize vs the hmac loop (and OpenSSL's HMAC) run back to back, so load from other processes hits all alike.

    Wall time and CPU time (all threads of this process) per round; the CPU ratio says how much
    less work tokenize does, whatever the other cores are doing at the time. Tokenize runs on one
    thread with the compiled kernel (the CPU comparison), on one thread through polars-hash (a
    build without the kernel), and on two threads (what a pipeline gets by default).
    """
    from lineage_guard.mask import native

    spec = MaskSpec("tokenize", scope="purpose:bench", classification="email")
    key_text = keyring.mask_key_text(spec, "tokenize").encode()  # token version 3: the loop keys with the same bytes
    wall, cpu, cpu2, wall2, crypto, plugin = [], [], [], [], [], []
    for _ in range(pairs):
        w0, c0 = time.perf_counter(), time.process_time()
        hmac_loop(column, key_text)
        w1, c1 = time.perf_counter(), time.process_time()
        with _one_thread():
            mask_array(column, spec, keyring)
        w2, c2 = time.perf_counter(), time.process_time()
        mask_array(column, spec, keyring)
        w3, c3 = time.perf_counter(), time.process_time()
        cryptography_loop(column, key_text)
        c4 = time.process_time()
        with _one_thread(), _kernel(False):
            mask_array(column, spec, keyring)
        c5 = time.process_time()
        wall.append((w1 - w0) / (w2 - w1))
        cpu.append((c1 - c0) / (c2 - c1))
        cpu2.append(c3 - c2)
        wall2.append((w3 - w2) / (w2 - w1))
        crypto.append((c4 - c3) / (c2 - c1))
        plugin.append((c5 - c4) / (c2 - c1))
    n = len(column)
    mean_len = int(np.mean([len(v) for v in column.slice(0, 10_000).to_pylist()]) + 0.5)
    ssl_rate = openssl_hmac_rate(mean_len)
    with _one_thread():
        tok_rate = n / statistics.median(_tokenize_cpu(column, spec, keyring, pairs))
    kernel = "the compiled kernel (lineage_guard.mask.native)" if native.AVAILABLE else "polars-hash (no kernel built)"
    print(f"\n# tokenize high ({n:,} distinct) vs hmac loop, {pairs} back-to-back rounds, "
          f"load average {os.getloadavg()[0]:.2f}; tokenize through {kernel}:")
    print(f"- one thread: CPU-time ratio median {statistics.median(cpu):.1f}x (min {min(cpu):.1f}x, max {max(cpu):.1f}x); "
          f"wall ratio median {statistics.median(wall):.1f}x")
    print(f"- {native.THREADS} threads: CPU {statistics.median(cpu2):.3f} s (all threads); wall vs one thread "
          f"{statistics.median(wall2):.2f}x the time")
    print(f"- polars-hash `hmac_sha256` path (a build without the kernel), one thread: {statistics.median(plugin):.2f}x "
          "the CPU of tokenize")
    print(f"- cryptography HMAC per value (OpenSSL via a Python loop): tokenize {statistics.median(crypto):.1f}x less CPU")
    print(f"- OpenSSL `openssl speed -hmac sha256 -bytes {mean_len}` one core: {ssl_rate:,.0f} HMAC/s; "
          f"tokenize (one thread, whole kernel incl. distinct values and token text) {tok_rate:,.0f} values/CPU-s "
          f"= {100 * tok_rate / ssl_rate:.0f}% of OpenSSL's rate")


def _tokenize_cpu(column: pa.Array, spec: MaskSpec, keyring: Keyring, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        c0 = time.process_time()
        mask_array(column, spec, keyring)
        out.append(time.process_time() - c0)
    return out


def tokenize_crossing(key_text: str, repeats: int) -> None:
    """Digests by distinct-set size: the Python loop, polars-hash (`keyed.COMPILED_MIN` picks between them
    in a build without the kernel) and the compiled kernel, which takes every size where it is built."""
    from lineage_guard.mask import digest, keyed, native

    print("\n# tokenize digests by distinct-set size: Python loop vs polars-hash hmac_sha256 vs the compiled "
          f"kernel ({native.THREADS} threads from {native.THREADED_MIN:,}); without the kernel polars-hash takes "
          f"over from COMPILED_MIN = {keyed.COMPILED_MIN:,}")
    print("| distinct values | loop s | polars-hash s | kernel s | kernel vs loop | kernel vs polars-hash |")
    print("|---:|---:|---:|---:|---:|---:|")
    threshold = keyed.COMPILED_MIN
    try:
        keyed.COMPILED_MIN = 0
        for size in (100, 2_000, 10_000, 30_000, 100_000, 1_000_000):
            raw = pa.array([f"user{i}@example.org".encode() for i in range(size)], pa.large_binary())
            loop_s, _ = timed(lambda raw=raw: digest.hmac_sha256_many(key_text.encode(), raw.to_pylist()),
                              max(repeats, 5))
            with _kernel(False):
                plugin_s, _ = timed(lambda raw=raw: keyed.hmac_digests(key_text, raw), max(repeats, 5))
            with _kernel(True):
                fast_s, _ = timed(lambda raw=raw: keyed.hmac_digests(key_text, raw), max(repeats, 5))
            print(f"| {size:,} | {loop_s:.4f} | {plugin_s:.4f} | {fast_s:.4f} | {loop_s / fast_s:.2f}x | "
                  f"{plugin_s / fast_s:.2f}x |")
    finally:
        keyed.COMPILED_MIN = threshold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="", help="time only rows whose label contains this text")
    args = parser.parse_args()
    n, repeats = args.rows, args.repeats
    keyring = Keyring(os.urandom(32))
    # Keys are per (scope, classification); the baseline loop uses the very key bytes tokenize uses
    # (token version 3: the derived key's hex text).
    key_text = keyring.mask_key_text(MaskSpec("tokenize", scope="purpose:bench", classification="email"), "tokenize")
    key = key_text.encode()
    rng = np.random.default_rng(0)

    columns = {"high": emails(rng.permutation(n)), "low": emails(rng.integers(0, LOW_DISTINCT, n))}
    dates = pa.array(rng.integers(0, 20_000, n).astype("int32")).cast(pa.date32())
    amounts = pa.array(rng.integers(-10**6, 10**6, n))
    print(f"# machine: {platform.platform()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; "
          f"Python {platform.python_version()}, pyarrow {pa.__version__}, numpy {np.__version__}")
    print(f"# rows {n:,}; high = {n:,} distinct emails, low = {LOW_DISTINCT:,} distinct; median of {repeats} runs\n")

    baselines = {}
    for card, column in columns.items():
        baselines[card], _ = timed(lambda column=column: hmac_loop(column, key), repeats)
    sample = columns["high"].slice(0, FAKER_SAMPLE).to_pylist()
    with_faker = args.only in "pseudonymize"
    faker_s, _ = timed(lambda: faker_per_value(sample, key), 1) if with_faker else (float("nan"), None)
    faker_full = faker_s * n / len(sample)

    text_specs = [
        MaskSpec("tokenize", scope="purpose:bench", classification="email"),
        MaskSpec("pseudonymize", {"kind": "email"}, "purpose:bench"),
        MaskSpec("pseudonymize", {"kind": "name"}, "purpose:bench"),
        MaskSpec("format_preserving", scope="purpose:bench"),
        MaskSpec("hash", {"allow_keyless": True}),
        MaskSpec("partial", {"keep_last": 4}),
        MaskSpec("generalize", {"keep": 3}),
        MaskSpec("redact"),
        MaskSpec("null"),
    ]
    rows = [("hmac.new per value (baseline)", card, baselines[card], 1.0, "") for card in columns]
    if with_faker:
        rows.append(("Faker seeded per value (baseline)", "high", faker_full, None,
                     f"extrapolated from {FAKER_SAMPLE:,} values"))
    for spec in [s for s in text_specs if args.only in s.describe()]:
        mask_array(columns["low"].slice(0, 100), spec, keyring)  # warm-up: Faker pools are built once per process
        for card, column in columns.items():
            seconds, _ = timed(lambda column=column, spec=spec: mask_array(column, spec, keyring), repeats)
            note = ""
            if spec.method == "pseudonymize" and card == "high":
                note = f"{faker_full / seconds:,.0f}x Faker-per-value"
            rows.append((spec.describe(), card, seconds, baselines[card] / seconds, note))
    subjects = pa.array(rng.integers(0, LOW_DISTINCT, n))
    batch = pa.record_batch({"patient": subjects, "visit": dates, "amount": amounts})
    for label, specs in [
        ("generalize(to=month) date32", {1: MaskSpec("generalize", {"to": "month"})}),
        ("generalize(bucket=1000) int64", {2: MaskSpec("generalize", {"bucket": 1000})}),
        ("shift_date(subject=patient)", {1: MaskSpec("shift_date", {"subject": "patient"}, "purpose:bench", subject=0)}),
        ("tokenize int64", {2: MaskSpec("tokenize", scope="purpose:bench")}),
        ("drop (mask_batch)", {2: MaskSpec("drop")}),
    ]:
        if args.only not in label:
            continue
        seconds, _ = timed(lambda specs=specs: mask_batch(batch, specs, keyring), repeats)
        rows.append((label, "typed", seconds, None, ""))

    print("| method | column | median s | values/s | vs hmac loop | note |")
    print("|---|---|---:|---:|---:|---|")
    for label, card, seconds, ratio, note in rows:
        ratio_text = f"{ratio:,.1f}x" if ratio is not None else "-"
        print(f"| {label} | {card} | {seconds:.3f} | {n / seconds:,.0f} | {ratio_text} | {note} |")

    if args.only in "tokenize":
        tokenize_paired(columns["high"], keyring, key, max(repeats, 5))
        tokenize_crossing(key_text, repeats)
    if not with_faker:
        return
    print("\n# pseudonymize collisions over the high-cardinality column (distinct inputs: "
          f"{len(columns['high']):,})")
    for kind in ("name", "email", "phone", "address", "company"):
        out = mask_array(columns["high"], MaskSpec("pseudonymize", {"kind": kind}, "purpose:bench"), keyring)
        distinct = len(set(out.to_pylist()))
        print(f"{kind:8s} distinct outputs {distinct:,}  collisions {len(out) - distinct}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
