"""k-anonymity and l-diversity against a table computed by hand; the CLI reports sizes, never values."""

from __future__ import annotations

import json

import polars as pl
import pytest
from typer.testing import CliRunner

from lineage_guard.attest.risk import measure
from lineage_guard.cli import app
from lineage_guard.errors import ConfigError

# classes over (zip, birth_year, sex):  (02139,1980,f) x3 dx {flu, cold}; (02141,1975,m) x2 dx {flu}; (02142,1990,f) x1
TABLE = pl.DataFrame({
    "zip": ["02139", "02139", "02139", "02141", "02141", "02142"],
    "birth_year": [1980, 1980, 1980, 1975, 1975, 1990],
    "sex": ["f", "f", "f", "m", "m", "f"],
    "dx": ["flu", "cold", "flu", "flu", "flu", "cold"],
})


def test_k_and_l_match_the_hand_computed_classes():
    r = measure(TABLE, ["zip", "birth_year", "sex"], sensitive="dx")
    assert (r.k, r.l, r.classes, r.rows) == (1, 1, 3, 6)
    assert r.smallest == [(1, 1), (2, 1), (3, 1)]
    by_sex = measure(TABLE, ["sex"], sensitive="dx")        # f: 4 rows {flu, cold}; m: 2 rows {flu}
    assert (by_sex.k, by_sex.l, by_sex.smallest) == (2, 1, [(2, 1), (4, 1)])
    common = measure(TABLE.head(5), ["zip", "birth_year", "sex"], sensitive="dx")  # without the lone row
    assert (common.k, common.l) == (2, 1)
    assert measure(TABLE.head(3), ["zip"], sensitive="dx").l == 2


def test_a_missing_column_is_named():
    with pytest.raises(ConfigError, match="no column postcode"):
        measure(TABLE, ["postcode"])


def test_the_cli_reports_sizes_not_values_and_enforces_a_floor(tmp_path):
    path = tmp_path / "t.parquet"
    TABLE.write_parquet(path)
    runner = CliRunner()
    done = runner.invoke(app, ["risk", str(path), "--quasi", "zip,birth_year,sex", "--sensitive", "dx", "--json"])
    assert done.exit_code == 0, done.output
    doc = json.loads(done.stdout)
    assert (doc["k"], doc["l"], doc["smallest_classes"][0]) == (1, 1, {"size": 1, "classes": 1})
    text = runner.invoke(app, ["risk", str(path), "--quasi", "zip,birth_year,sex"]).stdout
    assert "k-anonymity 1 over (zip, birth_year, sex)" in text
    assert not any(v in text for v in ("02139", "02142", "1990", "flu"))
    below = runner.invoke(app, ["risk", str(path), "--quasi", "zip,birth_year,sex", "--min-k", "2"])
    assert below.exit_code == 1 and "below the floor" in below.stderr
    assert runner.invoke(app, ["risk", str(path), "--quasi", "sex", "--min-k", "2"]).exit_code == 0
