"""Render the red-team before/after table for RESULTS.md from the JSON lines test_attacks.py writes.

    LG_REDTEAM_RESULTS=before.jsonl pytest tests/redteam -q     # on the old code
    LG_REDTEAM_RESULTS=after.jsonl  pytest tests/redteam -q     # on the new code
    python tests/redteam/render_results.py before.jsonl after.jsonl

Counts only: the files never hold a value.
"""

from __future__ import annotations

import json
import sys


def load(path: str) -> dict[str, dict]:
    with open(path) as f:
        return {d["attack"]: d for d in map(json.loads, f)}   # a later line for the same attack wins


def cell(d: dict | None) -> str:
    if d is None:
        return "not run"
    text = f"recovered {d['recovered']} of {d['of']}"
    if d["refused"]:
        text += f" (refused: {d['refused']})"
    elif d["channel_open"]:
        text += " (plan allowed: channel open)"
    return text


def main(before: str, after: str | None = None) -> str:
    old = load(before)
    new = load(after) if after else {}
    lines = ["| class | attack | target | before | after |", "|---|---|---|---|---|"]
    for name, d in old.items():
        lines.append(f"| {d['class']} | `{name}` | {d['target']} | {cell(d)} | {cell(new.get(name)) if after else ''} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(main(*sys.argv[1:3]))
