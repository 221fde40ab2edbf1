"""Resume, signals, kill -9, NaN handling and DDP, each through real training runs on tiny synthetic data."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from depthforge.config import load_config
from depthforge.engine import train
from depthforge.engine.module import DepthModule
from depthforge.engine.train import resume_config

TINY = ["model.name=unet_resnet18", "data.synthetic.num_train=8", "data.synthetic.num_val=4",
        "data.synthetic.height=32", "data.synthetic.width=48", "data.batch_size=2", "train.progress_bar=false",
        "train.num_previews=0", "train.log_every=1", "data.hflip=true", "data.color_jitter=0.2"]


def losses(run: Path) -> dict[int, float]:
    with open(run / "metrics.csv") as f:
        return {int(r["step"]): float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")}


def test_resume_reproduces_uninterrupted_losses(tmp_path):
    full = train(load_config(overrides=TINY + [f"out={tmp_path / 'full'}", "train.epochs=3"]))
    part = train(load_config(overrides=TINY + [f"out={tmp_path / 'part'}", "train.epochs=1"]))
    resumed = train(resume_config(part, ["train.epochs=3"]), resume=True)
    a, b = losses(full), losses(resumed)
    assert len(a) == 12 and sorted(a) == sorted(b)  # 4 steps an epoch, logs appended across the resume
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=1e-4, abs=1e-5), step
    ca = torch.load(full / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    cb = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert all(torch.allclose(ca[k].float(), cb[k].float(), atol=1e-4) for k in ca)


def _cli(args, env_threads=True):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"} if env_threads else None
    return subprocess.Popen([sys.executable, "-m", "depthforge.cli", "train", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_step(ckpt: Path, step: int, proc, timeout=180):
    start = time.time()
    while time.time() - start < timeout:
        if ckpt.is_file():
            try:
                if torch.load(ckpt, weights_only=True)["global_step"] >= step:
                    return
            except Exception:  # written atomically, so this would be a real failure
                raise
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.5)
    raise TimeoutError


def test_kill9_then_resume_continues_from_last_checkpoint(tmp_path):
    run = tmp_path / "r"
    proc = _cli([f"--out={run}", *TINY, "train.epochs=100", "train.ckpt_every_steps=2", "data.synthetic.num_train=40"])
    last = run / "checkpoints" / "last.ckpt"
    _wait_for_step(last, 4, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = torch.load(last, weights_only=True)["global_step"]  # never truncated: it loads
    assert saved >= 4 and saved % 2 == 0 or saved % 20 == 0
    target = saved + 3
    (run / "checkpoints" / ".last.ckpt.killed01.tmp").write_bytes(b"half a checkpoint")  # as a kill mid-save leaves
    out = train(resume_config(run, [f"train.max_steps={target}"]), resume=True)
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == target
    assert not [p for p in (run / "checkpoints").iterdir() if p.suffix == ".tmp"]


def test_sigterm_writes_a_checkpoint_and_exits(tmp_path):
    run = tmp_path / "s"
    proc = _cli([f"--out={run}", *TINY, "train.epochs=100", "data.synthetic.num_train=40"])
    last = run / "checkpoints" / "last.ckpt"
    _wait_for_step(last, 20, proc)  # the end of the first epoch wrote last.ckpt at step 20
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "checkpoint written" in output
    assert torch.load(last, weights_only=True)["global_step"] > 20


def test_injected_nan_is_reported_with_step_and_stems():
    cfg = load_config(overrides=TINY)
    module = DepthModule(cfg.to_dict())
    batch = {"image": torch.rand(2, 3, 32, 48), "depth": torch.rand(2, 1, 32, 48) * 10,
             "mask": torch.ones(2, 1, 32, 48, dtype=torch.bool), "meta": {"stem": ["a_001", "b_002"]}}
    batch["depth"][1, 0, 3, 3] = float("nan")
    with pytest.raises(FloatingPointError, match=r"step 0 .*\['a_001', 'b_002'\].*nan_policy=skip"):
        module.training_step(batch, 0)
    skipping = DepthModule(load_config(overrides=TINY + ["train.nan_policy=skip"]).to_dict())
    assert skipping.training_step(batch, 0) is None and skipping.skipped_batches == 1


def test_ddp_two_cpu_processes_validate_like_one(tmp_path):
    from depthforge.cli import main

    run = tmp_path / "ddp"
    proc = _cli([f"--out={run}", *TINY, "train.epochs=1", "train.devices=2", "train.strategy=ddp",
                 "train.device=cpu", "data.synthetic.num_val=6"])
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output[-3000:]
    assert "Starting with 2 processes" in output and "gloo" in output
    with open(run / "metrics.csv") as f:
        val = [r for r in csv.DictReader(f) if r.get("val/rmse")][-1]
    card = tmp_path / "one.json"
    assert main(["evaluate", "--checkpoint", str(run / "checkpoints" / "last.ckpt"), "--protocol", "challenge",
                 "--json", str(card)]) == 0
    import json
    one = json.loads(card.read_text())["metrics"]
    assert float(val["val/rmse"]) == pytest.approx(one["rmse"], rel=1e-5)
    assert float(val["val/ssim"]) == pytest.approx(one["ssim"], rel=1e-4)
