"""What a governed read may call and touch: an allow-list, never a deny-list.

A function is allowed only if it is a pure PostgreSQL built-in named here. sqlglot turns
many of them into typed nodes (`MD5`, `StrPosition`, ...), so the allow-list is written
as PostgreSQL names and mapped through sqlglot once (`allowed_node_keys`). Anything else
is refused, with a reason a person can act on (`refusal_reason`).

Example:
    >>> is_allowed_name("upper"), is_allowed_name("set_config")
    (True, False)
    >>> refusal_reason("pg_read_file")
    'function pg_read_file is not allowed: it reads server files or server state; remove it'
"""

from __future__ import annotations

import logging
from functools import cache

import sqlglot
from sqlglot import exp

# Pure built-ins: no side effect, no catalog or server access, no SQL hidden in a string argument.
_STRING = """
ascii bit_length btrim char_length character_length chr concat concat_ws format initcap left length lower
lpad ltrim md5 normalize octet_length overlay position quote_ident quote_literal quote_nullable regexp_count
regexp_instr regexp_like regexp_match regexp_matches regexp_replace regexp_split_to_array regexp_split_to_table
regexp_substr repeat replace reverse right rpad rtrim split_part starts_with string_to_array string_to_table
strpos substr substring to_ascii to_hex translate trim upper unistr textcat encode decode convert_to
convert_from convert sha224 sha256 sha384 sha512 get_byte get_bit bit_count casefold
to_tsvector to_tsquery plainto_tsquery phraseto_tsquery websearch_to_tsquery ts_headline ts_rank ts_rank_cd
setweight strip tsvector_to_array array_to_tsvector numnode querytree length
"""
_MATH = """
abs cbrt ceil ceiling degrees div exp factorial floor gcd lcm ln log log10 min_scale mod pi power pow radians
round scale sign sqrt trim_scale trunc width_bucket random acos asin atan atan2 cos cot sin tan sinh cosh tanh
asinh acosh atanh greatest least num_nonnulls num_nulls coalesce nullif
"""
_DATE = """
age clock_timestamp current_date current_time current_timestamp date_bin date_part date_trunc extract isfinite
justify_days justify_hours justify_interval localtime localtimestamp make_date make_interval make_time
make_timestamp make_timestamptz now statement_timestamp timeofday transaction_timestamp to_char to_date
to_number to_timestamp date_add date_subtract timezone
"""
_AGGREGATE = """
array_agg avg bit_and bit_or bit_xor bool_and bool_or count every json_agg jsonb_agg json_object_agg
jsonb_object_agg max min range_agg string_agg sum xmlagg corr covar_pop covar_samp regr_avgx regr_avgy
regr_count regr_intercept regr_r2 regr_slope regr_sxx regr_sxy regr_syy stddev stddev_pop stddev_samp
variance var_pop var_samp mode percentile_cont percentile_disc grouping any_value
"""
_WINDOW = "row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value last_value nth_value"
_JSON_XML_ARRAY = """
to_json to_jsonb array_to_json row_to_json json_build_array jsonb_build_array json_build_object
jsonb_build_object json_object jsonb_object json_array_length jsonb_array_length json_each json_each_text
jsonb_each jsonb_each_text json_extract_path json_extract_path_text jsonb_extract_path jsonb_extract_path_text
json_object_keys jsonb_object_keys json_array_elements json_array_elements_text jsonb_array_elements
jsonb_array_elements_text json_typeof jsonb_typeof json_strip_nulls jsonb_strip_nulls jsonb_set jsonb_insert
jsonb_pretty jsonb_path_exists jsonb_path_match jsonb_path_query jsonb_path_query_array jsonb_path_query_first
json_to_record jsonb_to_record json_to_recordset jsonb_to_recordset json_populate_record jsonb_populate_record
xmlelement xmlattributes xmlforest xmlconcat xmlcomment xmlpi xmlroot xpath xpath_exists xmlserialize xmlparse xmltext
array_append array_cat array_dims array_fill array_length array_lower array_position array_positions
array_prepend array_remove array_replace array_to_string array_upper array_ndims cardinality trim_array
unnest generate_series generate_subscripts row
current_user session_user current_role current_catalog current_database current_schema gen_random_uuid
pg_typeof version pg_size_pretty
int4range int8range numrange tsrange tstzrange daterange isempty lower_inc upper_inc lower_inf upper_inf range_merge
host abbrev broadcast family hostmask masklen netmask network set_masklen inet_merge inet_same_family
random_normal array_sample array_shuffle array_reverse array_sort
"""



def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Type names callable as functions (`int4(x)`, `date(x)`): casts in disguise, checked like `x::int4`.
FUNCTION_CASTS: frozenset[str] = _words(
    "int2 int4 int8 integer smallint bigint numeric float4 float8 real bool boolean date time timestamp timestamptz "
    "interval text varchar bpchar name uuid inet cidr json jsonb xml money bytea"
)
ALLOWED_FUNCTIONS: frozenset[str] = _words(f"{_STRING} {_MATH} {_DATE} {_AGGREGATE} {_WINDOW} {_JSON_XML_ARRAY}")

