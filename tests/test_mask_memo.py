"""One read's token memo (`lineage_guard.mask.memo`): tokens equal to masking each batch alone, and never another value's.

Every check compares `mask_batch(..., memo=...)` batch by batch with `mask_batch` without a memo (the
kernel the rest of the suite proves against `hmac.new`), on real Arrow batches big enough for the memo
to engage.
"""

from __future__ import annotations

import random
import secrets

import pyarrow as pa
import pytest

from lineage_guard.mask import Keyring, MaskSpec, mask_batch, memo
from lineage_guard.mask.memo import TokenMemo

KR = Keyring(secrets.token_bytes(32))
ROWS = memo.MIN_ROWS + 1_000


def batches(seed: int, count: int = 5, *, distinct: int = 30_000):
    rng = random.Random(seed)
    for b in range(count):
        names = [None if rng.random() < 0.03 else f"Name {rng.randrange(distinct)}" for _ in range(ROWS)]
        emails = [f"user{b}_{i}@example.invalid" for i in range(ROWS)]  # never repeats: the memo turns off
        ids = [rng.randrange(distinct) for _ in range(ROWS)]
        yield pa.record_batch({"name": pa.array(names, pa.large_string()), "email": pa.array(emails),
                               "id": pa.array(ids, pa.int64()), "name2": pa.array(names)})


SPECS = {0: MaskSpec("tokenize"), 1: MaskSpec("tokenize"), 2: MaskSpec("tokenize"),
         3: MaskSpec("tokenize", {"length": 32, "prefix": "t_"}, scope="purpose:other")}


def assert_same_as_per_batch(stream, specs=SPECS, keyring=KR, the_memo=None):
    the_memo = the_memo or TokenMemo()
    for i, batch in enumerate(stream):
        with_memo = mask_batch(batch, specs, keyring, memo=the_memo)
        alone = mask_batch(batch, specs, keyring)
        assert with_memo.equals(alone), f"batch {i}"
        assert with_memo.schema == alone.schema
    return the_memo


def test_memo_tokens_equal_each_batch_masked_alone():
    state = assert_same_as_per_batch(batches(1))._columns
    assert state[0].enabled and state[2].enabled and state[3].enabled  # repeated values: memo on
    assert not state[1].enabled and state[1].values is None           # all distinct: off, nothing kept


def test_hits_are_checked_byte_for_byte(monkeypatch):
    # Four slots: nearly every row lands on another value's slot. A memo that trusted the hash would
    # hand out other values' tokens; equality-checked, it only misses more.
    monkeypatch.setattr(memo, "SLOTS", 4)
    assert_same_as_per_batch(batches(2))


def test_a_full_memo_still_masks_every_row(monkeypatch):
    monkeypatch.setattr(memo, "MAX_VALUES", ROWS + 10)  # full after the first batch: misses are not kept
    state = assert_same_as_per_batch(batches(3))._columns
    assert len(state[0].values) <= ROWS + 10


def test_another_key_or_spec_never_reuses_tokens():
    shared = TokenMemo()
    first = list(batches(4, 2))
    assert_same_as_per_batch(first, the_memo=shared)
    # Same positions, another keyring, then another spec: tokens must follow the new key, not the memo.
    assert_same_as_per_batch(first, keyring=Keyring(secrets.token_bytes(32)), the_memo=shared)
    respec = {p: MaskSpec("tokenize", scope="purpose:third") for p in SPECS}
    assert_same_as_per_batch(first, specs=respec, the_memo=shared)


@pytest.mark.parametrize("rows", [10, memo.MIN_ROWS - 1])
def test_small_batches_go_straight_to_the_kernel(rows):
    batch = pa.record_batch({"name": pa.array([f"n{i % 7}" for i in range(rows)])})
    the_memo = TokenMemo()
    assert mask_batch(batch, {0: MaskSpec("tokenize")}, KR, memo=the_memo).equals(
        mask_batch(batch, {0: MaskSpec("tokenize")}, KR))
    assert not the_memo._columns


def test_sliced_and_all_null_batches():
    base = next(batches(5, 1))
    stream = [base.slice(3), base.slice(0, memo.MIN_ROWS + 5),
              pa.record_batch({n: pa.nulls(ROWS, base.schema.field(n).type) for n in base.schema.names}), base]
    assert_same_as_per_batch(stream)


def test_the_slot_table_grows_and_the_byte_budget_holds(monkeypatch):
    # Each batch overlaps the last by about half and brings 8,000 new names: the table must grow
    # (every value re-slotted) without a wrong token, and a byte budget must stop remembering.
    stream = [pa.record_batch({"name": pa.array([f"Name {i}" for i in range(8_000 * k, 8_000 * k + ROWS)])})
              for k in range(6)]
    spec = {0: MaskSpec("tokenize")}
    state = assert_same_as_per_batch(stream, specs=spec)._columns[0]
    # A value whose slot another holds is tokenized for its batch alone (not remembered): a few percent.
    remembered = state.values.to_pylist()
    assert len(set(remembered)) == len(remembered) > 0.9 * (ROWS + 5 * 8_000)
    assert len(state.slots) > memo._table_size(ROWS)  # grown past the first batch's table
    monkeypatch.setattr(memo, "MAX_BYTES", 4 * 2**18 + 2 * 2**20)  # the first table (8x 17,384 values) + ~2 MiB
    budget = assert_same_as_per_batch(stream, specs=spec)
    kept = budget._columns[0].values  # None once its rows stopped coming back (nothing new is remembered)
    assert budget._bytes <= memo.MAX_BYTES and (kept is None or len(kept) < ROWS + 5 * 8_000)


def test_a_batch_that_starts_with_new_values_still_decides_for_the_memo():
    # Rows in table order: batch 2 opens with 30% names never seen, then 70% seen (names cycling over
    # the table, as in benchmarks/extract_vs_raw.py). Judging by its first rows would turn the memo off.
    rows = 70_000
    new = int(0.3 * rows)
    first = pa.record_batch({"name": pa.array([f"Name {i}" for i in range(rows)])})
    second = pa.record_batch({"name": pa.array([f"Name {i}" for i in range(rows, rows + new)]
                                               + [f"Name {i}" for i in range(rows - new)])})
    state = assert_same_as_per_batch([first, second, first], specs={0: MaskSpec("tokenize")})._columns[0]
    assert state.enabled and len(state.values) > 0.9 * (rows + new)
