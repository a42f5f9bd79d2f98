"""Masking kernels and mask_array/mask_batch: exact outputs, types, nulls, scopes, batches, fail-closed errors."""

import datetime as dt
import hashlib
import os
import re
import secrets
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest

from lineage_guard.errors import ConfigError, MaskingError
from lineage_guard.mask import Keyring, MaskSpec, mask_array, mask_batch

KR = Keyring(secrets.token_bytes(32))
D = dt.date
UTC = dt.UTC


def m(values, method, type_=None, *, scope="global", subject_values=None, **params):
    array = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values, type_)
    return mask_array(array, MaskSpec(method, params, scope), KR, subject=subject_values)


@pytest.mark.parametrize(
    "values, method, params, expected",
    [
        (["4111111111111111", "12345", "1234", None, ""], "partial", {}, ["************1111", "*2345", "****", None, ""]),
        (["Jonathan", "Al"], "partial", {"keep_first": 1, "keep_last": 1, "mask_char": "#"}, ["J######n", "##"]),
        (["über-straße"], "partial", {"keep_first": 2, "keep_last": 0}, ["üb*********"]),
        ([1234567], "partial", {"keep_last": 3}, ["****567"]),
        (["secret", None], "redact", {}, ["[REDACTED]", None]),
        (["secret"], "redact", {"replacement": "***"}, ["***"]),
        ([1, None], "redact", {}, [None, None]),
        (["a", None], "null", {}, [None, None]),
        ([37, -3, 0, 40, None], "generalize", {"bucket": 10}, [30, -10, 0, 40, None]),
        ([3.7, -0.5], "generalize", {"bucket": 0.5}, [3.5, -0.5]),
        ([Decimal("12.50"), Decimal("-3.10")], "generalize", {"bucket": 5}, [Decimal("10.00"), Decimal("-5.00")]),
        ([D(1990, 7, 14), None], "generalize", {}, [D(1990, 7, 1), None]),
        ([D(1990, 7, 14)], "generalize", {"to": "year"}, [D(1990, 1, 1)]),
        (["94107", "9410", "12"], "generalize", {"keep": 3}, ["941**", "941**", "*****"]),
        (["94107"], "generalize", {}, ["941**"]),
        (["abc", None], "hash", {"allow_keyless": True}, [hashlib.sha256(b"abc").hexdigest(), None]),
        ([42], "hash", {"allow_keyless": True}, [hashlib.sha256(b"42").hexdigest()]),
    ],
)
def test_keyless_methods(values, method, params, expected):
    assert m(values, method, **params).to_pylist() == expected


def test_generalize_timestamps_in_their_own_zone():
    paris = pa.array([dt.datetime(2020, 5, 17, 3, 4)], pa.timestamp("us", tz="Europe/Paris"))
    out = m(paris, "generalize", to="month")
    assert out.type == paris.type
    assert out[0].as_py().astimezone(UTC) == dt.datetime(2020, 4, 30, 22, 0, tzinfo=UTC)  # May 1st in Paris


def test_tokenize_shape_determinism_and_scopes():
    values = ["ada@example.org", "bob@example.org", None, "ada@example.org"]
    out = m(values, "tokenize", scope="purpose:ai_training").to_pylist()
    assert out[0] == out[3] != out[1] and out[2] is None
    assert all(re.fullmatch(r"tok_[0-9a-f]{24}", t) for t in (out[0], out[1]))
    assert m(values, "tokenize", scope="purpose:ai_training").to_pylist() == out
    assert set(m(values, "tokenize", scope="purpose:analytics").to_pylist()) & set(out) == {None}
    assert re.fullmatch(r"[0-9a-f]{8}", m(["x"], "tokenize", length=8, prefix="")[0].as_py())
    ints = m(pa.array([7, None, 7, -7], pa.int32()), "tokenize")
    assert ints.type == pa.int64() and ints[0] == ints[2] != ints[3] and ints[1].as_py() is None
    assert min(v for v in ints.to_pylist() if v is not None) >= 0


def test_keyed_text_of_ids_and_integers_agree():
    # An id stored as integer in one table and text in another must still join after masking.
    assert m(["42"], "tokenize")[0].as_py() == m(pa.array([42]).cast(pa.string()), "tokenize")[0].as_py()


