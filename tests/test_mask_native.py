"""The compiled HMAC kernel (`lineage_guard.mask.native`) gives `hmac.new` byte for byte and refuses bad buffers.

The kernel is optional at build time, so a build without it must still mask (the polars-hash
paths, tests/test_mask_tokenize_fast.py). Under CI it must be there: a CI run that silently fell
back would measure and test the wrong path.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lineage_guard.mask import Keyring, MaskSpec, digest, keyed, mask_array, native
from lineage_guard.mask.tokenize import tokenize

kernel = native._kernel
needs_kernel = pytest.mark.skipif(kernel is None and not os.environ.get("CI"),
                                  reason="built without the optional kernel (no compiler or OpenSSL 3 headers)")
keys = st.binary(min_size=0, max_size=200)  # empty, short, one block, longer than a block (hashed first)
values = st.lists(st.binary(max_size=150), max_size=80)


def reference(key: bytes, rows: list[bytes]) -> list[bytes]:
    return [hmac.new(key, v, hashlib.sha256).digest() for v in rows]


def test_the_kernel_is_built_under_ci():
    if os.environ.get("CI"):
        assert kernel is not None, "CI builds lineage_guard.mask._hmac_sha256 (needs gcc and OpenSSL 3 headers)"
        assert native.AVAILABLE
    elif kernel is None:
        pytest.skip("built without the optional kernel")


@needs_kernel
@settings(max_examples=150, deadline=None)
@given(key=keys, rows=values, start=st.integers(0, 5))
def test_digests_equal_hmac_new(key, rows, start):
    raw = pa.array(rows, pa.large_binary())
    want = reference(key, rows)
    assert [d.tobytes() for d in native.digests(key, raw)] == want
    sliced = raw.slice(min(start, len(rows)))  # a non-zero Arrow offset
    assert [d.tobytes() for d in native.digests(key, sliced)] == want[min(start, len(rows)):]


@needs_kernel
@settings(max_examples=150, deadline=None)
@given(key=keys, rows=values, prefix=st.sampled_from([b"", b"tok_", "é-".encode()]), hex_chars=st.integers(0, 64))
def test_hex_text_equals_hmac_new(key, rows, prefix, hex_chars):
    got = native.hex_text(key, pa.array(rows, pa.large_binary()), prefix, hex_chars)
    assert got.type == pa.large_string()
    assert got.to_pylist() == [prefix.decode() + d.hex()[:hex_chars] for d in reference(key, rows)]


@needs_kernel
def test_two_threads_over_halves_match(monkeypatch):
    monkeypatch.setattr(native, "THREADED_MIN", 2)
    for n in (2, 3, 1001):
        rows = [os.urandom(i % 90) for i in range(n)]
        raw = pa.array(rows, pa.large_binary()).slice(1)
        assert [d.tobytes() for d in native.digests(b"k" * 64, raw)] == reference(b"k" * 64, rows[1:])
        assert native.hex_text(b"k", raw, b"p", 64).to_pylist() == ["p" + d.hex() for d in reference(b"k", rows[1:])]


@needs_kernel
def test_a_large_column_on_the_default_threading_matches():
    rows = [f"user{i}@example.invalid".encode() for i in range(native.THREADED_MIN * 2 + 17)]
    got = native.digests(b"key", pa.array(rows, pa.large_binary()))
    for i in (0, 1, native.THREADED_MIN, native.THREADED_MIN + 9, len(rows) - 1):
        assert got[i].tobytes() == hmac.new(b"key", rows[i], hashlib.sha256).digest()


@needs_kernel
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(st.one_of(st.none(), st.text(max_size=40)), max_size=60),
       length=st.integers(8, 64), prefix=st.sampled_from(["", "tok_"]))
def test_every_path_gives_the_same_tokens(monkeypatch, texts, length, prefix):
    """The kernel, polars-hash and the Python loop: one token per value, whichever is built."""
    keyring = Keyring(bytes(range(32)))
    spec = MaskSpec("tokenize", {"length": length, "prefix": prefix}, "purpose:native")
    column = pa.array(texts, pa.string())
    monkeypatch.setattr(native, "AVAILABLE", True)
    fast = tokenize(column, spec, keyring)
    monkeypatch.setattr(native, "AVAILABLE", False)
    monkeypatch.setattr(keyed, "COMPILED_MIN", 0)
    plugin = tokenize(column, spec, keyring)
    monkeypatch.setattr(keyed, "COMPILED_MIN", 10**9)
    loop = tokenize(column, spec, keyring)
    assert fast.equals(plugin) and fast.equals(loop) and fast.type == pa.string()


@needs_kernel
@pytest.mark.parametrize("method,params", [("pseudonymize", {"kind": "email"}), ("format_preserving", {}),
                                           ("tokenize", {}), ("shift_date", {"max_days": 30})])
def test_every_keyed_method_is_unchanged_by_the_kernel(monkeypatch, method, params):
    keyring = Keyring(bytes(range(32)))
    spec = MaskSpec(method, params, "purpose:native")
    if method == "shift_date":
        import datetime as dt
        column = pa.array([dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(3000)])
    else:
        column = pa.array([f"user{i}@example.invalid" if i % 7 else None for i in range(3000)])
    monkeypatch.setattr(native, "AVAILABLE", True)
    fast = mask_array(column, spec, keyring)
    monkeypatch.setattr(native, "AVAILABLE", False)
    assert fast.equals(mask_array(column, spec, keyring))


@needs_kernel
def test_version_2_digests_take_the_kernel_and_match(monkeypatch):
    rows = [os.urandom(i % 40) for i in range(5000)]
    raw = pa.array(rows, pa.binary())
    monkeypatch.setattr(native, "AVAILABLE", True)
    fast = digest.hmac_sha256_arrow(b"raw key bytes", raw)
    monkeypatch.setattr(native, "AVAILABLE", False)
    assert np.array_equal(fast, digest.hmac_sha256_arrow(b"raw key bytes", raw))


def test_chunked_input_takes_either_path_and_matches(monkeypatch):
    chunked = pa.chunked_array([[b"a", b"bb"], [], [b"ccc"]], pa.binary())
    want = reference(b"k", [b"a", b"bb", b"ccc"])
    for available in (True, False):
        monkeypatch.setattr(native, "AVAILABLE", available and kernel is not None)
        assert [d.tobytes() for d in digest.hmac_sha256_arrow(b"k", chunked)] == want
        assert [d.tobytes() for d in keyed.hmac_digests("ab" * 32, chunked)] == \
            reference(("ab" * 32).encode(), [b"a", b"bb", b"ccc"])


@needs_kernel
@pytest.mark.parametrize("offsets,data,error", [
    (np.array([0, 4, 100], np.int64), b"abcd", "not a valid binary array"),   # past the data
    (np.array([0, 4, 2], np.int64), b"abcdef", "not a valid binary array"),   # going back
    (np.array([-1, 2], np.int64), b"abcdef", "not a valid binary array"),     # before the data
    (np.array([], np.int64), b"", "n \\+ 1 int64"),                          # no offsets at all
    (b"\x00" * 12, b"", "n \\+ 1 int64"),                                     # not whole int64s
])
def test_bad_buffers_are_refused_before_any_row_is_hashed(offsets, data, error):
    n = max(len(offsets) // (8 if isinstance(offsets, bytes) else 1) - 1, 0)
    out = np.zeros((n, 32), np.uint8)
    with pytest.raises(ValueError, match=error):
        kernel.digests(b"key", offsets.tobytes() if isinstance(offsets, np.ndarray) else offsets, data, out)
    assert not out.any()


@needs_kernel
def test_wrong_output_sizes_and_arguments_are_refused():
    offsets = np.array([0, 1, 2], np.int64).tobytes()
    with pytest.raises(ValueError, match="32 bytes per row"):
        kernel.digests(b"k", offsets, b"ab", np.zeros((3, 32), np.uint8))
    with pytest.raises(ValueError, match="len\\(prefix\\) \\+ hex_chars"):
        kernel.hex_rows(b"k", offsets, b"ab", np.zeros((2, 10), np.uint8), b"p", 64)
    with pytest.raises(ValueError, match="between 0 and 64"):
        kernel.hex_rows(b"k", offsets, b"ab", np.zeros((2, 66), np.uint8), b"", 65)
    with pytest.raises(TypeError):
        kernel.digests(b"k", offsets, b"ab", b"\x00" * 64)  # read-only output
    with pytest.raises(TypeError, match="null-free large_binary"):
        native.digests(b"k", pa.array([b"a", None], pa.large_binary()))
    with pytest.raises(TypeError, match="null-free large_binary"):
        native.digests(b"k", pa.array([b"a"], pa.binary()))


def test_a_bad_token_length_is_refused_on_every_path(monkeypatch):
    key_text = "ab" * 32
    for available in (True, False):
        monkeypatch.setattr(native, "AVAILABLE", available and kernel is not None)
        with pytest.raises(Exception, match="0 to 64 hex characters"):
            keyed.hmac_hex(key_text, pa.array([b"a"]), length=65)


@needs_kernel
def test_no_key_byte_in_any_kernel_error():
    key = b"SECRET-KEY-MATERIAL-" * 4
    errors = []
    for args in ((key, b"\x00" * 8, b"", np.zeros((5, 32), np.uint8)),
                 (key, np.array([0, 9], np.int64).tobytes(), b"abc", np.zeros((1, 32), np.uint8))):
        with pytest.raises(ValueError) as caught:
            kernel.digests(*args)
        errors.append(str(caught.value))
    assert errors and not any("SECRET" in e or key.hex() in e for e in errors)


@needs_kernel
@settings(max_examples=300, deadline=None)
@given(offsets=st.lists(st.integers(-(2**63), 2**63 - 1) | st.integers(-3, 40), min_size=0, max_size=12),
       data=st.binary(max_size=40), hex_chars=st.integers(-2, 66), prefix=st.binary(max_size=5))
def test_arbitrary_offsets_are_hashed_exactly_or_refused(offsets, data, hex_chars, prefix):
    """Any offsets buffer, however hostile: a correct answer for a valid one, a ValueError otherwise, never a crash."""
    raw = np.array(offsets, np.int64).tobytes()
    n = max(len(offsets) - 1, 0)
    valid = bool(offsets) and all(0 <= o <= len(data) for o in offsets) \
        and all(a <= b for a, b in itertools.pairwise(offsets))
    rows = [data[offsets[i]:offsets[i + 1]] for i in range(n)] if valid else []
    out = np.zeros((n, 32), np.uint8)
    if valid:
        kernel.digests(b"k", raw, data, out)
        assert [r.tobytes() for r in out] == reference(b"k", rows)
    else:
        with pytest.raises(ValueError):
            kernel.digests(b"k", raw, data, out)
    width = len(prefix) + hex_chars
    text = np.zeros(max(n * width, 0), np.uint8)
    if valid and 0 <= hex_chars <= 64:
        kernel.hex_rows(b"k", raw, data, text, prefix, hex_chars)
        assert [bytes(text[i * width:(i + 1) * width]) for i in range(n)] == \
            [prefix + d.hex()[:hex_chars].encode() for d in reference(b"k", rows)]
    else:
        with pytest.raises(ValueError):
            kernel.hex_rows(b"k", raw, data, text, prefix, hex_chars)
