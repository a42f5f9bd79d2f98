"""Proof after masking: a Great Expectations suite run on the masked output before the sink commits.

For every masked column the suite checks that no value still matches the
detectors of the column's original label (an SSN column tokenized must hold no
SSN-shaped value), that tokens have the token format, that redacted and nulled
columns hold only the replacement or nulls, that dropped columns are gone, and
that the row count is the one read. A failed report fails the run.

Runs on GX 1.x's ephemeral context (nothing written to disk, analytics off unless
the caller turned them on). The report carries assertion names, columns, success
and counts only: GX's `partial_unexpected_list` (raw values) is never kept.

Example:
    >>> import pyarrow as pa
    >>> out = pa.table({"ssn": ["tok_8G4Q2M1ZPX7T5R3K9W6YB0HD"] * 3})
    >>> report = validate_masked_output(out, [ColumnExpectation("ssn", "national_id", "tokenize")], 3)
    >>> report.success, [a.assertion for a in report.results]
    (True, ['row_count', 'no_national_id_values', 'token_format'])
    >>> to_openlineage_facet(report)["assertions"][0]
    {'assertion': 'row_count', 'success': True, 'severity': 'error', 'expected': '3', 'actual': '3'}
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from lineage_guard.classify.detectors import gx_patterns
from lineage_guard.classify.names import canonical_label
from lineage_guard.errors import ConfigError
from lineage_guard.extras import needs_extra

SCHEMA_URL = (
    "https://openlineage.io/spec/facets/1-1-0/DataQualityAssertionsDatasetFacet.json"
    "#/$defs/DataQualityAssertionsDatasetFacet"
)
DEFAULT_TOKEN_PREFIX = "tok_"
# Methods whose output is realistic on purpose (a fake e-mail is still e-mail shaped): the label's
# detectors would match by design, so only the other checks apply to them.
REALISTIC_METHODS = frozenset({"pseudonymize", "format_preserving"})
_NON_CAPTURING = re.compile(r"(?<!\\)\((?!\?)")


@dataclass(frozen=True)
class ColumnExpectation:
    """What must hold for one masked output column.

    `label` is the source column's label (its detectors must not match); `method` the mask applied
    (`tokenize`, `redact`, `null`, `drop`, ...); `token_format` the regex tokens must match (default
    for tokenize: `^<prefix>[0-9A-Za-z]{8,64}$` with prefix `params["prefix"]` or `tok_`).
    """

    column: str
    label: str | None = None
    method: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    token_format: str | None = None

    def __hash__(self) -> int:
        return hash((self.column, self.label, self.method, self.token_format))


@dataclass(frozen=True)
class AssertionResult:
    """One check: what (`assertion`), where (`column`, None for the table), whether it held, how many values failed."""

    assertion: str
    column: str | None
    success: bool
    expectation: str                 # the GX expectation type, or "lineage_guard" for checks made without GX
    unexpected_count: int | None = None
    expected: str | None = None      # counts and formats only, never a value
    actual: str | None = None


@dataclass(frozen=True)
class ValidationReport:
    success: bool
    results: tuple[AssertionResult, ...]

    @property
    def failures(self) -> tuple[AssertionResult, ...]:
        return tuple(r for r in self.results if not r.success)

    def raise_for_failure(self) -> None:
        """A MaskingError naming the failed checks (columns and counts, no values) when the report failed."""
        if self.success:
            return
        from lineage_guard.errors import MaskingError

        failed = ", ".join(
            f"{r.assertion}{f' on {r.column}' if r.column else ''}"
            + (f" ({r.unexpected_count} values)" if r.unexpected_count else "")
            for r in self.failures
        )
        raise MaskingError(f"masked output failed its checks: {failed}; nothing was written")


def expectations_for(decision: Any) -> list[ColumnExpectation]:
    """The expectations of a `Decision`: one per masked output column, with its first label and its mask.

    Output columns are matched by name, so the sink must keep the decision's names.
    """
    out = []
    for col in decision.columns:
        if col.mask is None:
            continue
        label = col.labels[0] if getattr(col, "labels", ()) else None
        out.append(ColumnExpectation(col.name, label, col.mask.method, dict(col.mask.params)))
    return out


def _token_regex(exp: ColumnExpectation) -> str:
    if exp.token_format:
        return exp.token_format
    prefix = str(exp.params.get("prefix", DEFAULT_TOKEN_PREFIX))
    return "^" + re.escape(prefix) + r"[0-9A-Za-z]{8,64}$"


def leak_regex(label: str) -> str | None:
    """One regex matching any value the label's detectors recognize (None if the label has no format).

    Policy label names are mapped to detection labels first (`ssn` -> national_id).
    """
    canonical = canonical_label(label)
    parts = []
    for p in gx_patterns(canonical) if canonical else ():
        p = _NON_CAPTURING.sub("(?:", p)  # pandas warns about (and would extract) capture groups
        # a global flag must lead the whole pattern; scope it to its own alternative instead
        parts.append("(?i:" + p[4:] + ")" if p.startswith("(?i)") else "(?:" + p + ")")
    return "|".join(parts) or None


def _plan(exp: ColumnExpectation, gxe) -> list[tuple[str, Any]]:
    """(assertion name, GX expectation) pairs for one column."""
    checks: list[tuple[str, Any]] = []
    method = exp.method
    leak = leak_regex(exp.label) if exp.label else None
    if leak and method not in REALISTIC_METHODS and method != "null":
        checks.append((f"no_{exp.label}_values", gxe.ExpectColumnValuesToNotMatchRegex(column=exp.column, regex=leak)))
    if method == "tokenize" or exp.token_format:
        checks.append(("token_format", gxe.ExpectColumnValuesToMatchRegex(column=exp.column, regex=_token_regex(exp))))
    if method == "redact":
        replacement = exp.params.get("replacement", "[REDACTED]")
        checks.append(("redacted", gxe.ExpectColumnValuesToBeInSet(column=exp.column, value_set=[replacement])))
    if method == "null":
        checks.append(("all_null", gxe.ExpectColumnValuesToBeNull(column=exp.column)))
    return checks


def _row_count(table: Any) -> int:
    return table.num_rows if isinstance(table, (pa.Table, pa.RecordBatch)) else len(table)


def _take(table: Any, rows: list[int]) -> Any:
    if isinstance(table, (pa.Table, pa.RecordBatch)):
        return table.take(pa.array(rows, pa.int64()))
    return table.iloc[rows]


def _to_pandas(table: Any):
    if isinstance(table, pa.Table):
        return table.to_pandas()
    if isinstance(table, pa.RecordBatch):
        return pa.Table.from_batches([table]).to_pandas()
    import pandas as pd

    if isinstance(table, pd.DataFrame):
        return table
    raise ConfigError(f"validate_masked_output takes a pyarrow Table or a pandas DataFrame, got {type(table).__name__}")


def _gx():
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")  # no usage events leave the machine
    # GX's import logs ~4,700 DEBUG/INFO lines (its registries) under a DEBUG root logger, as in
    # Airflow task logs. Set before the import; WARNING and ERROR still show, and a level the
    # application chose for "great_expectations" is kept.
    gx_logger = logging.getLogger("great_expectations")
    if gx_logger.level == logging.NOTSET:
        gx_logger.setLevel(logging.WARNING)
    with needs_extra("lineage_guard.integrations.great_expectations", "gx"):
        import great_expectations as gx
        import great_expectations.expectations as gxe

    return gx, gxe


def validate_masked_output(table: Any, expectations: Iterable[ColumnExpectation], expected_rows: int, *,
                           max_rows: int | None = None) -> ValidationReport:
    """Run the suite on the masked output (pa.Table, RecordBatch or pandas DataFrame); never raises on a failed check.

    A column named in `expectations` but missing from the output fails (`column_exists`), except
    for `drop`, where being present fails (`dropped`). `max_rows` bounds the cost on big outputs:
    the value checks then run on an evenly spaced sample of that many rows (the row count is still
    checked on the whole output); by default every row is checked.
    """
    gx, gxe = _gx()
    if max_rows is not None and max_rows < 1:
        raise ConfigError("max_rows must be at least 1 (or None to check every row)")
    total = _row_count(table)
    sampled = max_rows is not None and total > max_rows
    if sampled:
        step = total / max_rows
        table = _take(table, [int(i * step) for i in range(max_rows)])
    df = _to_pandas(table)
    expectations = list(expectations)
    results: list[AssertionResult] = []
    context = gx.get_context(mode="ephemeral")
    with suppress(AttributeError, TypeError, ValueError):  # older 1.x: bars stay on (stderr only)
        context.variables.progress_bars = {"globally": False, "metric_calculations": False}
    suite = gx.ExpectationSuite(name="lineage_guard_masked_output")

    def add(assertion: str, column: str | None, expectation) -> None:
        expectation.meta = {"lineage_guard_assertion": assertion}
        suite.add_expectation(expectation)

    if sampled:  # GX sees the sample; the count is the whole output's
        results.append(AssertionResult("row_count", None, total == int(expected_rows), "lineage_guard", None,
                                       str(int(expected_rows)), str(total)))
    else:
        add("row_count", None, gxe.ExpectTableRowCountToEqual(value=int(expected_rows)))
    for exp in expectations:
        present = exp.column in df.columns
        if exp.method == "drop":
            results.append(AssertionResult("dropped", exp.column, not present, "lineage_guard"))
            continue
        if not present:
            results.append(AssertionResult("column_exists", exp.column, False, "lineage_guard"))
            continue
        for assertion, expectation in _plan(exp, gxe):
            add(assertion, exp.column, expectation)

    source = context.data_sources.add_pandas("lineage_guard_output")
    asset = source.add_dataframe_asset("masked")
    batch = asset.add_batch_definition_whole_dataframe("whole").get_batch(batch_parameters={"dataframe": df})
    validation = batch.validate(suite, result_format="BASIC")

    for r in validation.results:
        cfg = r.expectation_config
        assertion = (cfg.meta or {}).get("lineage_guard_assertion", cfg.type)
        column = cfg.kwargs.get("column")
        result = r.result or {}
        raised = bool((r.exception_info or {}).get("raised_exception"))
        count = result.get("unexpected_count")
        expected = actual = None
        if assertion == "row_count":
            expected, actual = str(int(expected_rows)), str(result.get("observed_value"))
        results.append(AssertionResult(
            assertion, column, bool(r.success) and not raised, cfg.type,
            None if count is None else int(count), expected, actual,
        ))
    order = {"row_count": 0}
    results.sort(key=lambda a: order.get(a.assertion, 1))
    return ValidationReport(all(a.success for a in results), tuple(results))


def to_openlineage_facet(report: ValidationReport, producer: str | None = None) -> dict:
    """The OpenLineage `dataQualityAssertions` dataset facet of a report (severity error: a failure fails the run)."""
    if producer is None:
        try:
            from lineage_guard.lineage.producer import PRODUCER as producer
        except ImportError:
            producer = "https://lineage-guard.dev/producer"
    assertions = []
    for a in report.results:
        item: dict[str, Any] = {"assertion": a.assertion, "success": a.success, "severity": "error"}
        if a.column is not None:
            item["column"] = a.column
        if a.expected is not None:
            item["expected"] = a.expected
        if a.actual is not None:
            item["actual"] = a.actual
        assertions.append(item)
    return {"_producer": producer, "_schemaURL": SCHEMA_URL, "assertions": assertions}


def ledger_summary(report: ValidationReport) -> dict:
    """A compact, value-free summary for the audit ledger."""
    return {
        "suite": "lineage_guard_masked_output",
        "success": report.success,
        "checks": len(report.results),
        "failed": [
            {"assertion": a.assertion, "column": a.column, "unexpected": a.unexpected_count} for a in report.failures
        ],
    }
