"""Resume, signals, kill -9, NaN handling and DDP, each through real training runs on tiny synthetic data."""

import csv
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch

from depthforge.config import load_config
from depthforge.engine import train
from depthforge.engine.module import DepthModule
from depthforge.engine.train import resume_config
from tests.conftest import NARROW

TINY = ["model.name=unet_resnet18", *NARROW, "data.synthetic.num_train=8", "data.synthetic.num_val=4",
        "data.synthetic.height=32", "data.synthetic.width=48", "data.batch_size=2", "train.progress_bar=false",
        "train.num_previews=0", "train.log_every=1", "data.hflip=true", "data.color_jitter=0.2"]


def logged_losses(run: Path) -> list[tuple[int, float]]:
    """``(step, train/loss)`` rows of metrics.csv, in file order: a rerun's duplicate steps stay visible."""
    with open(run / "metrics.csv") as f:
        return [(int(r["step"]), float(r["train/loss"])) for r in csv.DictReader(f) if r.get("train/loss")]


class StepRecorder(L.Callback):
    """The global step at the start of every training batch the run executes."""

    def __init__(self):
        self.steps: list[int] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.steps.append(trainer.global_step)


def test_resume_reproduces_uninterrupted_losses(tmp_path):
    full = train(load_config(overrides=TINY + [f"out={tmp_path / 'full'}", "train.epochs=3"]))
    part = train(load_config(overrides=TINY + [f"out={tmp_path / 'part'}", "train.epochs=1"]))
    saved = torch.load(part / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert saved == 4  # 8 samples, batch 2: 4 steps an epoch
    recorder = StepRecorder()
    resumed = train(resume_config(part, ["train.epochs=3"]), resume=True, callbacks=[recorder])
    # The resumed run starts at the saved step and runs exactly the 8 remaining steps, nothing twice.
    assert recorder.steps == list(range(saved, 12))
    a, b = logged_losses(full), logged_losses(resumed)
    steps = [step for step, _ in b]
    assert len(steps) == len(set(steps)) == 12 and sorted(steps) == [step for step, _ in a]
    for (step, la), (_, lb) in zip(a, sorted(b)):
        assert lb == pytest.approx(la, rel=1e-4, abs=1e-5), step
    ca = torch.load(full / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    cb = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert all(torch.allclose(ca[k].float(), cb[k].float(), atol=1e-4) for k in ca)


def _cli(args, env_threads=True):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"} if env_threads else None
    return subprocess.Popen([sys.executable, "-m", "depthforge.cli", "train", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for(ready, proc, timeout=180):
    start = time.time()
    while time.time() - start < timeout:
        if ready():
            return
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.2)
    raise TimeoutError


def _step_in(ckpt: Path) -> int:
    return torch.load(ckpt, weights_only=True)["global_step"] if ckpt.is_file() else -1  # atomic: never partial


# The training process writes the step it has reached after every batch (temp file + rename, so never half
# written); with it the test knows how much work a kill -9 threw away.
STEP_WRITER = """
import os, sys
import lightning as L
from depthforge.config import load_config
from depthforge.engine import train

class StepFile(L.Callback):
    def on_train_batch_end(self, trainer, *args):
        tmp = sys.argv[1] + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(trainer.global_step))
        os.replace(tmp, sys.argv[1])

train(load_config(overrides=sys.argv[2:]), callbacks=[StepFile()])
"""


def test_kill9_then_resume_continues_from_last_checkpoint(tmp_path):
    run, every = tmp_path / "r", 2
    step_file = tmp_path / "reached"
    proc = subprocess.Popen([sys.executable, "-c", STEP_WRITER, str(step_file), f"out={run}", *TINY,
                             "train.epochs=100", f"train.ckpt_every_steps={every}", "data.synthetic.num_train=40"],
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    last = run / "checkpoints" / "last.ckpt"
    _wait_for(lambda: _step_in(last) >= 4 and step_file.is_file() and int(step_file.read_text()) >= 5, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    reached = int(step_file.read_text())
    saved = _step_in(last)  # never truncated: it loads
    assert saved >= 4 and (saved % every == 0 or saved % 20 == 0)
    # The work lost is at most ckpt_every_steps. The step file is written after the periodic save of the same
    # batch, so a kill between the two leaves it one step behind a checkpoint that holds that step.
    assert reached - saved <= every and saved <= reached + 1, (reached, saved)
    target = saved + 3
    (run / "checkpoints" / ".last.ckpt.killed01.tmp").write_bytes(b"half a checkpoint")  # as a kill mid-save leaves
    recorder = StepRecorder()
    out = train(resume_config(run, [f"train.max_steps={target}"]), resume=True, callbacks=[recorder])
    assert recorder.steps == [saved, saved + 1, saved + 2]  # continues from the saved step, not from 0
    assert _step_in(out / "checkpoints" / "last.ckpt") == target
    assert not [p for p in (run / "checkpoints").iterdir() if p.suffix == ".tmp"]


def test_sigterm_writes_a_checkpoint_and_exits_143(tmp_path):
    run = tmp_path / "s"
    proc = _cli([f"--out={run}", *TINY, "train.epochs=100"])
    last = run / "checkpoints" / "last.ckpt"
    _wait_for(lambda: _step_in(last) >= 4, proc)  # the end of the first epoch wrote last.ckpt at step 4
    epoch_end_save = last.stat().st_ino  # written atomically: each save is a new file
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, output[-2000:]  # 128 + SIGTERM, as the README says
    said = re.search(r"checkpoint written to (\S+) at step (\d+)", output)
    assert said, output[-2000:]
    # The message names the file and the step that is really in it, a file the signal wrote and not the epoch-end
    # save, whatever step the signal came at (the next save of its own is the second epoch's end, 4 steps later)
    assert Path(said.group(1)) == last and int(said.group(2)) == _step_in(last) >= 4
    assert last.stat().st_ino != epoch_end_save


def test_no_checkpoint_claimed_before_the_first_step(tmp_path, capsys):
    from depthforge.engine.callbacks import FaultCheckpoint

    path = tmp_path / "checkpoints" / "last.ckpt"
    trainer = SimpleNamespace(is_global_zero=True, global_step=0, save_checkpoint=lambda *a, **k: None)
    callback = FaultCheckpoint(path)
    callback.on_exception(trainer, None, KeyboardInterrupt())
    assert "no checkpoint written" in capsys.readouterr().out and not callback.saved
    trainer.global_step = 3  # a save that writes nothing (a failing disk, a broken plugin) is not claimed either
    callback.on_exception(trainer, None, KeyboardInterrupt())
    out = capsys.readouterr().out
    assert "no checkpoint written" in out and "checkpoint written to" not in out and not callback.saved
    trainer.save_checkpoint = lambda p, **k: Path(p).parent.mkdir(parents=True) or Path(p).write_bytes(b"x")
    callback.on_exception(trainer, None, KeyboardInterrupt())
    assert f"checkpoint written to {path} at step 3" in capsys.readouterr().out and callback.saved


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


def test_last_checkpoint_follows_every_epoch(tmp_path):
    """Validation (and so best.ckpt) only after epoch 3: last.ckpt must still hold each epoch's end (Lightning's
    save_last writes it only together with a best checkpoint, so a crash in epoch 3 would lose two epochs)."""

    class LastOnDisk(L.Callback):
        def __init__(self):
            self.seen = []

        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch:
                self.seen.append((trainer.global_step, _step_in(Path(trainer.default_root_dir) / "checkpoints" /
                                                                "last.ckpt")))

    probe = LastOnDisk()
    out = train(load_config(overrides=TINY + [f"out={tmp_path / 'r'}", "train.epochs=3", "train.val_every=3"]),
                callbacks=[probe])
    assert probe.seen == [(4, 4), (8, 8)]
    assert _step_in(out / "checkpoints" / "best.ckpt") == 12
