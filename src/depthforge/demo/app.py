"""The demo's actions, independent of the page: predict an upload, measure, calibrate, make a depth video.

Everything shown or offered for download comes from `depthforge.predict` (the CLI's files, bit for bit).
"""

from __future__ import annotations

import dataclasses
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from depthforge.geometry.camera import DEFAULT_HFOV_DEG
from depthforge.io import DataError, read_rgb
from depthforge.predict import DepthResult, Pipeline, load, safe_stem, save_predictions

CMAPS = ("magma", "viridis", "turbo", "plasma", "inferno", "gray")
MAX_SIDE = 1600
MAX_UPLOAD_MB = 20
MAX_VIDEO_FRAMES = 60
# What the page offers for download (the CLI's files for the same photo, bit for bit).
DOWNLOADS = ("png16", "npy")


@dataclass
class Result:
    """What the page keeps between clicks: the prediction, its folder, the clicks and a note on the upload."""

    result: DepthResult
    folder: Path
    note: str = ""
    clicks: list[tuple[int, int]] = field(default_factory=list)

    @property
    def depth(self) -> np.ndarray:
        return self.result.depth

    @property
    def kind(self) -> str:
        return self.result.kind


def example_images(folder: Path, n: int = 3) -> list[str]:
    """A few example photos made by the synthetic renderer (deterministic, nothing copied from elsewhere)."""
    from depthforge.data.synthetic import SyntheticScenes

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (scene, h, w) in enumerate([("street", 288, 512), ("room", 360, 480), ("street", 360, 640)][:n]):
        path = folder / f"example_{scene}_{i}.png"
        if not path.exists():
            Image.fromarray(SyntheticScenes(1, h, w, seed=11 + i, scene=scene).get_color(0)).save(path)
        paths.append(str(path))
    return paths


def read_upload(path: str | None, max_side: int = MAX_SIDE) -> tuple[np.ndarray, str]:
    """The uploaded file as RGB uint8 and a note on what was done to it; a clear error for anything unreadable."""
    if not path:
        raise DataError("no image: upload one or pick an example")
    p = Path(path)
    if p.stat().st_size == 0:
        raise DataError(f"{p.name}: the file is empty (0 bytes); upload a JPEG or PNG photo")
    try:
        rgb = read_rgb(p)
    except (DataError, OSError, ValueError) as err:
        raise DataError(f"{p.name}: not a readable image ({err}); upload a JPEG or PNG photo") from None
    h, w = rgb.shape[:2]
    if max(h, w) > max_side:
        s = max_side / max(h, w)
        size = (max(1, round(w * s)), max(1, round(h * s)))
        rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.BICUBIC))
        return rgb, f"downscaled from {w}x{h} to {size[0]}x{size[1]} (the demo's limit is {max_side} px a side)"
    return rgb, ""


