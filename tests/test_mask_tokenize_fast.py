"""The compiled HMAC path (two polars-hash SHA-256 passes) gives byte-identical digests and tokens to `hmac.new`."""

from __future__ import annotations

import hashlib
import hmac

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lineage_guard.mask import Keyring, MaskSpec, digest, mask_array
from lineage_guard.mask.digest import hmac_sha256_arrow, hmac_sha256_many
from lineage_guard.mask.tokenize import tokenize

SCOPE = "purpose:fast"
keys = st.binary(min_size=0, max_size=130)  # empty, short, exactly one block, longer than a block (hashed)
texts = st.lists(st.one_of(st.none(), st.text(max_size=40), st.just("")), max_size=60)


@pytest.fixture
def compiled_always(monkeypatch):
    """Send every size through the compiled path, so small generated inputs exercise it."""
    monkeypatch.setattr(digest, "COMPILED_MIN", 0)


def expected_hex(key: bytes, values: list[str | None]) -> list[str | None]:
    return [None if v is None else hmac.new(key, v.encode(), hashlib.sha256).hexdigest() for v in values]


def as_hex(matrix: np.ndarray) -> list[str]:
    return [row.tobytes().hex() for row in matrix]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=keys, values=texts)
def test_compiled_digests_equal_hmac_new(compiled_always, key, values):
    raw = pa.array([None if v is None else v.encode() for v in values], pa.binary())
    want = [hmac.new(key, b"" if v is None else v.encode(), hashlib.sha256).hexdigest() for v in values]
    assert as_hex(hmac_sha256_arrow(key, raw)) == want
    assert as_hex(hmac_sha256_arrow(key, raw.cast(pa.large_binary()))) == want
    assert as_hex(hmac_sha256_arrow(key, raw.slice(1))) == want[1:]  # a non-zero Arrow offset


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=texts)
def test_tokens_identical_on_both_paths(monkeypatch, values):
    keyring = Keyring(bytes(range(32)))
    spec = MaskSpec("tokenize", {"length": 64, "prefix": ""}, SCOPE)
    key = keyring.mask_key(MaskSpec("tokenize", scope=SCOPE), "tokenize")
    for type_ in (pa.string(), pa.large_string()):
        column = pa.array(values, type_)
        monkeypatch.setattr(digest, "COMPILED_MIN", 10**9)
        slow = tokenize(column, spec, keyring)
        monkeypatch.setattr(digest, "COMPILED_MIN", 0)
        fast = tokenize(column, spec, keyring)
        assert fast.equals(slow) and fast.type == type_
        assert fast.to_pylist() == expected_hex(key, values)
        encoded = mask_array(column.dictionary_encode(), spec, keyring)
        assert pa.types.is_dictionary(encoded.type)
        assert encoded.dictionary_decode().cast(type_).to_pylist() == expected_hex(key, values)


def test_large_columns_take_the_compiled_path_and_match(monkeypatch):
    calls = []
    original = digest._hmac_compiled
    monkeypatch.setattr(digest, "_hmac_compiled", lambda *a: calls.append(len(a[2])) or original(*a))
    values = [f"user{i}@exämple.org" if i % 97 else ("" if i % 2 else None) for i in range(digest.COMPILED_MIN + 1000)]
    keyring = Keyring(bytes(32))
    out = mask_array(pa.array(values, pa.large_string()), MaskSpec("tokenize", {"length": 64, "prefix": ""}, SCOPE),
                     keyring)
    assert sum(calls) == len(set(values) - {None}) and len(calls) == -(-sum(calls) // digest.CHUNK_ROWS)
    assert out.to_pylist() == expected_hex(keyring.mask_key(MaskSpec("tokenize", scope=SCOPE), "tokenize"), values)


def test_small_columns_keep_the_python_loop(monkeypatch):
    monkeypatch.setattr(digest, "_hmac_compiled", lambda *a: pytest.fail("compiled path used for a small column"))
    raw = pa.array([b"a", None, b""])
    assert as_hex(hmac_sha256_arrow(b"k", raw)) == as_hex(hmac_sha256_many(b"k", [b"a", b"", b""]))


def test_integer_tokens_unchanged(compiled_always):
    keyring = Keyring(bytes(32))
    key = keyring.mask_key(MaskSpec("tokenize", scope=SCOPE), "tokenize")
    ints = pa.array([0, 42, -7, None, 2**62], pa.int64())
    out = tokenize(ints, MaskSpec("tokenize", scope=SCOPE), keyring).to_pylist()
    want = [None if v is None else int.from_bytes(hmac.new(key, str(v).encode(), hashlib.sha256).digest()[:8], "big") >> 1
            for v in ints.to_pylist()]
    assert out == want


def test_chunk_boundaries(compiled_always, monkeypatch):
    monkeypatch.setattr(digest, "CHUNK_ROWS", 7)
    values = [f"v{i}".encode() for i in range(50)]
    assert as_hex(hmac_sha256_arrow(b"k", pa.array(values))) == as_hex(hmac_sha256_many(b"k", values))


def test_empty_input(compiled_always):
    assert hmac_sha256_arrow(b"k", pa.array([], pa.binary())).shape == (0, 32)


def test_key_never_in_an_error(compiled_always):
    key = b"\x01secret-key-bytes\xff" * 2
    with pytest.raises(Exception) as caught:
        hmac_sha256_arrow(key, pa.array([[1]]))  # not castable to binary
    text = str(caught.value) + repr(caught.value)
    assert key.hex() not in text and "secret-key-bytes" not in text
