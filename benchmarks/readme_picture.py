"""The README's picture: challenge val images, input | ground truth | the model's depth | |error|, colour bars in
metres.

Usage:
    python benchmarks/readme_picture.py --checkpoint runs/bench/cpu-80min-docs/checkpoints/last.ckpt \
        --data DATA/DepthEstimationUnreal --out docs/readme-prediction.png

The rows are not picked by eye: every val image is predicted, and the rows are the images whose RMSE (depth
clipped to 20 m, as the challenge scores) lies at the 10th, 30th and 50th percentile of the split's: a good
prediction, a better-than-typical one and the median one, with their errors. The stems and their RMSE are
printed and written beside the PNG.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

import depthforge
from depthforge.viz.plots import save_grid

MAX_DEPTH = 20.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True, help="unpacked DepthEstimationUnreal folder")
    parser.add_argument("--out", default="docs/readme-prediction.png")
    parser.add_argument("--percentiles", default="10,30,50")
    args = parser.parse_args()
    rgb = Path(args.data) / "rgb" / "val"
    stems = sorted((p.stem for p in rgb.glob("*.jpeg")), key=int)
    model = depthforge.load(args.checkpoint)

    def row(stem: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        image = np.asarray(Image.open(rgb / f"{stem}.jpeg").convert("RGB"))
        gt = np.clip(np.load(Path(args.data) / "depth" / "val" / f"{stem}.npy"), 0, MAX_DEPTH)
        return image, gt, model.predict(image).depth

    rmse = {}
    for stem in stems:  # only the score is kept; the chosen rows are predicted again for the picture
        _, gt, pred = row(stem)
        rmse[stem] = float(np.sqrt(np.mean((pred - gt) ** 2)))
    ranked = sorted(rmse, key=rmse.get)
    chosen = [ranked[min(len(ranked) - 1, int(round(float(q) / 100 * (len(ranked) - 1))))]
              for q in args.percentiles.split(",")]
    save_grid([row(s) for s in chosen], MAX_DEPTH, args.out)
    info = {"checkpoint": args.checkpoint, "images": len(stems), "percentiles": args.percentiles,
            "rows": [{"stem": s, "rmse": round(rmse[s], 3)} for s in chosen],
            "mean_image_rmse": round(float(np.mean(list(rmse.values()))), 3)}
    Path(args.out).with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
