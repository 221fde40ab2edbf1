import subprocess
import sys

import numpy as np
import torch

from depthforge.config import DataConfig
from depthforge.data.synthetic import SyntheticScenes
from depthforge.predict.tiling import predict_tiled


class LocalDepth(torch.nn.Module):
    """A stand-in depth model with a small receptive field: output at a pixel depends on its 5x5 neighbourhood."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 1, 5, padding=2, bias=False)
        torch.nn.init.constant_(self.conv.weight, 1.0 / 75)

    def forward(self, x):
        return 2.0 + 10.0 * self.conv(x)


def test_tiled_agrees_with_untiled_away_from_seams():
    ds = SyntheticScenes(1, height=288, width=512, seed=3)
    image = ds[0]["image"]
    model = LocalDepth().eval()
    with torch.no_grad():
        full = model(image[None])[0, 0]
    inner = (slice(8, -8), slice(8, -8))  # away from the image border, where the conv's zero padding differs
    plain = predict_tiled(model, image, DataConfig(), window=(144, 256), overlap=0.25, harmonise=False)
    err = (plain - full)[inner].abs()
    assert plain.shape == full.shape
    assert err.median() < 1e-5 and err.max() < 0.5  # only pixels within 2 px of a window edge differ
    tiled = predict_tiled(model, image, DataConfig(), window=(144, 256), overlap=0.25, coarse_side=256)
    rel = ((tiled - full).abs() / full)[inner]
    assert rel.median() < 0.03  # harmonised to a 256-px coarse pass: agrees to a few percent


def test_harmonisation_fixes_a_zoom_dependent_scale():
    class ZoomBiased(LocalDepth):  # metric model fooled by zoom: smaller inputs look nearer
        def forward(self, x):
            return super().forward(x) * (x.shape[-1] / 512)

    image = SyntheticScenes(1, height=288, width=512, seed=4)[0]["image"]
    model = ZoomBiased().eval()
    with torch.no_grad():
        full = model(image[None])[0, 0]
    raw = predict_tiled(model, image, DataConfig(), (144, 256), coarse_side=512, harmonise=False)
    fixed = predict_tiled(model, image, DataConfig(), (144, 256), coarse_side=512, harmonise=True)
    inner = (slice(8, -8), slice(8, -8))
    assert (fixed - full)[inner].abs().mean() < 0.2 * (raw - full)[inner].abs().mean()


PEAK_SCRIPT = """
import torch
from depthforge.config import DataConfig
from depthforge.predict.tiling import predict_tiled
class Wide(torch.nn.Module):  # 64 channels at full resolution: untiled, a 4000x3000 image would need > 3 GB
    def __init__(self):  # (1x1 convolutions: the memory of 3x3 ones at a tenth of the arithmetic)
        super().__init__()
        self.a = torch.nn.Conv2d(3, 64, 1); self.b = torch.nn.Conv2d(64, 1, 1)
    def forward(self, x):
        return torch.nn.functional.softplus(self.b(torch.relu_(self.a(x))))
image = torch.rand(3, 3000, 4000)
depth = predict_tiled(Wide().eval(), image, DataConfig(), window=(480, 640))
assert depth.shape == (3000, 4000) and torch.isfinite(depth).all()
# VmHWM is this address space's peak; ru_maxrss would include the parent's peak carried over at fork + exec.
print(next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")) // 1024)
"""
PEAK_BOUND_MB = 1500  # stated bound: the image (144 MB), a few full-size float maps and one window's activations


def test_4000x3000_runs_with_bounded_peak_memory():
    out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT], capture_output=True, text=True, timeout=300,
                         env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    peak_mb = int(out.stdout.strip().splitlines()[-1])
    assert peak_mb < PEAK_BOUND_MB, peak_mb
