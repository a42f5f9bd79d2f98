"""Every command and code block in the repository's READMEs runs, as written, against the test database.

How a README block is run (one test per README; its blocks run in order and share one folder):

- ```bash (sh, shell, console): the block is one `bash -e` script. ```python: run with this Python.
  ```yaml: a policy (it has `version:`) or a section of one (laid over examples/policy.yaml): it
  must pass `lineage-guard check-policy` (a block whose first line is `# openlineage.yml` is an OpenLineage
  client config instead: the openlineage client must load it). ```text: not code (output, a file
  layout); never run. A fence with no language fails: say ```text if it is not code.
- The folder holds the repository's top level (symlinked: `examples/...`, `lineage_guard/...` work)
  and three files the blocks may name: `policy.yaml` (examples/policy.yaml), `schema.sql`
  (lineage_guard/demo/schema.sql) and `dag_queries.jsonl` (one {"id", "sql"} per line). The state
  folder is fresh, `lineage-guard` and `python` are this venv's, OPENLINEAGE_URL points at a local
  receiver, and the master key is the suite's.
- The database URL: every `postgresql://...` URL in a block is replaced by the test database's URL
  before it runs, so write any realistic URL (`postgresql://127.0.0.1:5432/clinic`). The database
  holds the demo's FAKE `patients`, `customers` and `orders` in `public`.
- A block that genuinely cannot run here (it starts a long-running server, installs packages,
  needs a value only your own run prints) is marked by an HTML comment on the line before it,
  with its reason:  <!-- readme-test: skip (starts the Dagster UI; tests/test_dagster_example.py runs it) -->
  A marker without a reason fails. Prefer making the block runnable.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import textwrap
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import TEST_MASTER_KEY, require

REPO = Path(__file__).resolve().parent.parent
# Not documentation of this project: vendored material and tool caches.
NOT_OURS = ("tests/openlineage-spec", ".venv", ".git", "node_modules", ".pytest_cache", "demo-out")
RUN_LANGUAGES = {"bash": "bash", "sh": "bash", "shell": "bash", "console": "bash", "python": "python",
                 "py": "python", "yaml": "yaml", "yml": "yaml"}
NOT_CODE = {"text", "txt", "plain", "output"}
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>```+|~~~+)\s*(?P<lang>[\w+-]*)[^\n]*$")
MARKER = re.compile(r"<!--\s*readme-test:\s*skip\b\s*(?:\((?P<reason>.*)\))?\s*-->")
PG_URL = re.compile(r"postgres(?:ql)?://[^\s'\"`)\\]+")
BLOCK_TIMEOUT_S = 240
HOW_TO_FIX = (
    "Fix the block so it runs as written, or, if it genuinely cannot run in a test, put on the line "
    "right before its fence:  <!-- readme-test: skip (why it cannot run, and which test covers it) -->\n"
    "How blocks run (the folder, policy.yaml / schema.sql / dag_queries.jsonl, the URL substitution): "
    "see the docstring of tests/test_readme_blocks.py.")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int            # of the opening fence, 1-based
    lang: str            # as written ('' if none)
    code: str
    skip: str | None     # the marker's reason, '' for a marker without one, None for no marker

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def readmes() -> list[Path]:
    found = []
    for path in sorted(REPO.rglob("README*")):
        rel = path.relative_to(REPO).as_posix()
        if path.suffix.lower() in (".md", "") and not any(rel.startswith(p + "/") or f"/{p}/" in rel
                                                           for p in NOT_OURS):
            found.append(path)
    return found


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, with the skip marker (if any) right before each."""
    lines = path.read_text().splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, start = m.group("fence"), i
        body = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence[:3]):
            body.append(lines[i])
            i += 1
        before = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        marker = MARKER.search(before)
        skip = None if marker is None else (marker.group("reason") or "").strip()
        if marker is None and "readme-test" in before:
            skip = ""  # a marker we cannot read counts as one without a reason: it fails, never silently runs
        out.append(Block(path, start + 1, m.group("lang").lower(), textwrap.dedent("\n".join(body)) + "\n", skip))
        i += 1
    return out


# -- the world the blocks run in -----------------------------------------------------------------

class _Receiver(http.server.BaseHTTPRequestHandler):
    """An OpenLineage backend on 127.0.0.1 that accepts every event (what `lineage flush` ships to)."""

    def do_POST(self):
        json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")  # a JSON event, or 500
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture(scope="module")
def lineage_backend():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture(scope="module")
def readme_db(new_database):
    """A database with the demo's FAKE tables in `public` (what README examples query)."""
    require("adbc_driver_postgresql", "postgres")
    from lineage_guard.demo.data import tables
    from lineage_guard.sources.pg_url import PgUrl
    from lineage_guard.sources.postgres import _connect

    url = new_database()
    conn = _connect(PgUrl.parse(url))
    try:
        cursor = conn.cursor()
        for name, table in tables(patients=200, customers=100).items():
            cursor.adbc_ingest(name, table, mode="create", db_schema_name="public")
        for statement in ("ALTER TABLE public.customers ADD PRIMARY KEY (id)",
                          "ALTER TABLE public.patients ADD PRIMARY KEY (id)",
                          "ALTER TABLE public.orders ADD PRIMARY KEY (id)"):
            cursor.execute(statement)
    finally:
        conn.close()
    return url


