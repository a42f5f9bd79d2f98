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
import threading
from collections import Counter

from sqlglot import exp
from sqlglot.dialects.postgres import Postgres
from sqlglot.tokens import Token, TokenType

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


_POSTGRES = Postgres()
_LOCAL = threading.local()  # a tokenizer per thread: building one costs as much as tokenizing a statement


def tokenize(sql: str) -> list[Token]:
    """The PostgreSQL dialect's tokens of `sql` (raises sqlglot's TokenError on bad quoting)."""
    tokenizer = getattr(_LOCAL, "tokenizer", None)
    if tokenizer is None:
        tokenizer = _LOCAL.tokenizer = _POSTGRES.tokenizer()
    return tokenizer.tokenize(sql)


def parse_tokens(tokens: list[Token], sql: str) -> list[exp.Expression | None]:
    """`sqlglot.parse(sql, dialect="postgres")` from tokens already made (the statement is tokenized once)."""
    return _POSTGRES.parser().parse(tokens, sql)


def decode_unicode_identifiers(sql: str) -> tuple[str, str | None]:
    """(SQL with U&"..." identifiers rewritten as plain quoted identifiers, refusal reason or None)."""
    sql, reason, _ = checked_tokens(sql)
    return sql, reason


def checked_tokens(sql: str) -> tuple[str, str | None, list[Token]]:
    """`decode_unicode_identifiers`, also returning the tokens of the SQL it returns (empty on refusal)."""
    try:
        tokens = tokenize(sql)
    except Exception:  # noqa: BLE001 - any tokenizer failure is a refusal, never a crash
        return sql, ("could not tokenize the SQL as PostgreSQL; fix quoting (unterminated string, identifier or "
                     "$$ body)"), []
    edits, refusal = [], None
    count = len(tokens)
    for i, tok in enumerate(tokens):  # one pass: UESCAPE, then U&"..." identifiers
        text = tok.text
        if len(text) == 7 and tok.token_type == TokenType.VAR and text.upper() == "UESCAPE":
            return sql, "UESCAPE is refused: the parser cannot resolve Unicode-escaped names reliably; write the plain name", []
        if refusal or len(text) != 1 or text not in "uU" or i + 2 >= count:
            continue
        amp, target = tokens[i + 1], tokens[i + 2]
        if amp.token_type == TokenType.AMP and tok.end + 1 == amp.start and amp.end + 1 == target.start:
            decoded = _decode(target.text) if target.token_type == TokenType.IDENTIFIER else None
            if decoded is None:
                refusal = _REFUSE
                continue
            edits.append((tok.start, target.end + 1, '"' + decoded.replace('"', '""') + '"'))
    refusal = parser_differential(tokens) or refusal
    if refusal:
        return sql, refusal, []
    if not edits:
        return sql, None, tokens
    for start, end, text in reversed(edits):
        sql = sql[:start] + text + sql[end:]
    try:
        return sql, None, tokenize(sql)
    except Exception:  # noqa: BLE001 - the rewritten text no longer tokenizes: refuse
        return sql, "could not parse the SQL as PostgreSQL (tokenizer error); fix quoting and syntax", []


def dropped_names(sql: str | list[Token], tree: exp.Expression | Counter, names: set[str]) -> list[str]:
    """Column names written in `sql` that sqlglot's tree lost (it drops arguments it does not expect).

    Only names in `names` (the catalog's column names) are counted: a column the tree forgot is
    a column lineage would miss. `sql` may be its tokens, `tree` the `names_seen` of the tree.
    """
    if isinstance(sql, str):
        try:
            sql = tokenize(sql)
        except Exception:  # noqa: BLE001 - tokenizing already succeeded once; nothing to compare
            return []
    # A name right before `(` is a function being called (`age(now(), created_at)`), never a column,
    # even where the database also has a column of that name: counting it refused a harmless read.
    written = Counter(_fold(t.text, t.token_type == TokenType.IDENTIFIER) for t, after in zip(sql, [*sql[1:], None])
                      if t.token_type in (TokenType.VAR, TokenType.IDENTIFIER)
                      and not (after is not None and after.token_type == TokenType.L_PAREN))
    seen = tree if isinstance(tree, Counter) else names_seen(tree.walk())
    return sorted(name for name, count in written.items() if name in names and seen[name] < count)


def names_seen(nodes) -> Counter:
    """How often each name occurs in a tree's Identifier / Var nodes (as PostgreSQL folds them)."""
    seen: Counter = Counter()
    for node in nodes:
        if isinstance(node, exp.Identifier):
            seen[_fold(node.this, node.quoted)] += 1
        elif isinstance(node, exp.Var):
            seen[node.name.lower()] += 1
            seen[node.name] += 1
    return seen


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