def test_pseudonymize_kinds_are_realistic_unique_and_keyed():
    names = [f"person {i}" for i in range(500)]
    shapes = {
        "name": r"\S.* \S.* [0-9A-F]{16}",
        "first_name": r"\S+ [0-9A-F]{16}",
        "last_name": r"\S.* [0-9A-F]{16}",
        "email": r"[a-z0-9._]+\.[0-9a-f]{16}@[a-z0-9.-]+\.[a-z]+",
        "phone": r"[0-9()+.\- ]{7,} x[0-9]{18}",
        "address": r"\S+ .+ Unit [0-9A-F]{16}, .+",
        "city": r".+ [0-9A-F]{16}",
        "company": r".+ [0-9A-F]{16}",
        "generic": r"[A-Za-z]+-[A-Za-z]+-[0-9a-f]{16}",
    }
    for kind, shape in shapes.items():
        out = m(names, "pseudonymize", kind=kind).to_pylist()
        assert all(re.fullmatch(shape, v) for v in out), (kind, out[:3])
        assert len(set(out)) == len(names)
        assert m(names, "pseudonymize", kind=kind).to_pylist() == out
        assert not set(out) & set(m(names, "pseudonymize", kind=kind, scope="tenant:other").to_pylist())
    plain = m(names, "pseudonymize", kind="first_name", unique=False).to_pylist()
    assert all(" " not in v for v in plain) and len(set(plain)) < len(names)  # a pool repeats; that is the point


def test_pseudonymize_locale():
    fr = m(["a", "b", "c"], "pseudonymize", kind="address", locale="fr_FR").to_pylist()
    us = m(["a", "b", "c"], "pseudonymize", kind="address").to_pylist()
    assert fr != us and all(", " in v for v in fr)
    with pytest.raises(ConfigError, match="unknown locale 'xx_YY'"):
        m(["a"], "pseudonymize", locale="xx_YY")


def test_pseudonyms_unique_across_a_large_distinct_column():
    n = 200_000
    values = pa.array(np.char.add("user", np.arange(n).astype(str)).astype(object))
    for kind in ("name", "email", "phone"):
        out = m(values, "pseudonymize", kind=kind)
        assert len(set(out.to_pylist())) == n, kind


def test_format_preserving_keeps_length_and_classes():
    values = ["123-45-6789", "AB12 cd", "Zoë 9", "x" * 100 + "7", "", None]
    out = m(values, "format_preserving").to_pylist()
    for before, after in zip(values[:-1], out[:-1]):
        assert len(after) == len(before)
        for a, b in zip(before, after):
            kind = lambda c: "d" if c.isascii() and c.isdigit() else "l" if c.isascii() and c.islower() else (
                "u" if c.isascii() and c.isupper() else c)
            assert kind(a) == kind(b)
    assert out[-1] is None and out[0] != values[0]
    assert m(values, "format_preserving").to_pylist() == out
    assert m(values, "format_preserving", scope="purpose:other").to_pylist() != out
    ints = m(pa.array([-5, 0, 123456789, None], pa.int64()), "format_preserving")
    assert ints.type == pa.int64()
    assert [len(str(abs(v))) for v in ints.to_pylist()[:3]] == [1, 1, 9] and ints[0].as_py() < 0


def test_shift_date_per_subject():
    dates = pa.array([D(2020, 1, 1), D(2020, 1, 11), D(2020, 1, 1), None, D(2020, 1, 1)])
    patients = pa.array(["p1", "p1", "p2", "p2", None])
    out = m(dates, "shift_date", subject_values=patients, subject="patient_id").to_pylist()
    assert (out[1] - out[0]).days == 10
    assert out[3] is None and out[4] is None  # null date stays null; a date with no subject is not released
    for a, b in zip(out[:3], dates.to_pylist()[:3]):
        assert 1 <= abs((a - b).days) <= 365
    # The same subject shifts the same in another batch, whatever else the batch holds.
    again = m(pa.array([D(2020, 1, 1)]), "shift_date", subject_values=pa.array(["p1"]), subject="patient_id")
    assert again[0].as_py() == out[0]
    small = m(pa.array([D(2020, 1, 1)] * 50), "shift_date", subject_values=pa.array([f"p{i}" for i in range(50)]),
              subject="pid", max_days=3)
    assert {abs((d - D(2020, 1, 1)).days) for d in small.to_pylist()} <= {1, 2, 3}


def test_shift_date_without_subject_and_every_temporal_type():
    for values, type_ in [
        ([D(2020, 1, 1), D(2020, 3, 1)], pa.date32()),
        ([D(2020, 1, 1), D(2020, 3, 1)], pa.date64()),
        ([dt.datetime(2020, 1, 1, 12), dt.datetime(2020, 3, 1, 12)], pa.timestamp("s")),
        ([dt.datetime(2020, 1, 1, 12, tzinfo=UTC), dt.datetime(2020, 3, 1, 12, tzinfo=UTC)], pa.timestamp("ns", "UTC")),
    ]:
        out = m(values, "shift_date", type_)
        assert out.type == type_
        a, b = out.to_pylist()
        assert b - a == values[1] - values[0] and a != values[0]
    near_end = pa.array([dt.datetime(2262, 4, 1)] * 50, pa.timestamp("ns"))  # int64 nanoseconds end 2262-04-11
    with pytest.raises(MaskingError, match=r"outside the range of timestamp\[ns\]"):
        m(near_end, "shift_date", subject_values=pa.array([f"p{i}" for i in range(50)]), subject="pid")


