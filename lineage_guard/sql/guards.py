"""Token-level checks and fixes that must run before parsing, where sqlglot would misread the SQL.

`U&"\\0065mail"` is PostgreSQL's Unicode-escaped identifier (here: `email`); sqlglot 30 reads it as
`U & "\\0065mail"`, a bitwise AND of two unknown columns, so the real column would escape lineage.
`decode_unicode_identifiers` rewrites it to the plain quoted identifier; anything it cannot decode
exactly (UESCAPE, bad escapes) is refused, and so is syntax sqlglot misreads (`parser_differential`).

Example:
    >>> decode_unicode_identifiers('SELECT U&"\\\\0065mail" FROM customers')
    ('SELECT "email" FROM customers', None)
    >>> decode_unicode_identifiers("SELECT u & x FROM t")
    ('SELECT u & x FROM t', None)
"""

from __future__ import annotations

import re
from collections import Counter

from sqlglot import exp
from sqlglot.dialects.postgres import Postgres
from sqlglot.tokens import TokenType

_ESCAPE = re.compile(r"\\(\\|[0-9A-Fa-f]{4}|\+[0-9A-Fa-f]{6})|\\")
_REFUSE = ("Unicode-escaped identifier (U&\"...\") could not be decoded exactly; write the plain name instead")


def _decode(body: str) -> str | None:
    out, pos = [], 0
    for m in _ESCAPE.finditer(body):
        out.append(body[pos:m.start()])
        code = m.group(1)
        if code is None:
            return None  # a lone backslash: PostgreSQL rejects it, so do we
        if code == "\\":
            out.append("\\")
        else:
            value = int(code.lstrip("+"), 16)
            if value == 0 or value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
                return None
            out.append(chr(value))
        pos = m.end()
    out.append(body[pos:])
    return "".join(out)


def decode_unicode_identifiers(sql: str) -> tuple[str, str | None]:
    """(SQL with U&"..." identifiers rewritten as plain quoted identifiers, refusal reason or None)."""
    try:
        tokens = Postgres().tokenize(sql)
    except Exception:  # noqa: BLE001 - any tokenizer failure is a refusal, never a crash
        return sql, "could not tokenize the SQL as PostgreSQL; fix quoting (unterminated string, identifier or $$ body)"
    if any(t.token_type == TokenType.VAR and t.text.upper() == "UESCAPE" for t in tokens):
        return sql, "UESCAPE is refused: the parser cannot resolve Unicode-escaped names reliably; write the plain name"
    misread = parser_differential(tokens)
    if misread:
        return sql, misread
    edits = []
    for i, tok in enumerate(tokens[:-2]):
        amp, target = tokens[i + 1], tokens[i + 2]
        if (tok.text.upper() == "U" and amp.token_type == TokenType.AMP and tok.end + 1 == amp.start
                and amp.end + 1 == target.start):
            if target.token_type != TokenType.IDENTIFIER:
                return sql, _REFUSE
            decoded = _decode(target.text)
            if decoded is None:
                return sql, _REFUSE
            edits.append((tok.start, target.end + 1, '"' + decoded.replace('"', '""') + '"'))
    for start, end, text in reversed(edits):
        sql = sql[:start] + text + sql[end:]
    return sql, None


def dropped_names(sql: str, tree: exp.Expression, names: set[str]) -> list[str]:
    """Column names written in `sql` that sqlglot's tree lost (it drops arguments it does not expect).

    Only names in `names` (the catalog's column names) are counted: a column the tree forgot is
    a column lineage would miss.
    """
    try:
        tokens = Postgres().tokenize(sql)
    except Exception:  # noqa: BLE001 - tokenizing already succeeded once; nothing to compare
        return []
    written = Counter(_fold(t.text, t.token_type == TokenType.IDENTIFIER) for t in tokens
                      if t.token_type in (TokenType.VAR, TokenType.IDENTIFIER))
    seen = Counter()
    for node in tree.walk():
        if isinstance(node, exp.Identifier):
            seen[_fold(node.this, node.quoted)] += 1
        elif isinstance(node, exp.Var):
            seen[node.name.lower()] += 1
            seen[node.name] += 1
    return sorted(name for name, count in written.items() if name in names and seen[name] < count)


def _fold(text: str, quoted: bool) -> str:
    return text if quoted else text.lower()


def parser_differential(tokens: list) -> str | None:
    """A refusal for syntax sqlglot reads differently from PostgreSQL (in the statement's tokens), else None.

    PostgreSQL's prefix `@` is absolute value (`@(x)`, `@ -1`); sqlglot reads it as a parameter marker,
    so whatever follows would have no lineage. `$name` is no PostgreSQL syntax at all; `$1` is a
    positional parameter and stays.
    """
    for i, tok in enumerate(tokens):
        if tok.token_type != TokenType.PARAMETER:
            continue
        if tok.text == "@":
            return "the prefix operator @ (absolute value) is refused: the SQL parser misreads it; write abs(...)"
        following = tokens[i + 1] if i + 1 < len(tokens) else None
        if following is None or following.token_type != TokenType.NUMBER or following.start != tok.end + 1:
            return f"{tok.text} outside a positional parameter ($1) is refused: the SQL parser misreads it"
    return None
