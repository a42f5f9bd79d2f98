"""Step 7: deterministic keyed masks over Arrow arrays and record batches.

    >>> import pyarrow as pa
    >>> from lineage_guard.mask import Keyring, MaskSpec, mask_array
    >>> kr = Keyring(bytes(32))
    >>> mask_array(pa.array(["a@x.org"]), MaskSpec("tokenize", scope="purpose:ai_training"), kr)[0].as_py()[:4]
    'tok_'
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

# Names load on first use: `lineage_guard.mask.spec` (what plans and decisions need) must not
# pull the kernels' polars, Faker and numpy into a DAG-parse or `--help` process.
_EXPORTS = {
    "mask_array": ".apply", "mask_batch": ".apply", "Keyring": ".keys", "PARAMS": ".params",
    "checked": ".params", "METHODS": ".spec", "STRONGEST": ".spec", "MaskSpec": ".spec",
}
__all__ = ["METHODS", "PARAMS", "STRONGEST", "Keyring", "MaskSpec", "checked", "mask_array", "mask_batch"]

if TYPE_CHECKING:  # pragma: no cover
    from .apply import mask_array, mask_batch
    from .keys import Keyring
    from .params import PARAMS, checked
    from .spec import METHODS, STRONGEST, MaskSpec


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
