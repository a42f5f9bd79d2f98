"""Column decisions from values alone (names say nothing: `c1`, `c2`...), with the real libraries.

phonenumbers and python-stdnum run for real here; Faker supplies values per locale.
"""

from __future__ import annotations

import random
from datetime import date

import pyarrow as pa
import pytest
from faker import Faker

from lineage_guard.classify import classify_column


def fake(locale: str, method: str, n: int = 80, seed: int = 7, **kw) -> pa.Array:
    f = Faker(locale)
    f.seed_instance(seed)
    return pa.array([getattr(f, method)(**kw) for _ in range(n)])


def label(values, name: str = "c1", pg_type: str = "text") -> str:
    c = classify_column(name, pg_type, values)
    return c.label if c.is_sensitive() else "not_sensitive"


def digits(rng: random.Random, n: int) -> str:
    return "".join(str(rng.randint(0, 9)) for _ in range(n))


# -- phones ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("locale", ["en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "sv_SE"])
def test_written_phone_numbers_from_values(locale):
    assert label(fake(locale, "phone_number")) == "phone"


def test_mobiles_stored_as_e164_digits_without_plus():
    rng = random.Random(1)
    de = pa.array(["49151" + digits(rng, 8) for _ in range(60)])    # 13 digits: +49 151 ...
    fr = pa.array(["336" + digits(rng, 8) for _ in range(60)])      # +33 6 ...
    it = pa.array(["39347" + digits(rng, 7) for _ in range(60)])    # +39 347 ...
    for values in (de, fr, it):
        c = classify_column("c2", "text", values)
        assert (c.label, c.evidence["detector"]) == ("phone", "phonenumbers")


def test_phone_shaped_codes_outside_every_numbering_plan_are_not_phones():
    rng = random.Random(2)
    # NANP area codes and exchanges never start with 0 or 1
    codes = pa.array([f"1{rng.randint(0, 99):02d}-{rng.randint(0, 1)}{rng.randint(0, 99):02d}-{rng.randint(0, 9999):04d}"
                      for _ in range(80)])
    assert label(codes) == "not_sensitive"
    assert label(codes, "phone") == "not_sensitive"  # the name does not make them numbers
    assert label(fake("en_US", "ean13"), "mobile") == "not_sensitive"
    counts = pa.array([rng.randint(0, 5000) for _ in range(80)])
    assert label(counts, "phones", "integer") == "not_sensitive"
    orders = pa.array([str(1_500_000_000 + 3 * i) for i in range(80)])  # 10 digits counting up
    assert label(orders) == "not_sensitive"


def test_fictional_numbers_under_a_phone_name_stay_phones():
    """`+1-555-01xx` is NANP's fictional range: it fits the plan, so a `phone` name is believed."""
    assert label(pa.array([f"+1-555-01{i % 100:02d}" for i in range(60)]), "phone") == "phone"


# -- national identifiers (python-stdnum) -----------------------------------------------------------

@pytest.mark.parametrize(("locale", "module"), [
    ("pl_PL", "pl.pesel"), ("pt_BR", "br.cpf"), ("sv_SE", "se.personnummer"), ("ro_RO", "ro.cnp"),
    ("tr_TR", "tr.tckimlik"), ("it_IT", "it.codicefiscale"), ("nl_NL", "nl.bsn"), ("fr_FR", "fr.nir"),
    ("en_US", "us.ssn"),
])
def test_national_ids_by_their_checksum(locale, module):
    c = classify_column("c3", "text", fake(locale, "ssn"))
    assert (c.label, c.evidence["detector"]) == ("national_id", module)
    assert c.evidence["checksum_share"] >= 0.9


def test_random_digits_passing_one_check_in_ten_are_not_ids():
    rng = random.Random(3)
    for width in (9, 10, 11, 13):
        assert label(pa.array([digits(rng, width).lstrip("0").rjust(width, "1") for _ in range(300)])) == "not_sensitive"


# -- names, addresses, postcodes ----------------------------------------------------------------------

@pytest.mark.parametrize("locale", ["de_DE", "fr_FR", "nl_NL", "pl_PL", "es_ES"])
def test_single_word_first_and_last_names(locale):
    assert label(fake(locale, "first_name")) == "person_name"
    assert label(fake(locale, "last_name")) == "person_name"   # `van den Broek` included


def test_full_names_with_lower_case_honorifics():
    assert label(fake("pl_PL", "name", 300)) == "person_name"   # `pani Justyna Majtyka`


def test_companies_and_cities_are_not_people():
    for locale in ("fr_FR", "de_DE", "en_US"):
        assert label(fake(locale, "company")) == "not_sensitive"
        assert label(fake(locale, "city")) == "not_sensitive"


@pytest.mark.parametrize("locale", ["en_US", "de_DE", "fr_FR", "pl_PL", "pt_BR", "sk_SK", "hu_HU", "ro_RO"])
def test_multi_part_addresses_in_any_language(locale):
    f = Faker(locale)
    f.seed_instance(4)
    assert label(pa.array([f.address().replace("\n", ", ") for _ in range(80)])) == "street_address"
    assert label(fake(locale, "street_address")) == "street_address"


@pytest.mark.parametrize("locale", ["de_DE", "fr_FR", "pl_PL", "pt_BR", "ro_RO", "en_GB", "nl_NL"])
def test_postcodes_bare_or_written(locale):
    assert label(fake(locale, "postcode")) == "postal_code"


def test_years_and_counters_are_not_postcodes():
    rng = random.Random(5)
    assert label(pa.array([str(rng.randint(1950, 2025)) for _ in range(80)])) == "not_sensitive"
    assert label(pa.array([str(40000 + i) for i in range(80)])) == "not_sensitive"
    assert label(pa.array([f"{rng.uniform(1, 5000):.2f}" for _ in range(80)]), "postcode") == "not_sensitive"


# -- records, dates, notes, secrets, refuted names -----------------------------------------------------

def test_letter_and_digit_record_numbers():
    f = Faker()
    f.seed_instance(6)
    assert label(pa.array([f.bothify("?#######").upper() for _ in range(80)])) == "medical_record_number"
    assert label(pa.array([f.bothify("??-####-??").upper() for _ in range(80)])) == "not_sensitive"  # SKUs


def test_birth_dates_under_another_dates_name():
    f = Faker()
    f.seed_instance(8)
    births = pa.array([f.date_of_birth(minimum_age=18, maximum_age=90) for _ in range(80)])
    assert label(births, "hire_date", "date") == "date_of_birth"
    assert label(pa.array([d.isoformat() for d in births.to_pylist()]), "created_on") == "date_of_birth"
    recent = pa.array([date(2025, 1 + i % 12, 1 + i % 28) for i in range(80)])
    assert label(recent, "c4", "date") == "not_sensitive"


def test_clinical_notes_and_passwords_from_values():
    rng = random.Random(9)
    notes = pa.array([f"Pt presents with chest pain x{rng.randint(1, 9)} days. Hx of hypertension. "
                      f"Rx lisinopril {rng.choice([5, 10, 20])} mg daily." for _ in range(60)])
    assert label(notes) == "clinical_note"
    assert label(fake("en_US", "password", length=14)) == "credential"
    assert label(fake("en_US", "paragraph", nb_sentences=2)) == "not_sensitive"


def test_an_email_name_over_order_numbers_is_not_an_email():
    assert label(pa.array([str(2_000_000_000 + 7 * i) for i in range(80)]), "email") == "not_sensitive"
    assert label(fake("en_US", "uuid4"), "card_number") == "not_sensitive"
