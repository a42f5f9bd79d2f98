#!/usr/bin/env python3
"""Check OpenLineage run events the way the spec and Marquez 0.51 read them.

Usage:
    python check_lineage.py EVENTS [EVENTS ...] [--facet-schemas DIR] [--forbid FILE]

EVENTS is a .json file (one event or a list), a .jsonl file (one event a line)
or a folder of such files. --facet-schemas DIR holds the JSON schemas of custom
facets (their "$id" must equal the facets' "_schemaURL" without the fragment).
--forbid FILE lists strings, one a line, that must appear in no event (raw
sensitive values, keys). Needs `jsonschema` (4.18+) and `referencing`.

Prints one line per problem and a last line "N events, M runs, K problems";
exits 1 when K > 0, 2 when the input cannot be read.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import uuid
from collections import defaultdict
from pathlib import Path

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

SPEC_DIR = Path(__file__).resolve().parent.parent / "openlineage-spec"  # tests/openlineage-spec
NAMESPACE_RE = re.compile(r"^[A-Za-z0-9:;=/_\-.@+]{1,1024}$")
TERMINAL = {"COMPLETE", "FAIL", "ABORT"}
EVENT_TYPES = {"START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"}


def load_events(paths: list[str]) -> list[tuple[str, dict]]:
    files: list[Path] = []
    for p in map(Path, paths):
        files += sorted(f for f in p.rglob("*") if f.suffix in {".json", ".jsonl"}) if p.is_dir() else [p]
    events = []
    for f in files:
        text = f.read_text()
        if f.suffix == ".jsonl":
            for n, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    events.append((f"{f.name}:{n}", json.loads(line)))
        else:
            doc = json.loads(text)
            for n, e in enumerate(doc if isinstance(doc, list) else [doc], 1):
                events.append((f"{f.name}#{n}", e))
    return events


def build_registry(extra_dir: Path | None):
    docs = [json.loads(p.read_text()) for p in [SPEC_DIR / "OpenLineage.json", *sorted((SPEC_DIR / "facets").glob("*.json"))]]
    if extra_dir:
        docs += [json.loads(p.read_text()) for p in sorted(extra_dir.rglob("*.json"))]
    registry = Registry().with_resources((d["$id"], Resource.from_contents(d)) for d in docs if "$id" in d)
    core = docs[0]
    by_id = {d["$id"]: d for d in docs if "$id" in d}
    return registry, core, by_id


class Checker:
    def __init__(self, registry, core, by_id):
        self.registry, self.core, self.by_id = registry, core, by_id
        self.problems: list[str] = []

    def bad(self, where: str, what: str) -> None:
        self.problems.append(f"{where}: {what}")

    def validate(self, where: str, schema: dict, instance) -> None:
        for err in Draft202012Validator(schema, registry=self.registry).iter_errors(instance):
            path = "/".join(map(str, err.absolute_path))
            self.bad(where, f"schema: {path or '(root)'}: {err.message[:160]}")

    def facet(self, where: str, key: str, facet) -> None:
        if not isinstance(facet, dict):
            return self.bad(where, f"facet {key} is not an object")
        for f in ("_producer", "_schemaURL"):
            if not facet.get(f):
                self.bad(where, f"facet {key} lacks {f}")
        url = facet.get("_schemaURL", "")
        doc_id, _, frag = url.partition("#")
        doc = self.by_id.get(doc_id)
        if doc is None:
            if "_" not in key and not doc_id.startswith("https://openlineage.io/"):
                self.bad(where, f"custom facet key {key!r} has no prefix (use prefix_name)")
            elif not doc_id.startswith("https://openlineage.io/"):
                self.bad(where, f"facet {key}: no schema found for _schemaURL {url!r} (pass --facet-schemas)")
            return
        target = {"$ref": url} if frag else doc
        self.validate(f"{where} facet {key}", target, facet)

    def dataset(self, where: str, ds: dict, role: str) -> None:
        ns, name = ds.get("namespace", ""), ds.get("name", "")
        if not NAMESPACE_RE.match(ns or ""):
            self.bad(where, f"{role} namespace {ns!r} is not accepted by Marquez")
        if ns.startswith("postgres"):
            if not re.match(r"^postgres://[^/:]+:\d+$", ns):
                self.bad(where, f"{role} namespace {ns!r} is not postgres://host:port")
            if name.count(".") != 2:
                self.bad(where, f"{role} name {name!r} is not database.schema.table")
        for slot in ("facets", "inputFacets", "outputFacets"):
            for key, facet in (ds.get(slot) or {}).items():
                self.facet(f"{where} {role} {ns}/{name}", key, facet)
        facets = ds.get("facets") or {}
        tagged = {t.get("field") for t in (facets.get("tags") or {}).get("tags") or [] if t.get("field")}
        if tagged:  # a field tag is attached by schema field name; one naming no field tags nothing
            fields = {f.get("name") for f in (facets.get("schema") or {}).get("fields") or []}
            for field in sorted(tagged - fields):
                self.bad(f"{where} {role} {ns}/{name}", f"tags facet: field {field!r} is not in the schema facet")

    def event(self, where: str, e: dict) -> None:
        self.validate(where, {"$ref": self.core["$id"] + "#/$defs/RunEvent"}, e)
        if e.get("eventType") not in EVENT_TYPES:
            self.bad(where, f"eventType {e.get('eventType')!r} missing or unknown")
        if not str(e.get("schemaURL", "")).endswith("#/$defs/RunEvent"):
            self.bad(where, "schemaURL does not end with #/$defs/RunEvent")
        try:
            uuid.UUID(str(e.get("run", {}).get("runId")))
        except ValueError:
            self.bad(where, "run.runId is not a UUID")
        job = e.get("job", {})
        if not NAMESPACE_RE.match(job.get("namespace", "") or ""):
            self.bad(where, f"job namespace {job.get('namespace')!r} is not accepted by Marquez")
        for key, facet in (e.get("run", {}).get("facets") or {}).items():
            self.facet(where + " run", key, facet)
        for key, facet in (job.get("facets") or {}).items():
            self.facet(where + " job", key, facet)
        jt = (job.get("facets") or {}).get("jobType")
        if jt is not None and not all(jt.get(k) for k in ("processingType", "integration", "jobType")):
            self.bad(where, "jobType facet needs processingType, integration and jobType for Marquez")
        for ds in e.get("inputs") or []:
            self.dataset(where, ds, "input")
        for ds in e.get("outputs") or []:
            self.dataset(where, ds, "output")

    def runs(self, events: list[tuple[str, dict]]) -> int:
        by_run: dict[str, list[tuple[str, dict]]] = defaultdict(list)
        jobs_of_run: dict[str, set] = defaultdict(set)
        for where, e in events:
            rid = str(e.get("run", {}).get("runId"))
            by_run[rid].append((where, e))
            jobs_of_run[rid].add((e.get("job", {}).get("namespace"), e.get("job", {}).get("name")))
        for rid, evs in by_run.items():
            if len(jobs_of_run[rid]) > 1:
                self.bad(evs[0][0], f"runId {rid} is shared by jobs {sorted(map(str, jobs_of_run[rid]))}")
            types = [e.get("eventType") for _, e in evs]
            if types.count("START") != 1:
                self.bad(evs[0][0], f"run {rid}: {types.count('START')} START events (want 1)")
            terminal = [i for i, t in enumerate(types) if t in TERMINAL]
            if len(terminal) != 1:
                self.bad(evs[-1][0], f"run {rid}: {len(terminal)} terminal events (want 1)")
                continue
            if terminal[0] != len(types) - 1:
                self.bad(evs[terminal[0]][0], f"run {rid}: events follow the terminal event")
            where, end = evs[terminal[0]]
            seen_in = {(d.get("namespace"), d.get("name")) for _, e in evs for d in e.get("inputs") or []}
            seen_out = {(d.get("namespace"), d.get("name")) for _, e in evs for d in e.get("outputs") or []}
            end_in = {(d.get("namespace"), d.get("name")) for d in end.get("inputs") or []}
            end_out = {(d.get("namespace"), d.get("name")) for d in end.get("outputs") or []}
            if seen_in - end_in or seen_out - end_out:
                self.bad(where, f"run {rid}: terminal event does not repeat all inputs/outputs")
            self.column_lineage(where, evs, end)
        return len(by_run)

    def column_lineage(self, where: str, evs, end: dict) -> None:
        input_fields: dict[tuple, set] = defaultdict(set)
        for _, e in evs:
            for d in e.get("inputs") or []:
                for f in ((d.get("facets") or {}).get("schema") or {}).get("fields") or []:
                    input_fields[(d.get("namespace"), d.get("name"))].add(f.get("name"))
        for out in end.get("outputs") or []:
            facets = out.get("facets") or {}
            cl = facets.get("columnLineage")
            if not cl:
                continue
            out_fields = {f.get("name") for f in (facets.get("schema") or {}).get("fields") or []}
            for col, spec in (cl.get("fields") or {}).items():
                if col not in out_fields:
                    self.bad(where, f"columnLineage field {col!r} is not in the output's schema facet (Marquez drops it)")
                for inp in spec.get("inputFields") or []:
                    key = (inp.get("namespace"), inp.get("name"))
                    if inp.get("field") not in input_fields.get(key, set()):
                        self.bad(where, f"columnLineage {col!r} <- {key[1]}.{inp.get('field')} is not an input schema field of this run")
                    tr = inp.get("transformations") or []
                    if not tr:
                        self.bad(where, f"columnLineage {col!r} <- {inp.get('field')}: no transformations[]")
                if spec.get("transformationType") not in ("IDENTITY", "MASKED"):
                    self.bad(where, f"columnLineage {col!r}: deprecated transformationType IDENTITY|MASKED missing (Marquez 0.51 stores only that)")
                masked_new = any(t.get("masking") for i in spec.get("inputFields") or [] for t in i.get("transformations") or [])
                if masked_new != (spec.get("transformationType") == "MASKED"):
                    self.bad(where, f"columnLineage {col!r}: masking flag and transformationType disagree")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("events", nargs="+")
    ap.add_argument("--facet-schemas", type=Path)
    ap.add_argument("--forbid", type=Path)
    args = ap.parse_args(argv)
    try:
        events = load_events(args.events)
    except (OSError, ValueError) as exc:
        print(f"cannot read events: {exc}")
        return 2
    checker = Checker(*build_registry(args.facet_schemas))
    for where, e in events:
        checker.event(where, e)
    runs = checker.runs(events)
    if args.forbid:
        needles = [s for s in args.forbid.read_text().splitlines() if s.strip()]
        for where, e in events:
            blob = json.dumps(e)
            for s in needles:
                if s in blob:
                    checker.bad(where, f"forbidden value appears: {s[:3]}…")
    for p in checker.problems:
        print(p)
    print(f"{len(events)} events, {runs} runs, {len(checker.problems)} problems")
    return 1 if checker.problems else 0


if __name__ == "__main__":
    sys.exit(main())
