"""A seeded generator of PostgreSQL SELECT statements over the corpus schema, for the shuffled-twin oracle.

Typed expressions (int, num, text, date, ts, bool, jsonb, int[], int4range) are built from the
columns in scope, literals, and every PostgreSQL operator class: comparison, arithmetic (incl. the
prefix `@`, `|/`, `||/`), bit, string and pattern (LIKE, SIMILAR TO, regex), json/jsonb, array,
range and date/time. Statements wrap them in plain selects, aggregates, windows, set operations,
scalar subqueries, LATERAL, VALUES, CASE and DISTINCT. Sensitive columns appear anywhere with some
probability, so the planner sees the permitted uses (projection, count, equi-join, CASE branch)
and every forbidden one.

Determinism: `Generator(seed).statements(n)` gives the same list on every run. Row order is
never left to chance: aggregates that collect values order them by a key, windows order by a key,
LIMIT only follows an ORDER BY over every output column.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

T_INT, T_NUM, T_TEXT, T_DATE, T_TS, T_BOOL, T_JSON, T_ARR, T_RANGE = (
    "int", "num", "text", "date", "ts", "bool", "jsonb", "int[]", "int4range")
CAST = {T_INT: "bigint", T_NUM: "numeric", T_TEXT: "text", T_DATE: "date", T_TS: "timestamptz", T_BOOL: "boolean",
        T_JSON: "jsonb", T_ARR: "bigint[]", T_RANGE: "int4range"}

# table -> [(column, type, sensitive)]
TABLES = {
    "customers": [("id", T_INT, False), ("full_name", T_TEXT, True), ("email", T_TEXT, True), ("ssn", T_TEXT, True),
                  ("phone", T_TEXT, True), ("birth_date", T_DATE, True), ("zip", T_TEXT, True),
                  ("created_at", T_TS, False), ("plan", T_TEXT, False)],
    "orders": [("id", T_INT, False), ("customer_id", T_INT, False), ("amount", T_NUM, False),
               ("card_number", T_TEXT, True), ("created_at", T_TS, False)],
    "patients": [("id", T_INT, False), ("mrn", T_TEXT, True), ("full_name", T_TEXT, True), ("diagnosis", T_TEXT, True),
                 ("notes", T_TEXT, True), ("birth_date", T_DATE, True)],
}
# Equi-joins on a sensitive column against a column of the same classification (pairing 2 only).
SENSITIVE_EQUIJOINS = [
    ("customers c", "patients p", "p.birth_date = c.birth_date"),
    ("customers c", "customers c2", "c2.zip = c.zip"),
    ("customers c", "patients p", "p.full_name = c.full_name"),
    ("customers c", "customers c2", "c2.ssn = c.ssn AND c2.id <> c.id"),
]


@dataclass(frozen=True)
class Col:
    expr: str
    type: str
    sensitive: bool


@dataclass(frozen=True)
class Scope:
    cols: tuple[Col, ...]
    keys: tuple[str, ...]          # unique row keys (for deterministic ordering)
    aliases: tuple[str, ...]


def _scope_for(items: list[tuple[str, str]]) -> tuple[list[Col], list[str]]:
    cols, keys = [], []
    for table, alias in items:
        for name, typ, sens in TABLES[table]:
            cols.append(Col(f"{alias}.{name}", typ, sens))
        keys.append(f"{alias}.id")
    return cols, keys


class Generator:
    """Seeded statement generator. `equijoins=True` adds equi-joins on sensitive columns (pairing 2)."""

    def __init__(self, seed: int, *, equijoins: bool = False, p_sensitive: float = 0.25) -> None:
        self.r = random.Random(seed)
        self.equijoins = equijoins
        self.p_sensitive = p_sensitive
        self._n = 0

    # -- helpers -----------------------------------------------------------------------------------
    def pick(self, seq):
        return self.r.choice(seq)

    def chance(self, p: float) -> bool:
        return self.r.random() < p

    def col(self, scope: Scope, typ: str) -> str | None:
        cands = [c for c in scope.cols if c.type == typ]
        if not cands:
            return None
        sens = [c for c in cands if c.sensitive]
        clear = [c for c in cands if not c.sensitive]
        if sens and (not clear or self.chance(self.p_sensitive)):
            return self.pick(sens).expr
        return self.pick(clear).expr

    # -- typed expressions -------------------------------------------------------------------------
    def expr(self, scope: Scope, typ: str, depth: int = 2) -> str:
        leaf = depth <= 0 or self.chance(0.3)
        if leaf:
            c = self.col(scope, typ) if self.chance(0.75) else None
            return c or self.literal(typ)
        return getattr(self, f"_{typ.replace('[]', '_arr')}")(scope, depth - 1)

    def literal(self, typ: str) -> str:
        r = self.r
        return {
            T_INT: lambda: str(r.randint(-3, 60)),
            T_NUM: lambda: f"{r.randint(0, 999)}.{r.randint(0, 99):02d}",
            T_TEXT: lambda: self.pick(["'9'", "'a'", "'-'", "'pro'", "'free'", "'B20'", "'99900'", "''", "'x y'"]),
            T_DATE: lambda: f"date '{r.randint(1940, 2020)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}'",
            T_TS: lambda: f"timestamptz '2024-0{r.randint(1, 9)}-1{r.randint(0, 9)} 12:00:00+00'",
            T_BOOL: lambda: self.pick(["true", "false"]),
            T_JSON: lambda: self.pick(["'{\"a\": 1, \"b\": [1, 2]}'::jsonb", "'[1, 2, 3]'::jsonb", "'{}'::jsonb"]),
            T_ARR: lambda: f"ARRAY[{r.randint(0, 9)}, {r.randint(0, 9)}]::bigint[]",
            T_RANGE: lambda: f"int4range({r.randint(0, 20)}, {r.randint(21, 60)})",
        }[typ]()

    def _int(self, s: Scope, d: int) -> str:
        e = lambda t=T_INT: self.expr(s, t, d)
        return self.pick([
            lambda: f"({e()} {self.pick(['+', '-', '*'])} {e()})",
            lambda: f"({e()} / nullif({e()}, 0))", lambda: f"({e()} % nullif({e()}, 0))",
            lambda: f"(@ ({e()}))", lambda: f"abs({e()})", lambda: f"(- {e()})",
            lambda: f"({e()} {self.pick(['&', '|', '#'])} {e()})", lambda: f"(~ {e()})",
            lambda: f"(({e()} % 16) {self.pick(['<<', '>>'])} 2)",
            lambda: f"length({e(T_TEXT)})", lambda: f"ascii({e(T_TEXT)})", lambda: f"position('a' in {e(T_TEXT)})",
            lambda: f"date_part('year', {e(T_DATE)})::bigint", lambda: f"extract(month from {e(T_TS)})::bigint",
            lambda: f"cardinality({e(T_ARR)})", lambda: f"({e(T_ARR)})[1]", lambda: f"lower({e(T_RANGE)})",
            lambda: f"({e(T_JSON)} ->> 'a')::bigint" if self.chance(0.3) else "jsonb_array_length('[1,2]'::jsonb)",
            lambda: f"CASE WHEN {e(T_BOOL)} THEN {e()} ELSE {e()} END", lambda: f"coalesce({e()}, {e()})",
            lambda: f"nullif({e()}, {e()})", lambda: f"greatest({e()}, {e()})", lambda: f"least({e()}, {e()})",
            lambda: f"width_bucket({e()}, 0, 100, 10)", lambda: f"sign({e()})",
            lambda: f"({e(T_DATE)} - {e(T_DATE)})", lambda: f"round({e(T_NUM)})::bigint",
            lambda: f"(|/ abs({e()}))::bigint", lambda: f"(||/ ({e()}))::bigint",
        ])()

    def _num(self, s: Scope, d: int) -> str:
        e = lambda t=T_NUM: self.expr(s, t, d)
        return self.pick([
            lambda: f"({e()} {self.pick(['+', '-', '*'])} {e()})", lambda: f"({e()} / nullif({e()}, 0))",
            lambda: f"round({e()}, 1)", lambda: f"(@ {e()})", lambda: f"({e(T_INT)}::numeric ^ 2)",
            lambda: f"(|/ abs({e()}))::numeric", lambda: f"({e(T_INT)} * 1.5)",
            lambda: f"CASE WHEN {e(T_BOOL)} THEN {e()} ELSE 0 END", lambda: f"trunc({e()})",
        ])()

    def _text(self, s: Scope, d: int) -> str:
        e = lambda t=T_TEXT: self.expr(s, t, d)
        return self.pick([
            lambda: f"({e()} || {e()})", lambda: f"upper({e()})", lambda: f"lower({e()})",
            lambda: f"substr({e()}, {self.r.randint(1, 4)}, {self.r.randint(0, 3)})", lambda: f"left({e()}, 2)",
            lambda: f"right({e()}, 2)", lambda: f"replace({e()}, '-', '')", lambda: f"md5({e()})",
            lambda: f"reverse({e()})", lambda: f"lpad({e()}, 12, '*')", lambda: f"trim({e()})",
            lambda: f"split_part({e()}, '-', 2)", lambda: f"concat({e()}, '/', {e(T_INT)})",
            lambda: f"format('%s:%s', {e()}, {e(T_INT)})", lambda: f"to_char({e(T_DATE)}, 'YYYY-MM')",
            lambda: f"{e(T_INT)}::text", lambda: f"{e(T_DATE)}::text", lambda: f"regexp_replace({e()}, '[0-9]', '#', 'g')",
            lambda: f"CASE WHEN {e(T_BOOL)} THEN {e()} ELSE {e()} END", lambda: f"coalesce({e()}, {e()})",
            lambda: f"({e(T_JSON)} ->> 'a')", lambda: f"({e(T_JSON)} #>> '{{b,0}}')", lambda: f"{e(T_ARR)}::text",
            lambda: f"translate({e()}, '0123456789', 'abcdefghij')", lambda: f"initcap({e()})",
        ])()

    def _date(self, s: Scope, d: int) -> str:
        e = lambda t=T_DATE: self.expr(s, t, d)
        return self.pick([
            lambda: f"({e()} + {self.r.randint(-30, 30)})", lambda: f"({e()} - {self.r.randint(0, 30)})",
            lambda: f"date_trunc('month', {e(T_TS)})::date", lambda: f"({e()} + interval '1 month')::date",
            lambda: f"CASE WHEN {e(T_BOOL)} THEN {e()} ELSE {e()} END", lambda: f"coalesce({e()}, {e()})",
            lambda: f"make_date(2000, (1 + abs({e(T_INT)}) % 12)::int, 1)", lambda: f"greatest({e()}, {e()})",
        ])()

    def _ts(self, s: Scope, d: int) -> str:
        e = lambda t=T_TS: self.expr(s, t, d)
        return self.pick([
            lambda: f"({e()} + interval '{self.r.randint(1, 40)} days')", lambda: f"date_trunc('day', {e()})",
            lambda: f"({e(T_DATE)}::timestamptz)", lambda: f"CASE WHEN {e(T_BOOL)} THEN {e()} ELSE {e()} END",
        ])()

    def _bool(self, s: Scope, d: int) -> str:
        t = self.pick([T_INT, T_INT, T_NUM, T_TEXT, T_TEXT, T_DATE, T_TS])
        e = lambda tt=t: self.expr(s, tt, d)
        return self.pick([
            lambda: f"({e()} {self.pick(['=', '<>', '<', '>', '<=', '>='])} {e()})",
            lambda: f"({e()} IS DISTINCT FROM {e()})", lambda: f"({e()} BETWEEN {e()} AND {e()})",
            lambda: f"({e()} IN ({e()}, {e()}))", lambda: f"({e()} IS NULL)", lambda: f"({e()} IS NOT NULL)",
            lambda: f"({self.expr(s, T_TEXT, d)} {self.pick(['LIKE', 'ILIKE', 'NOT LIKE'])} '{self.pick(['9%', '%a%', '_-%', 'B2%'])}')",
            lambda: f"({self.expr(s, T_TEXT, d)} SIMILAR TO '%(1|2)%')",
            lambda: f"({self.expr(s, T_TEXT, d)} {self.pick(['~', '~*', '!~', '!~*'])} '^[0-9]')",
            lambda: f"({self.expr(s, T_TEXT, d)} ^@ '9')",
            lambda: f"({self.expr(s, T_BOOL, d)} {self.pick(['AND', 'OR'])} {self.expr(s, T_BOOL, d)})",
            lambda: f"(NOT {self.expr(s, T_BOOL, d)})",
            lambda: f"({self.expr(s, T_JSON, d)} {self.pick(['@>', '<@'])} '{{\"a\": 1}}'::jsonb)",
            lambda: f"({self.expr(s, T_JSON, d)} ? 'a')", lambda: f"({self.expr(s, T_JSON, d)} ?| ARRAY['a', 'b'])",
            lambda: f"({self.expr(s, T_ARR, d)} {self.pick(['@>', '<@', '&&'])} {self.expr(s, T_ARR, d)})",
            lambda: f"({self.expr(s, T_INT, d)} = ANY ({self.expr(s, T_ARR, d)}))",
            lambda: f"({self.expr(s, T_RANGE, d)} {self.pick(['&&', '<<', '>>', '-|-'])} {self.expr(s, T_RANGE, d)})",
            lambda: f"({self.expr(s, T_RANGE, d)} @> {self.expr(s, T_INT, d)}::int)",
            lambda: f"(({self.expr(s, T_DATE, d)}, interval '10 years') OVERLAPS (date '1970-01-01', date '1990-01-01'))",
            lambda: self._exists(s),
        ])()

    def _jsonb(self, s: Scope, d: int) -> str:
        e = lambda t: self.expr(s, t, d)
        return self.pick([
            lambda: f"jsonb_build_object('a', {e(T_INT)}, 'b', {e(T_TEXT)})", lambda: f"to_jsonb({e(T_TEXT)})",
            lambda: f"jsonb_build_array({e(T_INT)}, {e(T_DATE)})", lambda: f"({e(T_JSON)} || {e(T_JSON)})",
            lambda: f"({e(T_JSON)} - 'a')", lambda: f"({e(T_JSON)} #- '{{0}}')", lambda: f"({e(T_JSON)} -> 'b')",
        ])()

    def _int_arr(self, s: Scope, d: int) -> str:
        e = lambda t: self.expr(s, t, d)
        return self.pick([
            lambda: f"ARRAY[{e(T_INT)}, {e(T_INT)}]::bigint[]", lambda: f"({e(T_ARR)} || {e(T_INT)}::bigint)",
            lambda: f"array_append({e(T_ARR)}, {e(T_INT)}::bigint)", lambda: f"({e(T_ARR)} || {e(T_ARR)})",
            lambda: f"array_remove({e(T_ARR)}, 1::bigint)",
        ])()

    def _int4range(self, s: Scope, d: int) -> str:
        a, b = self.expr(s, T_INT, d), self.expr(s, T_INT, d)
        r = f"int4range(least({a}, {b})::int, greatest({a}, {b})::int)"
        return self.pick([lambda: r, lambda: f"({r} * int4range(0, 40))", lambda: f"({r} + int4range(0, 60))"])()

    def _exists(self, s: Scope) -> str:
        key = self.pick(s.keys)
        inner = self.pick(["orders o9 WHERE o9.customer_id = {k}", "patients p9 WHERE p9.id = {k}"]).format(k=key)
        alias = "o9" if inner.startswith("orders") else "p9"
        inner_scope = Scope(tuple(Col(f"{alias}.{n}", t, sv) for n, t, sv in
                                  TABLES["orders" if alias == "o9" else "patients"]), (f"{alias}.id",), (alias,))
        return f"EXISTS (SELECT 1 FROM {inner} AND {self.expr(inner_scope, T_BOOL, 0)})"

    # -- FROM clauses ------------------------------------------------------------------------------
    def from_clause(self) -> tuple[str, Scope]:
        shapes = ["c", "o", "p", "c_o", "c_p", "lateral", "values"]
        if self.equijoins:
            shapes += ["equijoin", "equijoin"]
        shape = self.pick(shapes)
        if shape in ("c", "o", "p"):
            table = {"c": "customers", "o": "orders", "p": "patients"}[shape]
            cols, keys = _scope_for([(table, shape)])
            return f"{table} {shape}", Scope(tuple(cols), tuple(keys), (shape,))
        if shape == "c_o":
            cols, _ = _scope_for([("customers", "c"), ("orders", "o")])
            return "customers c JOIN orders o ON o.customer_id = c.id", Scope(tuple(cols), ("o.id",), ("c", "o"))
        if shape == "c_p":
            cols, _ = _scope_for([("customers", "c"), ("patients", "p")])
            return "customers c LEFT JOIN patients p ON p.id = c.id", Scope(tuple(cols), ("c.id",), ("c", "p"))
        if shape == "lateral":
            cols, _ = _scope_for([("customers", "c")])
            base = Scope(tuple(cols), ("c.id",), ("c",))
            t1, t2 = self.pick([T_INT, T_TEXT, T_DATE]), self.pick([T_INT, T_TEXT, T_BOOL])
            lat = f"LATERAL (SELECT {self.expr(base, t1, 1)} AS l1, {self.expr(base, t2, 1)} AS l2) l"
            extra = (Col("l.l1", t1, False), Col("l.l2", t2, False))
            return f"customers c, {lat}", Scope(tuple(cols) + extra, ("c.id",), ("c", "l"))
        if shape == "values":
            cols, _ = _scope_for([("customers", "c")])
            rows = ", ".join(f"({i}, {self.literal(T_TEXT)})" for i in self.r.sample(range(1, 51), 4))
            extra = (Col("v.k", T_INT, False), Col("v.s", T_TEXT, False))
            return (f"customers c JOIN (VALUES {rows}) v(k, s) ON v.k = c.id",
                    Scope(tuple(cols) + extra, ("c.id",), ("c", "v")))
        left, right, on = self.pick(SENSITIVE_EQUIJOINS)
        (lt, la), (rt, ra) = left.split(), right.split()
        cols, keys = _scope_for([(lt, la), (rt, ra)])
        return f"{left} JOIN {right} ON {on}", Scope(tuple(cols), (f"{la}.id", f"{ra}.id"), (la, ra))

    # -- statements --------------------------------------------------------------------------------
    def _outputs(self, scope: Scope, types: list[str]) -> list[str]:
        return [f"({self.expr(scope, t)})::{CAST[t]}" for t in types]

    def _where(self, scope: Scope) -> str:
        return f" WHERE {self.expr(scope, T_BOOL, 1)}" if self.chance(0.5) else ""

    def _order_all(self, n: int) -> str:
        return " ORDER BY " + ", ".join(str(i + 1) for i in range(n)) if self.chance(0.6) else ""

    def plain(self, types: list[str]) -> str:
        frm, scope = self.from_clause()
        outs = self._outputs(scope, types)
        if self.chance(0.15):
            key = self.pick(scope.keys)
            outs.append(f"(SELECT count(*) FROM orders o8 WHERE o8.customer_id = {key})")
        distinct = "DISTINCT " if self.chance(0.1) else ""
        sql = f"SELECT {distinct}{', '.join(f'{o} AS a{i}' for i, o in enumerate(outs))} FROM {frm}{self._where(scope)}"
        order = self._order_all(len(outs))
        if order and self.chance(0.3):
            order += f" LIMIT {self.r.randint(1, 20)}"
        return sql + order

    def aggregate(self) -> str:
        frm, scope = self.from_clause()
        gtype = self.pick([T_INT, T_TEXT, T_DATE, T_BOOL])
        g = self.expr(scope, gtype, 1)
        key = self.pick(scope.keys)
        aggs = [
            "count(*)", f"count({self.col(scope, T_TEXT) or key})", f"count(DISTINCT {self.col(scope, T_TEXT) or key})",
            f"sum({self.expr(scope, T_INT, 1)})", f"max({self.expr(scope, T_TEXT, 1)})", f"min({self.expr(scope, T_DATE, 1)})",
            f"avg({self.expr(scope, T_NUM, 1)})", f"string_agg({self.expr(scope, T_TEXT, 1)}, ',' ORDER BY {key})",
            f"array_agg({self.expr(scope, T_INT, 1)} ORDER BY {key})", f"bool_or({self.expr(scope, T_BOOL, 1)})",
            f"count(*) FILTER (WHERE {self.expr(scope, T_BOOL, 1)})",
        ]
        picked = self.r.sample(aggs, self.r.randint(1, 3))
        having = f" HAVING count(*) > {self.r.randint(0, 3)}" if self.chance(0.3) else ""
        cols = [f"({g})::{CAST[gtype]} AS g"] + [f"{a} AS a{i}" for i, a in enumerate(picked)]
        return (f"SELECT {', '.join(cols)} FROM {frm}{self._where(scope)} GROUP BY 1{having}"
                + self._order_all(len(cols)))

    def window(self) -> str:
        frm, scope = self.from_clause()
        key = self.pick(scope.keys)
        part = self.expr(scope, self.pick([T_INT, T_TEXT, T_BOOL]), 1)
        win = self.pick([
            f"row_number() OVER (PARTITION BY {part} ORDER BY {key})",
            f"sum({self.expr(scope, T_INT, 1)}) OVER (PARTITION BY {part} ORDER BY {key})",
            f"lag(({self.expr(scope, T_TEXT, 1)})::text) OVER (ORDER BY {key})",
            f"count(*) OVER (PARTITION BY {part})",
            f"rank() OVER (ORDER BY {self.expr(scope, T_INT, 1)}, {key})",
            f"first_value({self.expr(scope, T_INT, 1)}) OVER (PARTITION BY {part} ORDER BY {key})",
        ])
        return f"SELECT {key} AS k, {win} AS w FROM {frm}{self._where(scope)}" + self._order_all(2)

    def setop(self, types: list[str]) -> str:
        op = self.pick(["UNION", "UNION ALL", "INTERSECT", "EXCEPT", "INTERSECT ALL", "EXCEPT ALL"])
        branches = []
        for _ in range(2):
            if self.chance(0.2):
                branches.append("VALUES (" + ", ".join(f"{self.literal(t)}::{CAST[t]}" for t in types) + ")")
                continue
            frm, scope = self.from_clause()
            outs = self._outputs(scope, types)
            branches.append(f"SELECT {', '.join(outs)} FROM {frm}{self._where(scope)}")
        return f"SELECT * FROM (({branches[0]}) {op} ({branches[1]})) u(" + ", ".join(
            f"a{i}" for i in range(len(types))) + ")" + self._order_all(len(types))

    def scalar(self) -> str:
        frm, scope = self.from_clause()
        key = self.pick(scope.keys)
        sub = self.pick([
            "(SELECT max(o7.amount) FROM orders o7 WHERE o7.customer_id = {k})",
            "(SELECT count(*) FROM patients p7 WHERE p7.id = {k} AND {b})",
            "(SELECT {t} FROM patients p7 WHERE p7.id = {k})",
            "(SELECT count(*) FROM customers c7 WHERE c7.plan = 'pro')",
        ])
        p_scope = Scope(tuple(Col(f"p7.{n}", t, sv) for n, t, sv in TABLES["patients"]), ("p7.id",), ("p7",))
        sub = sub.format(k=key, b=self.expr(p_scope, T_BOOL, 0), t=self.expr(p_scope, T_TEXT, 1))
        return f"SELECT {key} AS k, {sub} AS s FROM {frm}{self._where(scope)}" + self._order_all(2)

    def statement(self) -> str:
        self._n += 1
        types = [self.pick([T_INT, T_INT, T_NUM, T_TEXT, T_TEXT, T_DATE, T_TS, T_BOOL, T_JSON, T_ARR, T_RANGE])
                 for _ in range(self.r.randint(1, 3))]
        kind = self.pick(["plain", "plain", "plain", "aggregate", "aggregate", "window", "setop", "scalar"])
        if kind == "plain":
            return self.plain(types)
        if kind == "setop":
            # INTERSECT/EXCEPT/UNION need equality on every column; json is not comparable as json
            return self.setop([t if t != T_JSON else T_TEXT for t in types])
        return getattr(self, kind)()

    def statements(self, n: int) -> list[str]:
        return [self.statement() for _ in range(n)]
