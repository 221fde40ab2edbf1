"""What every command shares: multi-value options, usage errors, the option groups several commands take."""

from __future__ import annotations

import argparse
import re

DEPTH_FORMATS = ["npy", "png16", "pfm", "exr"]  # depthforge.io.FORMATS, without importing the package at start-up
OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")
# Options taking several values, per command, and what a value of each looks like. The first token that does not
# look like one ends the list, so "--split train val data.depth_scale=1000" keeps the override an override and
# "--format npy png16 photo.jpg" keeps the photo an input.
MULTI_VALUE = {
    "data": {"--split": lambda v: not OVERRIDE.match(v)},
    "predict": {"--format": lambda v: v in DEPTH_FORMATS},
    "evaluate": {"--checkpoint": lambda v: not OVERRIDE.match(v), "--predictions": lambda v: not OVERRIDE.match(v)},
}
TTA_SCALES_HELP = ("multi-scale test-time augmentation: comma-separated input resize factors relative to the "
                   "training geometry whose predictions are averaged, e.g. 0.83,1,1.17")
MODEL_PREFIXES = ("hf:", "marigold:", "depthforge:")


class UsageError(Exception):
    """A command line that cannot work as given; exits 2 like argparse's own usage errors."""


def separate_values(argv: list[str]) -> list[str]:
    """``--opt a b rest`` -> ``--opt=a --opt=b rest`` for the options in `MULTI_VALUE` (declared with
    ``action="extend"``), ending each list at the first token that is not one of its values."""
    command = next((a for a in argv if not a.startswith("-")), None)
    options = MULTI_VALUE.get(command, {})
    out, i = [], 0
    while i < len(argv):
        token = argv[i]
        i += 1
        if token not in options:
            out.append(token)
            continue
        values = []
        while i < len(argv) and not argv[i].startswith("-") and options[token](argv[i]):
            values.append(argv[i])
            i += 1
        out += [f"{token}={v}" for v in values] if values else [token]
    return out


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a positive whole number (e.g. 16)")
    return value


def scales(args: argparse.Namespace) -> tuple[float, ...] | None:
    """``--tta-scales`` parsed, or a usage error saying what to give."""
    from depthforge.predict.tta import parse_scales

    try:
        return parse_scales(args.tta_scales)
    except ValueError as err:
        raise UsageError(str(err)) from None


def sampling(args: argparse.Namespace) -> dict:
    """--samples / --steps / --seed for a diffusion checkpoint (the source spec, hence the eval card, records them)."""
    return {k: v for k, v in (("samples", args.ensemble_size), ("steps", args.denoise_steps), ("seed", args.seed))
            if v is not None}


def model_specs(args: argparse.Namespace) -> list[dict]:
    """``--model`` values as source specs; Marigold ones carry the ensemble options given."""
    specs = []
    for text in args.model or []:
        if not text.startswith(MODEL_PREFIXES):
            raise UsageError(f"--model {text}: give hf:<repo id or folder>, marigold:<repo id or folder> or "
                             "depthforge:<shared folder or repo id>")
        spec = {"model": text}
        if text.startswith("hf:") and args.trust_remote_code:
            spec["trust_remote_code"] = True
        if text.startswith("marigold:"):
            spec.update({k: v for k, v in (("ensemble_size", args.ensemble_size), ("steps", args.denoise_steps),
                                           ("processing_resolution", args.processing_res), ("seed", args.seed))
                         if v is not None})
        specs.append(spec)
    return specs


def shard_from_env(device: str) -> tuple[tuple[int, int] | None, str]:
    """Under torchrun (WORLD_SIZE > 1): this process's (rank, world size), and its own GPU for ``cuda``."""
    import os

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None, device
    rank = int(os.environ["RANK"])
    if device == "cuda":
        device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    return (rank, world), device


def add_devices_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--devices", type=positive_int, default=1,
                   help="processes on this machine, as torchrun --nproc_per_node N would start them (with --device "
                        "cuda, one GPU each)")


