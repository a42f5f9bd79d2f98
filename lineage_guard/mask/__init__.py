"""Step 7: deterministic keyed masks over Arrow arrays and record batches.

    >>> import pyarrow as pa
    >>> from lineage_guard.mask import Keyring, MaskSpec, mask_array
    >>> kr = Keyring(bytes(32))
    >>> mask_array(pa.array(["a@x.org"]), MaskSpec("tokenize", scope="purpose:ai_training"), kr)[0].as_py()[:4]
    'tok_'
"""

from .apply import mask_array, mask_batch
from .keys import Keyring
from .params import PARAMS, checked
from .spec import METHODS, STRONGEST, MaskSpec

__all__ = ["METHODS", "PARAMS", "STRONGEST", "Keyring", "MaskSpec", "checked", "mask_array", "mask_batch"]
