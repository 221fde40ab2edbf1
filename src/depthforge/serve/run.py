"""Starting the service: uvicorn's process supervisor over ``--workers`` worker processes sharing one socket.

The supervisor stays light (it never imports torch); each worker loads the model itself. A worker that dies (a
SIGKILL, the kernel's OOM killer) is started again by the supervisor, so the service heals without a restart by
hand; SIGTERM (``docker stop``, Kubernetes) stops taking connections and lets each worker finish the requests it
holds before it exits; SIGHUP replaces the workers one by one (a rolling restart, e.g. for a new checkpoint file).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from depthforge.serve.app import ENV, Settings


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          log_level: str = "info") -> None:
    """Run the service until SIGTERM / Ctrl-C (blocks)."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    with tempfile.TemporaryDirectory(prefix="depthforge-serve-") as tmp:
        # every worker writes its metric samples here, /metrics adds them up (prometheus_client's multiprocess mode)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(Path(tmp) / "metrics")
        Path(tmp, "metrics").mkdir()
        settings.workdir = settings.workdir or str(Path(tmp))
        os.environ[ENV] = settings.to_json()
        config = uvicorn.Config("depthforge.serve.app:app_from_env", factory=True, host=host, port=port,
                                workers=workers, log_level=log_level,
                                # in-flight requests may take the request timeout to finish on SIGTERM
                                timeout_graceful_shutdown=int(settings.timeout) + 1,
                                # the supervisor pings each worker in turn and waits this long for the answer: a
                                # worker killed during a ping is noticed only then (30 s here made a killed worker
                                # 33 s to replace under load); a busy worker still answers within milliseconds
                                timeout_worker_healthcheck=5)
        # workers=1 runs under the supervisor too: the one worker also comes back when it is killed
        Multiprocess(config, sockets=[config.bind_socket()]).run()
