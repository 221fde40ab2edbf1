"""Prediction beyond one process: torchrun shares the inputs by whole batches, the shares together are one
process's files byte for byte, and --skip-existing resumes an interrupted run without redoing finished files."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from depthforge.cli import main
from tests.conftest import train_tiny


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("shard") / "run", steps=4)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(7):  # two sizes, batches of 2: batches of 2, 2, 1 (size change), 2
        size = (40, 56) if i != 4 else (48, 64)
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    (folder / "notes.jpg").write_text("not an image")  # reported once, by the rank that owns it
    return folder


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


FLAGS = ["--batch-size", "2", "--format", "npy", "png16"]


def test_torchrun_shares_write_exactly_the_one_process_files(checkpoint, photos, tmp_path):
    single = tmp_path / "single"
    assert main(["predict", "--checkpoint", str(checkpoint), str(photos), "--out", str(single), *FLAGS]) == 1
    sharded = tmp_path / "sharded"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--standalone", "-m", "depthforge.cli", "predict", "--checkpoint", str(checkpoint),
                           str(photos), "--out", str(sharded), *FLAGS], capture_output=True, text=True, timeout=300,
                          # torchrun would set 1 thread a process; the CPU kernels' sums follow the thread count
                          env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())})
    assert proc.returncode == 1, proc.stderr[-3000:]  # every rank finished; the unreadable file is reported
    one, two = _files(single), _files(sharded)
    assert len(one) == 7 * 5  # npy, png and their sidecars, and the preview, for each readable photo
    assert one.keys() == two.keys() and all(one[k] == two[k] for k in one)  # same bytes, none missing
    assert proc.stderr.count("notes.jpg (not an image") == 1  # one rank reports it
    written = [line for line in proc.stdout.splitlines() if line.startswith(str(photos))]
    assert len(written) == 7 and len({line.split(" -> ")[0] for line in written}) == 7  # each image once


class _Writes(io.StringIO):
    """A stdout that records each write and each flush (None)."""

    def __init__(self):
        super().__init__()
        self.events = []

    def write(self, s):
        self.events.append(s)
        return super().write(s)

    def flush(self):
        self.events.append(None)
        super().flush()


def test_each_result_line_is_one_write_then_a_flush(checkpoint, photos, tmp_path, monkeypatch):
    # torchrun's ranks share one unbuffered stdout: a line written in two parts (tqdm.write: the text, then its
    # newline) lets another rank's line in between, and a pipe holds unflushed lines until 8 KB or the exit
    out = _Writes()
    monkeypatch.setattr(sys, "stdout", out)
    assert main(["predict", "--checkpoint", str(checkpoint), str(photos), "--out", str(tmp_path), *FLAGS]) == 1
    events = [e for e in out.events if e != ""]
    lines = events[::2]
    assert len(lines) == 7 and all(line.startswith(str(photos)) and line.count("\n") == 1 and line.endswith("\n")
                                   for line in lines)
    assert events[1::2] == [None] * 7


def test_a_share_of_the_work_is_every_other_batch(checkpoint, photos):
    import depthforge

    m = depthforge.load(checkpoint)
    names = [[r.name for r in m.predict(str(photos), batch_size=2, shard=(rank, 2), errors="skip")
              if hasattr(r, "name")] for rank in (0, 1)]
    # units in input order: batches (0 1), (2 3), (4), then notes.jpg (read before the last batch closes), (5 6)
    assert names == [["0", "1", "4", "5", "6"], ["2", "3"]]


def test_skip_existing_completes_an_interrupted_run_without_redoing_finished_files(checkpoint, photos, tmp_path):
    import os

    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(checkpoint), str(photos), "--out", str(out), *FLAGS]) == 1
    whole = _files(out)
    # A run killed midway: 5 and 6 never written, 3's sidecar cut short, 1's preview missing (its batch with 0
    # runs again, but 0's finished files are not rewritten).
    for name in ("5.npy", "5.npy.json", "5.png", "5.png.json", "5_color.png", "6.npy", "6.npy.json", "6.png",
                 "6.png.json", "6_color.png", "1_color.png"):
        (out / name).unlink()
    (out / "3.npy.json").write_text('{"units": "met')
    for p in out.iterdir():
        os.utime(p, (1_000_000, 1_000_000))
    assert main(["predict", "--checkpoint", str(checkpoint), str(photos), "--out", str(out), *FLAGS,
                 "--skip-existing"]) == 1
    assert _files(out) == whole  # complete again, the same bytes
    redone = {p.name.split(".")[0].split("_")[0] for p in out.iterdir() if p.stat().st_mtime != 1_000_000}
    assert redone == {"1", "3", "5", "6"}  # 0, 2 and 4 were finished and left alone


def test_mlflow_tracks_the_metrics_the_config_and_a_later_eval_card(tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    run = tmp_path / "run"
    ckpt = train_tiny(run, extra=["train.loggers=[csv, mlflow]", "train.log_every=1"])
    uri, run_id = (run / "mlflow-run.txt").read_text().split()
    assert uri == f"sqlite:///{(run / 'mlflow.db').resolve()}"  # a local store in the run folder, no server
    client = MlflowClient(uri)
    logged = client.get_run(run_id)
    csv_header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"val/rmse", "train/loss", "train/loss_ssim"} <= set(logged.data.metrics) <= set(csv_header) | {"epoch"}
    last_val = [line for line in (run / "metrics.csv").read_text().splitlines()[1:] if line.split(",")[
        csv_header.index("val/rmse")]][-1].split(",")
    assert logged.data.metrics["val/rmse"] == pytest.approx(float(last_val[csv_header.index("val/rmse")]), rel=1e-6)
    assert [a.path for a in client.list_artifacts(run_id)] == ["config.yaml"]
    card = tmp_path / "card.json"
    assert main(["evaluate", "--checkpoint", str(ckpt), "--protocol", "standard", "--json", str(card)]) == 0
    assert f"logged to the MLflow run {run_id}" in capsys.readouterr().out
    import json

    recorded = json.loads(card.read_text())["metrics"]
    metrics = client.get_run(run_id).data.metrics
    assert metrics["eval/standard/rmse"] == pytest.approx(recorded["rmse"], rel=1e-9)
    assert sorted(a.path for a in client.list_artifacts(run_id)) == ["card.json", "config.yaml"]
    assert main(["train", "--out", str(tmp_path / "bad"), "--max-steps", "1", "train.loggers=[csv, neptune]"]) == 2
    assert "train.loggers: unknown ['neptune']; choose from ['csv', 'tensorboard', 'mlflow', 'wandb']" in \
        capsys.readouterr().err


def test_torchrun_evaluate_gives_the_one_process_cards(checkpoint, tmp_path, monkeypatch):
    import json

    from tests.conftest import write_pair

    root = tmp_path / "data"
    rng = np.random.default_rng(3)
    # 5 batches of 2 under --protocol-batch 2 (the course's per-batch mean needs them): more batches than twice the
    # ranks, so dealing them by index // world instead of index % world would leave batches unscored
    for i in range(10):
        write_pair(root, "val", str(i), depth=(2 + 10 * rng.random((32, 48))).astype(np.float32), seed=i)
    args = ["evaluate", "--checkpoint", str(checkpoint), "--data", str(root), "--split", "val", "--protocol",
            "challenge,standard", "--protocol-batch", "2"]
    single = tmp_path / "single.json"
    assert main([*args, "--json", str(single), "--report", str(tmp_path / "report-single")]) == 0
    # --devices 2: this command again under `python -m torch.distributed.run --standalone --nproc_per_node 2` (what
    # a user would type; test_relaunch_runs_the_command_under_torchrun checks the command), two ranks over gloo
    sharded = tmp_path / "sharded.json"
    monkeypatch.setenv("OMP_NUM_THREADS", str(torch.get_num_threads()))  # torchrun would set 1; sums follow threads
    assert main([*args, "--json", str(sharded), "--report", str(tmp_path / "report-sharded"), "--devices", "2"]) == 0
    one, two = json.loads(single.read_text()), json.loads(sharded.read_text())
    assert "processes" not in one[0]
    assert [c["protocol"]["name"] for c in two] == ["challenge", "standard"] and [c["n"] for c in two] == [10, 10]
    assert [c["processes"] for c in two] == [2, 2]
    for a, b in zip(one, two):
        assert a["metrics"] == b["metrics"]  # exactly: the same batches, merged in the one-process order
    assert one[0]["metrics"]["rmse"] != one[0]["metrics"]["rmse_pooled"]  # the batch means are really per batch
    for protocol in ("challenge", "standard"):  # the per-image rows, in the one-process order
        rows = [(tmp_path / f"report-{how}").glob(f"*/{protocol}/per_image.csv") for how in ("single", "sharded")]
        single_csv, sharded_csv = (next(found).read_text() for found in rows)
        assert sharded_csv == single_csv and single_csv.count("\n") == 11


@pytest.mark.parametrize("devices", [["--devices", "3"], ["--devices=3"]])
def test_relaunch_runs_the_command_under_torchrun(checkpoint, monkeypatch, devices):
    import argparse

    from depthforge.cli.common import relaunch

    launched = []
    monkeypatch.setattr(subprocess, "call", lambda argv: launched.append(argv) or 7)
    args = ["evaluate", "--checkpoint", str(checkpoint), "--protocol", "standard"]
    assert main([*args[:3], *devices, *args[3:]]) == 7  # torchrun's exit code is the command's
    assert launched == [[sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "3",
                         "-m", "depthforge.cli", *args]]
    monkeypatch.setenv("WORLD_SIZE", "3")  # already a rank of that run: no second launch
    assert relaunch(argparse.Namespace(devices=3, argv=args)) is None


def test_wandb_offline_keeps_the_metrics_and_the_config_in_the_run_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tmp_path / "run"
    train_tiny(run, extra=["train.loggers=[csv, wandb]", "train.log_every=1"])
    offline = list((run / "wandb").glob("offline-run-*"))
    assert len(offline) == 1
    assert (offline[0] / "files" / "config.yaml").read_text() == (run / "config.yaml").read_text()
    # wandb's own service process writes the records file; on a busy machine it can still be writing after
    # finish() returned: wait for it (a minute at most) rather than read it half-written
    deadline = time.time() + 60
    while True:
        records = next(offline[0].glob("run-*.wandb")).read_bytes()
        if (b"val/rmse" in records and b"train/loss_ssim" in records) or time.time() > deadline:
            break
        time.sleep(0.5)
    assert b"val/rmse" in records and b"train/loss_ssim" in records
