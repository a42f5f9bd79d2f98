"""The labels detection can give a column, most specific first.

`NOT_SENSITIVE` is the label of a column no detector claims. The order of
`LABELS` breaks ties between labels with equal confidence (a value that is both
a valid card number and digits-only is a card before it is a phone).

Example:
    >>> "iban" in LABELS and NOT_SENSITIVE not in LABELS
    True
"""

from __future__ import annotations

from typing import Literal

Label = Literal[
    "credential", "iban", "payment_card", "national_id", "email", "mac_address", "ip_address",
    "phone", "postal_code", "date_of_birth", "medical_record_number", "person_name",
    "street_address", "clinical_note", "not_sensitive",
]
LABELS: tuple[str, ...] = (
    "credential", "iban", "payment_card", "national_id", "email", "mac_address", "ip_address",
    "phone", "postal_code", "date_of_birth", "medical_record_number", "person_name",
    "street_address", "clinical_note",
)
NOT_SENSITIVE = "not_sensitive"
