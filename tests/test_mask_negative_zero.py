"""-0.0 and +0.0 get one token: PostgreSQL's float `=` holds them equal, so a join on a tokenized float
column must not pair rows whose tokens differ (red-team round 7's last open masking item)."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest
from conftest import require

from lineage_guard import GovernedSession, Identity
from lineage_guard.mask import Keyring, MaskSpec, mask_array

psycopg = require("psycopg", "postgres")

KEYRING = Keyring(bytes(range(32)))
SCHEMA = """
CREATE TABLE readings_a (id int PRIMARY KEY, f float8, g float4);
CREATE TABLE readings_b (id int PRIMARY KEY, f float8, g float4);
INSERT INTO readings_a VALUES (1, 0.0, 0.0), (2, 1.5, 1.5), (3, 'NaN', 'NaN'), (4, -2.25, -2.25);
INSERT INTO readings_b VALUES (1, '-0', '-0'), (2, 1.5, 1.5), (3, 'NaN', 'NaN'), (4, '-0', '-0');
"""
POLICY = """
version: 1
identities: {ana: {kind: human, groups: [analysts]}}
groups: [analysts]
purposes: [reporting]
detection: {enabled: false}
classifications:
  public.readings_a.f: lab_value
  public.readings_b.f: lab_value
  public.readings_a.g: lab_value
  public.readings_b.g: lab_value
rules:
  - {classifications: [lab_value], action: mask, mask: {method: tokenize}}
"""


@pytest.mark.parametrize("method,params", [("tokenize", {}), ("hash", {"allow_keyless": True})])
@pytest.mark.parametrize("type_", [pa.float64(), pa.float32()])
def test_negative_zero_masks_as_zero_and_nothing_else_moves(method, params, type_):
    spec = MaskSpec(method, params, "purpose:zero")
    values = [0.0, -0.0, 1.5, -2.25, float("nan"), None, 1e300 if type_ == pa.float64() else 3e38]
    out = mask_array(pa.array(values, type_), spec, KEYRING).to_pylist()
    assert out[0] == out[1]
    assert len({out[0], out[2], out[3], out[4]}) == 4 and out[5] is None
    # every other value is tokenized exactly as before the normalisation: from its own text
    alone = [mask_array(pa.array([v], type_), spec, KEYRING).to_pylist()[0] for v in values[2:5]]
    assert out[2:5] == alone


def test_a_join_on_a_tokenized_float_pairs_only_equal_tokens(new_database, tmp_path):
    url = new_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SCHEMA)
        # Live without the guard: -0 = 0 holds, and the two print differently (so text-hashed tokens differed).
        pairs = conn.execute("SELECT a.f::text, b.f::text FROM readings_a a JOIN readings_b b ON a.f = b.f "
                             "ORDER BY a.id, b.id").fetchall()
    assert ("0", "-0") in pairs
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    with GovernedSession(url, policy, Identity("ana"), "reporting") as session:
        for column in ("f", "g"):
            table = session.read_arrow(f"SELECT a.{column} AS x, b.{column} AS y FROM readings_a a "
                                       f"JOIN readings_b b ON a.{column} = b.{column}")
            got = list(zip(table.column("x").to_pylist(), table.column("y").to_pylist(), strict=True))
            assert len(got) == len(pairs) and all(x == y for x, y in got), column
            assert not any(isinstance(v, float) and (v == 0 or math.isnan(v)) for row in got for v in row)