def legend(vmax: float, cmap: str, unit: str, width: int = 320) -> np.ndarray:
    """A colour bar with tick labels (matplotlib), as an RGB array."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width / 100, 0.75), dpi=100)
    norm = matplotlib.colors.Normalize(0.0, vmax)
    # depthforge's previews draw near as bright (colorize's invert): the bar runs the reversed map.
    fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=f"{cmap}_r"), cax=ax, orientation="horizontal",
                 label=unit)
    fig.subplots_adjust(left=0.05, right=0.95, top=0.95, bottom=0.55)
    fig.canvas.draw()
    out = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return out


class DemoApp:
    """The app's state and actions, independent of the page (so they are testable without a browser)."""

    def __init__(self, sources: dict[str, Pipeline], workdir: str | Path | None = None, max_side: int = MAX_SIDE,
                 max_frames: int = MAX_VIDEO_FRAMES):
        if not sources:
            raise ValueError("the demo needs at least one model")
        self.sources = sources
        self.owns_workdir = workdir is None  # a temporary folder of its own: removed by close()
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="depthforge-demo-"))
        self.max_side, self.max_frames = max_side, max_frames

    def close(self) -> None:
        """Remove the temporary folder the app made (uploads, downloads, videos); a given workdir is kept."""
        if self.owns_workdir:
            import shutil

            shutil.rmtree(self.workdir, ignore_errors=True)

    def _folder(self) -> Path:
        folder = self.workdir / uuid.uuid4().hex[:12]
        folder.mkdir(parents=True)
        return folder

    def predict(self, path: str | None, model: str, cmap: str = "magma", vmax: float | None = None,
                flip: bool = False, hfov: float = DEFAULT_HFOV_DEG) -> tuple[Result, dict]:
        """Run ``model`` on the uploaded file; write the downloads; return the result and the page's outputs."""
        rgb, note = read_upload(path, self.max_side)
        pipeline = self.sources[model]
        result = pipeline.predict(rgb, flip_tta=flip and pipeline.kind != "relative", hfov=hfov)
        # downloads named after the photo (street.jpg -> street_depth.png), not all "depth.png"
        result = dataclasses.replace(result, name=f"{safe_stem(path, 'photo')}_depth")
        state = Result(result, self._folder(), note)
        return state, self.render(state, model, cmap, vmax)

    def render(self, state: Result, model: str, cmap: str = "magma", vmax: float | None = None) -> dict:
        """Downloads, coloured depth, legend and 3D view of ``state`` (again after a calibration)."""
        result = state.result
        metres = result.kind == "metric"
        written = result.save(state.folder, DOWNLOADS if metres else ("npy",), color=False, ply=metres, glb=metres)
        sidecar = state.folder / f"{result.name}{'.png' if metres else '.npy'}.json"  # one: both hold the same
        files = [str(p) for p in written if p.suffix not in (".glb", ".json")] + [str(sidecar)]
        glb = next((str(p) for p in written if p.suffix == ".glb"), None)
        top = float(vmax) if vmax else float(np.percentile(result.depth, 98)) or 1.0
        unit = result.meta["units"]
        scale_text = ""
        if metres:
            scale = json_sidecar(state.folder / f"{result.name}.png.json")["scale"]
            scale_text = f"16-bit PNG: metres = value / {scale:g}. "
        h, w = result.depth.shape
        info = (f"**{model}** ({result.kind}), {w}x{h}, depth {result.depth.min():.3g}..{result.depth.max():.3g} "
                f"{'m' if metres else ''}. {scale_text}{state.note}")
        return {"slider": (result.image, result.colorize(cmap, top)), "legend": legend(top, cmap, unit),
                "files": files, "glb": glb, "info": info}

    def set_fov(self, state: Result, hfov: float) -> None:
        """The camera the distances and the 3D view use: a horizontal field of view in degrees."""
        state.result = state.result.with_fov(float(hfov))

    def click(self, state: Result, x: int, y: int) -> str:
        """Record a click; the depth there, and after every second click the 3D distance to the previous one."""
        h, w = state.depth.shape
        x, y = min(max(int(x), 0), w - 1), min(max(int(y), 0), h - 1)
        state.clicks = [*state.clicks[-1:], (x, y)] if len(state.clicks) < 2 else [(x, y)]
        z = float(state.depth[y, x])
        unit = "m" if state.kind == "metric" else f"({state.kind})"
        text = f"depth at ({x}, {y}): {z:.3f} {unit}"
        if len(state.clicks) == 2:
            if state.kind != "metric":
                return text + "; distance: calibrate first (the model's output is not in metres)"
            d = state.result.distance(*state.clicks)
            k = state.result.intrinsics
            text += (f"; distance ({state.clicks[0][0]}, {state.clicks[0][1]}) - ({x}, {y}): {d:.3f} m "
                     f"(fx = {k.fx:.1f} px, {k.source})")
        return text

    def calibrate(self, state: Result, known_m: float) -> None:
        """Rescale so that the depth at the last click equals ``known_m`` metres (relative models become metric)."""
        if not state.clicks:
            raise ValueError("click the point whose distance you know first")
        if not known_m or known_m <= 0:
            raise ValueError("enter the known distance in metres (> 0)")
        x, y = state.clicks[-1]
        state.result = state.result.calibrate([(x, y, float(known_m))], shift=False)

    def video(self, path: str | None, model: str, cmap: str = "magma", progress: Any = None) -> tuple[str, str]:
        """Side-by-side depth video of the first ``max_frames`` frames; returns the video path and a note."""
        if not path or Path(path).stat().st_size == 0:
            raise DataError("no video (or an empty file): upload a short .mp4 / .mov / .webm clip")
        try:
            saved = list(save_predictions(self.sources[model], [str(path)], self._folder(), formats=(), color=False,
                                          cmap=cmap, progress=progress, max_frames=self.max_frames))
        except (OSError, ValueError) as err:
            raise DataError(f"{Path(path).name}: not a readable video ({err})") from None
        if not saved:
            raise DataError(f"{Path(path).name}: no frames could be read")
        return str(saved[0].paths[0]), f"{saved[0].frames} frame(s) (the demo stops at {self.max_frames})"


def json_sidecar(path: Path) -> dict:
    import json

    return json.loads(Path(path).read_text())


def default_sources(args_checkpoint: list[str] | None, models: list[str] | None, onnx: str | None,
                    search: Path = Path("runs/quickstart/checkpoints"), license_policy: str | None = None
                    ) -> dict[str, Pipeline]:
    """The models given on the command line; without any, the quickstart run's checkpoint if there is one.
    ``license_policy``: every model is checked against it before the first is loaded."""
    specs: list[dict] = [{"checkpoint": c} for c in args_checkpoint or []] + [{"model": m} for m in models or []]
    if onnx:
        specs.append({"onnx": onnx})
    if not specs:
        for name in ("best.ckpt", "last.ckpt"):
            if (search / name).is_file():
                specs = [{"checkpoint": str(search / name)}]
                break
        else:
            raise FileNotFoundError(
                f"no model given and no quickstart run found ({search}); train one first with "
                "`depthforge train --out runs/quickstart` (about 10 minutes on a CPU), or pass --checkpoint, "
                "--model hf:... or --onnx")
    from depthforge.sources.license_sources import check_specs

    out = {}
    for spec in check_specs(specs, license_policy):
        out[str(next(iter(spec.values())))] = load(spec)
    return out
