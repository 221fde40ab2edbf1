import os

import pytest
import numpy as np
import torch

from depthforge.config import load_config
from depthforge.engine.callbacks import atomic_torch_save
from depthforge.engine.module import DepthModule


def test_loss_falls_over_a_few_steps_on_synthetic_data():
    torch.manual_seed(0)
    cfg = load_config(overrides=["data.synthetic.num_train=4", "optim.scheduler=none", "optim.lr=1e-3"])
    module = DepthModule(cfg.to_dict())
    from depthforge.data import build_dataset
    ds = build_dataset(cfg.data, "train", train=True)
    batch = {k: torch.stack([ds[i][k] for i in range(4)]) for k in ("image", "depth", "mask")}
    batch = {k: torch.nn.functional.interpolate(v.float(), size=(64, 96)) for k, v in batch.items()}
    batch["mask"] = batch["mask"].bool()
    opt = module.configure_optimizers()
    module.train()
    losses = []
    for _ in range(8):
        opt.zero_grad()
        loss, _ = module.criterion(module(batch["image"]), batch["depth"], batch["mask"])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.9 * losses[0], losses


def test_atomic_save_never_leaves_partial_file(tmp_path):
    path = tmp_path / "ck.ckpt"
    atomic_torch_save({"a": torch.ones(3)}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom mid-write")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_torch_save({"a": torch.zeros(3), "b": Unpicklable()}, path)
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(3))  # old file intact
    assert os.listdir(tmp_path) == ["ck.ckpt"]  # no temp file left behind


def test_encoder_unfreezes_at_the_configured_epoch(tmp_path):
    import timm

    from depthforge.engine import train
    from depthforge.sources import load_checkpoint

    weights = tmp_path / "r18.pth"
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), weights)
    key = "layer1.0.conv1.weight"
    start = torch.load(weights, weights_only=True)[key]

    def run(epochs: int):
        cfg = load_config(overrides=[
            f"out={tmp_path / str(epochs)}", "model.name=unet_resnet18", f"model.pretrained={weights}",
            "model.kwargs={frozen_stages: -1}", "train.unfreeze_epoch=1", f"train.epochs={epochs}",
            "data.synthetic.num_train=4", "data.synthetic.num_val=2", "data.synthetic.height=32",
            "data.synthetic.width=64", "data.batch_size=2", "train.progress_bar=false", "optim.scheduler=none",
            "train.num_previews=0"])
        model, _ = load_checkpoint(train(cfg) / "checkpoints" / "last.ckpt")
        return model.encoder.model.state_dict()[key]

    assert torch.equal(run(1), start)  # epoch 0: the encoder is frozen
    assert not torch.equal(run(2), start)  # epoch 1: unfrozen, it trains


def _grad_norm(module: torch.nn.Module) -> float:
    grads = [p.grad.detach().flatten() for p in module.parameters() if p.grad is not None]
    return float(torch.cat(grads).norm())


def test_accumulation_ema_clipping_and_deterministic_mode(tmp_path):
    import lightning as L

    from depthforge.engine import train

    class Probe(L.Callback):
        """Gradient norms before clipping (Lightning calls this hook before it clips) and after the step (the
        clipped gradients are still in .grad then: they are zeroed at the start of the next window)."""

        def __init__(self):
            self.before, self.after, self.deterministic = [], [], []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.deterministic.append(torch.are_deterministic_algorithms_enabled())

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            self.before.append(_grad_norm(pl_module))

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if (batch_idx + 1) % 2 == 0:  # an optimiser step just happened
                self.after.append(_grad_norm(pl_module))

    tiny = ["model.name=unet_resnet18", "data.synthetic.num_train=8", "data.synthetic.num_val=2",
            "data.synthetic.height=32", "data.synthetic.width=48", "data.batch_size=2", "train.progress_bar=false",
            "train.num_previews=0", "optim.scheduler=none"]
    probe = Probe()
    limit = 0.05
    out = train(load_config(overrides=tiny + [f"out={tmp_path / 'a'}", "train.epochs=2",
                                              "train.accumulate_grad_batches=2", "train.ema_decay=0.5",
                                              f"train.grad_clip={limit}", "train.deterministic=true"]),
                callbacks=[probe])
    # 4 batches an epoch, 2 per optimiser step -> 2 steps an epoch, 4 in all
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4
    assert len(probe.before) == len(probe.after) == 4
    assert max(probe.before) > limit  # clipping had something to do ...
    assert max(probe.after) <= limit * (1 + 1e-4)  # ... and did it
    assert probe.deterministic and all(probe.deterministic)
    ckpt = torch.load(out / "checkpoints" / "best.ckpt", weights_only=True)
    # EMA: checkpoints hold the averaged weights, the raw ones are kept beside them, and they differ.
    assert "current_model_state" in ckpt
    key = "model.decoder.blocks.0.0.0.weight"
    assert not torch.equal(ckpt["state_dict"][key], ckpt["current_model_state"][key])


