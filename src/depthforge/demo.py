"""``depthforge demo``: a local web app (Gradio) to try any depth source on photos and videos, and to measure with it.

The page: upload an image (or pick a bundled example rendered by the synthetic scene generator), choose the model,
colour map, range and flip TTA; see input | depth as a before/after slider with a legend in metres; download the raw
16-bit PNG (with its scale), ``.npy``, the JSON sidecar and a coloured point cloud (PLY), and look at it in 3D (GLB).
Click two points for their 3D distance (intrinsics shown and editable); enter one known distance to rescale a
relative model. A video tab writes a side-by-side depth video of the first frames.

Limits that keep it up: uploads above ``max_upload_mb`` are refused by the server, images larger than ``max_side``
are downscaled (the page says so), one job runs at a time (a bounded queue), every file is written under one
temporary folder, and it binds to 127.0.0.1 unless told otherwise. Needs the ``demo`` extra (gradio, trimesh).
"""

# No ``from __future__ import annotations`` here: Gradio reads the event-data annotation (gr.SelectData) of the
# page's callbacks at run time, and gradio is imported inside build_ui (an optional extra).
import json
import math
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from depthforge.inference import Predictor
from depthforge.inference.pointcloud import DEFAULT_HFOV_DEG, Intrinsics, backproject, depth_to_ply
from depthforge.inference.sources import LoadedSource, load_source
from depthforge.io import DataError, read_rgb, write_depth
from depthforge.viz import colorize

CMAPS = ("magma", "viridis", "turbo", "plasma", "inferno", "gray")
MAX_SIDE = 1600
MAX_UPLOAD_MB = 20
MAX_VIDEO_FRAMES = 60
GLB_POINTS = 60_000


@dataclass
class Result:
    """One prediction as the page keeps it between clicks: metres (after any calibration), image, intrinsics."""

    rgb: np.ndarray
    depth: np.ndarray
    kind: str
    folder: Path
    note: str = ""
    hfov: float = DEFAULT_HFOV_DEG
    scale: float = 1.0
    clicks: list[tuple[int, int]] = field(default_factory=list)

    def intrinsics(self) -> Intrinsics:
        h, w = self.depth.shape
        return Intrinsics.from_fov(w, h, self.hfov)


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


def point_distance(result: Result, a: tuple[int, int], b: tuple[int, int]) -> float:
    """3D distance in metres between pixels ``a`` and ``b`` (x, y), back-projected with the page's intrinsics."""
    k = result.intrinsics()
    pts = []
    for x, y in (a, b):
        z = float(result.depth[y, x])
        pts.append(np.array([(x - k.cx) / k.fx * z, (y - k.cy) / k.fy * z, z]))
    return float(np.linalg.norm(pts[0] - pts[1]))


def write_glb(path: Path, depth: np.ndarray, rgb: np.ndarray, k: Intrinsics, max_points: int = GLB_POINTS) -> Path:
    """A coloured point cloud as GLB (trimesh), subsampled on a regular grid, for the page's 3D view."""
    import trimesh

    h, w = depth.shape
    step = max(1, math.ceil(math.sqrt(h * w / max_points)))
    pts = backproject(depth[::step, ::step], Intrinsics(k.fx / step, k.fy / step, k.cx / step, k.cy / step))
    cols = rgb[::step, ::step].reshape(-1, 3)
    keep = np.isfinite(pts).all(1) & (pts[:, 2] > 0)
    pts = pts[keep] * np.array([1.0, -1.0, -1.0])  # camera (y down, z forward) -> glTF (y up, looking down -z)
    cloud = trimesh.PointCloud(pts, colors=np.concatenate([cols[keep], np.full((keep.sum(), 1), 255)], 1))
    cloud.export(path)
    return path


