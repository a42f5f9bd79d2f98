"""Common given names and surnames, and street-type words, from Faker's census-derived locale lists.

Used as dictionaries by the value detectors: a value made mostly of known names
is a person's name; a value with a number and a street word is an address.

Example:
    >>> "maria" in person_names().to_pylist()
    True
"""

from __future__ import annotations

from functools import lru_cache
from importlib import import_module

import pyarrow as pa

# Latin-script locales; the lists are lower-cased and merged.
_LOCALES = (
    "en_US", "en_GB", "en_IE", "en_CA", "en_AU", "en_NZ", "de_DE", "de_AT", "de_CH", "fr_FR", "fr_CA", "nl_NL",
    "nl_BE", "es_ES", "es_MX", "it_IT", "pt_PT", "pt_BR", "pl_PL", "sv_SE", "da_DK", "no_NO", "fi_FI", "cs_CZ",
)
_FIELDS = ("first_names", "first_names_male", "first_names_female", "last_names")


def _names_of(module: str, fields: tuple[str, ...]) -> set[str]:
    try:
        provider = import_module(module).Provider
    except (ImportError, AttributeError):
        return set()
    out: set[str] = set()
    for field in fields:
        values = getattr(provider, field, ())
        for v in values:  # tuples, lists or OrderedDicts of name -> weight
            if isinstance(v, str) and v and len(v) > 1:
                out.update(part.lower() for part in v.split() if len(part) > 1)
    return out


@lru_cache(maxsize=1)
def person_names() -> pa.Array:
    """Lower-cased given names and surnames, as an Arrow array for `pc.is_in`."""
    names: set[str] = set()
    for loc in _LOCALES:
        names |= _names_of(f"faker.providers.person.{loc}", _FIELDS)
    # Particles and common words are not evidence of a name.
    names -= {"van", "de", "der", "den", "la", "le", "du", "da", "di", "del", "von", "the", "and", "of", "ten", "ter"}
    return pa.array(sorted(names))


@lru_cache(maxsize=1)
def street_suffixes() -> tuple[str, ...]:
    """English street-type words (Street, Avenue, Trace...) with their abbreviations."""
    words: set[str] = set()
    for loc in ("en_US", "en_GB", "en_AU", "en_CA"):
        try:
            provider = import_module(f"faker.providers.address.{loc}").Provider
        except (ImportError, AttributeError):
            continue
        for field in ("street_suffixes",):
            words.update(w for w in getattr(provider, field, ()) if w.isalpha())
    words |= {"St", "Ave", "Rd", "Ln", "Dr", "Blvd", "Ct", "Pl", "Sq", "Hwy", "Pkwy", "Cres", "Tce"}
    return tuple(sorted(words))
