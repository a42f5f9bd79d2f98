"""Export the ledger as JSON Lines with its public keys, and verify such a file offline.

The first line is a header `{"format": "lineage_guard.ledger/v1", "entries": n,
"head": "<last hash>", "public_keys": {"<key id>": "<hex>"}, "current_key": "<key id>"}`
(every key that signed the chain, in rotation order); every other line is one entry,
byte for byte as stored (canonical JSON). Verification needs only the file and a public
key the verifier trusts (from the header only if told to); publish `head` to detect a
later truncation (`audit verify --anchor HEAD`).

Example:
    export_ledger(Ledger.open(url), "ledger.jsonl")
    verify_export("ledger.jsonl", public_keys=["<hex>"]).ok
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError
from ..fileio import atomic_write
from .chain import StoredRow, VerifyReport, verify_chain
from .entry import GENESIS, parse_entry
from .ledger import Ledger
from .signing import NO_TRUSTED_KEY, trusted_keys

FORMAT = "lineage_guard.ledger/v1"


def _atomic_write(path: Path, lines: list[bytes]) -> None:
    atomic_write(path, b"".join(line + b"\n" for line in lines))


def export_ledger(ledger: Ledger, path: str | Path, public_keys: Sequence[str] = ()) -> VerifyReport:
    """Write the ledger to `path` (atomically) after verifying it; refuses to export a bad chain."""
    report = ledger.verify(public_keys)
    if not report.ok:
        raise ConfigError(f"ledger does not verify ({report.problem}); not exported")
    rows = list(ledger.store.rows())[: report.entries]
    header = {
        "format": FORMAT,
        "entries": len(rows),
        "head": report.head_hash or GENESIS,
        "public_keys": {k.key_id: k.public_key for k in report.keys},
        "current_key": report.current_key.key_id if report.current_key else None,
    }
    _atomic_write(Path(path), [json.dumps(header, sort_keys=True).encode()] + [row.entry for row in rows])
    return report


def read_export(path: str | Path) -> tuple[dict, list[bytes]]:
    """The header and the raw entry lines of an exported file."""
    try:
        lines = Path(path).read_bytes().split(b"\n")
    except OSError as exc:
        raise ConfigError(f"cannot read export {path}: {exc.strerror}") from None
    if lines and lines[-1] == b"":
        lines.pop()
    try:
        header = json.loads(lines[0]) if lines else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ConfigError(
            f"{path} is not a lineage_guard ledger export (first line must be its {FORMAT} header)"
        )
    return header, lines[1:]


def verify_export(
    path: str | Path, public_keys: Sequence[str] = (), *, trust_header_keys: bool = False,
    anchors: Sequence[str] = (),
) -> VerifyReport:
    """Verify an exported file offline against pinned keys (`trusted_keys`: the hex `public_keys`,
    `LINEAGE_GUARD_LEDGER_PUBLIC_KEY`, this machine's signing key); every hash in `anchors` must be in it.

    `trust_header_keys` also trusts the keys in the file's header: that proves the
    file is internally consistent, not that it came from your ledger.
    """
    header, raw_lines = read_export(path)
    trusted = trusted_keys(tuple(public_keys))
    if trust_header_keys:
        trusted.update({k: v for k, v in dict(header.get("public_keys") or {}).items() if isinstance(v, str)})
    if not trusted:
        raise ConfigError(NO_TRUSTED_KEY)

    def rows():
        for position, raw in enumerate(raw_lines, start=1):
            try:
                doc = parse_entry(raw)
                body = doc["body"] if isinstance(doc["body"], dict) else {}
                yield StoredRow(doc["seq"], doc["id"], body.get("run_id"), doc["hash"], raw)
            except ValueError:
                # Unreadable line: let the chain check name it at its position.
                yield StoredRow(position, "", "", "", raw)

    entries = header.get("entries")
    head = (entries, header.get("head")) if isinstance(entries, int) else None
    return verify_chain(rows(), trusted, head, missing_head="the header has no entry count", anchors=anchors)
