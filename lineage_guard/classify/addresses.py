"""Street addresses from values: a street-type word of any Faker locale, or the shape `Words 12` / `12 Words`.

One line or many (`68124 Julia Stravenue Suite 834, Brianafort, PR 66729`), any language:
a value is an address when it holds a number and a street word (`Street`, `rue`, `via`,
`ulica`, `utca`, or a word ending in `-straße`, `-gatan`, `-laan`), or starts with a street
word (`Aleea Oprea`). Without a known street word, a short value made of capitalized words
and a house number (`Strážnická 2`, `Kecskeméti utca 223.`) is weaker evidence that only a
whole column of them makes an address.

Example:
    >>> import pyarrow as pa
    >>> street_address_evidence(pa.array(["Barkholzstraße 52", "16, rue de Salmon", "ul. Łanowa 77"] * 5)).score > 0.9
    True
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .evidence import Evidence, match, score_from_share
from .formats import _L
from .lexicon import street_words

_HOUSE_NUMBER = r"(^|[\s,])[0-9]{1,5}[A-Za-z]?([/-][0-9A-Za-z]+)?\.?(,|\s|$)"
# Capitalized words and a house number, either order, up to six words: `Strážnická 2`, `12 Harbour View`.
_SHAPE = (rf"^([0-9]{{1,5}}[a-zA-Z]?,? )?[{_L}][{_L}.'’-]*(,? [{_L}][{_L}.'’-]*){{0,5}}"
          rf"(,? [0-9]{{1,5}}[a-zA-Z]?([/-][0-9a-zA-Z]+)?\.?)?(,|$)")  # the first line of a multi-line address


@lru_cache(maxsize=1)
def _patterns() -> tuple[pa.Array, str]:
    words, endings = street_words()
    ending = rf"(?i)[{_L}-]{{2,}}(" + "|".join(endings) + r")([\s,.]|$)"
    return pa.array(list(words)), ending


def street_address_evidence(text: pa.Array) -> Evidence:
    n = len(text)
    words_set, ending = _patterns()
    lowered = pc.utf8_lower(text)
    tokens = pc.split_pattern_regex(lowered, r"[\s,]+")
    flat = pc.utf8_trim(pc.list_flatten(tokens), ".")
    parents = np.asarray(pc.list_parent_indices(tokens))
    known = np.asarray(pc.fill_null(pc.is_in(flat, value_set=words_set), False))
    has_word = np.bincount(parents, weights=known, minlength=n) > 0
    starts = np.asarray(pc.list_value_length(tokens)) > 0
    first = np.zeros(n, bool)
    offsets = np.asarray(tokens.offsets)[:-1]
    first[starts] = known[offsets[starts]]
    has_word |= match(text, ending)
    number = match(text, _HOUSE_NUMBER)
    n_tokens = np.asarray(pc.list_value_length(tokens))
    short = (n_tokens >= 2) & (n_tokens <= 16)
    lexical = short & has_word & (number | first)
    shaped = (n_tokens >= 2) & (n_tokens <= 12) & number & match(text, _SHAPE)
    lex_share, any_share = lexical.mean() if n else 0.0, (lexical | shaped).mean() if n else 0.0
    if lex_share >= 0.6:
        score, detector = score_from_share(min(1.0, any_share)), "street_lexicon"
    else:
        # no street word known: only a whole column of `Words 12` is an address, and only just
        score, detector = (0.82 if any_share >= 0.9 else 0.5 * any_share), "street_shape"
    return Evidence("street_address", detector, float(score), float(any_share), None, int((lexical | shaped).sum()), n)
