"""Given names, surnames and street-type words, from Faker's locale providers (census-derived lists).

Used as dictionaries by the value detectors: a value made mostly of known names is a
person's name; a value with a street word (`Street`, `-straße`, `utca`, `Aleea`) is an
address. Every Latin-script locale Faker ships is read, lazily, on first use.

`exclude_locales` takes locales out of both dictionaries: the benchmark uses it to
measure names and streets the dictionaries have never seen.

Example:
    >>> "maria" in person_names().to_pylist()
    True
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import import_module

import pyarrow as pa

_FIELDS = ("first_names", "first_names_male", "first_names_female", "first_names_nonbinary", "last_names",
           "last_names_male", "last_names_female", "unisex_last_names", "male_last_names", "female_last_names")
_STREET_FIELDS = ("street_suffixes", "street_suffixes_short", "street_suffixes_long", "street_prefixes",
                  "street_prefixes_short", "street_prefixes_long")
_LATIN_WORD = re.compile(r"^[A-Za-zÀ-ÖØ-öø-ÿĀ-ž'’.-]+$")
_EXCLUDED: set[str] = set()
# Particles and common words are not evidence of a name.
_NOT_NAMES = frozenset({"van", "de", "der", "den", "la", "le", "du", "da", "di", "del", "von", "the", "and", "of",
                        "ten", "ter", "dos", "das", "do", "y", "e", "mc", "st"})


def exclude_locales(locales: tuple[str, ...]) -> None:
    """Leave these Faker locales out of the dictionaries (for measuring unseen data); clears the caches."""
    _EXCLUDED.clear()
    _EXCLUDED.update(locales)
    person_names.cache_clear()
    street_words.cache_clear()


# Faker's Latin-script locales (importing every provider, CJK and all, costs seconds for nothing).
_LOCALES = (
    "cs_CZ", "da_DK", "de_AT", "de_CH", "de_DE", "en_GB", "en_IE", "en_IN", "en_NZ", "en_US", "es_AR", "es_CL",
    "es_CO", "es_ES", "es_MX", "et_EE", "fi_FI", "fr_CA", "fr_CH", "fr_FR", "hr_HR", "hu_HU", "id_ID", "it_IT",
    "lt_LT", "lv_LV", "nl_BE", "nl_NL", "no_NO", "pl_PL", "pt_BR", "pt_PT", "ro_RO", "sk_SK", "sl_SI", "sv_SE",
    "tr_TR", "en_AU", "en_CA",
)


def _locales(package: str) -> list[str]:
    return [loc for loc in _LOCALES if loc not in _EXCLUDED]


def _words(package: str, fields: tuple[str, ...]) -> set[str]:
    """Lower-cased Latin-script words of these provider fields over every locale of the package."""
    out: set[str] = set()
    for loc in _locales(package):
        try:
            provider = import_module(f"{package}.{loc}").Provider
        except (ImportError, AttributeError):
            continue
        for field in fields:
            values = getattr(provider, field, ())
            if not isinstance(values, (tuple, list, dict)):  # a property on some providers
                continue
            for v in values:  # tuples, lists or OrderedDicts of name -> weight
                if isinstance(v, str):
                    out.update(p.lower().strip(".") for p in v.split() if len(p) > 1 and _LATIN_WORD.match(p))
    return out


@lru_cache(maxsize=1)
def person_names() -> pa.Array:
    """Lower-cased given names and surnames, as an Arrow array for `pc.is_in`."""
    return pa.array(sorted(_words("faker.providers.person", _FIELDS) - _NOT_NAMES))


# Locales whose street types are written into one word (Barkholzstraße, Ängsgatan, Lindseysingel): their
# suffixes end a word, and their "prefixes" are name stems (Björk-), not street types.
_COMPOUNDING = frozenset({"de_AT", "de_CH", "de_DE", "nl_BE", "nl_NL", "sv_SE", "da_DK", "no_NO", "fi_FI", "et_EE"})


def _street_fields(compounding: bool) -> set[str]:
    out: set[str] = set()
    for loc in _locales("faker.providers.address"):
        if (loc in _COMPOUNDING) != compounding:
            continue
        try:
            provider = import_module(f"faker.providers.address.{loc}").Provider
        except (ImportError, AttributeError):
            continue
        fields = ("street_suffixes", "street_suffixes_short", "street_suffixes_long") if compounding else _STREET_FIELDS
        for field in fields:
            values = getattr(provider, field, ())
            if isinstance(values, (tuple, list, dict)):
                out.update(w.lower().strip(".-") for w in values if isinstance(w, str) and " " not in w.strip())
    return {w for w in out if len(w) >= 2 and w.replace("-", "").isalpha()}


@lru_cache(maxsize=1)
def street_words() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(whole words, word endings) naming a street type: `avenue`, `rue`, `via`, `ulica`, `utca`; `straße`, `gatan`."""
    words = _street_fields(False) | {"st", "ave", "rd", "ln", "dr", "blvd", "ct", "sq", "hwy", "pkwy", "cres", "str", "ul", "al", "pl", "os"}
    endings = {w for w in _street_fields(True) if len(w) >= 3}
    return tuple(sorted(words)), tuple(sorted(endings))


def street_suffixes() -> tuple[str, ...]:
    """English street-type words with their abbreviations (for the GX address patterns)."""
    words: set[str] = set()
    for loc in ("en_US", "en_GB", "en_AU", "en_CA"):
        try:
            provider = import_module(f"faker.providers.address.{loc}").Provider
        except (ImportError, AttributeError):
            continue
        words.update(w for w in getattr(provider, "street_suffixes", ()) if w.isalpha())
    words |= {"St", "Ave", "Rd", "Ln", "Dr", "Blvd", "Ct", "Pl", "Sq", "Hwy", "Pkwy", "Cres", "Tce"}
    return tuple(sorted(words))
