"""Results to files, as ``depthforge predict`` writes them: per image its raw depth, sidecar and preview; per video
also one side-by-side ``<stem>_depth.mp4``."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from depthforge.predict.pipeline import Pipeline, Unreadable
from depthforge.predict.result import DepthResult, InputOverwriteError, planned_files
from depthforge.video.frames import CAMERA_PREFIX, SideBySideWriter, video_stem


@dataclass
class Saved:
    """What was written for one input: an image's files, or a whole video's (``frames`` counted)."""

    input: str
    paths: list[Path] = field(default_factory=list)
    result: DepthResult | None = None  # the image's result; a video's last frame
    frames: int | None = None
    error: str | None = None  # why the input could not be read (nothing was written for it)


def complete(out: Path, name: str, formats: tuple[str, ...], color: bool = True, ply: bool = False) -> bool:
    """Whether ``name``'s files from a run with these options are all there and read back whole: sidecars as JSON,
    depth files through their readers, previews decoded, point clouds to their last point (what ``--skip-existing``
    trusts; a file empty or cut short by a kill fails it, and the image is done again)."""
    from PIL import Image

    from depthforge.geometry.pointcloud import read_ply
    from depthforge.io import DEPTH_SUFFIXES, read_depth_file

    try:
        for f in planned_files(out, name, formats, color, ply):
            if f.suffix == ".json":
                json.loads(f.read_text())
            elif f.suffix == ".ply":
                read_ply(f)
            elif f.suffix in DEPTH_SUFFIXES and not f.name.endswith("_color.png"):
                read_depth_file(f)
            else:
                with Image.open(f) as img:
                    img.load()
    except Exception:  # missing, empty, truncated: whatever the reader says, the file is not done
        return False
    return True


def save_predictions(pipeline: Pipeline, inputs: Any, out: str | Path, formats: tuple[str, ...] = ("npy",),
                     color: bool = True, ply: bool = False, cmap: str = "magma", vmax: float | None = None,
                     progress: Callable[[int, int | None], object] | None = None, errors: str = "skip",
                     skip_existing: bool = False, colorbar: bool = True, **options: Any) -> Iterator[Saved]:
    """Predict ``inputs`` with ``pipeline`` (``options``: `Options`) and write
    each result under ``out`` (`DepthResult.save`); yields one `Saved` per image and per video.

    A video's colour range is fixed over the clip (``vmax``, else its first frame's 98th percentile); ``progress(done,
    total)`` is called after each frame. A camera stopped with Ctrl-C keeps the frames so far and finishes its video.
    An unreadable image does not stop the others (``errors="skip"``): it is yielded with its ``error``.
    ``skip_existing``: an image whose files are all there and whole (`complete`) is neither predicted again
    (when its whole batch is done) nor written again: an interrupted run resumes. ``shard=(rank, world)``
    (``options``) writes one process's share; the shares together are one process's files.
    """
    out = Path(out)
    if skip_existing:
        options["done"] = lambda name: complete(out, name, formats, color, ply)
    writer: SideBySideWriter | None = None
    video, last = None, None

    def finish() -> Saved:
        nonlocal writer
        done = Saved(video, paths=[writer.close()], result=last, frames=writer.frames)
        writer = None
        return done

    try:
        for result in pipeline.stream(inputs, errors=errors, **options):
            if isinstance(result, Unreadable):
                yield Saved(str(result.path), error=result.reason)
                continue
            source = result.info.get("video")
            if skip_existing and source is None and complete(out, result.name, formats, color, ply):
                continue  # its batch ran for another image's sake; its files stay as they are
            if writer is not None and source != video:
                yield finish()
            try:
                paths = result.save(out, formats, color=color, ply=ply, cmap=cmap, vmax=vmax, colorbar=colorbar)
            except InputOverwriteError as err:  # refused, nothing written for it; the others go on
                yield Saved(str(result.path), result=result, error=str(err))
                continue
            if source is None:
                yield Saved(str(result.path or result.name), paths, result)
                continue
            if writer is None:
                video, writer = source, SideBySideWriter(out / f"{video_stem(source)}_depth.mp4", vmax, cmap)
            writer.write(result.image, result.depth)
            last = result
            if progress is not None:
                progress(writer.frames, options.get("max_frames"))
    except BaseException as err:
        # a live camera stopped with Ctrl-C: the frames so far are written; finish its video file below
        if not (isinstance(err, KeyboardInterrupt) and writer is not None and str(video).startswith(CAMERA_PREFIX)):
            if writer is not None:
                writer.close()
            raise
    if writer is not None:
        yield finish()
