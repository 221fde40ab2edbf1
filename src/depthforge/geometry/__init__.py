"""Camera geometry: pinhole intrinsics and where they come from (`camera`), point clouds
(`pointcloud`) and calibration of depth from known distances
(`calibration`). Pure NumPy; no model runs here."""

from depthforge.geometry.calibration import Calibration, calibrate, fit, read_points
from depthforge.geometry.camera import DEFAULT_HFOV_DEG, Intrinsics, intrinsics_from_exif
from depthforge.geometry.pointcloud import backproject, read_ply, write_glb, write_ply

__all__ = ["DEFAULT_HFOV_DEG", "Calibration", "Intrinsics", "backproject", "calibrate", "fit", "intrinsics_from_exif",
           "read_ply", "read_points", "write_glb", "write_ply"]
