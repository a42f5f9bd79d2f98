"""`lineage-guard risk FILE --quasi zip,birth_date,sex [--sensitive diagnosis] [--json]`: k-anonymity, l-diversity.

Prints k, l and the smallest equivalence classes (sizes and counts, never a value); with
`--min-k K` (and `--min-l L`) exits 1 when the file is below the floor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import EXIT_ERROR, console, print_json, run_guarded

out = console()
err = console(stderr=True)


def risk(
    file: Annotated[Path, typer.Argument(help="A Parquet file.")],
    quasi: Annotated[str, typer.Option("--quasi", help="Quasi-identifier columns, comma-separated.")],
    sensitive: Annotated[str | None, typer.Option("--sensitive", help="A sensitive attribute for l-diversity.")] = None,
    min_k: Annotated[int | None, typer.Option("--min-k", help="Exit 1 when k is below this.")] = None,
    min_l: Annotated[int | None, typer.Option("--min-l", help="Exit 1 when l is below this (needs --sensitive).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Re-identification risk of a Parquet file: k-anonymity (and l-diversity) over its quasi-identifiers."""

    def run() -> None:
        from ..attest.risk import measure_file
        from ..errors import ConfigError

        if min_l is not None and not sensitive:
            raise ConfigError("--min-l needs --sensitive COLUMN (l-diversity is measured on one sensitive attribute)")
        result = measure_file(file, [c.strip() for c in quasi.split(",") if c.strip()], sensitive=sensitive)
        below = (min_k is not None and result.k < min_k) or (min_l is not None and (result.l or 0) < min_l)
        if as_json:
            print_json({**result.to_dict(), "below_floor": below})
        else:
            out.print(result.describe(), markup=False, highlight=False)
            for size, count in result.smallest:
                out.print(f"  {count} class(es) of {size} row(s)", markup=False, highlight=False)
        if below:
            err.print(f"below the floor (k >= {min_k}" + (f", l >= {min_l}" if min_l else "") + ")",
                      markup=False, highlight=False)
            raise typer.Exit(EXIT_ERROR)

    run_guarded(run)