# Set-returning functions that may stand in FROM, and the columns they return when the caller gives none.
TABLE_FUNCTION_COLUMNS: dict[str, tuple[str, ...]] = {
    "json_each": ("key", "value"), "json_each_text": ("key", "value"),
    "jsonb_each": ("key", "value"), "jsonb_each_text": ("key", "value"),
    "json_array_elements": ("value",), "json_array_elements_text": ("value",),
    "jsonb_array_elements": ("value",), "jsonb_array_elements_text": ("value",),
}
TABLE_FUNCTIONS: frozenset[str] = _words("""
unnest generate_series generate_subscripts json_each json_each_text jsonb_each jsonb_each_text
json_array_elements json_array_elements_text jsonb_array_elements jsonb_array_elements_text json_object_keys
jsonb_object_keys json_to_record jsonb_to_record json_to_recordset jsonb_to_recordset json_populate_record
jsonb_populate_record regexp_matches regexp_split_to_table string_to_table jsonb_path_query
""")

# Functions that parse an argument and put the offending input in their error message: over a
# sensitive value they leak it through the error channel, before any masking can run.
# For each, the arguments (PostgreSQL position for plain calls, sqlglot key for typed nodes) whose
# value the error message repeats; `True` when even a number is repeated (`chr(57000000)`).
ERROR_CHANNEL_ARGS: dict[str, tuple[tuple[int | str, ...], bool]] = {
    "chr": ((0, "expressions", "this"), True),
    "make_date": ((0, 1, 2), True),
    "make_time": (("hour", "min", "sec", 0, 1, 2), True),
    "make_timestamp": (("year", "month", "day", "hour", "min", "sec", 0, 1, 2, 3, 4, 5), True),
    "make_timestamptz": ((0, 1, 2, 3, 4, 5, 6), True),
    "get_byte": ((1, "expression"), True),
    "get_bit": ((1, "expression"), True),
    "set_byte": ((1,), True),
    "set_bit": ((1,), True),
    "unixtotime": (("this",), True),  # to_timestamp(double)
    "date_trunc": (("unit", 0), False),
    "date_part": (("this", 0), False),
    "timezone": ((0,), False),
    "to_tsquery": ((0, 1), False),
    "to_tsvector": ((0,), False),
    "plainto_tsquery": ((0,), False),
    "phraseto_tsquery": ((0,), False),
    "websearch_to_tsquery": ((0,), False),
    "decode": (("this", "charset", 0, 1), False),
    "encode": (("charset", 1), False),
    "convert_to": ((1,), False),
    "convert_from": ((0, 1), False),
    "convert": ((0, 1, 2), False),
    "format": (("this", 0), False),
    "to_number": (("this", "format", 0, 1), False),
    "to_date": (("this", "format", 0, 1), False),
    "to_timestamp": (("this", "format", 0, 1), False),
    "xpath": ((0,), False),
    "xpath_exists": ((0,), False),
    "xmlparse": (("this", 0), False),
    # Domain errors: no value in the message, but error-or-not on a chosen row is a one-bit oracle,
    # like division by zero (`sqrt(ascii(ssn) - 58)` fails exactly when the digit is below '9').
    "sqrt": (("this",), True),
    "ln": (("this",), True),
    "log": (("this", "expression"), True),
    "pow": (("this", "expression"), True),
    "factorial": (("this",), True),
    "substr": (("length",), True),
    "split_part": (("part_index", 2), True),
    "array_fill": ((1,), True),
    "generate_series": (("step", 2), True),
}
# Two-argument text search functions take the configuration first; alone, the argument is the text.
CONFIG_FIRST = _words("to_tsvector plainto_tsquery phraseto_tsquery websearch_to_tsquery")
# Cast targets whose input function never fails on text, or fails without echoing the value.
SAFE_CAST_TARGETS: frozenset[str] = _words("text varchar char bpchar name citext bytea varbinary binary character nchar nvarchar string")

# Catalog objects a read may touch. None: system catalogs hold password hashes (pg_authid), raw
# large objects (pg_largeobject), column statistics (pg_stats: value histograms) and query texts
# (pg_stat_statements); metadata readers go through `Catalog.from_postgres`, not through reads.
ALLOWED_SYSTEM_RELATIONS: frozenset[str] = frozenset()
SYSTEM_SCHEMAS: frozenset[str] = frozenset({"pg_catalog", "information_schema", "pg_toast"})

_RUNS_SQL = ("query_to_xml", "cursor_to_xml", "table_to_xml", "schema_to_xml", "database_to_xml", "ts_stat",
             "ts_rewrite", "dblink", "query_to", "cursor_to", "table_to", "schema_to", "database_to")
_SIDE_EFFECT = ("set_config", "current_setting", "nextval", "setval", "currval", "lastval", "lo_", "pg_sleep",
                "pg_notify", "setseed", "pg_advisory", "pg_try_advisory", "txid_", "pg_terminate", "pg_cancel",
                "pg_reload", "pg_switch", "pg_create", "pg_drop", "pg_stat_reset", "pg_replication", "pg_logical")
