"""Prometheus metrics of the service: requests by status and format, requests in flight, latency, batch sizes,
errors by reason.

With several worker processes (``depthforge serve --workers N``) each writes its samples under
``PROMETHEUS_MULTIPROC_DIR`` (set by the command before the workers start) and ``/metrics`` adds them up, so a scrape
sees the whole service whichever worker answers it. The in-flight gauge counts living workers only: a worker that
starts forgets the gauges of workers that died (a killed worker's request never ends).
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REQUESTS = Counter("depthforge_requests", "Predict requests answered, by HTTP status and response format",
                   ["status", "format"])
IN_FLIGHT = Gauge("depthforge_requests_in_flight", "Predict requests being read, waiting or run",
                  multiprocess_mode="livesum")
ERRORS = Counter("depthforge_errors", "Predict requests refused or failed, by reason", ["reason"])
LATENCY = Histogram("depthforge_request_seconds", "Predict request latency, body read to answer written",
                    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
# the error counter's label, by HTTP status (a fixed set: free text would make one time series per message)
REASONS = {400: "bad_form", 408: "slow_upload", 413: "too_large", 415: "unsupported_type", 422: "invalid",
           500: "failed", 503: "busy", 504: "timeout"}
BATCH = Histogram("depthforge_batch_size", "Images per model run", buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32))


def forget_dead_workers() -> None:
    """Drop the live gauges of worker processes that are gone (several workers only)."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not folder:
        return
    from prometheus_client import multiprocess

    for path in Path(folder).glob("gauge_live*_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, folder)
        except PermissionError:
            pass  # alive, another user's


def exposition() -> tuple[bytes, str]:
    """The metrics page: every worker's samples when the service runs several, else this process's."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
