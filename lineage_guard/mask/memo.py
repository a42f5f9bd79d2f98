"""One read's memo of tokens: a value that comes back in a later batch is not HMACed again.

Kernels already HMAC each distinct value of a batch once (dictionary-encode, transform, take).
Across batches they start afresh, so a column whose values repeat over the read but not inside
one batch (names, cities, customer ids in an orders table: 200,000 names over 1M rows, each batch
of ~155,000 rows all distinct) pays an HMAC per row. `TokenMemo` keeps, for one read, the values
already tokenized and their tokens, and only the values it has not seen go to the kernel.

How (no Python per value): a direct-mapped table of int32 entries (a power of two, at least 8x
the values remembered, at most `SLOTS`) indexed by the low bits of Polars' 64-bit hash of each value points at a remembered value; a row is a hit only when that
value's bytes equal the row's (`pyarrow.compute.equal`), so a hash collision, an evicted slot or a
crafted input can only cost an HMAC, never give a wrong token. The token of a hit is the token the
kernel gave that same value (tokens depend on the value, spec and key alone), so the output is
byte-identical to masking the batch on its own (tests/test_mask_memo.py checks against the kernel).

Cost and when it is off: hashing, the slot look-up, the verify and one `take` cost ~10-20% of an
HMAC per row, so a column stays in the memo only while its rows come back: under `MIN_HIT_SHARE` of
an evenly spread sample of the second batch already seen (an all-distinct column such as an email),
or of any later batch, it is dropped from the memo and masked per batch as before. Small
batches (under `MIN_ROWS`) never use it, so a small read never imports Polars.

The memo holds the column's clear values in memory for the duration of one read (as the batches
themselves do, no longer: the session makes one per read and drops it after), at most `MAX_VALUES`
values per column and `MAX_BYTES` of values, tokens and slot tables over all columns; it is never written, logged or shared between reads, keyrings or specs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .keys import Keyring
from .spec import MaskSpec

MIN_ROWS = 16_384          # below this a batch goes straight to the kernel (and Polars stays unloaded)
MIN_HIT_SHARE = 0.2        # the second batch must find at least this share of its rows already seen
SAMPLE = 4_096             # rows of the second batch, evenly spread, that decide first
MAX_VALUES = 1 << 20       # values remembered per column; past it the memo still answers, adds nothing
MAX_BYTES = 256 << 20      # values + tokens remembered over all columns of one read
SLOTS = 1 << 23            # largest slot table (32 MiB of int32, for 1M values; counted in MAX_BYTES)
_HASH_SEED = 0x6C67        # any fixed seed: the hash only picks a slot, equality decides


def _memoizable(t: pa.DataType) -> bool:
    # Exact byte/integer equality is value equality for these; floats (-0.0 == 0.0, NaN) are not.
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t)


@dataclass
class _Column:
    spec: MaskSpec
    keyring: Keyring
    type: pa.DataType
    values: pa.Array          # remembered clear values (no nulls)
    tokens: pa.Array          # tokens[i] is the kernel's token of values[i]
    slots: np.ndarray = field(repr=False)
    probed: bool = False
    enabled: bool = True


class TokenMemo:
    """Per-read memo for `tokenize` columns, by output position (see the module doc)."""

    def __init__(self) -> None:
        self._columns: dict[int, _Column] = {}
        self._bytes = 0

    def tokenize(self, position: int, array: pa.Array, spec: MaskSpec, keyring: Keyring,
                 kernel: Callable[[pa.Array], pa.Array]) -> pa.Array:
        """`kernel(array)`, with the tokens of values seen in earlier batches of this read taken from the memo."""
        if not isinstance(array, pa.Array) or len(array) < MIN_ROWS or not _memoizable(array.type):
            return kernel(array)
        state = self._columns.get(position)
        if state is not None and (state.spec != spec or state.keyring is not keyring or state.type != array.type):
            state = None  # another column's key or shape: never reuse its tokens
        if state is None:
            return self._first(position, array, spec, keyring, kernel)
        if not state.enabled:
            return kernel(array)
        return self._probe(state, array, kernel)

    def _first(self, position: int, array: pa.Array, spec: MaskSpec, keyring: Keyring, kernel) -> pa.Array:
        out = kernel(array)
        valid = _valid(array)
        values, tokens = (array, out) if valid is None else (array.filter(valid), out.filter(valid))
        if self._bytes + values.nbytes + tokens.nbytes + 4 * _table_size(len(values)) > MAX_BYTES:
            return out  # no room: this column stays per batch (it is tried again on its next batch)
        state = _Column(spec, keyring, array.type, values, tokens, _table(values))
        self._bytes += _footprint(state)
        self._columns[position] = state
        return out

    def _probe(self, state: _Column, array: pa.Array, kernel) -> pa.Array:
        if not state.probed:  # the second batch's rows, evenly spread (not its head: data comes in runs), decide
            state.probed = True
            step = max(1, len(array) // SAMPLE)
            sample = array.take(pa.array(np.arange(0, len(array), step, dtype=np.int64)))
            hit, _ = _lookup(state, sample)
            if int(hit.sum()) < MIN_HIT_SHARE * (len(sample) - sample.null_count):
                self._drop(state)
                return kernel(array)
        hit, found = _lookup(state, array)
        valid = _valid(array)
        miss = ~hit if valid is None else valid & ~hit
        index, extra = found, None
        if miss.any():
            fresh = array.filter(pa.array(miss))
            fresh_tokens = kernel(fresh)
            index = np.where(hit, found, 0)
            # A miss on an empty slot is a value not seen yet: remembered. A miss on a slot another value
            # holds is tokenized for this batch only: taking the slot would make that value miss next time.
            new = (found < 0)[miss]
            base = self._remember(state, fresh.filter(pa.array(new)), fresh_tokens.filter(pa.array(new))) \
                if new.any() else None
            if base is None:
                new[:] = False  # nothing remembered: every miss is this batch's alone
            rows = np.flatnonzero(miss)
            index[rows[new]] = base + np.arange(int(new.sum())) if base is not None else index[rows[new]]
            others = ~new
            if others.any():
                extra = fresh_tokens if others.all() else fresh_tokens.filter(pa.array(others))
                index[rows[others]] = len(state.tokens) + np.arange(int(others.sum()))
        elif valid is not None:
            index = np.where(valid, found, 0)
        tokens = state.tokens if extra is None else pa.concat_arrays([state.tokens, extra])
        if int(hit.sum()) < MIN_HIT_SHARE * (len(array) - array.null_count):
            self._drop(state)  # values stopped coming back: from the next batch on, the kernel alone
        return tokens.take(pa.array(index, mask=None if valid is None else ~valid))

    def _drop(self, state: _Column) -> None:
        if state.enabled:
            state.enabled = False
            self._bytes -= _footprint(state)
        state.values = state.tokens = state.slots = None  # nothing kept that is not needed

    def _remember(self, state: _Column, values: pa.Array, tokens: pa.Array) -> int | None:
        """Add new values and their tokens within both budgets; their first index, or None when full."""
        count = len(state.values) + len(values)
        size = max(len(state.slots), _table_size(count))
        added = values.nbytes + tokens.nbytes + 4 * (size - len(state.slots))
        if count > MAX_VALUES or self._bytes + added > MAX_BYTES:
            return None  # full: what is remembered still answers
        base = len(state.values)
        self._bytes -= _footprint(state)
        state.values = pa.concat_arrays([state.values, values])
        state.tokens = pa.concat_arrays([state.tokens, tokens])
        if size > len(state.slots):
            state.slots = _table(state.values)  # grown: every value slotted afresh
        else:
            slot = _slot(values, len(state.slots))
            free = state.slots[slot] < 0  # a held slot stays with its value
            state.slots[slot[free]] = (base + np.arange(len(values), dtype=np.int32))[free]
        self._bytes += _footprint(state)
        return base


def _footprint(state: _Column) -> int:
    return state.values.nbytes + state.tokens.nbytes + state.slots.nbytes


def _table_size(count: int) -> int:
    # A direct-mapped table at most 1/8 full: ~6% of remembered values share a slot (and miss again).
    return min(SLOTS, 1 << max(int(8 * count - 1).bit_length(), 10))


def _table(values: pa.Array) -> np.ndarray:
    """A slot table for `values`, each value slotted (where two share a slot, one is kept: the other only misses)."""
    slots = np.full(_table_size(len(values)), -1, dtype=np.int32)
    slots[_slot(values, len(slots))] = np.arange(len(values), dtype=np.int32)
    return slots


def _lookup(state: _Column, array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(hit per row, the remembered value's index per row): a hit is a row equal, byte for byte, to that value."""
    found = state.slots[_slot(array, len(state.slots))].astype(np.int64)
    seen = found >= 0
    if not len(state.values):  # nothing remembered yet (a first batch of nulls)
        return np.zeros(len(array), dtype=bool), found
    same = pc.equal(array, state.values.take(pa.array(np.where(seen, found, 0))))  # null rows: null
    hit = seen & pc.fill_null(same, False).to_numpy(zero_copy_only=False)
    return hit, found


def _valid(array: pa.Array) -> np.ndarray | None:
    return None if not array.null_count else array.is_valid().to_numpy(zero_copy_only=False)


def _slot(array: pa.Array, size: int) -> np.ndarray:
    import polars as pl

    hashed = pl.Series(array).hash(seed=_HASH_SEED).to_numpy()
    return (hashed & np.uint64(size - 1)).astype(np.intp)