def relaunch(args: argparse.Namespace) -> int | None:
    """``--devices N`` (N > 1) outside torchrun: this command again under ``torch.distributed.run`` with N processes
    on this machine; its exit code. None: go on in this process."""
    import os
    import subprocess
    import sys

    if args.devices <= 1 or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return None
    argv, tokens = [], iter(args.argv)
    for token in tokens:  # the same command without --devices and its value
        if token == "--devices":
            next(tokens, None)
        elif not token.startswith("--devices="):
            argv.append(token)
    return subprocess.call([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                            str(args.devices), "-m", "depthforge.cli", *argv])


def detected(root: str, overrides: list[str], how: str = "data.name=<layout>") -> list[str]:
    """``["data.name=<layout found in root>"]``, printed; nothing when the overrides already name the format.
    ``how``: the way the command names a layout, for the error when none is recognised."""
    from depthforge.data.detect import detect_format

    if any(o.startswith("data.name=") for o in overrides):
        return []
    name, description = detect_format(root, how)
    print(f"{root}: detected {description} (data.name={name})")
    return [f"data.name={name}"]


def verbosity_options() -> argparse.ArgumentParser:
    """-q / -v, taken by every command."""
    common = argparse.ArgumentParser(add_help=False)
    talk = common.add_mutually_exclusive_group()
    talk.add_argument("-q", "--quiet", action="store_true", help="print warnings and errors only")
    talk.add_argument("-v", "--verbose", action="store_true", help="print debug messages too")
    return common


def add_license_policy(p) -> None:
    """--license-policy, taken by every command that loads, trains from, exports or shares a model."""
    p.add_argument("--license-policy", choices=["any", "commercial"],
                   help="commercial: refuse, before anything is downloaded or computed, a model whose licence is "
                        "non-commercial, research-only or unknown (the refusal names the licence and where it was "
                        "read); default $DEPTHFORGE_LICENSE_POLICY, else any")


def policed(args: argparse.Namespace, specs: list[dict]) -> list[dict]:
    """The specs, each checked against --license-policy before the first is loaded (`check_specs`)."""
    from depthforge.sources.license_sources import check_specs

    return check_specs(specs, args.license_policy)


def model_options() -> argparse.ArgumentParser:
    """--model and the sampling options of diffusion checkpoints and Marigold (evaluate and predict)."""
    models = argparse.ArgumentParser(add_help=False)
    group = models.add_argument_group("foundation models (extras hf / marigold)")
    group.add_argument("--model", action="append", metavar="SPEC",
                       help="hf:<repo id or folder> (transformers: Depth Anything, DPT, ZoeDepth, GLPN, Depth Pro), "
                            "marigold:<repo id or folder> (diffusers) or depthforge:<shared folder or repo id>")
    group.add_argument("--samples", "--ensemble-size", dest="ensemble_size", type=positive_int,
                       help="diffusion checkpoints and Marigold: samples per image, ensembled (median; 2+ for a "
                            "diffusion checkpoint, 3+ for Marigold: uncertainty map too; default 1)")
    group.add_argument("--steps", "--denoise-steps", dest="denoise_steps", type=positive_int,
                       help="diffusion checkpoints and Marigold: denoising steps (default: the model's)")
    group.add_argument("--processing-res", type=int, help="Marigold: processing resolution, 0 = native (default: "
                                                          "the pipeline's)")
    group.add_argument("--seed", type=int, help="diffusion checkpoints and Marigold: noise seed (default 0; same "
                                                "seed, same prediction)")
    group.add_argument("--trust-remote-code", action="store_true",
                       help="hf: models whose repo ships its own Python model class: import and run that code, with "
                            "your user's rights (read it first; off by default, and transformers then refuses them)")
    add_license_policy(group)
    return models


