"""Inline bound parameters (`$1`, `$2`, ...) as SQL literals so a parameterized read still streams.

ADBC's PostgreSQL driver streams a result with `COPY ... TO STDOUT` only for a
statement without bound parameters; with parameters it loads the whole result
into memory first. The read path therefore renders each value as a literal with
psycopg's quoting (`psycopg.sql.Literal`, the same escaping its client-side
cursors use), wrapped in parentheses so a negative number can never form a `--`
comment, and places it at the exact positions sqlglot's PostgreSQL tokenizer
found for `$n` (never inside a string, quoted identifier, comment or
dollar-quoted body). The transaction pins `standard_conforming_strings = on`.

The inlined text stays inside the source: ledgers and events keep the
statement with its placeholders.

Example:
    >>> inline_parameters("SELECT * FROM t WHERE a = $1 AND b <> '$2' AND c = $2", [5, "o'k"])
    "SELECT * FROM t WHERE a = (5) AND b <> '$2' AND c = ('o''k')"
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any

from ..errors import ConfigError


def _placeholders(sql: str) -> list[tuple[int, int, int]]:
    """(start, end_exclusive, number) of every `$n` token."""
    from sqlglot.dialects.postgres import Postgres
    from sqlglot.errors import TokenError
    from sqlglot.tokens import TokenType

    try:
        tokens = Postgres().tokenize(sql)
    except TokenError:
        raise ConfigError("the statement could not be tokenized to bind its parameters; check its quoting") \
            from None
    found = []
    for tok, nxt in pairwise(tokens):
        if tok.token_type == TokenType.PARAMETER and nxt.token_type == TokenType.NUMBER \
                and nxt.start == tok.end + 1 and nxt.text.isdigit():
            found.append((tok.start, nxt.end + 1, int(nxt.text)))
    return found


def _literal(value: Any) -> str:
    from psycopg import sql as pgsql

    try:
        return "(" + pgsql.Literal(value).as_string(None).strip() + ")"
    except Exception:  # noqa: BLE001 - psycopg's message may quote the value
        raise ConfigError(f"a query parameter of type {type(value).__name__} cannot be sent to PostgreSQL; use "
                          "str, int, float, Decimal, bool, None, bytes, date/time, UUID or a list of those") \
            from None


def literals(parameters: Sequence[Any]) -> list[str]:
    """Each value as the SQL literal sent in its place (what an approval of the values binds to)."""
    if isinstance(parameters, (str, bytes)) or not isinstance(parameters, Sequence):
        raise ConfigError("query parameters must be a list or tuple of values for $1, $2, ...")
    return [_literal(v) for v in parameters]


def inline_parameters(sql: str, parameters: Sequence[Any]) -> str:
    """`sql` with `$1..$n` replaced by the quoted literals of `parameters` (ConfigError on a mismatch)."""
    if isinstance(parameters, (str, bytes)) or not isinstance(parameters, Sequence):
        raise ConfigError("query parameters must be a list or tuple of values for $1, $2, ...")
    spots = _placeholders(sql)
    used = {n for _, _, n in spots}
    if used != set(range(1, len(parameters) + 1)):
        want = f"$1..${max(used)}" if used else "no placeholders"
        raise ConfigError(f"the statement uses {want} but {len(parameters)} parameter value(s) were given; "
                          "give exactly one value per placeholder $1, $2, ...")
    rendered = [_literal(v) for v in parameters]
    out, last = [], 0
    for start, end, number in spots:
        out += [sql[last:start], rendered[number - 1]]
        last = end
    out.append(sql[last:])
    return "".join(out)
