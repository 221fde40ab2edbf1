"""Evaluate one or more sources (checkpoints or prediction folders) and write cards and reports."""

from __future__ import annotations

import csv
import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch

from depthforge.config import DataConfig, load_config
from depthforge.data import DepthDataset, build_dataset
from depthforge.data.detect import detect_format
from depthforge.evaluation.card import checkpoint_paths, make_card
from depthforge.evaluation.evaluator import METRICS, Evaluator
from depthforge.evaluation.protocols import Protocol
from depthforge.evaluation.runner import Predict, folder_predictor, model_predictor, run_evaluations
from depthforge.sources.loading import protocol_for
from depthforge.viz.plots import plot_density, plot_error_by_depth, plot_sparsification, save_grid

log = logging.getLogger(__name__)


def source_name(source: dict) -> str:
    if "model" in source:
        prefix, _, where = str(source["model"]).partition(":")
        return f"{prefix}-{Path(where).name or where}"
    if "onnx" in source:
        return Path(source["onnx"]).name  # m.onnx and m.tflite side by side stay apart
    if "checkpoint" not in source:
        return Path(source["predictions"]).name
    paths = [Path(p) for p in checkpoint_paths(source)]
    name = f"{paths[0].parent.parent.name}-{paths[0].stem}"
    return name if len(paths) == 1 else f"ensemble{len(paths)}-{name}"


def resolve_source(source: dict, data_root: str | None, split: str | None, protocol: Protocol, device: str,
                   data_overrides: list[str] | tuple = (), uncertainty: str | None = None
                   ) -> tuple[Predict, DepthDataset, DataConfig, str, list[dict]]:
    """The predictor, the raw (uncapped) evaluation dataset, the data config, the output kind and the licences
    (`depthforge.sources.licenses`; none for a prediction folder) of one source.

    A checkpoint's data is its own unless ``data_root`` (any layout; detected) or ``data_overrides``
    (``data.key=value``) say otherwise; ``split`` defaults to the data config's ``val_split``. Foreign models
    (``hf:``, ``marigold:``) and prediction folders need ``data_root``.
    """
    from depthforge.sources.loading import load_source

    data_cfg = DataConfig()
    predict: Predict | None = None
    kind = source.get("kind", "metric")  # a prediction folder: metres unless the source says otherwise
    licenses: list[dict] = []
    if any(k in source for k in ("checkpoint", "onnx", "model")):
        loaded = load_source({k: v for k, v in source.items() if k != "data_config"}, device)
        kind, licenses = loaded.kind, loaded.licenses
        foreign = "model" in source and not str(source["model"]).startswith("depthforge:")
        if not foreign:
            data_cfg = loaded.cfg.data
        elif not data_root and not source.get("data_config"):
            raise ValueError(f"scoring {source['model']} needs --data ROOT (it carries no data set of its own)")
        predict = model_predictor(loaded.model, data_cfg if not foreign else DataConfig(), protocol, device,
                                  uncertainty)
    elif not data_root and not source.get("data_config"):
        raise ValueError("scoring --predictions needs --data ROOT (the data set the predictions belong to)")
    elif uncertainty:
        raise ValueError("--uncertainty scores a model's uncertainty; a prediction folder has none")
    if source.get("data_config"):
        data_cfg = load_config(base={"data": source["data_config"]}).data
    if data_root:
        named = any(o.startswith("data.name=") for o in data_overrides)
        data_cfg = dataclasses.replace(data_cfg, root=str(data_root),
                                       **({} if named else {"name": detect_format(data_root)[0]}))
    if data_overrides:
        wrong = [o for o in data_overrides if not o.startswith("data.")]
        if wrong:
            raise ValueError(f"evaluate takes data overrides only (data.key=value), got {wrong}")
        data_cfg = load_config(base={"data": dataclasses.asdict(data_cfg)}, overrides=list(data_overrides)).data
    # Targets are loaded raw; the protocol alone decides clipping and masking.
    dataset = build_dataset(dataclasses.replace(data_cfg, max_depth=float("inf")), split or data_cfg.val_split,
                            train=False)
    if predict is None:
        predict = folder_predictor(source["predictions"])
    return predict, dataset, data_cfg, kind, licenses


