"""What a column's name (and its table's name) says about its content.

Names are split into lower-case tokens (`customerEmail`, `customer_email` and
`CUSTOMER-EMAIL` all give `customer_email`) and matched against per-label
vocabularies in several languages. A `strong` match names the label outright
(`ssn`, `e_mail`, `geburtsdatum`); a `weak` one only hints (`name`, `notes`).
Qualifiers such as `count`, `verified` or `type` cancel a match: `email_verified`
holds a flag, not an address.

Example:
    >>> name_hints("customerEmail")["email"].strength
    'strong'
    >>> name_hints("email_verified")
    {}
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Literal

Strength = Literal["strong", "weak"]


@dataclass(frozen=True)
class NameHint:
    label: str
    strength: Strength
    keyword: str  # the vocabulary entry that matched (a column name is not sensitive)


def tokens(name: str) -> list[str]:
    """Lower-case word tokens of an identifier: camelCase, snake_case, kebab-case, digits apart."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    spaced = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", spaced)
    return [t for t in re.split(r"[^0-9a-zA-Zà-ÿÀ-ß]+", spaced.lower()) if t]


# Vocabularies are regexes over the `_`-joined tokens; matches must cover whole tokens.
_STRONG: dict[str, tuple[str, ...]] = {
    "email": (r"e_?mail(_?addr(ess)?)?", r"courriel", r"e_?mail_?adres", r"mail_?address"),
    "phone": (
        r"phone(_?(number|no|num|nr))?", r"tel(e?phone)?(_?(no|nr|num|number))?", r"telefon(nummer)?",
        r"telefoon(nummer)?", r"mobile(_?(phone|number|no))?", r"cell(_?phone)?", r"cellphone", r"fax",
        r"msisdn", r"portable", r"handy(nummer)?", r"mobiel", r"contact_number", r"telephone",
    ),
    "person_name": (
        r"(first|last|full|given|family|middle|maiden|sur|birth|display|legal|preferred|nick)_?name",
        (r"(customer|patient|person|contact|employee|user|member|client|holder|cardholder|owner|"
         r"guardian|parent|doctor|physician|applicant|student|account_holder|recipient|sender)_name"),
        r"surname", r"forename", r"fname", r"lname", r"vorname", r"nachname", r"prenom", r"nom_de_famille",
        r"voornaam", r"achternaam", r"naam", r"cognome", r"nombre", r"apellidos?",
    ),
    "street_address": (
        r"(street|home|billing|shipping|mailing|postal|residential|delivery|physical)_?address",
        r"address(_?line)?(_?[0-9])?", r"street(_?(name|line))?", r"addr(_?line)?(_?[0-9])?",
        r"strasse", r"straße", r"anschrift", r"adresse", r"adres", r"straat", r"indirizzo", r"direccion",
    ),
    "postal_code": (r"zip(_?code)?(_?4)?", r"post_?code", r"postal_?code", r"postleitzahl", r"plz", r"code_postal",
                    r"postcode", r"codigo_postal"),
    "date_of_birth": (
        r"dob", r"d_o_b", r"birth_?(date|day|dt)", r"date_of_birth", r"birthday", r"born(_on)?",
        r"geburts_?datum", r"geburtstag", r"geboorte_?datum", r"date_de_naissance", r"date_naissance",
        r"naissance", r"data_di_nascita", r"fecha_de_nacimiento",
    ),
    "national_id": (
        r"ssn", r"social_security(_?(number|no|num))?", r"sin", r"nino", r"ni_?(number|no)", r"nin",
        r"national_insurance(_?(number|no))?", r"national_id(_?(number|no))?", r"bsn", r"burgerservicenummer",
        r"insee", r"nir", r"numero_securite_sociale", r"tax_?id", r"tin", r"steuer_?id", r"steuernummer",
        r"passport(_?(number|no|num))?", r"drivers?_?licen[cs]e(_?(number|no))?", r"personal_?id(_?number)?",
        r"codice_fiscale", r"dni", r"nie", r"nif", r"sofinummer", r"personnummer", r"id_card(_?number)?",
        r"nhs_?(number|no)", r"medicare(_?(number|no))?",
    ),
    "payment_card": (
        r"(credit|debit|payment)_?card(_?(number|no|num|nr))?", r"card_?(number|no|num|nr)", r"cc_?(number|num|no)",
        r"ccnum", r"pan", r"kreditkarte(nnummer)?", r"carte_bancaire",
    ),
    "iban": (r"iban", r"bank_?account(_?(number|no))?", r"account_?number", r"rekening(nummer)?", r"kontonummer",
             r"bankrekening", r"bban"),
    "ip_address": (r"ip", r"ip_?addr(ess)?", r"ipv[46](_?addr(ess)?)?",
                   r"(client|remote|source|src|dest|dst|user|last_login|login)_ip", r"remote_addr", r"x_forwarded_for"),
    "mac_address": (r"mac", r"mac_?addr(ess)?", r"hw_?addr(ess)?", r"hardware_address", r"bssid"),
    "medical_record_number": (
        r"mrn", r"medical_record(_?(number|no|num|id))?", r"patient_?(number|no|num|nr|mrn)", r"chart_?(number|no)",
        r"health_record(_?(number|id))?", r"ehr_id", r"emr_id", r"hospital_number", r"case_number",
    ),
    "clinical_note": (
        r"diagnos[ie]s", r"diagnose", r"clinical_?notes?", r"progress_?notes?", r"discharge_?(summary|notes?)",
        r"chief_?complaint", r"symptoms?", r"medications?", r"prescriptions?", r"treatment(_?notes?)?",
        r"icd(_?10)?(_?codes?)?", r"medical_?(history|notes?|condition)", r"anamnes[ei]s?", r"nursing_notes?",
        r"physician_notes?", r"doctor_notes?", r"allerg(y|ies)",
    ),
    "credential": (
        r"pass_?word(_?hash)?", r"passwd", r"pwd", r"secret(_?key)?", r"client_secret", r"api_?key", r"api_?secret",
        r"(access|refresh|auth|bearer|session|id|api|oauth|csrf|reset)_?token", r"token", r"jwt", r"private_?key",
        r"secret_?access_?key", r"credentials?", r"connection_?string", r"conn_?str(ing)?", r"dsn",
        r"database_url", r"db_?password", r"passphrase", r"pin(_?code)?", r"otp_?secret", r"webhook_secret",
    ),
}

