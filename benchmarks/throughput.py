"""Training throughput and peak memory: depthforge's loop vs a plain PyTorch loop of the same model and batch.

    python benchmarks/throughput.py --data DATA/DepthEstimationUnreal [--steps 12]

The plain loop is written the way the course report's code is: a PIL + torchvision.transforms dataset, a
DataLoader, and ``zero_grad / forward / loss / backward / step / scheduler.step``. depthforge runs its own
``train()`` (Lightning, callbacks, logging, checkpointing at the end) on the same images. Each variant runs in its
own process (peak RSS is per process); the first 2 steps are warm-up and not timed. Reported as ratios
(depthforge / plain) from one run: the brief keeps absolute CPU timings out of published tables.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

WORKLOADS = {
    # name: (model, recipe, batch, train-time geometry)
    "baseline": ("baseline", "baseline", 16, "224 crop"),
    "cpu-recipe": ("unet_efficientnet_lite0", "cpu", 8, "native 144x256"),
}


def plain_loop(data: str, model_name: str, batch: int, steps: int, crop224: bool) -> float:
    import torch
    from PIL import Image
    from torchvision import transforms

    from depthforge.losses import rmse_loss, ssim_loss
    from depthforge.models import create_model

    class ReportDataset(torch.utils.data.Dataset):
        def __init__(self, root):
            self.images = sorted((Path(root) / "rgb" / "train").glob("*.jpeg"), key=lambda p: int(p.stem))
            self.root = Path(root)
            ops = [transforms.Resize(224), transforms.CenterCrop(224)] if crop224 else []
            self.tf = transforms.Compose([*ops, transforms.ToTensor()])
            self.dtf = transforms.Compose(ops)

        def __len__(self):
            return len(self.images)

        def __getitem__(self, i):
            import numpy as np
            img = self.tf(Image.open(self.images[i]).convert("RGB"))
            depth = torch.from_numpy(np.load(self.root / "depth" / "train" / f"{self.images[i].stem}.npy"))[None]
            return img, self.dtf(depth.clamp(0, 20))

    model = create_model(model_name)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    sched = torch.optim.lr_scheduler.CyclicLR(opt, 1e-3, 1e-2, 2000, mode="triangular2", cycle_momentum=False)
    loader = torch.utils.data.DataLoader(ReportDataset(data), batch_size=batch, shuffle=True)
    model.train()
    start = None
    for step, (x, y) in enumerate(loader):
        if step == 2:
            start = time.perf_counter()
        if step == steps + 2:
            break
        opt.zero_grad()
        pred = model(x)
        mask = torch.ones_like(y, dtype=torch.bool)
        loss = 0.6 * rmse_loss(pred, y, mask) + 0.4 * ssim_loss(pred, y, mask)
        loss.backward()
        opt.step()
        sched.step()
    return steps * batch / (time.perf_counter() - start)


def depthforge_loop(data: str, recipe: str, steps: int, out: str) -> float:
    import lightning as L

    from depthforge.config import load_config
    from depthforge.engine import train

    stamps: dict[str, float] = {}

    class Timer(L.Callback):
        def on_train_batch_start(self, trainer, *args):
            if trainer.global_step == 2:
                stamps["start"] = time.perf_counter()

        def on_train_batch_end(self, trainer, *args):
            stamps["end"] = time.perf_counter()

    cfg = load_config(recipe, [f"data.root={data}", "data.name=challenge", f"out={out}", f"train.max_steps={steps + 2}",
                               "train.progress_bar=false", "model.pretrained=none", "data.cache=false",
                               "train.num_previews=0"])
    train(cfg, callbacks=[Timer()])
    return steps * cfg.data.batch_size / (stamps["end"] - stamps["start"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--variant", choices=["plain", "depthforge"])
    parser.add_argument("--workload", choices=list(WORKLOADS))
    args = parser.parse_args()
    if args.variant:  # child process: one measurement, printed as JSON
        model, recipe, batch, geometry = WORKLOADS[args.workload]
        if args.variant == "plain":
            ips = plain_loop(args.data, model, batch, args.steps, geometry == "224 crop")
        else:
            ips = depthforge_loop(args.data, recipe, args.steps, f"runs/throughput-{args.workload}")
        # VmHWM: this process's own peak RSS (ru_maxrss can carry the parent's peak across fork + exec).
        peak_mb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")) / 1024
        print(json.dumps({"images_per_s": ips, "peak_rss_mb": peak_mb}))
        return
    rows = []
    for workload, (model, recipe, batch, geometry) in WORKLOADS.items():
        res = {}
        for variant in ("plain", "depthforge"):
            out = subprocess.run([sys.executable, __file__, "--data", args.data, "--steps", str(args.steps),
                                  "--variant", variant, "--workload", workload], capture_output=True, text=True)
            if out.returncode:
                raise SystemExit(out.stderr[-3000:])
            res[variant] = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append({"workload": workload, "model": model, "batch": batch, "geometry": geometry, **res,
                     "speed_ratio": res["depthforge"]["images_per_s"] / res["plain"]["images_per_s"],
                     "memory_ratio": res["depthforge"]["peak_rss_mb"] / res["plain"]["peak_rss_mb"]})
    Path("benchmarks/results").mkdir(parents=True, exist_ok=True)
    Path("benchmarks/results/throughput.json").write_text(json.dumps(rows, indent=2))
    print("| workload | model | batch | geometry | images/s depthforge / plain | peak RSS depthforge / plain |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['workload']} | {r['model']} | {r['batch']} | {r['geometry']} | {r['speed_ratio']:.2f} | "
              f"{r['memory_ratio']:.2f} |")


if __name__ == "__main__":
    main()