class DemoApp:
    """The app's state and actions, independent of the page (so they are testable without a browser)."""

    def __init__(self, sources: dict[str, LoadedSource], workdir: str | Path | None = None, max_side: int = MAX_SIDE,
                 max_frames: int = MAX_VIDEO_FRAMES):
        if not sources:
            raise ValueError("the demo needs at least one model")
        self.sources = sources
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="depthforge-demo-"))
        self.max_side, self.max_frames = max_side, max_frames

    def _folder(self) -> Path:
        folder = self.workdir / uuid.uuid4().hex[:12]
        folder.mkdir(parents=True)
        return folder

    def predict(self, path: str | None, model: str, cmap: str = "magma", vmax: float | None = None,
                flip: bool = False, hfov: float = DEFAULT_HFOV_DEG) -> tuple[Result, dict]:
        """Run ``model`` on the uploaded file; write the downloads; return the result and the page's outputs."""
        rgb, note = read_upload(path, self.max_side)
        source = self.sources[model]
        predictor = Predictor(source.model, source.cfg.data, flip=flip and source.kind != "relative")
        depth = predictor(rgb)
        if source.kind == "metric":
            depth = np.clip(depth, 1e-3, source.cfg.data.max_depth)
        result = Result(rgb, depth.astype(np.float32), source.kind, self._folder(), note, hfov)
        return result, self.render(result, model, cmap, vmax)

    def render(self, result: Result, model: str, cmap: str = "magma", vmax: float | None = None) -> dict:
        """Downloads, coloured depth, legend and 3D view of ``result`` (again after a calibration)."""
        stem = "depth"
        depth, folder = result.depth, result.folder
        metres = result.kind == "metric"
        unit = "metres" if metres else f"{result.kind} (affine-invariant: calibrate for metres)"
        top = float(vmax) if vmax else float(np.percentile(depth, 98)) or 1.0
        meta = {"model": model, "kind": result.kind, "units": unit, "intrinsics": result.intrinsics().to_dict(),
                "calibration_scale": result.scale, "note": result.note}
        png, sidecar = write_depth(folder / stem, depth, "png16", meta=meta) if metres else (None, None)
        npy, npy_sidecar = write_depth(folder / stem, depth, "npy", meta=meta)
        files = [str(p) for p in (png, npy, sidecar or npy_sidecar) if p is not None]
        glb = None
        if metres:
            k = result.intrinsics()
            files.append(str(depth_to_ply(folder / f"{stem}.ply", depth, result.rgb, k, float(depth.max()))))
            glb = str(write_glb(folder / f"{stem}.glb", depth, result.rgb, k))
        coloured = colorize(depth, cmap=cmap, vmin=0.0, vmax=top)
        scale_text = ""
        if png is not None:
            scale_text = f"16-bit PNG: metres = value / {json.loads(Path(sidecar).read_text())['scale']:g}. "
        info = (f"**{model}** ({result.kind}), {depth.shape[1]}x{depth.shape[0]}, depth "
                f"{depth.min():.2f}..{depth.max():.2f} {'m' if metres else ''}. {scale_text}"
                f"{result.note}")
        return {"slider": (result.rgb, coloured), "legend": legend(top, cmap, unit), "files": files, "glb": glb,
                "info": info}

    def click(self, result: Result, x: int, y: int) -> str:
        """Record a click; the depth there, and after every second click the 3D distance to the previous one."""
        h, w = result.depth.shape
        x, y = min(max(int(x), 0), w - 1), min(max(int(y), 0), h - 1)
        result.clicks = [*result.clicks[-1:], (x, y)] if len(result.clicks) < 2 else [(x, y)]
        z = float(result.depth[y, x])
        unit = "m" if result.kind == "metric" else f"({result.kind})"
        text = f"depth at ({x}, {y}): {z:.3f} {unit}"
        if len(result.clicks) == 2:
            if result.kind != "metric":
                return text + "; distance: calibrate first (the model's output is not in metres)"
            d = point_distance(result, *result.clicks)
            k = result.intrinsics()
            text += (f"; distance ({result.clicks[0][0]}, {result.clicks[0][1]}) - ({x}, {y}): {d:.3f} m "
                     f"(fx = {k.fx:.1f} px from a {result.hfov:g} deg horizontal field of view)")
        return text

    def calibrate(self, result: Result, known_m: float) -> None:
        """Rescale so that the depth at the last click equals ``known_m`` metres (relative models become metric)."""
        if not result.clicks:
            raise ValueError("click the point whose distance you know first")
        if not known_m or known_m <= 0:
            raise ValueError("enter the known distance in metres (> 0)")
        x, y = result.clicks[-1]
        value = float(result.depth[y, x])
        if result.kind == "disparity":  # larger = nearer: metres ~ 1 / disparity
            result.depth = (known_m * value / np.clip(result.depth, 1e-6, None)).astype(np.float32)
        else:
            result.depth = (result.depth * (known_m / max(value, 1e-6))).astype(np.float32)
        result.scale *= known_m / max(value, 1e-6)
        result.kind = "metric"

    def video(self, path: str | None, model: str, cmap: str = "magma", progress: Any = None) -> tuple[str, str]:
        """Side-by-side depth video of the first ``max_frames`` frames; returns the video path and a note."""
        from depthforge.inference.video import predict_video

        if not path or Path(path).stat().st_size == 0:
            raise DataError("no video (or an empty file): upload a short .mp4 / .mov / .webm clip")
        source = self.sources[model]
        predictor = Predictor(source.model, source.cfg.data)
        folder = self._folder()
        try:
            n, out = predict_video(path, predictor, folder, lambda depth, stem: None, cmap=cmap,
                                   max_frames=self.max_frames, progress=progress)
        except (OSError, ValueError) as err:
            raise DataError(f"{Path(path).name}: not a readable video ({err})") from None
        return str(out), f"{n} frame(s) (the demo stops at {self.max_frames})"


def default_sources(args_checkpoint: list[str] | None, models: list[str] | None, onnx: str | None,
                    search: Path = Path("runs/quickstart/checkpoints")) -> dict[str, LoadedSource]:
    """The models given on the command line; without any, the quickstart run's checkpoint if there is one."""
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
    out = {}
    for spec in specs:
        label = str(next(iter(spec.values())))
        out[label] = load_source(spec)
    return out


