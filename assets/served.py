"""`GovernedIOManager` in service mode: store what `lineage-guard serve` served, with its provenance footer.

In service mode the Dagster process holds no masking key, so it cannot mask anything itself. What
it may store is what the server already masked for it: each column of an asset's output must be
passed through from a served read of the same step (a read through the resource with `context=`,
or an upstream file this IO manager loaded): same name, and every non-null value one of that
read's values (selected, filtered, joined, grouped; `provenance._passed_through`). A column
computed here, or of unknown origin, is refused with its name (fail closed: storing it would put
data no policy decided into a governed file). The file's footer is the server's provenance
document of the read(s) (`lineage_guard.provenance`: receipt, `open` entry, policy digest, who,
why, how each column left), narrowed to the columns written.

Loading an upstream file in service mode checks that it was written for the identity the server
establishes for this credential (`whoami`): re-masking it for another identity needs the keys,
which are on the server, so a file written for someone else is refused.

Example:
    >>> doc = {"receipt_id": "r1", "columns": [{"name": "id"}, {"name": "email"}]}
    >>> [c["name"] for c in narrowed(doc, ["email"])["columns"]]
    ['email']
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from lineage_guard.errors import ConfigError

from .provenance import Loaded, _passed_through

SERVED = "served://"   # the uri of a read through the service (no file): served://<receipt id>
FOOTER_KEY = "lineage_guard.provenance"


def served_input(receipt, table: pa.Table) -> Loaded:
    """What a served read gives this step's IO manager: the table as delivered and the server's provenance."""
    doc = receipt.provenance or {}
    columns = tuple({"name": c["name"], "sources": c.get("sources", []), "doc": doc} for c in doc.get("columns", ()))
    return Loaded(None, f"{SERVED}{receipt.receipt_id}", tuple((f.name, str(f.type)) for f in table.schema),
                  columns, table)


def file_input(asset_key: Any, uri: str, table: pa.Table, doc: dict) -> Loaded:
    """An upstream file this IO manager loaded in service mode, with its footer's provenance."""
    columns = tuple({"name": c["name"], "sources": c.get("sources", []), "doc": doc} for c in doc.get("columns", ()))
    return Loaded(asset_key, uri, tuple((f.name, str(f.type)) for f in table.schema), columns, table)


def narrowed(doc: dict, names: Sequence[str]) -> dict:
    """`doc` with only the columns named (in that order), renumbered as the file's positions."""
    by_name = {c["name"]: c for c in doc.get("columns", ())}
    return {**doc, "columns": [{**by_name[n], "position": i} for i, n in enumerate(names) if n in by_name]}


def footer_for(table: pa.Table, loaded: Sequence[Loaded]) -> tuple[dict, list[str]]:
    """The provenance footer for `table` and the receipts it comes from; refuses a column not served.

    One served read: its document, narrowed. Several: the first one's document, each column naming
    the receipt of the read it came from (`receipt_id` per column) and `inputs` listing them all.
    """
    sources: dict[str, tuple[dict, dict]] = {}
    refused = []
    for name in table.column_names:
        match = next(((item, col) for item in loaded for col in item.columns
                      if col["name"] == name and col["doc"] and _passed_through(table.column(name), item, name)),
                     None)
        if match is None:
            refused.append(name)
            continue
        doc = match[1]["doc"]
        sources[name] = (doc, next(c for c in doc["columns"] if c["name"] == name))
    if refused:
        raise ConfigError(
            f"GovernedIOManager (service mode): column(s) {', '.join(refused)} were not served by lineage-guard "
            "serve in this step (computed here, changed, or read without context=): this process holds no key to "
            "mask them, so it stores only columns passed through from a served read. Compute them in SQL through "
            "the resource, or store them with another IO manager")
    docs = {doc["receipt_id"]: doc for doc, _ in sources.values()}
    first = next(iter(docs.values()))
    columns = []
    for position, name in enumerate(table.column_names):
        doc, col = sources[name]
        columns.append({**col, "position": position, "receipt_id": doc["receipt_id"]})
    footer = {**first, "columns": columns}
    if len(docs) > 1:
        footer["inputs"] = [{"receipt_id": d["receipt_id"], "run_id": d.get("run_id")} for d in docs.values()]
    return footer, list(docs)


def write_parquet(table: pa.Table, uri: str, footer: dict) -> int:
    """Write `table` to `uri` (local path or fsspec URL) atomically, the footer in its key-value metadata;
    returns the bytes written. A failure leaves nothing at `uri`."""
    import fsspec
    import pyarrow.parquet as pq

    fs, path = fsspec.core.url_to_fs(uri)
    parent = os.path.dirname(path)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    tmp = f"{parent}/.{os.path.basename(path)}.{secrets.token_hex(6)}.lg-tmp" if parent else f".{path}.lg-tmp"
    meta = dict(table.schema.metadata or {})
    meta[FOOTER_KEY.encode()] = json.dumps(footer, sort_keys=True, separators=(",", ":"),
                                           ensure_ascii=False).encode()
    try:
        with fs.open(tmp, "wb") as fh:
            pq.write_table(table.replace_schema_metadata(meta), fh, compression="zstd")
        fs.mv(tmp, path)
    except BaseException:
        try:
            fs.rm(tmp)
        except (FileNotFoundError, OSError):
            pass
        raise
    return int(fs.size(path))


def read_footer(uri: str, table_meta: dict | None) -> dict | None:
    raw = (table_meta or {}).get(FOOTER_KEY.encode())
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        raise ConfigError(f"GovernedIOManager: {uri} has an unreadable provenance footer") from None
    return doc if isinstance(doc, dict) else None
