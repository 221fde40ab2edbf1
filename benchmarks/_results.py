"""Where benchmark scripts put their numbers: benchmarks/results/<name>.json (everything) and <name>.md (the
table and the summary that produced it)."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path("benchmarks/results")


def save_results(name: str, table: str, summary: dict, details: dict | None = None) -> Path:
    """Write ``<name>.json`` (summary + details) and ``<name>.md`` (table + summary); return the JSON path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({**summary, **(details or {})}, indent=2))
    (RESULTS / f"{name}.md").write_text(f"{table}\n\n{json.dumps(summary)}\n")
    return path