class HelpFormatter(argparse.HelpFormatter):
    """One true default per option: a real default is shown once, unless the help already says what the default is
    (then it is not repeated); ``None`` and flag defaults are never shown as "(default: None)" or "False"."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" in text or not action.option_strings or action.default in (None, False, argparse.SUPPRESS)
                or isinstance(action.default, list)):
            return text
        return f"{text} (default: %(default)s)"


def subparser(sub, name: str, parents: list, help: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, parents=parents, formatter_class=HelpFormatter, help=help, allow_abbrev=False)


def add_source_options(p: argparse.ArgumentParser, default: str | None = None) -> None:
    """--checkpoint / --onnx and the runtime options of an ONNX file (--model comes with `model_options`);
    ``default``: the checkpoint used when none of them is given."""
    p.add_argument("--checkpoint", action="append",
                   help="a checkpoint; repeat it (--checkpoint A --checkpoint B) for their mean prediction "
                        f"(an ensemble){f'; default {default}' if default else ''}")
    p.add_argument("--onnx", help="run an exported model instead of a checkpoint: ONNX, OpenVINO IR (.xml; fp32 or "
                                  "INT8) or LiteRT (.tflite)")
    p.add_argument("--backend", choices=["onnxruntime", "openvino", "litert"], help="--onnx: the runtime (default "
                   "onnxruntime for .onnx, openvino for .xml, litert for .tflite; openvino and litert need their "
                   "extras; benchmarks/latency.py says which is faster)")
    p.add_argument("--threads", type=positive_int, help="--onnx: CPU threads (default: one per core)")
    p.add_argument("--ort-opt-level", choices=["disable", "basic", "extended", "all"],
                   help="--onnx with onnxruntime: graph optimisation level (default all)")
    p.set_defaults(default_checkpoint=default)


def source_spec(args: argparse.Namespace) -> dict:
    """The one source ``--checkpoint`` / ``--onnx`` / ``--model`` names, as a spec for `depthforge.load`
    (the command's default checkpoint when none is given and it has one)."""
    if not (args.checkpoint or args.onnx or args.model) and args.default_checkpoint:
        from pathlib import Path

        if not Path(args.default_checkpoint).is_file():
            raise UsageError(f"no --checkpoint, --onnx or --model given, and the default {args.default_checkpoint} "
                             "is not there: train it with 'depthforge train --out runs/quickstart', or name a model")
        args.checkpoint = [args.default_checkpoint]
    if [bool(args.checkpoint), bool(args.onnx), bool(args.model)].count(True) != 1 or len(args.model or []) > 1:
        raise UsageError("give exactly one of --checkpoint CKPT (repeatable: an ensemble), --onnx MODEL.onnx or "
                         "--model hf:|marigold:|depthforge:<repo id or folder>")
    policy = {"license_policy": args.license_policy} if args.license_policy else {}
    if args.onnx:
        return {"onnx": str(args.onnx), **{k: v for k, v in (("backend", args.backend), ("threads", args.threads),
                                                              ("opt_level", args.ort_opt_level)) if v}, **policy}
    if args.checkpoint:
        return {"checkpoint": args.checkpoint[0] if len(args.checkpoint) == 1 else list(args.checkpoint),
                **sampling(args), **policy}
    return {**model_specs(args)[0], **policy}


# The extra that brings each optional module (pyproject.toml's optional-dependencies)
EXTRA_OF = {"gradio": "demo", "trimesh": "demo", "onnx": "export", "onnxruntime": "export", "openvino": "openvino",
            "nncf": "openvino", "transformers": "hf", "huggingface_hub": "hf", "diffusers": "diffusion",
            "scipy": "marigold", "av": "video", "cv2": "video", "OpenEXR": "formats", "h5py": "formats",
            "mlflow": "mlflow", "wandb": "wandb", "fastapi": "serve", "uvicorn": "serve", "multipart": "serve",
            "python_multipart": "serve",
            "prometheus_client": "serve", "httpx": "serve", "litert_torch": "litert", "ai_edge_litert": "litert",
            "ai_edge_quantizer": "litert", "coremltools": "coreml"}


def extra_message(err: ImportError) -> str | None:
    """One line naming the extra to install for a missing optional module, or None when it is not one of ours."""
    if "pip install 'depthforge[" in str(err):
        return str(err).splitlines()[0]
    top = (err.name or "").split(".")[0]
    if top in EXTRA_OF:
        extra = EXTRA_OF[top]
        return f"{top} is not installed; it comes with the '{extra}' extra: pip install 'depthforge[{extra}]'"
    return None


def require_extra(extra: str, *modules: str) -> None:
    """A usage error naming the extra to install when one of ``modules`` cannot be imported (checked before the
    command starts anything)."""
    import importlib

    missing = []
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise UsageError(f"this command needs the '{extra}' extra ({', '.join(missing)} not installed): "
                         f"pip install 'depthforge[{extra}]'")