def write_report(evaluator: Evaluator, dataset: DepthDataset, predict: Predict, out_dir: str | Path, worst: int = 8
                 ) -> list[Path]:
    """Per-image CSV, worst-N grid (by RMSE), error-by-depth-bin plot and prediction-vs-truth density plot; with
    an uncertainty, its sparsification curve against the oracle's, and the grid shows it beside the error."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "per_image.csv"]
    with open(written[0], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["stem", *METRICS])
        writer.writeheader()
        writer.writerows(evaluator.image_rows)
    cap = evaluator.protocol.max_depth
    written.append(plot_error_by_depth(evaluator.depth_bins(), out / "error_by_depth.png"))
    written.append(plot_density(evaluator.density.numpy(), cap, out / "density.png"))
    curve = evaluator.sparsification()
    if curve:
        written.append(plot_sparsification({"this source": curve}, out / "sparsification.png"))
    rows = sorted(evaluator.image_rows, key=lambda r: -r["rmse"])[:worst]
    index = {dataset.stem(i): i for i in range(len(dataset))}
    triples = []
    for row in rows:
        sample = dataset[index[row["stem"]]]
        batch = {"image": sample["image"][None], "depth": sample["depth"][None], "meta": {"stem": [row["stem"]]}}
        predicted = predict(batch)
        pred = (predicted[0] if isinstance(predicted, tuple) else predicted)[0, 0].float().numpy()
        gt = sample["depth"][0].clamp(0, cap).numpy()
        row = ((sample["image"].permute(1, 2, 0).numpy() * 255).astype(np.uint8), gt, pred)
        if isinstance(predicted, tuple):  # (depth, uncertainty): the uncertainty map goes beside the error
            row += (predicted[1][0, 0].float().numpy(),)
        triples.append(row)
    if triples:
        written.append(save_grid(triples, cap, out / f"worst_{len(triples)}.png"))
    return written


@torch.inference_mode()
def evaluate_sources(sources: list[dict], protocol: Protocol | list[Protocol], data_root: str | None = None,
                     split: str | None = None, device: str = "cpu", report_dir: str | Path | None = None,
                     worst: int = 8, command: str = "", data_overrides: list[str] | tuple = (),
                     uncertainty: str | None = None, shard: tuple[int, int] | None = None) -> list[dict]:
    """Eval cards (result + provenance) for each source, and reports under ``report_dir/<source>/``.

    ``protocol`` may be a list: each source is then predicted once and scored under every protocol (one card per
    source and protocol, in that order; reports under ``report_dir/<source>/<protocol>/``). They must predict
    alike (the same TTA). ``uncertainty`` (``model`` or ``tta``) also scores each source's uncertainty (AUSE,
    coverage, correlation). ``shard=(rank, world)``: this process predicts its share of the batches and every rank
    gets the one-process cards (`run_evaluations`).
    """
    if shard is not None and uncertainty:
        raise ValueError("--uncertainty is scored in one process (its pixel samples are not gathered yet); run "
                         "evaluate --uncertainty without torchrun")
    protocols = [protocol] if isinstance(protocol, Protocol) else list(protocol)
    tta = {(p.flip_tta, tuple(p.tta_scales)) for p in protocols}
    if len(tta) > 1:
        raise ValueError(f"protocols {[p.name for p in protocols]} ask for different test-time augmentation; "
                         "evaluate them separately")
    cards = []
    for source in sources:
        predict, dataset, data_cfg, kind, licenses = resolve_source(source, data_root, split, protocols[0], device,
                                                                    data_overrides, uncertainty)
        scored = [protocol_for(p, kind) for p in protocols]
        for why in {why for _, why in scored if why}:
            log.info("%s: %s", source_name(source), why)
        evaluators = run_evaluations(dataset, predict, [p for p, _ in scored], shard)
        data = {"name": data_cfg.name, "root": data_cfg.root, "split": split or data_cfg.val_split,
                "config": dataclasses.asdict(data_cfg)}
        # provenance (the checkpoint's hash among it) once per source, whatever the number of protocols
        provenance = make_card({}, {k: v for k, v in source.items() if k != "data_config"}, data, command)
        for (scoring, why), evaluator in zip(scored, evaluators):
            card = {**evaluator.result(), **provenance}
            card["source_kind"] = kind
            if licenses:
                card["licenses"] = licenses
            if shard is not None:
                card["processes"] = shard[1]  # provenance: scored in shares, merged to the one-process numbers
            if uncertainty:
                card["uncertainty"] = uncertainty
                card["sparsification"] = evaluator.sparsification()
            if why:
                card["alignment_note"] = why
            if report_dir and (shard is None or shard[0] == 0):  # one rank draws the report
                out = Path(report_dir) / source_name(source) / (scoring.name if len(protocols) > 1 else "")
                card["report"] = [str(p) for p in write_report(evaluator, dataset, predict, out, worst)]
            cards.append(card)
    return cards


# Why a metric can be undefined (NaN) for a whole data set, printed under the table instead of a bare "nan".
UNDEFINED_WHY = {
    "edge_precision": "is undefined: the predictions have no depth edges (no neighbours differing by the protocol's "
                      "edge_ratio)",
    "edge_recall": "is undefined: the ground truth has no depth edges (no valid neighbours differing by the "
                   "protocol's edge_ratio)",
    "edge_f1": "is undefined: it needs depth edges in both the ground truth and the prediction (neighbours "
               "differing by the protocol's edge_ratio, 1.15 by default); smooth or sparse depth has none",
}


def comparison_table(cards: list[dict], columns: tuple[str, ...] = ("rmse", "rmse_pooled", "ssim", "abs_rel",
                                                                     "delta1", "silog", "edge_f1"),
                     labels: list[str] | None = None) -> str:
    """A Markdown table: one row per source; a per-batch protocol shows its batch size (``challenge/b16``).
    Uncertainty scores get their columns when a card has them. ``labels`` name the rows where the sources alone
    would not tell them apart (a card re-run: recorded / now)."""
    extra = ("ause_rmse", "coverage_1sigma", "coverage_2sigma", "uncertainty_error_corr")
    columns = tuple(columns) + tuple(k for k in extra if any(k in c["metrics"] for c in cards) and k not in columns)
    head = "| source | protocol | n | " + " | ".join(columns) + " |"
    sep = "|---|---|---|" + "---|" * len(columns)

    def protocol(p: dict) -> str:
        return f"{p['name']}/b{p['batch_size']}" if p.get("per_batch") else p["name"]

    undefined = sorted({k for c in cards for k in columns if k in c["metrics"] and c["metrics"][k] != c["metrics"][k]})

    def value(metrics: dict, key: str) -> str:
        if key not in metrics:
            return "-"  # a card from before the metric existed
        return "n/a" if key in undefined and metrics[key] != metrics[key] else f"{metrics[key]:.4f}"

    names = [source_name(c["source"]) + (f" ({labels[i]})" if labels else "") for i, c in enumerate(cards)]
    rows = [f"| {name} | {protocol(c['protocol'])} | {c['n']} | "
            + " | ".join(value(c["metrics"], k) for k in columns) + " |" for name, c in zip(names, cards)]
    notes = [f"n/a: {k} {UNDEFINED_WHY.get(k, 'is undefined for every image')}" for k in undefined]
    return "\n".join([head, sep, *rows, *([""] + notes if notes else [])])
