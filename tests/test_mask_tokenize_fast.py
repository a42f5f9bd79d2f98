"""The compiled HMAC paths give byte-identical digests and tokens to `hmac.new` with the same key bytes.

Token version 3 (current): polars-hash's `hmac_sha256` keyed with the derived key's hex text
(`lineage_guard.mask.keyed`). Token version 2 (verification of old tokens): HMAC composed from
two polars-hash SHA-256 passes over the raw key bytes (`lineage_guard.mask.digest`).

These are the paths of a build without the compiled kernel (`lineage_guard.mask.native`), so every
test here turns it off; tests/test_mask_native.py checks the kernel against them and `hmac.new`.
"""

from __future__ import annotations

import hashlib
import hmac

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lineage_guard.mask import Keyring, MaskSpec, digest, keyed, mask_array, native
from lineage_guard.mask.digest import hmac_sha256_arrow, hmac_sha256_many
from lineage_guard.mask.tokenize import tokenize

SCOPE = "purpose:fast"
keys = st.binary(min_size=0, max_size=130)  # empty, short, exactly one block, longer than a block (hashed)
texts = st.lists(st.one_of(st.none(), st.text(max_size=40), st.just("")), max_size=60)


@pytest.fixture(autouse=True)
def without_native_kernel(monkeypatch):
    monkeypatch.setattr(native, "AVAILABLE", False)


@pytest.fixture
def compiled_always(monkeypatch):
    """Send every size through the compiled paths, so small generated inputs exercise them."""
    monkeypatch.setattr(digest, "COMPILED_MIN", 0)
    monkeypatch.setattr(keyed, "COMPILED_MIN", 0)


def text_key(keyring: Keyring, spec: MaskSpec, use: str = "tokenize") -> bytes:
    """The HMAC key bytes of token version 3: the derived key's hex text, as ASCII."""
    return keyring.mask_key(spec, use).hex().encode()


key_texts = st.binary(min_size=32, max_size=32).map(bytes.hex)


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
    key = text_key(keyring, MaskSpec("tokenize", scope=SCOPE))
    for type_ in (pa.string(), pa.large_string()):
        column = pa.array(values, type_)
        monkeypatch.setattr(keyed, "COMPILED_MIN", 10**9)
        slow = tokenize(column, spec, keyring)
        monkeypatch.setattr(keyed, "COMPILED_MIN", 0)
        monkeypatch.setattr(keyed, "THREADED_MIN", 2)  # two threads over halves, even for tiny inputs
        fast = tokenize(column, spec, keyring)
        assert fast.equals(slow) and fast.type == type_
        assert fast.to_pylist() == expected_hex(key, values)
        encoded = mask_array(column.dictionary_encode(), spec, keyring)
        assert pa.types.is_dictionary(encoded.type)
        assert encoded.dictionary_decode().cast(type_).to_pylist() == expected_hex(key, values)


def test_large_columns_take_the_compiled_path_on_two_threads_and_match(monkeypatch):
    calls = []
    original = keyed._plugin
    monkeypatch.setattr(keyed, "_plugin", lambda *a: calls.append(len(a[1])) or original(*a))
    monkeypatch.setattr(keyed, "THREADED_MIN", keyed.COMPILED_MIN)
    values = [f"user{i}@exämple.org" if i % 97 else ("" if i % 2 else None) for i in range(keyed.COMPILED_MIN + 1000)]
    keyring = Keyring(bytes(32))
    out = mask_array(pa.array(values, pa.large_string()), MaskSpec("tokenize", {"length": 64, "prefix": ""}, SCOPE),
                     keyring)
    assert sum(calls) == len(set(values) - {None}) and len(calls) == keyed.THREADS
    assert out.to_pylist() == expected_hex(text_key(keyring, MaskSpec("tokenize", scope=SCOPE)), values)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key_text=key_texts, values=texts, prefix=st.sampled_from(["", "tok_", "é-"]),
       length=st.integers(1, 64))
