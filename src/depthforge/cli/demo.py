"""``depthforge demo``: the web app on a local port."""

from __future__ import annotations

import argparse

from depthforge.cli.common import add_license_policy, positive_int, subparser


def add_parser(sub, parents: list) -> None:
    p = subparser(sub, "demo", parents, "a local web app (Gradio) to try models on photos and videos and measure "
                                        "with them")
    p.add_argument("--checkpoint", action="append", help="a checkpoint (repeat for several models to choose from; default, with no "
                                               "--model / --onnx either: runs/quickstart/checkpoints/best.ckpt)")
    p.add_argument("--model", action="append", metavar="SPEC", help="hf:... / marigold:... / depthforge:... (repeat)")
    p.add_argument("--onnx", help="an exported ONNX model")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 shares it on the network)")
    p.add_argument("--port", type=int, default=7860, help="port")
    p.add_argument("--max-side", type=positive_int, default=1600, help="larger images are downscaled to this side")
    p.add_argument("--max-frames", type=positive_int, default=60, help="video: frames processed at most")
    add_license_policy(p)
    p.set_defaults(fn=run)


def run(args: argparse.Namespace) -> int:
    from depthforge.cli.common import require_extra

    require_extra("demo", "gradio", "trimesh")
    from depthforge.demo import DemoApp, default_sources, launch

    import signal

    app = DemoApp(default_sources(args.checkpoint, args.model, args.onnx, license_policy=args.license_policy),
                  max_side=args.max_side,
                  max_frames=args.max_frames)
    shared = "" if args.host != "127.0.0.1" else "; --host 0.0.0.0 shares it on your network"
    print(f"depthforge demo: {', '.join(app.sources)} on http://{args.host}:{args.port} (files under {app.workdir}, "
          f"removed when it stops{shared})", flush=True)

    def stop(signum, frame):  # SIGTERM (kill, systemd, a container stop) ends it like Ctrl-C: the files go too
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        launch(app, args.host, args.port)
    except KeyboardInterrupt:
        pass
    finally:
        app.close()
    return 0
