"""The Polars `lg` namespace: lazy (and streaming) queries give exactly the Arrow kernels' output."""

import datetime as dt

import lineage_guard.integrations.polars  # noqa: F401  registers `.lg`
import polars as pl
import pytest
from lineage_guard.integrations.polars import mask_expr

from lineage_guard.errors import ConfigError
from lineage_guard.mask import Keyring, MaskSpec, mask_array

N = 30_000
FRAME = pl.DataFrame({
    "email": [None if i % 97 == 0 else f"user{i % 7000}@example.org" for i in range(N)],
    "patient": [i % 500 for i in range(N)],
    "visit": [dt.date(2020, 1, 1) + dt.timedelta(days=i % 900) for i in range(N)],
    "amount": [i * 37 - 500_000 for i in range(N)],
    "ssn": [f"{i % 900:03d}-{i % 90:02d}-{i:04d}" for i in range(N)],
})


def arrow(column: str, spec: MaskSpec, keyring: Keyring, subject: str | None = None) -> list:
    table = FRAME.to_arrow()
    out = mask_array(table.column(column), spec, keyring, subject=table.column(subject) if subject else None)
    return out.to_pylist()


@pytest.mark.parametrize("engine", ["in-memory", "streaming"])
def test_lazy_query_equals_the_arrow_kernels(engine, master_key):
    kr = Keyring(master_key)
    query = FRAME.lazy().select(
        pl.col("email").lg.tokenize(scope="purpose:ai_training"),  # keyring from the environment
        pl.col("email").lg.pseudonymize("email", scope="purpose:ai_training").alias("pseudo"),
        pl.col("ssn").lg.format_preserving(scope="purpose:ai_training", keyring=kr),
        pl.col("ssn").lg.partial(keep_last=4).alias("last4"),
        pl.col("visit").lg.shift_date("patient", scope="purpose:ai_training", keyring=kr),
        pl.col("visit").lg.generalize(to="year").alias("year"),
        pl.col("amount").lg.generalize(bucket=1000),
        pl.col("patient").lg.tokenize(scope="purpose:ai_training", keyring=kr, return_dtype=pl.Int64).alias("pid"),
        pl.col("email").lg.hash(allow_keyless=True).alias("sha"),
        pl.col("email").lg.redact().alias("red"),
        pl.col("amount").lg.null().alias("gone"),
    ).filter(pl.col("amount") > -400_000)
    out = query.collect(engine=engine)
    assert query.collect_schema() == out.schema
    # The filter sees the masked (bucketed) amount, as any later step of the query would.
    keep = [a > -400_000 for a in arrow("amount", MaskSpec("generalize", {"bucket": 1000}), kr)]

    def expected(column, spec, subject=None):
        return [v for v, k in zip(arrow(column, spec, kr, subject), keep) if k]

    s = "purpose:ai_training"
    assert out["email"].to_list() == expected("email", MaskSpec("tokenize", scope=s))
    assert out["pseudo"].to_list() == expected("email", MaskSpec("pseudonymize", {"kind": "email"}, s))
    assert out["ssn"].to_list() == expected("ssn", MaskSpec("format_preserving", scope=s))
    assert out["last4"].to_list() == expected("ssn", MaskSpec("partial", {"keep_last": 4}))
    assert out["visit"].to_list() == expected("visit", MaskSpec("shift_date", {"subject": "patient"}, s), "patient")
    assert out["year"].to_list() == expected("visit", MaskSpec("generalize", {"to": "year"}))
    assert out["amount"].to_list() == expected("amount", MaskSpec("generalize", {"bucket": 1000}))
    assert out["pid"].to_list() == expected("patient", MaskSpec("tokenize", scope=s))
    assert out["sha"].to_list() == expected("email", MaskSpec("hash", {"allow_keyless": True}))
    assert set(out["red"].to_list()) == {"[REDACTED]", None} and out["gone"].null_count() == len(out)
    assert out.schema["visit"] == pl.Date and out["email"][1].startswith("tok_")


def test_mask_takes_a_plans_spec_and_a_subject_expression():
    kr = Keyring(bytes(range(32)))
    spec = MaskSpec("shift_date", {"subject": "patient"}, "group:clinicians")
    out = FRAME.lazy().select(pl.col("visit").lg.mask(spec, keyring=kr, subject=pl.col("patient"))).collect()
    assert out["visit"].to_list() == arrow("visit", spec, kr, "patient")


@pytest.mark.parametrize(
    "build, expected",
    [
        (lambda: pl.col("a").lg.mask(MaskSpec("drop")), "leave it out of the select"),
        (lambda: pl.col("a").lg.mask(MaskSpec("bogus")), "unknown mask method 'bogus'"),
        (lambda: pl.col("a").lg.partial(keep_last=-2), "'keep_last' must be an integer from 0 to 64"),
        (lambda: pl.col("a").lg.tokenize(size=3), "'tokenize' has no parameter 'size'; valid parameters: length, prefix"),
        (lambda: mask_expr(pl.col("d"), MaskSpec("shift_date", {"subject": "p"})), "pass the subject column"),
    ],
)
def test_bad_masks_fail_when_the_expression_is_built(build, expected):
    with pytest.raises(ConfigError, match=expected):
        build()


def test_no_key_fails_closed(monkeypatch):
    monkeypatch.delenv("LINEAGE_GUARD_MASTER_KEY")
    with pytest.raises(ConfigError, match="no masking key"):
        pl.col("email").lg.tokenize()
    assert FRAME.lazy().select(pl.col("ssn").lg.partial()).collect()["ssn"][0] == "*******0000"  # keyless still works


def test_errors_inside_a_query_are_masking_errors_not_clear_data():
    frame = pl.DataFrame({"x": [1.5, 2.5]})
    with pytest.raises(Exception) as exc:
        frame.lazy().select(pl.col("x").lg.format_preserving(keyring=Keyring(bytes(32)))).collect()
    assert "format_preserving applies to text and integers" in str(exc.value)