def test_version_3_digests_equal_hmac_new_with_the_key_text(monkeypatch, key_text, values, prefix, length):
    raw = pa.array([None if v is None else v.encode() for v in values], pa.binary())
    want = [hmac.new(key_text.encode(), b"" if v is None else v.encode(), hashlib.sha256).digest() for v in values]
    for threshold, threaded in ((10**9, 10**9), (0, 10**9), (0, 2)):  # Python loop; compiled; compiled on 2 threads
        monkeypatch.setattr(keyed, "COMPILED_MIN", threshold)
        monkeypatch.setattr(keyed, "THREADED_MIN", threaded)
        assert [r.tobytes() for r in keyed.hmac_digests(key_text, raw)] == want
        assert keyed.hmac_hex(key_text, raw.slice(1), prefix=prefix, length=length).to_pylist() == [
            prefix + w.hex()[:length] for w in want[1:]]


@pytest.mark.parametrize("method,params", [("pseudonymize", {"kind": "email"}), ("pseudonymize", {"kind": "phone"}),
                                           ("format_preserving", {}), ("tokenize", {})])
def test_every_keyed_method_gives_the_same_output_on_both_paths(monkeypatch, method, params):
    keyring = Keyring(bytes(range(32)))
    column = pa.array([f"4111-22{i:05d}" if i % 13 else None for i in range(3000)])
    spec = MaskSpec(method, params, SCOPE, classification="card")
    monkeypatch.setattr(keyed, "COMPILED_MIN", 10**9)
    slow = mask_array(column, spec, keyring)
    monkeypatch.setattr(keyed, "COMPILED_MIN", 0)
    monkeypatch.setattr(keyed, "THREADED_MIN", 2)
    assert mask_array(column, spec, keyring).equals(slow)


def test_shift_date_uses_the_version_3_key():
    import datetime

    keyring = Keyring(bytes(32))
    spec = MaskSpec("shift_date", {"subject": "pid"}, SCOPE)
    day = datetime.date(2020, 1, 1)
    out = mask_array(pa.array([day]), spec, keyring, subject=pa.array([7]))[0].as_py()
    number = int.from_bytes(hmac.new(text_key(keyring, spec, "shift_date"), b"s7", hashlib.sha256).digest()[:8], "big")
    magnitude = number % 365 + 1
    assert (out - day).days == (-magnitude if number >> 63 else magnitude)


def test_key_text_never_in_an_expression_or_a_plugin_error():
    import polars as pl

    key_text = "5e" * 32
    expr = pl.col("v").chash.hmac_sha256(key=key_text)
    shown = repr(expr) + str(expr) + pl.DataFrame({"v": ["a"]}).lazy().select(expr).explain()
    assert key_text not in shown and "5e5e5e" not in shown
    with pytest.raises(Exception) as caught:  # the plugin refuses an integer column
        pl.DataFrame({"v": [1, 2]}).select(expr)
    text = str(caught.value) + repr(caught.value)
    assert "5e5e5e" not in text
    with pytest.raises(Exception) as caught:
        keyed.hmac_hex("not a key", pa.array([b"a"]))
    assert "not a key" not in str(caught.value)


def test_small_columns_keep_the_python_loop(monkeypatch):
    monkeypatch.setattr(digest, "_hmac_compiled", lambda *a: pytest.fail("compiled path used for a small column"))
    raw = pa.array([b"a", None, b""])
    assert as_hex(hmac_sha256_arrow(b"k", raw)) == as_hex(hmac_sha256_many(b"k", [b"a", b"", b""]))


def test_integer_tokens(compiled_always):
    keyring = Keyring(bytes(32))
    key = text_key(keyring, MaskSpec("tokenize", scope=SCOPE))
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


def test_hex_answer_is_read_in_place_in_row_order_or_refused():
    from lineage_guard.errors import MaskingError

    hexed = [hmac.new(b"k", str(i).encode(), hashlib.sha256).hexdigest() for i in range(5000)]
    views = pa.array(hexed, pa.string_view())
    assert [row.tobytes().decode() for block in keyed._hex_blocks(views) for row in block] == hexed
    # The same rows pointing into the buffers out of order, or a row that is not 64 characters: refused.
    buffers = views.buffers()
    reversed_views = np.frombuffer(buffers[1], np.int32).reshape(-1, 4)[::-1].copy()
    shuffled = pa.Array.from_buffers(pa.string_view(), len(views), [None, pa.py_buffer(reversed_views), *buffers[2:]])
    assert shuffled.to_pylist() == hexed[::-1]
    for bad in (shuffled, pa.array(hexed[:-1] + ["ab"], pa.string_view())):
        with pytest.raises(MaskingError, match="unexpected"):
            keyed._hex_blocks(bad)