@pytest.fixture(scope="module")
def world(tmp_path_factory, readme_db, lineage_backend):
    """The folder and environment every README block runs in (see the module docstring)."""
    folder = tmp_path_factory.mktemp("readme")
    for entry in REPO.iterdir():
        if entry.name not in (".git", ".venv", "README.md") and not (folder / entry.name).exists():
            (folder / entry.name).symlink_to(entry)
    (folder / "policy.yaml").write_text((REPO / "examples" / "policy.yaml").read_text())
    (folder / "schema.sql").write_text((REPO / "lineage_guard" / "demo" / "schema.sql").read_text())
    (folder / "dag_queries.jsonl").write_text(
        json.dumps({"id": "patients_ids", "sql": "SELECT id, zip FROM patients"}) + "\n"
        + json.dumps({"id": "customer_emails", "sql": "SELECT id, email FROM customers"}) + "\n")
    venv_bin = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LINEAGE_GUARD_", "OPENLINEAGE"))}
    env.update(PATH=venv_bin + os.pathsep + env.get("PATH", ""), VIRTUAL_ENV=str(Path(venv_bin).parent),
               LINEAGE_GUARD_HOME=str(folder / ".lineage_guard"), LINEAGE_GUARD_MASTER_KEY=TEST_MASTER_KEY,
               OPENLINEAGE_URL=lineage_backend, HOME=str(folder), COLUMNS="200")
    return folder, env, readme_db


def _substitute(code: str, url: str) -> str:
    return PG_URL.sub(url, code)


def _run_bash(code: str, folder: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-e", "-c", code], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=BLOCK_TIMEOUT_S, check=False)


def _run_python(code: str, folder: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=BLOCK_TIMEOUT_S, check=False)


def _run_yaml(code: str, folder: Path, env: dict) -> subprocess.CompletedProcess:
    if code.lstrip().startswith("# openlineage.yml"):
        check = ("import sys, yaml\nfrom openlineage.client.transport import get_default_factory\n"
                 "config = yaml.safe_load(sys.stdin.read())\n"
                 "get_default_factory().create(config['transport'])\n")
        return subprocess.run([sys.executable, "-c", check], input=code, cwd=folder, env=env, capture_output=True,
                              text=True, timeout=BLOCK_TIMEOUT_S, check=False)
    block = yaml.safe_load(code)
    if not isinstance(block, dict):
        return subprocess.CompletedProcess([], 1, "", "a yaml block must be a policy or a policy section (a mapping)")
    policy = block if "version" in block else {**yaml.safe_load((folder / "policy.yaml").read_text()), **block}
    target = folder / f"readme_policy_{abs(hash(code))}.yaml"
    target.write_text(yaml.safe_dump(policy, sort_keys=False))
    return _run_bash(f"lineage-guard check-policy {target.name}", folder, env)


RUNNERS = {"bash": _run_bash, "python": _run_python, "yaml": _run_yaml}


def run_block(block: Block, folder: Path, env: dict, url: str) -> str | None:
    """None if the block ran (or is legitimately not run); else what went wrong and how to fix it."""
    if block.skip is not None:
        if not block.skip:
            return (f"{block.where}: the skip marker gives no reason (or cannot be read); write it as "
                    "<!-- readme-test: skip (why, and which test covers it) -->")
        return None
    if block.lang in NOT_CODE:
        return None
    if block.lang not in RUN_LANGUAGES:
        return (f"{block.where}: a ``` fence with {'no language' if not block.lang else repr(block.lang)}: "
                "tag code as ```bash / ```python / ```yaml, and anything else (output, a layout) as ```text")
    try:
        done = RUNNERS[RUN_LANGUAGES[block.lang]](_substitute(block.code, url), folder, env)
    except subprocess.TimeoutExpired:
        return f"{block.where}: still running after {BLOCK_TIMEOUT_S}s (a server, a UI?): make it end, or mark it"
    if done.returncode == 0:
        return None
    tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-12:]).replace(TEST_MASTER_KEY, "<master key>")
    return (f"{block.where}: the ```{block.lang} block failed (exit {done.returncode}):\n"
            f"{textwrap.indent(block.code.rstrip(), '    | ')}\n  output (last lines):\n{textwrap.indent(tail, '    ')}")


@pytest.mark.parametrize("readme", readmes(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_block_of_the_readme_runs(readme, world):
    folder, env, url = world
    problems = [p for p in (run_block(b, folder, env, url) for b in blocks(readme)) if p]
    assert not problems, "\n\n".join(problems) + "\n\n" + HOW_TO_FIX


# -- the harness itself: a block that fails, an unmarked fence and an empty marker are all caught ----

def test_the_harness_catches_what_it_must(tmp_path, world):
    folder, env, url = world
    doc = tmp_path / "README.md"
    doc.write_text(textwrap.dedent("""\
        ```bash
        lineage-guard plan ... --json
        ```

        ```
        untagged
        ```

        <!-- readme-test: skip -->
        ```bash
        false
        ```

        <!-- readme-test: skip (starts a server that never ends; tests/test_x.py runs it) -->
        ```bash
        false
        ```

        ```python
        from lineage_guard import GovernedSession
        ```

        ```bash
        lineage-guard scan postgresql://someone@db.internal:5432/clinic --json > scan.json
        ```
        """))
    found = blocks(doc)
    assert [(b.line, b.lang, b.skip) for b in found] == [
        (1, "bash", None), (5, "", None), (10, "bash", ""), (15, "bash", ("starts a server that never ends; "
                                                                          "tests/test_x.py runs it")),
        (19, "python", None), (23, "bash", None)]
    results = [run_block(Block(REPO / "README.md", b.line, b.lang, b.code, b.skip), folder, env, url) for b in found]
    assert "failed (exit" in results[0] and "plan ... --json" in results[0]
    assert "readme-test: skip (" in HOW_TO_FIX
    assert "no language" in results[1] and "```text" in results[1]
    assert "gives no reason" in results[2]
    assert results[3] is None and results[4] is None
    assert results[5] is None, results[5]  # the URL was replaced by the test database's
    assert json.loads((folder / "scan.json").read_text())["columns"]
