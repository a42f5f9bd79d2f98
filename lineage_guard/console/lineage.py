"""The per-run lineage strip (source datasets → run → sink) and, with OPENLINEAGE_URL set, a Marquez link.

Example:
    >>> strip = lineage_strip({"body": {"job": {"namespace": "lg", "name": "etl.load"},
    ...     "source": {"namespace": "postgres://db:5432", "datasets": ["clinic.public.patients"]},
    ...     "sink": {"namespace": "file", "name": "/out/p.parquet"}}}, "http://marquez:3000")
    >>> strip.sources, strip.sink, strip.marquez
    (['postgres://db:5432/clinic.public.patients'], 'file//out/p.parquet', 'http://marquez:3000/lineage/job/lg/etl.load')
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

MARQUEZ_WEB_ENV = "MARQUEZ_WEB_URL"   # the Marquez web UI, when it is not where OPENLINEAGE_URL points


@dataclass(frozen=True)
class Strip:
    sources: list[str]
    job: str
    sink: str | None
    marquez: str | None


def marquez_base() -> str | None:
    """Where to link: $MARQUEZ_WEB_URL, else $OPENLINEAGE_URL (http/https only), else nothing."""
    for name in (MARQUEZ_WEB_ENV, "OPENLINEAGE_URL"):
        url = os.environ.get(name, "").strip().rstrip("/")
        if url and urlsplit(url).scheme in ("http", "https"):
            parts = urlsplit(url)
            if not parts.hostname:
                continue
            host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
            port = f":{parts.port}" if parts.port else ""
            # scheme, host, port and path only: credentials in OPENLINEAGE_URL (user:password@) or its query
            # (e.g. an API key) must never end up in a page's link
            return f"{parts.scheme}://{host}{port}{parts.path.rstrip('/')}"
    return None


def lineage_strip(entry: dict[str, Any], base: str | None) -> Strip:
    body = entry.get("body") or {}
    source = body.get("source") or {}
    job = body.get("job") or {}
    sink = body.get("sink")
    sources = [f"{source.get('namespace', '')}/{d}" for d in source.get("datasets") or ()]
    sink_text = f"{sink.get('namespace', '')}/{sink.get('name', '')}" if sink else None
    link = None
    if base and job.get("name"):
        link = f"{base}/lineage/job/{quote(str(job.get('namespace') or ''), safe='')}/{quote(str(job['name']), safe='')}"
    return Strip(sources, f"{job.get('namespace') or ''}/{job.get('name') or ''}", sink_text, link)
