"""Detection benchmark: precision and recall of `classify_column` on labeled columns made with Faker.

Every label comes from how the column was generated (a Faker provider, or a generator
written here from public formats), never from our detectors. Per locale one "table"
of 36 columns: 22 sensitive kinds and 14 hard negatives (phone-shaped product codes,
integer counts, order numbers, UUIDs, timestamps, SKUs, EAN-13, free text without
identifiers...). Each column is classified under four name conditions:

- honest: the name says what it is (`email`, `plz`, `date_of_birth`);
- vague: a name that says nothing (`value_3`, `data_12`);
- lying: a name of something else (`sku` full of e-mails, `hire_date` holding birth
  dates, `email` holding order numbers, `phone` holding product codes);
- values-only: every column renamed `c1..c36`.

Ten locales are the main set; four more (hu_HU, ro_RO, tr_TR, sk_SK) are held out:
their given names and surnames are not in the name dictionary, and nobody tuned on them.
Run:

    .venv/bin/python benchmarks/detection.py                   # 3 seeds, 300 rows, markdown
    .venv/bin/python benchmarks/detection.py --seeds 0 --errors
    .venv/bin/python benchmarks/detection.py --json out.json   # also write the figures

CPU time is measured per `classify_column` call (`time.process_time`), median over the
run, and separately on 1000-value columns (`--timing-rows`).
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import secrets
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from faker import Faker

from lineage_guard.classify import lexicon
from lineage_guard.classify.classifier import classify_column
from lineage_guard.classify.labels import NOT_SENSITIVE

MAIN_LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "nl_NL", "es_ES", "it_IT", "pt_BR", "pl_PL", "sv_SE")
HELDOUT_LOCALES = ("hu_HU", "ro_RO", "tr_TR", "sk_SK")
CONDITIONS = ("honest", "vague", "lying", "values-only")
VAGUE = ("value", "data", "info", "field", "attr", "item", "entry", "content", "payload", "extra", "misc", "raw")

# Mobile numbers as stored without '+' (E.164 digits): country code, a mobile prefix of that country's
# numbering plan (public national plans), and the subscriber digits. Independent of any detector.
_MOBILE = {
    "en_US": ("1", ("2025", "3127", "4159", "6173", "7184", "9176"), 6), "en_GB": ("44", ("7911", "7400", "7800"), 6),
    "de_DE": ("49", ("151", "160", "170", "176"), 8), "fr_FR": ("33", ("6", "7"), 8),
    "nl_NL": ("31", ("61", "62", "63", "64", "65"), 7), "es_ES": ("34", ("6",), 8), "it_IT": ("39", ("320", "333", "347", "380"), 7),
    "pt_BR": ("55", ("119", "219", "319"), 8), "pl_PL": ("48", ("50", "60", "69", "79"), 7),
    "sv_SE": ("46", ("70", "72", "73", "76"), 7), "hu_HU": ("36", ("20", "30", "70"), 7),
    "ro_RO": ("40", ("72", "74", "75"), 7), "tr_TR": ("90", ("532", "542", "555"), 7),
    "sk_SK": ("421", ("90", "91"), 7),
}
_CLINICAL_HONEST = {"de_DE": "befund", "fr_FR": "diagnostic", "es_ES": "diagnostico"}


@dataclass(frozen=True)
class Kind:
    key: str
    truth: str
    honest: str
    lying: str
    make: Callable[[Faker, random.Random], object]
    pg_type: str = "text"


@dataclass(frozen=True)
class Case:
    kind: str
    name: str
    pg_type: str
    values: pa.Array
    truth: str
    condition: str
    locale: str
    group: str  # "main" or "heldout"


def _b64(n: int) -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(n)).rstrip(b"=").decode()


def _clinical(f: Faker, rng: random.Random) -> str:
    symptom = rng.choice(["chest pain", "shortness of breath", "persistent cough", "fever", "nausea", "lower back pain",
                          "headache", "fatigue", "dizziness", "abdominal pain", "rash", "palpitations"])
    condition = rng.choice(["hypertension", "type 2 diabetes", "asthma", "COPD", "atrial fibrillation", "hypothyroidism",
                            "chronic kidney disease", "migraine", "osteoarthritis", "depression", "pneumonia"])
    icd = rng.choice(["I10", "E11.9", "J45.909", "J44.9", "I48.91", "E03.9", "N18.3", "G43.909", "M19.90", "F32.9"])
    drug = rng.choice(["metformin", "lisinopril", "amlodipine", "albuterol", "levothyroxine", "atorvastatin", "sertraline"])
    return rng.choice([
        (f"Pt {rng.randint(18, 90)}yo presents with {symptom} x{rng.randint(1, 14)} days. Hx of {condition}. "
         f"Rx {drug} {rng.choice([5, 10, 20, 50, 500])} mg daily. Follow-up in {rng.randint(1, 12)} weeks."),
        (f"{f.name()} seen for {condition}; BP {rng.randint(100, 180)}/{rng.randint(60, 110)}, "
         f"HR {rng.randint(50, 120)}. Plan: continue {drug}, recheck labs."),
        f"Reports {symptom}. Assessment: {condition} ({icd}). Started {drug} {rng.choice([10, 25, 100])} mg.",
        f"Admitted with {symptom}, treated for {condition} with {drug}; discharged home.",
        f"Complains of {symptom} since {rng.randint(2, 10)} days. No fever. {condition.capitalize()} stable on {drug}.",
        f"{symptom.capitalize()}, worse at night. Known {condition}. Referred to cardiology.",
    ])


def _mobile(loc: str, rng: random.Random) -> str:
    cc, prefixes, rest = _MOBILE[loc]
    return cc + rng.choice(prefixes) + "".join(str(rng.randint(0, 9)) for _ in range(rest))


def _product_code(rng: random.Random) -> str:
    """NANP-shaped, but no plan has it: NANP area codes and exchanges never start with 0 or 1.

    The area code starts with 1, not 0: `072-032-1931` is a valid German number (trunk 0, area 07203).
    """
    a = f"1{rng.randint(0, 99):02d}"
    b = f"{rng.randint(0, 1)}{rng.randint(0, 99):02d}"
    c = f"{rng.randint(0, 9999):04d}"
    return rng.choice([f"{a}-{b}-{c}", f"({a}) {b}-{c}", f"{a}.{b}.{c}"])


def _kinds(loc: str) -> list[Kind]:
    de, fr, nl = loc == "de_DE", loc == "fr_FR", loc == "nl_NL"
    today = date.today()
    seq: dict[str, int] = {}

    def order(f, rng):  # increasing order numbers, as a table of orders has
        seq["n"] = seq.get("n", rng.randint(10**9, 2 * 10**9)) + rng.randint(1, 3)
        return str(seq["n"])

    return [
        # sensitive kinds
        Kind("email", "email", "email", "sku", lambda f, r: f.email()),
        Kind("phone", "phone", "telefon" if de else "telephone" if fr else "phone_number", "order_ref",
             lambda f, r: f.phone_number()),
        Kind("mobile_e164", "phone", "mobile", "batch_no", lambda f, r: _mobile(loc, r)),
        Kind("first_name", "person_name", "vorname" if de else "prenom" if fr else "first_name", "city",
             lambda f, r: f.first_name()),
        Kind("last_name", "person_name", "nachname" if de else "achternaam" if nl else "last_name", "brand",
             lambda f, r: f.last_name()),
        Kind("full_name", "person_name", "customer_name", "company", lambda f, r: f.name()),
        Kind("street_address", "street_address", "strasse" if de else "street_address", "product_line",
             lambda f, r: f.street_address()),
        Kind("full_address", "street_address", "adresse" if de or fr else "address", "description",
             lambda f, r: f.address().replace("\n", ", ")),
        Kind("postcode", "postal_code", "plz" if de else "code_postal" if fr else "postcode", "store_no",
             lambda f, r: f.postcode()),
        Kind("birth_date", "date_of_birth", "geburtsdatum" if de else "date_of_birth", "hire_date",
             lambda f, r: f.date_of_birth(minimum_age=r.choice([0, 18]), maximum_age=95), "date"),
        Kind("birth_date_text", "date_of_birth", "dob", "created_on",
             lambda f, r: f.date_of_birth(minimum_age=18, maximum_age=90).isoformat()),
        Kind("national_id", "national_id", {"en_US": "ssn", "en_GB": "ni_number", "nl_NL": "bsn", "fr_FR": "insee",
                                            "de_DE": "steuer_id", "it_IT": "codice_fiscale", "es_ES": "dni",
                                            "pt_BR": "cpf", "pl_PL": "pesel"}.get(loc, "national_id"),
             "ticket_no", lambda f, r: f.ssn()),
        Kind("card", "payment_card", "card_number", "serial", lambda f, r: f.credit_card_number()),
        Kind("iban", "iban", "iban", "reference", lambda f, r: f.iban()),
        Kind("ipv4", "ip_address", "client_ip", "version", lambda f, r: f.ipv4()),
        Kind("mac", "mac_address", "mac_address", "part_no", lambda f, r: f.mac_address()),
        Kind("record_number", "medical_record_number", "mrn", "lot",
             lambda f, r: f.bothify(r.choice(["?#######", "??######", "?########"])).upper()),
        Kind("clinical_note", "clinical_note", _CLINICAL_HONEST.get(loc, "clinical_notes"), "comment",
             lambda f, r: _clinical(f, r)),
        Kind("api_token", "credential", "api_token", "checksum", lambda f, r: _b64(r.choice([24, 32, 40]))),
        Kind("password", "credential", "password", "coupon_code", lambda f, r: f.password(length=r.randint(10, 20))),
        Kind("notes_email", "email", "customer_notes", "remarks",
             lambda f, r: f"Please reply to {f.email()} about the delivery" if r.random() < 0.4 else f.sentence(8)),
        Kind("notes_phone", "phone", "call_notes", "summary",
             lambda f, r: f"Called back on {f.phone_number()} about the invoice" if r.random() < 0.5 else f.sentence(8)),
        # hard negatives: the lying name is a sensitive one the values refute, or another harmless name
        Kind("order_number", NOT_SENSITIVE, "order_number", "email", order),
        Kind("product_code", NOT_SENSITIVE, "product_code", "phone", lambda f, r: _product_code(r)),
        Kind("quantity", NOT_SENSITIVE, "quantity", "phones", lambda f, r: r.randint(0, 5000), "integer"),
        Kind("uuid", NOT_SENSITIVE, "id", "card_number", lambda f, r: f.uuid4()),
        Kind("timestamp", NOT_SENSITIVE, "updated_at", "ip_address",
             lambda f, r: f.date_time_between("-2y").isoformat()),
        Kind("free_text", NOT_SENSITIVE, "description", "notes", lambda f, r: f.paragraph(nb_sentences=2)),
        Kind("sku", NOT_SENSITIVE, "sku", "iban", lambda f, r: f.bothify("??-####-??").upper()),
        Kind("ean13", NOT_SENSITIVE, "ean", "mobile", lambda f, r: f.ean13()),
        Kind("amount", NOT_SENSITIVE, "amount", "postcode", lambda f, r: f"{r.uniform(1, 5000):.2f}"),
        Kind("city", NOT_SENSITIVE, "city", "region", lambda f, r: f.city()),
        Kind("company", NOT_SENSITIVE, "company", "vendor", lambda f, r: f.company()),
        Kind("job", NOT_SENSITIVE, "job_title", "role", lambda f, r: f.job()),
        Kind("order_date", NOT_SENSITIVE, "ordered_on", "shipped_on",
             lambda f, r: today - timedelta(days=r.randint(0, 700)), "date"),
        Kind("version", NOT_SENSITIVE, "app_version", "mac", lambda f, r: f"{r.randint(0, 9)}.{r.randint(0, 30)}.{r.randint(0, 99)}"),
    ]


def _column(f: Faker, rng: random.Random, kind: Kind, rows: int) -> pa.Array:
    values = [kind.make(f, rng) for _ in range(rows)]
    if kind.pg_type != "date":
        values = [None if rng.random() < 0.08 else v for v in values]
    return pa.array(values)


def labeled_columns(seed: int, rows: int) -> list[Case]:
    """Every (locale, kind) column of one seed, under each name condition."""
    cases: list[Case] = []
    rng = random.Random(seed)
    for group, locales in (("main", MAIN_LOCALES), ("heldout", HELDOUT_LOCALES)):
        for loc in locales:
            f = Faker(loc)
            f.seed_instance(rng.randint(0, 10**9))
            kinds = _kinds(loc)
            assert len(kinds) == 36
            for i, kind in enumerate(kinds, start=1):
                values = _column(f, rng, kind, rows)
                names = {"honest": kind.honest, "vague": f"{rng.choice(VAGUE)}_{i}", "lying": kind.lying,
                         "values-only": f"c{i}"}
                for condition in CONDITIONS:
                    cases.append(Case(kind.key, names[condition], kind.pg_type, values, kind.truth, condition, loc, group))
    return cases


def _predict(case: Case, threshold: float) -> tuple[str, float]:
    t = time.process_time()
    c = classify_column(case.name, case.pg_type, case.values)
    cpu = time.process_time() - t
    return (c.label if c.is_sensitive(threshold) else NOT_SENSITIVE), cpu


def _pr(results: list[tuple[Case, str]]) -> tuple[float, float, int, int]:
    """Micro precision/recall over the sensitive labels: a wrong sensitive label is a miss and a false positive."""
    tp = sum(1 for c, p in results if p == c.truth != NOT_SENSITIVE)
    fp = sum(1 for c, p in results if p != NOT_SENSITIVE and p != c.truth)
    fn = sum(1 for c, p in results if c.truth != NOT_SENSITIVE and p != c.truth)
    return (tp / (tp + fp) if tp + fp else 1.0), (tp / (tp + fn) if tp + fn else 1.0), tp + fn, fp


def report(results: list[tuple[Case, str]], errors: bool) -> dict:
    out: dict = {}
    for group in ("main", "heldout"):
        part = [x for x in results if x[0].group == group]
        g: dict = {"overall": _pr(part), "by_condition": {}, "by_kind": {}, "by_locale": {}}
        for cond in CONDITIONS:
            g["by_condition"][cond] = _pr([x for x in part if x[0].condition == cond])
        for kind in dict.fromkeys(c.kind for c, _ in part):
            g["by_kind"][kind] = _pr([x for x in part if x[0].kind == kind])
        for loc in dict.fromkeys(c.locale for c, _ in part):
            g["by_locale"][loc] = _pr([x for x in part if x[0].locale == loc])
        misses: Counter = Counter()
        fps: Counter = Counter()
        for c, p in part:
            if c.truth != NOT_SENSITIVE and p != c.truth:
                misses[(c.kind, c.condition, p)] += 1
            if p != NOT_SENSITIVE and p != c.truth:
                fps[(c.kind, c.condition, p)] += 1
        g["misses"] = {f"{k} [{cond}] -> {p}": n for (k, cond, p), n in sorted(misses.items())}
        g["false_positives"] = {f"{k} [{cond}] -> {p}": n for (k, cond, p), n in sorted(fps.items())}
        if errors:
            g["miss_locales"] = defaultdict(list)
            for c, p in part:
                if p != c.truth:
                    g["miss_locales"][f"{c.kind} [{c.condition}] -> {p}"].append(c.locale)
        out[group] = g
    return out


def _fmt(pr) -> str:
    p, r, support, fp = pr
    return f"| {p:.3f} | {r:.3f} | {support} | {fp} |"


def print_report(rep: dict, cpu: dict) -> None:
    for group, title in (("main", f"Main locales ({', '.join(MAIN_LOCALES)})"),
                         ("heldout", f"Held-out locales ({', '.join(HELDOUT_LOCALES)}; names not in the dictionary)")):
        g = rep[group]
        print(f"\n### {title}\n")
        print("| condition | precision | recall | sensitive columns | false positives |\n|---|---|---|---|---|")
        for cond, pr in g["by_condition"].items():
            print(f"| {cond} {_fmt(pr)}")
        print(f"| **overall** {_fmt(g['overall'])}")
        print("\n| kind | precision | recall | sensitive columns | false positives |\n|---|---|---|---|---|")
        for kind, pr in g["by_kind"].items():
            print(f"| {kind} {_fmt(pr)}")
        print("\n| locale | precision | recall | sensitive columns | false positives |\n|---|---|---|---|---|")
        for loc, pr in g["by_locale"].items():
            print(f"| {loc} {_fmt(pr)}")
        print("\nMisses (kind [condition] -> predicted: columns):")
        for k, n in g["misses"].items():
            print(f"  {k}: {n}" + (f"  {sorted(set(g['miss_locales'][k]))}" if "miss_locales" in g else ""))
        print("False positives (kind [condition] -> predicted: columns):")
        for k, n in g["false_positives"].items():
            print(f"  {k}: {n}" + (f"  {sorted(set(g['miss_locales'][k]))}" if "miss_locales" in g else ""))
    print(f"\nCPU per classify_column call: median {cpu['median_ms']:.2f} ms, p95 {cpu['p95_ms']:.2f} ms, "
          f"total {cpu['total_s']:.1f} s over {cpu['calls']} calls of {cpu['rows']} rows")
    if "rows1000_median_ms" in cpu:
        print(f"CPU per 1000-value column (one seed, {cpu['rows1000_calls']} columns, values-only names): "
              f"median {cpu['rows1000_median_ms']:.2f} ms, p95 {cpu['rows1000_p95_ms']:.2f} ms")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    ap.add_argument("--rows", type=int, default=300)
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--timing-rows", type=int, default=1000, help="rows of the separate CPU-time pass (0: skip)")
    ap.add_argument("--errors", action="store_true", help="list the locales of each miss (kinds and names, no values)")
    ap.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    results: list[tuple[Case, str]] = []
    cpus: list[float] = []
    if hasattr(lexicon, "exclude_locales"):  # held-out names and street words stay unseen
        lexicon.exclude_locales(HELDOUT_LOCALES)
    classify_column("warmup", "text", pa.array(["a@b.io", "+44 20 7946 0958", "Maria"]))  # lazy imports out of the timing
    for seed in seeds:
        for case in labeled_columns(seed, args.rows):
            pred, cpu = _predict(case, args.threshold)
            results.append((case, pred))
            cpus.append(cpu)
    cpus.sort()
    cpu = {"median_ms": statistics.median(cpus) * 1e3, "p95_ms": cpus[int(0.95 * len(cpus))] * 1e3,
           "total_s": sum(cpus), "calls": len(cpus), "rows": args.rows}
    if args.timing_rows:
        big = [c for c in labeled_columns(seeds[0], args.timing_rows) if c.condition == "values-only"]
        times = sorted(_predict(c, args.threshold)[1] for c in big)
        cpu |= {"rows1000_median_ms": statistics.median(times) * 1e3, "rows1000_p95_ms": times[int(0.95 * len(times))] * 1e3,
                "rows1000_calls": len(times)}
    n_main = sum(1 for c, _ in results if c.group == "main")
    print(f"{len(results)} classifications: seeds {seeds}, {len(results) // len(seeds) // len(CONDITIONS)} columns per "
          f"seed ({n_main // len(seeds) // len(CONDITIONS)} main) x {len(CONDITIONS)} name conditions, {args.rows} rows "
          f"(8% nulls), threshold {args.threshold}")
    rep = report(results, args.errors)
    print_report(rep, cpu)
    if args.json:
        args.json.write_text(json.dumps({"report": rep, "cpu": cpu}, indent=1, default=list))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
