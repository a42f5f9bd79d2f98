"""Detection benchmark: precision and recall of `classify_column` on a labeled set of Faker columns.

The set (>= 300 columns, 5+ locales) mixes honestly named columns, columns whose
names lie (`notes` full of e-mails, `col_7` with SSNs) and hard negatives (order
numbers shaped like phones, UUIDs, SKUs, digests, numeric ids, recent ISO dates,
free text without PII...). Run:

    .venv/bin/python benchmarks/detection.py            # full set, markdown table
    .venv/bin/python benchmarks/detection.py --rows 200 --seed 7

It also times classification (median per 1000-value column) against a per-row
Python loop over the same formats and checksums, measured in the same run.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import re
import secrets
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from faker import Faker

from lineage_guard.classify.classifier import classify_column
from lineage_guard.classify.detectors import DETECTORS
from lineage_guard.classify.labels import LABELS, NOT_SENSITIVE

LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "nl_NL")
EXTRA_ID_LOCALES = ("en_CA", "it_IT")  # national ids with their own formats (SIN with Luhn, codice fiscale)
# Locales the detectors were not tuned on (hu_HU, ro_RO, tr_TR names are not in the name dictionary).
HELDOUT_LOCALES = ("es_ES", "pt_PT", "hu_HU", "ro_RO", "tr_TR")


@dataclass(frozen=True)
class Case:
    name: str
    pg_type: str | None
    values: pa.Array
    truth: str
    note: str            # "named", "lying", "embedded" (inside free text) or "negative"
    table: str | None = None
    group: str = "main"  # "main" (locales the detectors were written against) or "heldout"


def _b64(n: int) -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(n)).rstrip(b"=").decode()


def _with_nulls(rng: random.Random, values: list, share: float = 0.08) -> list:
    return [None if rng.random() < share else v for v in values]


def _clinical(f: Faker, rng: random.Random) -> str:
    symptom = rng.choice(["chest pain", "shortness of breath", "persistent cough", "fever", "nausea", "lower back pain",
                          "headache", "fatigue", "dizziness", "abdominal pain"])
    condition = rng.choice(["hypertension", "type 2 diabetes", "asthma", "COPD", "atrial fibrillation", "hypothyroidism",
                            "chronic kidney disease", "migraine", "osteoarthritis", "depression"])
    icd = rng.choice(["I10", "E11.9", "J45.909", "J44.9", "I48.91", "E03.9", "N18.3", "G43.909", "M19.90", "F32.9"])
    drug = rng.choice(["metformin", "lisinopril", "amlodipine", "albuterol", "levothyroxine", "atorvastatin", "sertraline"])
    templates = [
        (f"Pt {rng.randint(18, 90)}yo presents with {symptom} x{rng.randint(1, 14)} days. Hx of {condition}. "
         f"Rx {drug} {rng.choice([5, 10, 20, 50, 500])} mg daily. Follow-up in {rng.randint(1, 12)} weeks."),
        (f"{f.name()} seen in clinic for {condition}; BP {rng.randint(100, 180)}/{rng.randint(60, 110)}, "
         f"HR {rng.randint(50, 120)}. Plan: continue {drug}, recheck labs."),
        f"Patient reports {symptom}. Assessment: {condition} ({icd}). Prescribed {drug} {rng.choice([10, 25, 100])} mg.",
        f"Discharge summary: admitted for {condition}, treated with {drug}; discharged home, follow-up with GP.",
        f"Chief complaint: {symptom}. Exam unremarkable. Diagnosis {icd} {condition}. Medication reviewed.",
    ]
    return rng.choice(templates)


def _review(f: Faker, rng: random.Random) -> str:
    product = f.catch_phrase().lower()
    return rng.choice([
        f"Great {product}, arrived in {rng.randint(2, 9)} days. Would buy again!",
        f"The {product} stopped working after a week; support replaced it quickly.",
        f"Assembly was a pain but the {product} looks great in the living room.",
        f"Five stars. The {product} does exactly what the description says.",
        f"Ticket closed: customer asked about invoice {rng.randint(1000, 9999)}, resent the PDF.",
    ])


def _jwt() -> str:
    header = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()).rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(json.dumps({"sub": secrets.token_hex(4), "iat": 1700000000}).encode()).rstrip(b"=").decode()
    return f"{header}.{body}.{_b64(32)}"


def _credential(f: Faker, rng: random.Random, kind: str) -> str:
    if kind == "jwt":
        return _jwt()
    if kind == "api_key":
        return rng.choice([
            "sk_live_" + secrets.token_hex(12), "ghp_" + _b64(27).replace("-", "a").replace("_", "b")[:36],
            "AKIA" + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16)),
            "xoxb-" + "-".join(str(rng.randint(10**9, 10**10)) for _ in range(2)) + "-" + _b64(18),
        ])
    if kind == "dsn":
        return f"postgresql://{f.user_name()}:{f.password(length=14, special_chars=False)}@{f.domain_name()}:5432/{f.word()}"
    if kind == "pem":
        return "-----BEGIN RSA PRIVATE KEY-----\n" + base64.b64encode(secrets.token_bytes(96)).decode() + "\n-----END RSA PRIVATE KEY-----"
    return _b64(rng.choice([24, 32, 40]))  # opaque random token


def _mrn(rng: random.Random, style: int) -> str:
    n = rng.randint(100000, 99999999)
    return [f"MRN-{n:08d}", f"MR{n:07d}", f"PT-{rng.randint(10, 99)}-{n % 100000:05d}", f"{n:08d}"][style]


def _birth_dates(f: Faker, rng: random.Random, rows: int) -> list[date]:
    return [f.date_of_birth(minimum_age=rng.choice([0, 18]), maximum_age=95) for _ in range(rows)]


class _Builder:
    """Collects cases; keeps the running `col_N` counter and the current group."""

    def __init__(self, rng: random.Random, rows: int):
        self.rng, self.rows, self.group = rng, rows, "main"
        self.cases: list[Case] = []
        self._counter = 0

    def col(self) -> str:
        self._counter += 1
        return f"col_{self._counter}"

    def add(self, name, values, truth, note, pg_type="text", table=None) -> None:
        values = _with_nulls(self.rng, values) if pg_type != "date" else values
        self.cases.append(Case(name, pg_type, pa.array(values), truth, note, table, self.group))


def _locale_cases(b: _Builder, f: Faker, loc: str) -> None:
    """Named, lying and hard-negative columns of one tuned locale."""
    rng, n, add, col = b.rng, b.rows, b.add, b.col

    def many(fn):
        return [fn() for _ in range(n)]

    add("email", many(f.email), "email", "named")
    add("contact_email", many(f.free_email), "email", "named")
    add("notes", many(f.company_email), "email", "lying")
    add(col(), many(f.email), "email", "lying")
    add("phone", many(f.phone_number), "phone", "named")
    add("telefon" if loc == "de_DE" else "mobile", many(f.phone_number), "phone", "named")
    add(col(), many(f.phone_number), "phone", "lying")
    add("full_name", many(f.name), "person_name", "named")
    add("customer_name", many(lambda: f"{f.first_name()} {f.last_name()}"), "person_name", "named")
    add("last_name", many(f.last_name), "person_name", "named")
    add(col(), many(f.name), "person_name", "lying")
    add("street_address", many(f.street_address), "street_address", "named")
    add("address_line1", many(f.street_address), "street_address", "named")
    add(col(), many(f.street_address), "street_address", "lying")
    add({"de_DE": "plz", "fr_FR": "code_postal"}.get(loc, "postcode"), many(f.postcode), "postal_code", "named")
    add("zip", many(f.postcode), "postal_code", "named")
    if loc in ("en_GB", "nl_NL"):
        add(col(), many(f.postcode), "postal_code", "lying")
    add("birth_date", _birth_dates(f, rng, n), "date_of_birth", "named", "date")
    add("dob", [d.isoformat() for d in _birth_dates(f, rng, n)], "date_of_birth", "named")
    add(col(), _birth_dates(f, rng, n), "date_of_birth", "lying", "date")
    add({"en_US": "ssn", "en_GB": "ni_number", "nl_NL": "bsn", "fr_FR": "insee"}.get(loc, "national_id"),
        many(f.ssn), "national_id", "named")
    add(col(), many(f.ssn), "national_id", "lying")
    add("card_number", many(f.credit_card_number), "payment_card", "named")
    add(col(), many(f.credit_card_number), "payment_card", "lying")
    add("card_pan", many(lambda: " ".join(re.findall(".{1,4}", f.credit_card_number(card_type="visa16")))),
        "payment_card", "named")
    add("iban", many(f.iban), "iban", "named")
    add(col(), many(f.iban), "iban", "lying")
    add("client_ip", many(f.ipv4), "ip_address", "named")
    add(col(), many(f.ipv6), "ip_address", "lying")
    add("mac", many(f.mac_address), "mac_address", "named")
    add(col(), many(f.mac_address), "mac_address", "lying")
    style = rng.randint(0, 2)
    add("mrn", many(lambda: _mrn(rng, style)), "medical_record_number", "named")
    add("medical_record_number", many(lambda: _mrn(rng, 3)), "medical_record_number", "named")
    add(col(), many(lambda: _mrn(rng, 0)), "medical_record_number", "lying")
    add("clinical_notes", many(lambda: _clinical(f, rng)), "clinical_note", "named")
    add("notes", many(lambda: _clinical(f, rng)), "clinical_note", "named", table="patient_visits")
    add(col(), many(lambda: _clinical(f, rng)), "clinical_note", "lying")
    add("api_token", many(lambda: _credential(f, rng, "token")), "credential", "named")
    add("password", many(lambda: f.password(length=rng.randint(10, 20))), "credential", "named")
    add(col(), many(lambda: _credential(f, rng, "jwt")), "credential", "lying")
    add(col(), many(lambda: _credential(f, rng, "api_key")), "credential", "lying")
    add("config", many(lambda: _credential(f, rng, "dsn")), "credential", "lying")
    add(col(), many(lambda: _credential(f, rng, "pem")), "credential", "lying")
    # identifiers inside free text
    add("comments", many(lambda: f"Customer asked about the delivery, reply to {f.email()} please" if rng.random() < 0.4
                         else _review(f, rng)), "email", "embedded")
    add("support_notes", many(lambda: f"Called back on {f.phone_number()} about the invoice" if rng.random() < 0.5
                              else f.sentence(nb_words=9)), "phone", "embedded")

    # hard negatives
    start = rng.randint(10**9, 2 * 10**9)
    add("order_number", [str(start + i) for i in range(n)], NOT_SENSITIVE, "negative")
    add("order_ref", [f"ORD-{rng.randint(2019, 2025)}-{rng.randint(0, 999999):06d}" for _ in range(n)], NOT_SENSITIVE, "negative")
    add(col(), [f"{rng.randint(2019, 2025)}-{rng.randint(0, 9999):04d}-{rng.randint(0, 9999):04d}" for _ in range(n)],
        NOT_SENSITIVE, "negative")
    add("id", many(f.uuid4), NOT_SENSITIVE, "negative")
    add(col(), many(lambda: f.uuid4().upper()), NOT_SENSITIVE, "negative")
    add("sku", many(lambda: f.bothify("SKU-??##-####").upper()), NOT_SENSITIVE, "negative")
    add("checksum", many(f.sha256), NOT_SENSITIVE, "negative")
    add(col(), many(f.md5), NOT_SENSITIVE, "negative")
    add("customer_id", [str(rng.randint(1, 10**6)) for _ in range(n)], NOT_SENSITIVE, "negative")
    add(col(), [str(rng.randint(10**8, 10**9 - 1)) for _ in range(n)], NOT_SENSITIVE, "negative")
    add(col(), [str(rng.randint(10**15, 10**16 - 1)) for _ in range(n)], NOT_SENSITIVE, "negative")
    add("ordered_on", [date.today() - timedelta(days=rng.randint(0, 700)) for _ in range(n)], NOT_SENSITIVE,
        "negative", "date")
    add(col(), [(date.today() - timedelta(days=rng.randint(0, 1500))).isoformat() for _ in range(n)], NOT_SENSITIVE,
        "negative")
    add("due_date", [date.today() + timedelta(days=rng.randint(-30, 400)) for _ in range(n)], NOT_SENSITIVE,
        "negative", "date")
    add("description", many(lambda: f.sentence(nb_words=12)), NOT_SENSITIVE, "negative")
    add("review", many(lambda: _review(f, rng)), NOT_SENSITIVE, "negative")
    add(col(), many(lambda: f.paragraph(nb_sentences=3)), NOT_SENSITIVE, "negative")
    add("product_name", many(f.catch_phrase), NOT_SENSITIVE, "negative")
    add("company", many(f.company), NOT_SENSITIVE, "negative")
    add("city", many(f.city), NOT_SENSITIVE, "negative")
    add("country", many(f.country), NOT_SENSITIVE, "negative")
    add("amount", [f"{rng.uniform(1, 5000):.2f}" for _ in range(n)], NOT_SENSITIVE, "negative")
    add("status", many(lambda: rng.choice(["active", "pending", "closed", "on_hold"])), NOT_SENSITIVE, "negative")
    add("version", many(lambda: f"{rng.randint(0, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 99)}"), NOT_SENSITIVE,
        "negative")
    add("homepage", many(f.url), NOT_SENSITIVE, "negative")
    add("color", many(f.hex_color), NOT_SENSITIVE, "negative")
    add("ean", many(f.ean13), NOT_SENSITIVE, "negative")
    add("currency", many(f.currency_code), NOT_SENSITIVE, "negative")
    add("job_title", many(f.job), NOT_SENSITIVE, "negative")
    add("user_agent", many(f.user_agent), NOT_SENSITIVE, "negative")
    add("file_path", many(f.file_path), NOT_SENSITIVE, "negative")
    add("isbn", many(f.isbn13), NOT_SENSITIVE, "negative")
    add(col(), many(lambda: f.date_time_between("-2y").isoformat()), NOT_SENSITIVE, "negative")
    add("latitude", many(lambda: str(f.latitude())), NOT_SENSITIVE, "negative")
    add("tracking_number", many(lambda: f.bothify("1Z###?##########").upper()), NOT_SENSITIVE, "negative")
    add("username", many(f.user_name), NOT_SENSITIVE, "negative")
    add("api_key_id", many(lambda: "key_" + secrets.token_hex(8)), NOT_SENSITIVE, "negative")


def _heldout_cases(b: _Builder, f: Faker) -> None:
    """Columns of a locale the detectors were not tuned on."""
    rows, add, col = b.rows, b.add, b.col
    add("name", [f.name() for _ in range(rows)], "person_name", "named")
    add(col(), [f.name() for _ in range(rows)], "person_name", "lying")
    add(col(), [f.phone_number() for _ in range(rows)], "phone", "lying")
    add("address", [f.street_address() for _ in range(rows)], "street_address", "named")
    add(col(), [f.street_address() for _ in range(rows)], "street_address", "lying")
    add(col(), [f.email() for _ in range(rows)], "email", "lying")
    add(col(), [f.iban() for _ in range(rows)], "iban", "lying")
    add("postcode", [f.postcode() for _ in range(rows)], "postal_code", "named")
    add("city", [f.city() for _ in range(rows)], NOT_SENSITIVE, "negative")
    add("company", [f.company() for _ in range(rows)], NOT_SENSITIVE, "negative")
    add("remarks", [f.sentence(nb_words=10) for _ in range(rows)], NOT_SENSITIVE, "negative")


def labeled_columns(seed: int = 0, rows: int = 300, scale: int = 1) -> list[Case]:
    """The labeled set. `scale` repeats the generation with fresh seeds (scale=1 gives ~450 columns)."""
    cases: list[Case] = []
    for rep in range(scale):
        b = _Builder(random.Random(seed * 1000 + rep), rows)
        for loc in LOCALES:
            f = Faker(loc)
            f.seed_instance(b.rng.randint(0, 10**9))
            _locale_cases(b, f, loc)
        for loc in EXTRA_ID_LOCALES:
            f = Faker(loc)
            f.seed_instance(b.rng.randint(0, 10**9))
            b.add("sin" if loc == "en_CA" else "codice_fiscale", [f.ssn() for _ in range(rows)], "national_id", "named")
            b.add(b.col(), [f.ssn() for _ in range(rows)], "national_id", "lying")
        b.group = "heldout"
        for loc in HELDOUT_LOCALES:
            f = Faker(loc)
            f.seed_instance(b.rng.randint(0, 10**9))
            _heldout_cases(b, f)
        cases += b.cases
    return cases


def evaluate(cases: list[Case], threshold: float = 0.8) -> dict:
    """Per-label and overall (micro) precision/recall; a detected label counts from `threshold` up."""
    per = {label: {"tp": 0, "fp": 0, "fn": 0} for label in LABELS}
    errors = []
    for case in cases:
        c = classify_column(case.name, case.pg_type, case.values, table=case.table)
        predicted = c.label if c.is_sensitive(threshold) else NOT_SENSITIVE
        if predicted == case.truth:
            if predicted != NOT_SENSITIVE:
                per[predicted]["tp"] += 1
            continue
        errors.append((case, c))
        if predicted != NOT_SENSITIVE:
            per[predicted]["fp"] += 1
        if case.truth != NOT_SENSITIVE:
            per[case.truth]["fn"] += 1

    def pr(d):
        p = d["tp"] / (d["tp"] + d["fp"]) if d["tp"] + d["fp"] else 1.0
        r = d["tp"] / (d["tp"] + d["fn"]) if d["tp"] + d["fn"] else 1.0
        return round(p, 4), round(r, 4)

    total = {k: sum(d[k] for d in per.values()) for k in ("tp", "fp", "fn")}
    return {
        "columns": len(cases),
        "positives": sum(c.truth != NOT_SENSITIVE for c in cases),
        "per_label": {label: (*pr(d), d["tp"] + d["fn"]) for label, d in per.items()},
        "overall": pr(total),
        "errors": errors,
    }


def _luhn_py(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _iban_py(value: str) -> bool:
    v = value.replace(" ", "").upper()
    v = v[4:] + v[:4]
    return v.isalnum() and int("".join(str(int(ch, 36)) for ch in v)) % 97 == 1


def _per_row_baseline(values: list) -> dict[str, int]:
    """The same formats checked the usual way: a Python loop over values, `re` per pattern, checksums in Python."""
    compiled = [(d.label, re.compile(d.pattern), d.checksum is not None, d.label == "iban") for d in DETECTORS]
    hits: dict[str, int] = {}
    for v in values:
        if v is None:
            continue
        s = str(v).strip()
        for label, rx, has_check, is_iban in compiled:
            if rx.search(s) and (not has_check or (_iban_py(s) if is_iban else _luhn_py(re.sub(r"[^0-9]", "", s) or "1"))):
                hits[label] = hits.get(label, 0) + 1
    return hits


def timing(rows: int = 1000, repeats: int = 5, seed: int = 0) -> dict:
    """Median milliseconds per column of `rows` values: `classify_column` (all labels, names, dictionaries,
    entropy, embedded identifiers) vs a per-row Python loop over the same formats and checksums only."""
    cases = [c for c in labeled_columns(seed, rows) if c.pg_type == "text" and c.group == "main"][::8]
    ours, base = [], []
    for case in cases:
        values = case.values.to_pylist()
        for _ in range(repeats):
            t = time.perf_counter()
            classify_column(case.name, case.pg_type, case.values, table=case.table)
            ours.append(time.perf_counter() - t)
            t = time.perf_counter()
            _per_row_baseline(values)
            base.append(time.perf_counter() - t)
    return {"columns": len(cases), "rows": rows, "classify_ms": statistics.median(ours) * 1e3,
            "baseline_ms": statistics.median(base) * 1e3}


def _print_table(res: dict) -> None:
    print("| label | precision | recall | sensitive columns |\n|---|---|---|---|")
    for label, (p, r, support) in res["per_label"].items():
        if support or p < 1:
            print(f"| {label} | {p:.3f} | {r:.3f} | {support} |")
    p, r = res["overall"]
    print(f"| **overall (micro)** | **{p:.3f}** | **{r:.3f}** | {res['positives']} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rows", type=int, default=300)
    ap.add_argument("--scale", type=int, default=1)
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--no-timing", action="store_true")
    ap.add_argument("--errors", action="store_true", help="list misclassified columns (names and labels, no values)")
    args = ap.parse_args(argv)
    cases = labeled_columns(args.seed, args.rows, args.scale)
    print(f"{len(cases)} columns, {args.rows} rows each (8% nulls), threshold {args.threshold}, seed {args.seed}\n")
    for title, subset in (
        (f"Locales the detectors were written against: {', '.join(LOCALES + EXTRA_ID_LOCALES)}", "main"),
        (f"Held-out locales (not tuned on; names not in the dictionary for hu/ro/tr): {', '.join(HELDOUT_LOCALES)}",
         "heldout"),
    ):
        part = [c for c in cases if c.group == subset]
        res = evaluate(part, args.threshold)
        print(f"{title}: {res['columns']} columns, {res['positives']} sensitive\n")
        _print_table(res)
        if args.errors:
            for case, c in res["errors"]:
                print(f"  {case.note:8} {case.name:22} truth={case.truth:22} got={c.label} {c.confidence} {dict(c.evidence)}")
        print()
    res = evaluate(cases, args.threshold)
    p, r = res["overall"]
    print(f"All {res['columns']} columns: precision {p:.3f}, recall {r:.3f}")
    if not args.no_timing:
        t = timing(rows=1000)
        print(f"\nSpeed, {t['columns']} text columns of {t['rows']} values, median of 5 runs each: "
              f"classify_column {t['classify_ms']:.1f} ms/column; per-row Python loop over the same formats and "
              f"checksums (no names, dictionaries, entropy or free text) {t['baseline_ms']:.1f} ms/column; "
              f"speed-up x{t['baseline_ms'] / t['classify_ms']:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