_SERVER = ("pg_read", "pg_ls_", "pg_stat", "pg_file", "pg_", "has_", "to_reg", "version", "inet_server",
           "inet_client", "current_query", "obj_description", "col_description")


def is_allowed_name(name: str) -> bool:
    """Whether a PostgreSQL function name (lower case, unqualified) is an allowed pure built-in."""
    return name.lower() in ALLOWED_FUNCTIONS


def refusal_reason(name: str) -> str:
    """Why a function outside the allow-list is refused, phrased so a person can act on it."""
    low = name.lower()
    if low.startswith(_RUNS_SQL):
        why = "it runs SQL (or connects somewhere) from a string, so its lineage cannot be checked"
    elif low.startswith(_SIDE_EFFECT):
        why = "it has a side effect (session state, sequences, large objects, locks, sleeping) that can stash or move data"
    elif low.startswith(_SERVER):
        why = "it reads server files or server state"
    else:
        why = ("it is not on lineage_guard's allow-list of pure built-in functions; rewrite with built-ins "
               "or ask an admin to add it")
        return f"function {low} is not allowed: {why}"
    return f"function {low} is not allowed: {why}; remove it"


def _silence_sqlglot() -> None:
    # sqlglot warns with the statement text ("... contains unsupported syntax"): never log user SQL.
    logging.getLogger("sqlglot").setLevel(logging.ERROR)


@cache
def allowed_node_keys() -> dict[str, str]:
    """sqlglot node class name -> the PostgreSQL function name it came from, for typed function nodes."""
    _silence_sqlglot()
    keys: dict[str, str] = {}
    for name in sorted(ALLOWED_FUNCTIONS):
        for args in ("", "a", "a, b", "a, b, c"):
            try:
                node = sqlglot.parse_one(f"SELECT {name}({args})", dialect="postgres").expressions[0]
            except sqlglot.errors.SqlglotError:
                continue  # this arity does not parse; another one will
            if isinstance(node, exp.Func) and not isinstance(node, exp.Anonymous):
                keys.setdefault(type(node).__name__, name)
    # Syntax that sqlglot models as functions.
    for sql in ("CASE WHEN a THEN b END", "CAST(a AS int)", "a::text", "EXTRACT(year FROM a)", "ARRAY[a]",
                "ARRAY(SELECT 1)", "POSITION('a' IN b)", "SUBSTRING(a FROM 1 FOR 2)", "TRIM(BOTH 'x' FROM a)",
                "OVERLAY(a PLACING 'b' FROM 1)", "a AT TIME ZONE 'UTC'", "xmlelement(name e, a)", "a IS NULL",
                "COALESCE(a, b)", "NULLIF(a, b)", "GREATEST(a, b)", "LEAST(a, b)", "a ~ 'x'", "a ~* 'x'",
                "a ILIKE 'x'", "CURRENT_DATE", "CURRENT_TIMESTAMP", "LOCALTIMESTAMP", "CURRENT_USER",
                "a IS DISTINCT FROM b", "a = ANY(b)", "a = ALL(b)", "xmlforest(a)", "IF(a, b, c)",
                "mode() WITHIN GROUP (ORDER BY a)", "xmlserialize(content a AS text)", "a BETWEEN b AND c",
                "json_object('a' VALUE b)", "a -> 'b'", "a ->> 'b'", "a #> '{b}'", "a #>> '{b}'", "a @> b",
                "a <@ b", "a ? 'b'", "a ?| b", "a ?& b", "a @? '$.b'", "a @@ b", "to_timestamp(1)",
                "sha256(a)", "date_part('year', a)", "left(a, 1)", "a COLLATE \"C\"", "unnest(a)"):
        try:
            node = sqlglot.parse_one(f"SELECT {sql}", dialect="postgres").expressions[0]
        except sqlglot.errors.SqlglotError:
            continue  # not valid in this sqlglot version: nothing to allow
        for sub in node.walk():
            if isinstance(sub, exp.Func) and not isinstance(sub, exp.Anonymous):
                keys.setdefault(type(sub).__name__, type(sub).__name__.lower())
    keys.setdefault("Unnest", "unnest")  # unnest(...) in FROM; in a select list sqlglot calls it Explode
    return keys


def function_name(node: exp.Func) -> str:
    """The PostgreSQL-facing name of a function node (lower case), as the allow-list spells it."""
    if isinstance(node, (exp.Anonymous, exp.AnonymousAggFunc)):
        return str(node.this).lower()
    return allowed_node_keys().get(type(node).__name__) or type(node).__name__.lower()


def is_allowed_node(node: exp.Func) -> bool:
    """Whether a function node is an allowed pure built-in."""
    if isinstance(node, (exp.Anonymous, exp.AnonymousAggFunc)):
        return is_allowed_name(str(node.this))
    if isinstance(node, (exp.Binary, exp.Unary, exp.Connector, exp.Predicate)):
        return True  # operators sqlglot models as functions (AND, @>, &&, #-, ~): built-in and pure
    return type(node).__name__ in allowed_node_keys()
