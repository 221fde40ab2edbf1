"""Depth with uncertainty on the challenge val split (#26): regression models with TTA spread, the Laplace head's
own uncertainty, the diffusion model with 1 and N samples; accuracy, AUSE, coverage and sampling time.

    python benchmarks/uncertainty.py --data DATA/DepthEstimationUnreal \
        --regression cpu=runs/cpu/checkpoints/last.ckpt --laplace cpu+laplace=runs/cpu-laplace/checkpoints/last.ckpt \
        --diffusion diffusion=runs/diffusion/checkpoints/last.ckpt --samples 5 --steps 4

Each row is one evaluation through ``depthforge.evaluation.report.evaluate_sources`` (the code `depthforge evaluate`
runs): one prediction pass, scored under the challenge protocol and the standard one. Uncertainty kinds: ``tta`` =
the spread of flip TTA passes (two passes, so the depth is the flip-TTA depth), ``model`` = the model's own (Laplace
head; the diffusion model's sample spread). Time per image at 144x256, batch 1, as a ratio to the first regression model's plain forward
in the same run. Also draws the sparsification curves of every row with an uncertainty
(benchmarks/results/<name>_sparsification.png). Writes benchmarks/results/<name>.{json,md} (--name, default
uncertainty).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys

import torch

from _results import RESULTS, save_results  # benchmarks/_results.py (scripts run from the repository root)

from depthforge.evaluation import get_protocol
from depthforge.evaluation.report import evaluate_sources
from depthforge.export.onnx import latency_ms
from depthforge.sources import load_checkpoint
from depthforge.viz.plots import plot_sparsification

METRICS = ("rmse", "ssim", "abs_rel", "delta1", "ause_rmse", "coverage_1sigma", "coverage_2sigma",
           "uncertainty_error_corr")


def per_image_ms(model: torch.nn.Module, runs: int) -> float:
    return latency_ms(model, (144, 256), runs)


def named(text: str) -> tuple[str, str]:
    name, _, path = text.partition("=")
    return (name, path) if path else (text, text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--regression", action="append", default=[], metavar="NAME=CKPT")
    parser.add_argument("--laplace", action="append", default=[], metavar="NAME=CKPT")
    parser.add_argument("--diffusion", action="append", default=[], metavar="NAME=CKPT")
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--protocols", default="challenge,standard")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--reference", metavar="NAME=CKPT", help="a model timed only (not evaluated): the time "
                        "ratios' reference when the regression rows were scored in another run")
    parser.add_argument("--name", default="uncertainty", help="results file name under benchmarks/results")
    args = parser.parse_args()
    # (row name, source spec, uncertainty kind or None, flip TTA)
    rows = []
    for name, path in map(named, args.regression + args.laplace):
        rows.append((name, {"checkpoint": path}, None, False))
        rows.append((f"{name}, flip-TTA spread", {"checkpoint": path}, "tta", True))
    for name, path in map(named, args.laplace):
        rows.append((f"{name}, own", {"checkpoint": path}, "model", False))
    for name, path in map(named, args.diffusion):
        rows.append((f"{name}, 1 sample", {"checkpoint": path, "samples": 1, "steps": args.steps, "seed": 0}, None,
                     False))
        rows.append((f"{name}, {args.samples} samples", {"checkpoint": path, "samples": args.samples,
                                                          "steps": args.steps, "seed": 0}, "model", False))
    command = "python " + " ".join(sys.argv)
    results, curves = {}, {}
    names = args.protocols.split(",")
    for name, spec, uncertainty, flip in rows:  # each row predicted once, scored under every protocol
        protocols = [get_protocol(proto, flip_tta=True if flip else None) for proto in names]
        cards = evaluate_sources([spec], protocols, args.data, "val", command=command, uncertainty=uncertainty)
        for proto, card in zip(names, cards):
            results.setdefault(name, {})[proto] = {k: card["metrics"].get(k, float("nan")) for k in METRICS}
            if uncertainty and proto == "challenge":
                curves[name] = card["sparsification"]
            print(name, proto, results[name][proto], flush=True)
    # Time per image: every distinct (checkpoint, sampling) once, relative to the first plain regression model.
    timing, seen = {}, {}
    timed = [(n, {"checkpoint": p}, None, False) for n, p in map(named, [args.reference] if args.reference else [])]
    for name, spec, uncertainty, flip in timed + rows:
        if flip or uncertainty == "tta":
            continue
        key = json.dumps(spec, sort_keys=True)  # a Laplace model's own uncertainty costs nothing extra: timed once
        if key not in seen:
            model, _ = load_checkpoint(spec["checkpoint"])
            if "samples" in spec:
                model.set_sampling(samples=spec["samples"], steps=spec["steps"], seed=0)
            seen[key] = per_image_ms(model.eval(), args.runs)
        timing[name] = seen[key]
    ref = next(iter(timing.values()))
    head = ("| model, uncertainty | time (x first) | challenge RMSE | SSIM | standard RMSE | AbsRel | delta1 | "
            "AUSE-RMSE | 1-sigma cover | 2-sigma cover | corr |\n|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [head] + ([f"| {n} (reference, timed only) | 1.00 |" + " |" * 9 for n, *_ in timed])
    for name, _, _, _ in rows:
        c, s = results[name]["challenge"], results[name].get("standard", results[name]["challenge"])
        t = f"{timing[name] / ref:.2f}" if name in timing else "2 passes"
        lines.append(f"| {name} | {t} | {c['rmse']:.3f} | {c['ssim']:.3f} | {s['rmse']:.3f} | {s['abs_rel']:.3f} | "
                     f"{s['delta1']:.3f} | {c['ause_rmse']:.3f} | {c['coverage_1sigma']:.3f} | "
                     f"{c['coverage_2sigma']:.3f} | {c['uncertainty_error_corr']:.2f} |")
    table = "\n".join(lines).replace("| nan ", "| - ")
    print(table)
    if curves:
        plot_sparsification(curves, RESULTS / f"{args.name}_sparsification.png")
    meta = {"command": command, "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, "
            f"torch {torch.__version__}", "split": "val", "size": "144x256",
            "timing": "median per-image ms at batch 1, ratio to the first row's model"}
    save_results(args.name, table, meta, {"results": results, "timing_ms": timing, "curves": curves})


if __name__ == "__main__":
    main()