def test_views_dictionaries_and_chunks_keep_their_type():
    plain = m(["a", "b", None, "a"], "tokenize").to_pylist()
    for array in (pa.array(["a", "b", None, "a"], pa.large_string()), pa.array(["a", "b", None, "a"], pa.string_view()),
                  pa.array(["a", "b", None, "a"]).dictionary_encode(),
                  pa.chunked_array([["a", "b"], [None, "a"]])):
        out = mask_array(array, MaskSpec("tokenize"), KR)
        assert out.type == array.type and out.to_pylist() == plain


def test_mask_batch_positions_drop_subject_and_schema():
    batch = pa.record_batch(
        [pa.array(["p1", "p2"]), pa.array(["a@x.org", "b@x.org"]), pa.array(["a@x.org", "c@x.org"]),
         pa.array([D(2020, 1, 1), D(2020, 1, 2)])],
        schema=pa.schema([pa.field("pid", pa.string(), False), ("email", pa.string()), ("email", pa.string()),
                          ("visit", pa.date32())], metadata={b"k": b"v"}))
    specs = {0: MaskSpec("drop"), 2: MaskSpec("tokenize"), 3: MaskSpec("shift_date", {"subject": "pid"}, subject=0)}
    out = mask_batch(batch, specs, KR)
    assert out.schema.names == ["email", "email", "visit"] and out.schema.metadata == {b"k": b"v"}
    assert out.column(0).to_pylist() == ["a@x.org", "b@x.org"]  # not in specs: passes through
    assert out.column(1).to_pylist() == m(["a@x.org", "c@x.org"], "tokenize").to_pylist()
    assert out.column(2).to_pylist() == m(batch.column(3), "shift_date", subject_values=batch.column(0),
                                          subject="pid").to_pylist()
    # Stateless: each row masks the same alone as within the whole batch.
    halves = [mask_batch(batch.slice(i, 1), specs, KR) for i in range(2)]
    assert pa.Table.from_batches(halves).equals(pa.Table.from_batches([out]))
    empty = mask_batch(batch.slice(0, 0), specs, KR)
    assert empty.schema == out.schema and empty.num_rows == 0
    table = mask_batch(pa.Table.from_batches([batch, batch]), specs, KR)
    assert table.to_pylist() == out.to_pylist() * 2
    assert mask_batch(batch, specs).equals(mask_batch(batch, specs, Keyring.from_env()))  # keyring from env


@pytest.mark.parametrize(
    "specs, expected",
    [
        ({0: MaskSpec("bogus")}, "unknown mask method 'bogus'; valid: tokenize"),
        ({0: MaskSpec("partial", {"keep": 2})}, "'partial' has no parameter 'keep'; valid parameters: keep_first, keep_last"),
        ({0: MaskSpec("partial", {"keep_last": -1})}, "'partial': parameter 'keep_last' must be an integer from 0"),
        ({0: MaskSpec("tokenize", {"length": 4})}, "'length' must be an integer from 8 to 64"),
        ({0: MaskSpec("pseudonymize", {"kind": "pet"})}, "'kind' must be one of name, first_name"),
        ({0: MaskSpec("generalize", {"to": "year"})}, "takes only `keep`, not `to`"),
        ({1: MaskSpec("generalize")}, "needs `bucket: N`"),
        ({1: MaskSpec("generalize", {"to": "month"})}, "takes only `bucket`, not `to`"),
        ({2: MaskSpec("generalize", {"bucket": 5})}, "takes only `to`, not `bucket`"),
        ({1: MaskSpec("shift_date")}, "shift_date applies to dates and timestamps, not int64"),
        # A subject is bound by position (the planner's lineage binding), never looked up by output name.
        ({2: MaskSpec("shift_date", {"subject": "s"})}, "subject 's' is not bound to an output position"),
        ({2: MaskSpec("shift_date", {"subject": "s"}, subject=9)}, "subject position 9 is not another column"),
        ({2: MaskSpec("shift_date", {"subject": "s"}, subject=2)}, "subject position 2 is not another column"),
        ({0: MaskSpec("hash")}, "'hash' is keyless: anyone can hash a guess and compare"),
        ({0: MaskSpec("hash", {"allow_keyless": False})}, "parameter 'allow_keyless' must be true"),
        ({2: MaskSpec("format_preserving")}, "format_preserving applies to text and integers, not date32"),
        ({4: MaskSpec("redact")}, "mask position 4 is not a column of this batch (0..3)"),
        ({"s": MaskSpec("redact")}, "mask position 's' is not a column"),
    ],
)
def test_bad_specs_fail_closed(specs, expected):
    batch = pa.record_batch([pa.array(["secret-value"]), pa.array([987654321]), pa.array([D(2020, 1, 1)]),
                             pa.array([1])], names=["s", "i", "d", "i"])
    with pytest.raises(ConfigError) as exc:
        mask_batch(batch, specs, KR)
    assert expected in str(exc.value)
    assert "secret-value" not in str(exc.value) and "987654321" not in str(exc.value)


