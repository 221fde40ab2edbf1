"""``depthforge serve``: the prediction pipeline as an HTTP service (``depthforge.serve``, extra ``serve``)."""

from __future__ import annotations

import argparse

from depthforge.cli.common import add_source_options, policed, positive_int, source_spec, subparser


def add_parser(sub, parents: list) -> None:
    p = subparser(sub, "serve", parents, "depth over HTTP: POST /predict, GET /health, GET /metrics, /docs "
                                         "(FastAPI on uvicorn; extra serve)")
    add_source_options(p, default="runs/quickstart/checkpoints/best.ckpt")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 serves the network)")
    p.add_argument("--port", type=int, default=8000, help="port")
    p.add_argument("--workers", type=positive_int, default=1,
                   help="worker processes, each with its own model; one that dies is started again")
    p.add_argument("--max-batch-size", type=positive_int, default=8,
                   help="images of one size and options run together at most")
    p.add_argument("--batch-timeout", type=float, default=0.01,
                   help="seconds a request waits for others of its size to batch with")
    p.add_argument("--max-queue", type=positive_int, default=64,
                   help="requests waiting per worker; more are answered 503 with Retry-After")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request; 504 after")
    p.add_argument("--max-bytes", type=positive_int, default=25 * 2**20, help="largest upload in bytes; 413 above")
    p.add_argument("--max-pixels", type=positive_int, default=40_000_000,
                   help="largest image in pixels, read from its header before decoding; 413 above")
    p.add_argument("--read-timeout", type=float, default=30.0,
                   help="seconds an upload may take to arrive; 408 after (a slow client)")
    p.set_defaults(fn=run)


def run(args: argparse.Namespace) -> int:
    from depthforge.cli.common import UsageError, require_extra

    require_extra("serve", "fastapi", "uvicorn", "prometheus_client", "python_multipart")
    from depthforge.serve import Settings, serve

    for name in ("batch_timeout", "timeout", "read_timeout"):
        if not getattr(args, name) > 0:
            raise UsageError(f"--{name.replace('_', '-')} {getattr(args, name)}: give a number of seconds over 0")
    [spec] = policed(args, [source_spec(args)])  # a refused model: exit 2 here, before any worker starts
    settings = Settings(spec, args.device, args.max_batch_size, args.batch_timeout, args.max_queue,
                        args.timeout, args.max_bytes, args.max_pixels, args.read_timeout)
    print(f"depthforge serve: {settings.spec} on http://{args.host}:{args.port} ({args.workers} worker(s); "
          f"POST /predict, GET /health, /metrics, /docs)", flush=True)
    serve(settings, args.host, args.port, args.workers, "warning" if args.verbosity < 0 else "info")
    return 0
