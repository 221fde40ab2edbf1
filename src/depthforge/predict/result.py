"""One prediction and everything that is made from it: metres, a preview, a point cloud, the files and their sidecar.

The CLI's files, the demo's downloads and the Python API's arrays all come from `DepthResult`, so they are the
same numbers (STYLE.md rule 11).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from depthforge.geometry.calibration import calibrate
from depthforge.geometry.camera import Intrinsics
from depthforge.geometry.pointcloud import point_cloud, write_glb, write_ply
from depthforge.io.depth import SUFFIX
from depthforge.predict.outputs import write_prediction
from depthforge.viz import colorize


def planned_files(folder: str | Path, name: str, formats: tuple[str, ...] = ("npy",), color: bool = True,
                  ply: bool = False, glb: bool = False, uncertainty: bool = False) -> list[Path]:
    """The files `DepthResult.save` writes for ``name`` with these arguments."""
    folder = Path(folder)
    files = [folder / f"{name}{SUFFIX[f]}" for f in formats]
    files += [p.with_name(p.name + ".json") for p in files]
    files += [folder / f"{name}_color.png"] if color else []
    if uncertainty:
        files += [folder / f"{name}_uncertainty.npy", folder / f"{name}_uncertainty.npy.json"]
        files += [folder / f"{name}_uncertainty_color.png"] if color else []
    return files + ([folder / f"{name}.ply"] if ply else []) + ([folder / f"{name}.glb"] if glb else [])


def safe_stem(filename: str | None, default: str = "image") -> str:
    """A file stem safe to write outputs under, from a name a user or a browser sent: the name's stem with anything
    but ASCII letters, digits and ``-_.`` dropped (no folders, no leading dot), at most 100 characters."""
    stem = Path(filename or "").stem
    safe = "".join(c for c in stem if c.isascii() and (c.isalnum() or c in "-_."))[:100].lstrip(".")
    return safe or default


class InputOverwriteError(ValueError):
    """Saving would write over the input image; the message names it."""


@dataclass
class DepthResult:
    """A depth map and what it means.

    Attributes:
        depth: (H, W) float32; metres when ``kind`` is ``metric`` (clamped into the model's range), else relative
            depth or disparity up to an unknown scale and shift (`calibrate` turns it into metres).
        kind: ``metric``, ``relative`` or ``disparity``.
        image: the (H, W, 3) uint8 RGB input.
        intrinsics: the camera the point cloud and distances use, with where it came from (``intrinsics.source``).
        uncertainty: (H, W) float32 standard deviation in the depth's units, or None.
        name: the file stem outputs are written under.
        valid: (H, W) bool, the pixels whose depth the model meant (False where clamped), or None for all.
        info: what the sidecar records about the source and the options (model, spec, TTA, tiles, video frame).
        calibration: the fit from known distances, when one was applied.
        path: the input file, when the input was one (never written over).
    """

    depth: np.ndarray
    kind: str
    image: np.ndarray
    intrinsics: Intrinsics
    uncertainty: np.ndarray | None = None
    uncertainty_kind: str | None = None
    name: str = "depth"
    valid: np.ndarray | None = None
    info: dict = field(default_factory=dict)
    calibration: dict | None = None
    path: Path | None = None

    @property
    def meta(self) -> dict:
        """The sidecar's contents (each raw depth file gets it as ``<file>.json``)."""
        meta = dict(self.info)
        if self.calibration is not None:
            meta["calibration"] = self.calibration
        meta["units"] = ("metres" if self.kind == "metric"
                         else f"{self.kind} (affine-invariant; give --calibrate for metres)")
        if self.valid is not None:
            meta["points_left_out"] = int((~self.valid).sum())  # of the point cloud: clamped pixels
        meta["intrinsics"] = self.intrinsics.to_dict()
        return meta

    def calibrate(self, points: list[tuple[int, int, float]], shift: bool | None = None) -> DepthResult:
        """This result in metres from known distances ``(x, y, metres)``: a robust scale (and shift) fit.

        ``shift`` defaults to fitting one for a non-metric result with two or more points. Disparity is fitted in
        inverse depth, then inverted. The fit goes into `calibration` (and the sidecar).
        """
        if not points:
            raise ValueError("calibration needs at least one known distance (x, y, metres)")
        inverse = self.kind == "disparity"
        if shift is None:
            shift = self.kind != "metric" and len(points) >= 2
        cal = calibrate(self.depth, [(x, y, 1 / m if inverse else m) for x, y, m in points], shift=shift)
        depth = cal.apply(self.depth).astype(np.float32)
        if inverse:
            depth = (1 / np.clip(depth, 1e-6, None)).astype(np.float32)
        record = {"scale": cal.scale, "shift": cal.shift, "inliers": cal.inliers,
                  "rms_m" if not inverse else "rms_inverse_m": cal.residual_m,
                  "space": "disparity" if inverse else "depth"}
        return dataclasses.replace(self, depth=depth, kind="metric", calibration=record)

    def with_fov(self, hfov_deg: float) -> DepthResult:
        """This result with the camera of a ``hfov_deg`` horizontal field of view (the demo's field-of-view box)."""
        h, w = self.depth.shape
        return dataclasses.replace(self, intrinsics=Intrinsics.from_fov(w, h, hfov_deg))

    def colorize(self, cmap: str = "magma", vmax: float | None = None) -> np.ndarray:
        """An (H, W, 3) uint8 preview: near bright; the range 0..``vmax`` metres, or per image when None."""
        return colorize(self.depth, cmap=cmap, vmin=0.0 if vmax else None, vmax=vmax)

    def _metres(self, what: str) -> None:
        if self.kind != "metric":
            raise ValueError(f"{what} needs metres: {self.info.get('model', 'this source')} predicts {self.kind}; "
                             "add --calibrate or --point (Python: result.calibrate(points))")

    def point_cloud(self) -> tuple[np.ndarray, np.ndarray]:
        """Camera-frame points (N, 3) in metres and their colours (N, 3) uint8; clamped pixels are left out."""
        self._metres("a point cloud")
        return point_cloud(self.depth, self.image, self.intrinsics, self.valid)

    def distance(self, a: tuple[int, int], b: tuple[int, int]) -> float:
        """3D distance in metres between pixels ``a`` and ``b`` (x, y), back-projected with `intrinsics`."""
        self._metres("a distance")
        k = self.intrinsics
        pts = [np.array([(x - k.cx) / k.fx, (y - k.cy) / k.fy, 1.0]) * float(self.depth[y, x]) for x, y in (a, b)]
        return float(np.linalg.norm(pts[0] - pts[1]))

    def planned(self, folder: str | Path, formats: tuple[str, ...] = ("npy",), color: bool = True,
                ply: bool = False, glb: bool = False) -> list[Path]:
        """The files `save` would write with these arguments."""
        return planned_files(folder, self.name, formats, color, ply, glb, self.uncertainty is not None)

    def save(self, folder: str | Path, formats: tuple[str, ...] | list[str] = ("npy",), color: bool = True,
             ply: bool = False, glb: bool = False, cmap: str = "magma", vmax: float | None = None,
             colorbar: bool = True) -> list[Path]:
        """Write the raw depth in each of ``formats`` (npy, png16, pfm, exr) with its JSON sidecar, a colour preview
        ``<name>_color.png`` (with a colour bar in metres, or in the depth's own units before calibration, unless
        ``colorbar=False``), the uncertainty when there is one, and optionally a PLY / GLB point cloud.

        Never writes over the input file: a name that would is refused, saying which. Returns every path written,
        sidecars included.
        """
        folder, formats = Path(folder), tuple(formats)
        if ply or glb:
            self._metres("a point cloud (--ply)")
        if self.path is not None:
            clash = [p for p in self.planned(folder, formats, color, ply, glb) if p.resolve() == self.path.resolve()]
            if clash:
                raise InputOverwriteError(f"{clash[0]}: writing it would overwrite the input image; give another "
                                          "--out folder (or another --format)")
        unit = "m" if self.kind == "metric" else ""
        written = write_prediction(self.depth, folder, self.name, cmap, vmax, formats, self.meta, preview=color,
                                   colorbar=colorbar, unit=unit)
        if self.uncertainty is not None:  # a Laplace head, Marigold with 3+ members, or --uncertainty tta
            unc_meta = {**self.meta, "units": self.uncertainty_kind, "uncertainty_kind": self.uncertainty_kind}
            written += write_prediction(self.uncertainty.astype(np.float32), folder, f"{self.name}_uncertainty",
                                        "viridis", None, ("npy",), unc_meta, preview=color, colorbar=colorbar,
                                        unit=unit)
        if ply or glb:
            points, colors = self.point_cloud()
            if ply:
                written.append(write_ply(folder / f"{self.name}.ply", points, colors))
            if glb:
                written.append(write_glb(folder / f"{self.name}.glb", points, colors))
        return written
