"""Where benchmark scripts put their numbers: benchmarks/results/<name>.json (everything) and <name>.md (the
table and the summary that produced it)."""

from __future__ import annotations

import json
import platform
from pathlib import Path

RESULTS = Path("benchmarks/results")
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile")  # what CPU kernels use


def cpu_info() -> str:
    """The CPU's model name and its vector-instruction flags that matter to inference speed (INT8 needs VNNI to
    gain much): timings from machines with other flags are not comparable."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return f"{model}; {' '.join(f for f in ISA_FLAGS if f in flags) or 'no AVX2'}"


def median_ms(fn, runs: int) -> float:
    """Median time of one call of ``fn`` in milliseconds over ``runs`` calls, after one warm-up call."""
    import statistics
    import time

    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def save_results(name: str, table: str, summary: dict, details: dict | None = None) -> Path:
    """Write ``<name>.json`` (summary + details) and ``<name>.md`` (table + summary); return the JSON path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    summary = {**summary, "cpu": summary.get("cpu", cpu_info())}
    path.write_text(json.dumps({**summary, **(details or {})}, indent=2))
    (RESULTS / f"{name}.md").write_text(f"{table}\n\n{json.dumps(summary)}\n")
    return path