def test_channels_last_gives_the_same_outputs():
    torch.manual_seed(0)
    a = DepthModule(load_config(overrides=["model.name=unet_resnet18"]).to_dict()).eval()
    b = DepthModule(load_config(overrides=["model.name=unet_resnet18", "train.channels_last=true"]).to_dict()).eval()
    b.model.load_state_dict(a.model.state_dict())
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        assert torch.allclose(a(x), b(x), atol=1e-5)
    assert b.model.encoder.model.conv1.weight.is_contiguous(memory_format=torch.channels_last)


def test_budget_schedule_fits_the_decay_to_the_time_left():
    from types import SimpleNamespace

    from depthforge.config import load_config
    from depthforge.engine.callbacks import BudgetSchedule
    from depthforge.engine.optim import ScheduleLength

    now = [0.0]
    cb = BudgetSchedule(max_minutes=10, every=50, clock=lambda: now[0])
    module = SimpleNamespace(schedule_length=ScheduleLength(100_000), cfg=load_config(None))
    trainer = SimpleNamespace(global_step=0, sanity_checking=False, num_training_batches=400,
                              accumulate_grad_batches=1, check_val_every_n_epoch=1)
    cb.on_train_start(trainer, module)
    cb.on_train_epoch_start(trainer, module)
    # A slow start (1 s/step for 50 steps): 550 s left -> 550 more steps, far below the nominal 100k.
    now[0], trainer.global_step = 50.0, 50
    cb.on_train_batch_end(trainer, module, None, None, 49)
    assert module.schedule_length.steps == 50 + 550
    # Faster afterwards (0.5 s/step on average over the epoch): the schedule grows again.
    now[0], trainer.global_step = 100.0, 200
    cb.on_train_batch_end(trainer, module, None, None, 199)
    assert module.schedule_length.steps == 200 + 1000
    # Validation took 40 s: the epoch's pace now includes it (140 s / 200 steps).
    cb.on_validation_start(trainer, module)
    now[0] = 140.0
    cb.on_validation_end(trainer, module)
    assert module.schedule_length.steps == 200 + int(460 / 0.7)
    # Next epoch: training pace 0.25 s/step plus 40 s of validation per 400 steps = 0.35 s/step.
    cb.on_train_epoch_start(trainer, module)
    now[0], trainer.global_step = 165.0, 300
    cb.on_train_batch_end(trainer, module, None, None, 99)
    assert module.schedule_length.steps == 300 + int(435 / 0.35)
    # Never beyond the nominal length, never before the current step.
    cb.nominal = 500
    cb.on_train_batch_end(trainer, module, None, None, 99)
    assert module.schedule_length.steps == 500
    now[0] = 10_000.0
    cb.on_train_batch_end(trainer, module, None, None, 99)
    assert module.schedule_length.steps == 301


def test_a_budget_of_about_100_steps_warms_up_to_the_peak_and_decays_by_its_end(caplog):
    """The measured case (#38): a budget that affords ~100 of 4160 nominal steps. The warm-up and the decay are
    shares of what the budget affords, planned from the pace after a short timed start (a fake clock here)."""
    import logging
    from types import SimpleNamespace

    from depthforge.config import load_config
    from depthforge.engine.callbacks import BudgetSchedule
    from depthforge.engine.optim import ScheduleLength, build_scheduler

    cfg = load_config("small-real")  # cosine, warm-up 6 % capped at 300 steps, EMA horizon 10 %
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=cfg.optim.lr)
    length = ScheduleLength(4160)
    scheduler = build_scheduler(cfg.optim, optimizer, length)
    now = [0.0]
    cb = BudgetSchedule(max_minutes=100 / 60, clock=lambda: now[0])
    module = SimpleNamespace(schedule_length=length, cfg=cfg)
    trainer = SimpleNamespace(global_step=0, sanity_checking=False, num_training_batches=520,
                              accumulate_grad_batches=1, check_val_every_n_epoch=1)
    lrs = []
    with caplog.at_level(logging.INFO):
        cb.on_train_start(trainer, module)
        cb.on_train_epoch_start(trainer, module)
        while now[0] < 100.0:
            lrs.append(optimizer.param_groups[0]["lr"] / cfg.optim.lr)
            now[0] += 10.0 if trainer.global_step == 0 else 1.0  # a slow first step, then 1 s/step
            optimizer.step()
            scheduler.step()
            trainer.global_step += 1
            cb.on_train_batch_end(trainer, module, None, None, trainer.global_step - 1)
        cb.on_train_end(trainer, module)
    assert len(lrs) == 91 and length.steps == 91
    peak = int(np.argmax(lrs))
    assert lrs[peak] > 0.99 and peak <= 10  # the full learning rate, reached early
    assert lrs[-1] < 0.01  # decayed by the end of the budget, not by the nominal epochs
    said = caplog.text
    assert "affords about 91 steps (4160 planned for the nominal epochs); schedule 91 steps, warm-up 5" in said
    assert "less than one epoch (520 steps)" in said and "91 steps done" in said