def build_ui(app: DemoApp, examples: list[str] | None = None) -> Any:
    """The Gradio page around ``app``."""
    import gradio as gr

    names = list(app.sources)

    def run(path, model, cmap, auto, vmax, flip, hfov):
        try:
            result, out = app.predict(path, model, cmap, None if auto else vmax, flip, hfov)
        except DataError as err:
            raise gr.Error(str(err)) from None
        return (result, out["slider"], out["legend"], out["files"], out["glb"], out["info"],
                "click the depth image to measure")

    def on_click(result, evt: gr.SelectData):
        if result is None:
            return "predict first"
        x, y = evt.index
        return app.click(result, x, y)

    def set_fov(result, hfov):
        if result is not None:
            result.hfov = float(hfov)
        return result

    def do_calibrate(result, known, model, cmap, auto, vmax):
        if result is None:
            raise gr.Error("predict first, then click the point whose distance you know")
        try:
            app.calibrate(result, known)
        except ValueError as err:
            raise gr.Error(str(err)) from None
        out = app.render(result, model, cmap, None if auto else vmax)
        return result, out["slider"], out["legend"], out["files"], out["glb"], out["info"]

    def run_video(path, model, cmap, progress=gr.Progress()):
        try:
            return app.video(path, model, cmap, progress=lambda i, n: progress((i, n), desc="frames"))
        except DataError as err:
            raise gr.Error(str(err)) from None

    with gr.Blocks(title="depthforge demo") as page:
        gr.Markdown("# depthforge: monocular depth\nUpload a photo; click the depth image twice to measure a 3D "
                    f"distance. Images larger than {app.max_side} px a side are downscaled; uploads are limited to "
                    f"{MAX_UPLOAD_MB} MB; videos stop at {app.max_frames} frames.")
        state = gr.State()
        with gr.Tab("Image"):
            with gr.Row():
                with gr.Column():
                    upload = gr.File(label="image", file_types=["image"], type="filepath", elem_id="upload")
                    model = gr.Dropdown(names, value=names[0], label="model", visible=len(names) > 1)
                    cmap = gr.Dropdown(list(CMAPS), value="magma", label="colour map")
                    auto = gr.Checkbox(True, label="automatic range")
                    vmax = gr.Number(20.0, label="fixed range: maximum (m)")
                    flip = gr.Checkbox(False, label="flip TTA")
                    hfov = gr.Number(DEFAULT_HFOV_DEG, label="horizontal field of view (deg) for 3D and distances")
                    button = gr.Button("Predict depth", variant="primary", elem_id="predict")
                    if examples:
                        gr.Examples(examples, inputs=[upload], label="examples (synthetic scenes)")
                with gr.Column():
                    slider = gr.ImageSlider(label="input | depth", type="numpy", elem_id="slider")
                    bar = gr.Image(label="legend", type="numpy", interactive=False, height=90)
                    info = gr.Markdown(elem_id="info")
                    depth_view = gr.Image(label="depth (click twice to measure)", type="numpy", interactive=False,
                                          elem_id="depth")
                    measure = gr.Textbox(label="measurement", elem_id="measure", interactive=False)
                    with gr.Row():
                        known = gr.Number(label="known distance at the last click (m)")
                        calib = gr.Button("Calibrate")
                    files = gr.File(label="downloads", file_count="multiple", elem_id="files")
                    view3d = gr.Model3D(label="3D (point cloud)")
        with gr.Tab("Video"):
            video_in = gr.Video(label="clip", sources=["upload"])
            video_button = gr.Button("Depth video", elem_id="video-go")
            video_out = gr.Video(label="input | depth")
            video_note = gr.Markdown()

        outputs = [state, slider, bar, files, view3d, info, measure]
        button.click(run, [upload, model, cmap, auto, vmax, flip, hfov], outputs, api_name="predict").then(
            lambda s: s[1] if s is not None else None, [slider], [depth_view])
        depth_view.select(on_click, [state], [measure])
        hfov.change(set_fov, [state, hfov], [state])
        calib.click(do_calibrate, [state, known, model, cmap, auto, vmax],
                    [state, slider, bar, files, view3d, info]).then(
            lambda s: s[1] if s is not None else None, [slider], [depth_view])
        video_button.click(run_video, [video_in, model, cmap], [video_out, video_note], api_name="video")
    return page


def launch(app: DemoApp, host: str = "127.0.0.1", port: int = 7860, block: bool = True) -> Any:
    """Serve the page: one job at a time, a bounded queue, uploads capped, files only under the app's folder."""
    import os

    os.environ["GRADIO_TEMP_DIR"] = str(app.workdir / "gradio")  # uploads and served copies stay under it too
    page = build_ui(app, example_images(app.workdir / "examples"))
    page.queue(default_concurrency_limit=1, max_size=16)
    return page.launch(server_name=host, server_port=port, max_file_size=f"{MAX_UPLOAD_MB}mb",
                       allowed_paths=[str(app.workdir)], prevent_thread_lock=not block, show_error=True)