_WEAK: dict[str, tuple[str, ...]] = {
    "person_name": (r"^names?$", r"^author$", r"^contact$", r"^customer$", r"^signatory$", r"^recipient$"),
    "phone": (r"^contact$",),
    "street_address": (r"location", r"residence", r"line_?[12]"),
    "clinical_note": (r"notes?", r"comments?", r"remarks?", r"observations?", r"findings", r"reason", r"summary", r"conditions?"),
    "medical_record_number": (r"patient_?id", r"record_?(number|no|id)"),
    "date_of_birth": (r"birth",),
    "national_id": (r"id_?number", r"identification(_?number)?"),
}

# A qualifier token makes the column about the thing, not the thing itself.
_QUALIFIERS = frozenset({
    "count", "cnt", "type", "types", "status", "verified", "confirmed", "enabled", "disabled", "flag", "is", "has",
    "opt", "optin", "consent", "updated", "created", "changed", "expires", "expiry", "expired", "at", "length",
    "len", "format", "valid", "validated", "country", "domain", "provider", "kind", "policy", "required", "attempts",
    "last4", "bin", "brand", "scheme", "hint", "strength", "rotated", "version", "ttl", "scope", "scopes", "label",
    "prefix", "sent", "bounced", "visible", "public", "masked", "redacted",
})
_ID_SUFFIX_LABELS = frozenset({"credential", "person_name", "clinical_note", "email", "phone", "street_address"})
# Table names that make generic text columns (notes, comments) clinical.
_CLINICAL_TABLE = re.compile(
    r"(^|_)(patients?|clinical|encounters?|visits?|admissions?|medical|health|ehr|emr|diagnos[ie]s|"
    r"prescriptions?|consultations?|treatments?|hospital|clinic|care)(_|$)"
)


@cache
def _compiled(patterns: tuple[str, ...]) -> re.Pattern:
    return re.compile(r"(?:^|_)(?:" + "|".join(patterns) + r")(?:_|$)")


def name_hints(column: str, table: str | None = None) -> dict[str, NameHint]:
    """The labels a column's name suggests, with their strength. Empty when the name says nothing."""
    toks = tokens(column)
    if not toks or _QUALIFIERS.intersection(toks):
        return {}
    joined = "_".join(toks)
    hints: dict[str, NameHint] = {}
    for strength, vocab in (("strong", _STRONG), ("weak", _WEAK)):
        for label, patterns in vocab.items():
            if label in hints:
                continue
            m = _compiled(patterns).search(joined)
            if m is None:
                continue
            keyword = m.group(0).strip("_")
            # `token_id`, `api_key_id`, `email_id`: a reference to the thing, not the thing.
            if toks[-1] in ("id", "ids", "key_id", "ref") and label in _ID_SUFFIX_LABELS and keyword != joined:
                continue
            hints[label] = NameHint(label, strength, keyword)  # type: ignore[arg-type]
    note = hints.get("clinical_note")
    if table and note and note.strength == "weak" and _CLINICAL_TABLE.search("_".join(tokens(table))):
        hints["clinical_note"] = NameHint("clinical_note", "strong", note.keyword + " (clinical table)")
    # `ip_address`/`mac_address`/`email_address` are not street addresses.
    for label in ("ip_address", "mac_address", "email"):
        if label in hints and hints[label].strength == "strong":
            hints.pop("street_address", None)
    return hints


def canonical_label(label: str) -> str | None:
    """Map a policy's own label name to a detection label: `ssn` -> national_id, `diagnosis` -> clinical_note.

    Example:
        >>> canonical_label("ssn"), canonical_label("payment_card"), canonical_label("plan_tier")
        ('national_id', 'payment_card', None)
    """
    from .labels import LABELS

    if label in LABELS:
        return label
    strong = [h.label for h in name_hints(label).values() if h.strength == "strong"]
    return strong[0] if len(strong) == 1 else None