def test_ema_with_warmup_follows_the_model_early_then_decays_slowly():
    from torch.optim.swa_utils import AveragedModel

    from depthforge.engine.callbacks import ema_with_warmup

    model = torch.nn.BatchNorm1d(1)
    ema = AveragedModel(model, multi_avg_fn=ema_with_warmup(0.99), use_buffers=True)
    ema.update_parameters(model)  # first update copies
    for n, value in enumerate([1.0, 2.0], start=1):
        with torch.no_grad():
            model.weight.fill_(value)
        model.num_batches_tracked += 1
        before = ema.module.weight.item()
        ema.update_parameters(model)
        d = min(0.99, (1 + n) / (10 + n))  # 2/11, then 3/12: mostly the new value
        assert ema.module.weight.item() == pytest.approx(d * before + (1 - d) * value)
    assert ema.module.num_batches_tracked.item() == 2
    ema.n_averaged.fill_(10_000)  # late: the plain decay
    before = ema.module.weight.item()
    with torch.no_grad():
        model.weight.fill_(5.0)
    ema.update_parameters(model)
    assert ema.module.weight.item() == pytest.approx(0.99 * before + 0.01 * 5.0)


def test_init_from_starts_a_run_from_a_checkpoint_and_refuses_another_model(tmp_path):
    from depthforge.engine import train
    from depthforge.sources.checkpoint import CheckpointError, init_weights_from
    from depthforge.models import create_model

    tiny = ["model.name=unet_resnet18", "data.synthetic.num_train=4", "data.synthetic.num_val=2",
            "data.synthetic.height=32", "data.synthetic.width=48", "data.batch_size=2", "train.progress_bar=false",
            "train.num_previews=0", "optim.scheduler=none", "train.epochs=1"]
    first = train(load_config(overrides=tiny + [f"out={tmp_path / 'a'}"])) / "checkpoints" / "last.ckpt"
    # lr 0: the fine-tuning run cannot move its weights, so it must end where the first run ended.
    second = train(load_config(overrides=tiny + [f"out={tmp_path / 'b'}", f"model.init_from={first}",
                                                 "optim.lr=0"])) / "checkpoints" / "last.ckpt"
    key = "model.decoder.blocks.0.0.0.weight"
    a, b = (torch.load(p, weights_only=True)["state_dict"][key] for p in (first, second))
    assert torch.equal(a, b)
    fresh = DepthModule(load_config(overrides=tiny).to_dict()).state_dict()[key]
    assert not torch.equal(fresh, a)

    with pytest.raises(CheckpointError, match=r"a[/\\]checkpoints[/\\]last\.ckpt.*unet_resnet18.*same model name"):
        init_weights_from(create_model("unet_resnet34"), first)


def test_warmup_and_ema_scale_with_the_run_length():
    from depthforge.config import load_config
    from depthforge.engine.optim import ScheduleLength, build_scheduler, ema_decay, warmup_steps

    optim = load_config("cpu").optim  # warm-up 6 % of the scheduled steps, at most 300
    assert warmup_steps(optim, 100) == 6  # a share of a short run ...
    assert warmup_steps(optim, 100_000) == 300  # ... capped for a long one
    fixed = load_config("cpu", ["optim.warmup_fraction=0"]).optim
    assert warmup_steps(fixed, 100) == 300  # the old fixed warm-up: most of a 100-step run
    train_cfg = load_config("cpu").train
    assert ema_decay(train_cfg.ema_decay, train_cfg.ema_fraction, 1000) == pytest.approx(1 - 1 / 100)
    assert ema_decay(train_cfg.ema_decay, train_cfg.ema_fraction, 1_000_000) == 0.998  # capped
    assert ema_decay(0.998, 0.0, 100) == 0.998 and ema_decay(None, 0.1, 100) is None

    # The schedule follows its length: a budget that re-fits 100,000 steps to 100 shortens the warm-up too, and a
    # warm-up that has finished stays finished when the length grows again.
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    length = ScheduleLength(100_000)
    sched = build_scheduler(optim, opt, length)
    assert opt.param_groups[0]["lr"] == pytest.approx(1 / 300)
    length.steps = 100
    lrs = []
    for _ in range(10):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[4] == pytest.approx(6 / 6) and lrs[3] == pytest.approx(5 / 6)  # steps 1..5 warm up over 6
    length.steps = 100_000
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] > 0.99  # no second warm-up
