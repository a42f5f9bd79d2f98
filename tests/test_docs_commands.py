"""Every `lineage-guard ...` command and option the operator docs mention exists in the CLI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from lineage_guard.cli import app
from lineage_guard.cli.group import LAZY, load

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("docs/operations.md", "docs/security.md", "docs/ledger.md")
# `lineage-guard` then words, up to the end of a code span or line; `...`/UPPER/<x> are placeholders.
MENTION = re.compile(r"lineage-guard((?: +[^\s`|]+)*)")


def _is_group(cmd) -> bool:
    return hasattr(cmd, "commands")  # Typer may carry its own Click: duck-type the group


def _command(path: list[str]):
    """The deepest command `path` names, and the words after it."""
    root = typer.main.get_command(app)
    ctx = root.context_class(root)
    cmd = root
    rest = list(path)
    while rest and _is_group(cmd):
        name = rest[0]
        if cmd is root and name in LAZY:
            sub = load(name)
        else:
            sub = cmd.get_command(ctx, name)
        if sub is None:
            break
        cmd, rest = sub, rest[1:]
    return cmd, rest


def _mentions() -> list[tuple[str, int, list[str]]]:
    found = []
    for doc in DOCS:
        for number, line in enumerate((ROOT / doc).read_text().splitlines(), 1):
            for m in MENTION.finditer(line):
                words = m.group(1).split()
                if words and words[0].startswith(("COMMAND", "serve`")):
                    continue
                found.append((doc, number, words))
    return found


def test_the_docs_mention_commands():
    assert len(_mentions()) > 20


@pytest.mark.parametrize("doc,line,words", _mentions(), ids=lambda v: str(v) if not isinstance(v, list) else " ".join(v))
def test_mentioned_command_and_options_exist(doc, line, words):
    cmd, rest = _command([w for w in words if not w.startswith("-")][:2])
    where = f"{doc}:{line}: lineage-guard {' '.join(words)}"
    if _is_group(cmd) and rest:
        pytest.fail(f"{where}: no command {rest[0]!r} under {cmd.name!r}")
    options = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
    for word in words:
        flag = word.split("=", 1)[0]
        if re.fullmatch(r"--?[a-z][a-z-]*", flag):
            assert flag in options, f"{where}: {cmd.name} has no option {flag} (has {sorted(options)})"