def test_drop_needs_a_batch_and_failures_never_quote_values():
    with pytest.raises(ConfigError, match="apply it with mask_batch"):
        m(["a"], "drop")
    with pytest.raises(ConfigError, match="cannot mask a column of type list<item: string> with a value-based method"):
        m([["secret-value"]], "tokenize")
    big = pa.array([Decimal("-999.99")], pa.decimal128(5, 2))
    with pytest.raises(MaskingError) as exc:
        m(big, "generalize", bucket=1000)
    assert "999" not in str(exc.value)


def test_every_method_on_every_type_keeps_nulls_and_types():
    columns = {
        "string": pa.array(["a1", None, "B-2"]), "large_string": pa.array(["a1", None, "B-2"], pa.large_string()),
        "int32": pa.array([5, None, -12], pa.int32()), "int64": pa.array([5, None, -12]),
        "double": pa.array([1.5, None, -2.25]), "decimal": pa.array([Decimal("1.50"), None, Decimal("-2.25")]),
        "date32": pa.array([D(2020, 5, 17), None, D(1999, 1, 2)]),
        "timestamp": pa.array([dt.datetime(2020, 5, 17, 3, 4), None, dt.datetime(1999, 1, 2)], pa.timestamp("us")),
    }
    text = {"tokenize", "pseudonymize", "partial", "hash"}  # methods whose output is text for non-text input
    params = {"generalize": {"string": {}, "large_string": {}, "date32": {}, "timestamp": {}},
              "hash": {name: {"allow_keyless": True} for name in columns}}
    for method in ("tokenize", "pseudonymize", "partial", "redact", "null", "generalize", "shift_date", "hash",
                   "format_preserving"):
        for name, array in columns.items():
            spec = MaskSpec(method, params.get(method, {}).get(name, {"bucket": 2} if method == "generalize" else {}))
            try:
                out = mask_array(array, spec, KR)
            except ConfigError:
                assert (method, name) in {("shift_date", n) for n in columns if "date" not in n and "time" not in n} | {
                    ("format_preserving", n) for n in ("double", "decimal", "date32", "timestamp")}, (method, name)
                continue
            assert len(out) == 3 and out[1].as_py() is None, (method, name)
            if method == "tokenize" and name.startswith("int"):
                assert out.type == pa.int64()
            elif method in text and name not in ("string", "large_string"):
                assert out.type == pa.string(), (method, name)
            else:
                assert out.type == array.type, (method, name)


def test_outputs_do_not_depend_on_the_process(master_key):
    # Workers of one pipeline run in separate processes (and hash seeds): their masks must agree.
    import subprocess
    import sys

    code = (
        "import json, pyarrow as pa\n"
        "from lineage_guard.mask import Keyring, MaskSpec, mask_array\n"
        "kr = Keyring.from_env()\n"
        "a = pa.array(['Ada', 'Bob', None])\n"
        "specs = [MaskSpec('pseudonymize', {'kind': k, 'locale': l}, 'purpose:x') for k in "
        "('name', 'email', 'phone', 'address', 'company', 'generic') for l in ('en_US', 'de_DE')]\n"
        "specs += [MaskSpec('tokenize', scope='purpose:x'), MaskSpec('format_preserving', scope='purpose:x')]\n"
        "print(json.dumps([mask_array(a, s, kr).to_pylist() for s in specs]))\n"
    )
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert len(runs) == 1 and "tok_" in runs.pop()


def test_chunked_subjects_line_up_with_their_rows():
    dates = [D(2020, 1, 1), D(2020, 1, 2), D(2020, 1, 3)]
    spec = MaskSpec("shift_date", {"subject": "p"})
    plain = mask_array(pa.array(dates), spec, KR, subject=pa.array(["a", "b", "a"]))
    chunked_subject = mask_array(pa.array(dates), spec, KR, subject=pa.chunked_array([["a"], ["b", "a"]]))
    both = mask_array(pa.chunked_array([dates[:2], dates[2:]]), spec, KR, subject=pa.chunked_array([["a"], ["b", "a"]]))
    assert isinstance(chunked_subject, pa.Array) and chunked_subject.equals(plain)
    assert isinstance(both, pa.ChunkedArray) and both.combine_chunks().equals(plain)
