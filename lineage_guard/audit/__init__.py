"""Step 9: the who-saw-what ledger. One signed, hash-chained entry per governed run.

Example:
    from lineage_guard.audit import Ledger
    ledger = Ledger.open()                 # LINEAGE_GUARD_LEDGER_URL or the state folder's ledger.sqlite
    receipt = ledger.record(run)           # run: a RunRecord with a final outcome
    assert ledger.verify().ok               # against the pinned public key (this machine's, --public-key)

The signing key is the ledger's own (`signing.py`), pinned by the ledger on its first entry.
"""

from .chain import KeySpan, Problem, VerifyReport, verify_chain
from .entry import LedgerError, body_from_run, verify_entry_document
from .export import export_ledger, verify_export
from .ledger import LEDGER_URL_ENV, Ledger, ReceiptCheck, SigningKeyMismatch
from .query import Filters, effective, open_runs, who_saw
from .signing import Signer, trusted_keys

__all__ = [
    "LEDGER_URL_ENV",
    "Filters",
    "KeySpan",
    "Ledger",
    "LedgerError",
    "Problem",
    "ReceiptCheck",
    "Signer",
    "SigningKeyMismatch",
    "VerifyReport",
    "body_from_run",
    "effective",
    "export_ledger",
    "open_runs",
    "trusted_keys",
    "verify_chain",
    "verify_entry_document",
    "verify_export",
    "who_saw",
]
