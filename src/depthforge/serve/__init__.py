"""``depthforge serve``: the prediction pipeline over HTTP (FastAPI on uvicorn), with size-aware dynamic batching,
limits a public endpoint needs, Prometheus metrics and worker processes that come back when one dies.

Needs the ``serve`` extra; `depthforge.Client` (in `depthforge.predict.client`) talks to it.
"""

from depthforge.serve.app import Settings, app_from_env, create_app
from depthforge.serve.run import serve

__all__ = ["Settings", "app_from_env", "create_app", "serve"]
