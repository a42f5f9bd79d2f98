"""`lineage-guard scan SOURCE`: which columns of a source look sensitive, and what the policy would do.

    lineage-guard scan postgresql://reader@db/clinic
    lineage-guard scan postgresql://reader@db/clinic --table public.patients --policy policy.yaml \\
        --identity svc-training --purpose ai_training --json

Sampled values are never printed: the evidence is the name that matched, the
detector, and shares of the sample (format, checksum, dictionary). Results are
cached per table and schema version (`--refresh` rescans). Registered by the CLI
as a single command: `app.command(name="scan")(scan)`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ..classify import Classification, DetectionCatalog, DetectionConfig, source_key
from ..errors import LineageGuardError
from ..identity import Identity
from ..sql.model import ColumnRef
from .common import console

out = console()
err = console(stderr=True)


def evidence_text(c: Classification) -> str:
    """A one-line, value-free summary of the evidence, e.g. `name 'ssn' · us_ssn 100% · checksum 98%`."""
    ev = c.evidence
    parts = []
    if ev.get("name"):
        parts.append(f"name '{ev['name']}'" + (" (weak)" if ev.get("name_strength") == "weak" else ""))
    if ev.get("detector"):
        parts.append(f"{ev['detector']} {ev.get('pattern_share', 0):.0%}")
    if ev.get("checksum_share") is not None:
        parts.append(f"checksum {ev['checksum_share']:.0%}")
    if ev.get("dictionary_share") is not None:
        parts.append(f"known names {ev['dictionary_share']:.0%}")
    if ev.get("reason"):
        parts.append(str(ev["reason"]))
    parts.append(f"{ev.get('non_null', 0)}/{ev.get('sampled', 0)} non-null")
    return " · ".join(parts)


def _policy_view(policy: Any, identity: Identity, purpose: str):
    """(declared labels, action-for(column, label)) from the lead's Policy model."""
    declared = policy.labels()
    resolved = policy.resolve_identity(identity)

    def action(column: ColumnRef, label: str | None) -> str:
        if label is None:
            return "clear"
        rule = policy.first_rule(label, column, resolved, purpose)
        if rule is None:
            return f"mask: {policy.default_mask.method} (default)"
        if rule.action == "clear":
            return "clear (needs approval)" if rule.approval else "clear"
        return f"mask: {rule.mask.method}" + (f" [{rule.name}]" if rule.name else "")

    return declared, action


def scan(
    source: Annotated[str, typer.Argument(help="PostgreSQL URL of the source.", envvar="LINEAGE_GUARD_SOURCE")],
    policy: Annotated[Path | None, typer.Option("--policy", "-p", help="Policy YAML: show its labels and actions.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    table: Annotated[list[str] | None, typer.Option("--table", "-t", help="schema.table or table (repeat); default: all.")] = None,
    threshold: Annotated[float | None, typer.Option("--threshold", min=0.0, max=1.0,
                                                        help="Confidence from which a detected label counts (default: the policy's, else 0.8).")] = None,
    sample_rows: Annotated[int | None, typer.Option("--sample-rows", min=1, help="Rows sampled per table.")] = None,
    identity: Annotated[str | None, typer.Option("--identity", "-i", help="Whose actions to show (default: $LINEAGE_GUARD_IDENTITY, else anonymous).")] = None,
    purpose: Annotated[str, typer.Option("--purpose", help="The purpose the actions are for.")] = "unspecified",
    refresh: Annotated[bool, typer.Option("--refresh", help="Rescan even if the cache is current.")] = False,
) -> None:
    """Detect sensitive columns in a source (sampled read-only; values are never shown)."""
    try:
        pol = None
        config = DetectionConfig()
        if policy is not None:
            from ..policy import load_policy

            pol = load_policy(policy)
            config = getattr(pol, "detection", None) or config
        cut = config.threshold if threshold is None else threshold
        rows_wanted = sample_rows or config.sample_rows
        found = DetectionCatalog().scan(source, table, rows_wanted, refresh=refresh)
        who = Identity.parse(identity) if identity else _env_identity()
        declared, action = _policy_view(pol, who, purpose) if pol is not None else ({}, None)
    except LineageGuardError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(exc.exit_code) from None

    rows = []
    for col in sorted(found):
        c = found[col]
        detected = c.label if c.is_sensitive(cut) else None
        label = declared.get(col, detected)
        rows.append({
            "column": str(col),
            "label": label,
            "source": "policy" if col in declared else ("detected" if detected else None),
            "detected": c.label,
            "confidence": c.confidence,
            "sensitive": label is not None,
            "evidence": dict(c.evidence),
            "action": action(col, label) if action else None,
        })
    if as_json:
        print(json.dumps({"source": source_key(source), "threshold": cut, "identity": who.principal if pol else None,
                          "purpose": purpose if pol else None, "columns": rows}, indent=2, sort_keys=True))
        return
    title = f"{source_key(source)} · threshold {cut}" + (f" · actions for {who.principal}, purpose {purpose}" if pol else "")
    grid = Table(title=title, title_justify="left")
    for name in ("column", "label", "confidence", "evidence") + (("action",) if pol else ()):
        grid.add_column(name, no_wrap=name in ("column", "label"))
    for r in rows:
        style = None if r["sensitive"] else "dim"
        label = r["label"] or "not sensitive"
        if r["source"] == "policy":
            label += " (policy)"
        cells = [r["column"], label, f"{r['confidence']:.2f}", evidence_text(found[ColumnRef.parse(r["column"])])]
        if pol:
            cells.append(r["action"] or "")
        grid.add_row(*(escape(c) for c in cells), style=style)
    out.print(grid)
    sensitive = sum(r["sensitive"] for r in rows)
    out.print(f"{sensitive} of {len(rows)} columns sensitive.", highlight=False)


def _env_identity() -> Identity:
    try:
        return Identity.from_env()
    except LineageGuardError:
        return Identity("anonymous")
