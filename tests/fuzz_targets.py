"""Every reader of outside data as a fuzz target: its seed inputs and its contract.

The contract, for every input: the reader returns a well-formed value, or refuses with one of depthforge's user
errors (`DataError`, `ConfigError`, `CheckpointError`: the command line's one-line exit 2) whose message is one
line naming the file; never another exception (a traceback), a hang or an unbounded allocation. A `Target` runs
one input and says which of the two happened; anything else propagates. ``tests/test_fuzz.py`` runs each target
briefly with a fixed seed (hypothesis); ``benchmarks/fuzz.py`` runs them at length and, for the binary formats,
under atheris (coverage-guided).
"""

from __future__ import annotations

import gc
import io
import json
import math
import tempfile
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from depthforge.config import ConfigError
from depthforge.io import DataError
from depthforge.sources.checkpoint import CheckpointError

USER_ERRORS = (DataError, ConfigError, CheckpointError)


class ContractBroken(AssertionError):
    """A reader returned something malformed, or refused without naming the file in one line."""


@dataclass
class Target:
    name: str
    kind: str  # "bytes" (mutated seed files) or "text" (mutated seed texts)
    seeds: Callable[[], list[bytes]]
    run: Callable[[bytes, Path], object]  # (input, a fresh folder) -> the value read; raises USER_ERRORS to refuse
    names_file: bool = True  # a refusal must name the file (False: a command-line value, named by its flag)
    collect: bool = False  # collect garbage every 50 inputs (targets that memory-map checkpoints)
    tried: int = field(default=0)
    refused: int = field(default=0)

    def __call__(self, data: bytes) -> str:
        """Run one input: "read" or "refused"; a broken contract raises."""
        self.tried += 1
        if self.collect and self.tried % 50 == 0:
            # Failed loads leave reference cycles (exception -> frame -> memory-mapped checkpoint tensors) that
            # Python's collector, counting objects not bytes, frees late: collected here so thousands of inputs in
            # one process measure the readers, not the collector's schedule
            gc.collect()
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            try:
                self.run(data, folder)
            except USER_ERRORS as err:
                message = str(err)
                if "\n" in message.strip() or not message:
                    raise ContractBroken(f"{self.name}: a refusal in more than one line: {message!r}") from err
                if self.names_file and tmp not in message:
                    raise ContractBroken(f"{self.name}: a refusal that names no file: {message!r}") from err
                self.refused += 1
                return "refused"
            # nothing may be written outside the folder the reader was given: checked by the caller's tmp
        return "read"


# ---- seeds ----------------------------------------------------------------------------------------------------

def _encoded(array: np.ndarray, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **kw)
    return buf.getvalue()


@cache
def image_seeds() -> list[bytes]:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = 28  # FocalLengthIn35mmFilm: the tag depthforge reads
    jpeg_exif = io.BytesIO()
    Image.fromarray(rgb).save(jpeg_exif, format="JPEG", exif=exif)
    return [_encoded(rgb, "JPEG", quality=80), jpeg_exif.getvalue(), _encoded(rgb, "PNG"),
            _encoded(rng.integers(0, 65535, (12, 16), dtype=np.uint16), "PNG"), _encoded(rgb, "TIFF"),
            _encoded(rgb, "WEBP", quality=80), _encoded(rgb, "BMP"), _encoded(rgb[..., 0], "PNG")]


IMAGE_EXT = {b"\xff\xd8": ".jpg", b"\x89PN": ".png", b"II*": ".tif", b"MM\x00": ".tif", b"RIF": ".webp",
             b"BM": ".bmp"}


def _image_suffix(data: bytes) -> str:
    return next((ext for magic, ext in IMAGE_EXT.items() if data.startswith(magic)), ".png")


def read_image(data: bytes, folder: Path) -> object:
    from depthforge.geometry.camera import intrinsics_from_exif
    from depthforge.io import read_rgb

    path = folder / f"photo{_image_suffix(data)}"
    path.write_bytes(data)
    rgb = read_rgb(path)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or 0 in rgb.shape:
        raise ContractBroken(f"read_rgb returned {rgb.dtype} {rgb.shape}")
    k = intrinsics_from_exif(path, rgb.shape[1], rgb.shape[0])
    if k is not None and not (math.isfinite(k.fx) and k.fx > 0):
        raise ContractBroken(f"EXIF focal length gave fx={k.fx}")
    return rgb


@cache
def depth_seeds() -> list[bytes]:
    from depthforge.io.depth import write_depth

    depth = np.linspace(0.5, 30.0, 12 * 16, dtype=np.float32).reshape(12, 16)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in ("npy", "png16", "pfm", "exr"):
            path, _ = write_depth(Path(tmp) / "d", depth, fmt)
            out.append(path.read_bytes())
        buf = io.BytesIO()
        np.save(buf, depth[None])  # (1, H, W)
        out.append(buf.getvalue())
    return out


DEPTH_EXT = {b"\x93NUMPY": ".npy", b"\x89PN": ".png", b"Pf": ".pfm", b"v/1\x01": ".exr"}


def read_depth_bytes(data: bytes, folder: Path) -> object:
    from depthforge.io import read_depth_file

    suffix = next((ext for magic, ext in DEPTH_EXT.items() if data.startswith(magic)), ".npy")
    path = folder / f"depth{suffix}"
    path.write_bytes(data)
    depth = read_depth_file(path, 1000.0)
    if depth.dtype != np.float32 or depth.ndim != 2:
        raise ContractBroken(f"read_depth_file returned {depth.dtype} {depth.shape}")
    return depth


@cache
def sidecar_seeds() -> list[bytes]:
    sidecar = {"units": "metres", "format": "png16", "shape": [12, 16], "value_range": [0.5, 30.0],
               "scale": 1000.0, "clamped": {"model_range": [0.001, 20.0], "pixels": 3}, "model": "unet"}
    return [json.dumps(sidecar, indent=2).encode(), json.dumps({"valid_range": [1, 2], "clamped": {"range": [0, 1]},
                                                                "scale": 256}).encode()]


def read_sidecar_bytes(data: bytes, folder: Path) -> object:
    from depthforge.io import read_depth

    path = folder / "depth.png"
    Image.fromarray(np.full((6, 8), 1500, dtype=np.uint16)).save(path)
    (folder / "depth.png.json").write_bytes(data)
    depth, meta = read_depth(path)
    if not isinstance(meta, dict) or depth.shape != (6, 8):
        raise ContractBroken(f"read_depth returned {type(meta).__name__}, {depth.shape}")
    return depth


def points_seeds() -> list[bytes]:
    return [b"x,y,metres\n120,80,3.5\n10,20,1.25\n# a comment\n5,5,10\n", b"1,2,3\n"]


def read_points_bytes(data: bytes, folder: Path) -> object:
    from depthforge.geometry.calibration import read_points

    path = folder / "points.csv"
    path.write_bytes(data)
    for x, y, metres in read_points(path):
        if not (isinstance(x, int) and isinstance(y, int) and math.isfinite(metres) and metres > 0):
            raise ContractBroken(f"read_points returned ({x}, {y}, {metres})")
    return None


def point_seeds() -> list[bytes]:
    return [b"120,80,3.5", b"0,0,0.5"]


def parse_point_bytes(data: bytes, folder: Path) -> object:
    """A --point value (named by the option, not a file: its refusals name the text)."""
    from depthforge.geometry.calibration import parse_point

    text = data.decode("utf-8", errors="replace")
    x, y, metres = parse_point(text)
    if not (math.isfinite(metres) and metres > 0):
        raise ContractBroken(f"parse_point({text!r}) gave {metres}")
    return None


@cache
def config_seeds() -> list[bytes]:
    from depthforge.config import RECIPE_DIR

    return [p.read_bytes() for p in sorted(RECIPE_DIR.glob("*.yaml"))] + [b"data:\n  batch_size: 4\n"]


def read_config_bytes(data: bytes, folder: Path) -> object:
    from depthforge.config import load_config

    path = folder / "recipe.yaml"
    path.write_bytes(data)
    return load_config(path)


def override_seeds() -> list[bytes]:
    return [b"optim.lr=1e-4", b"data.crop=[144, 256]", b"loss.terms={silog: 1.0}", b"train.max_minutes=80"]


def read_override_bytes(data: bytes, folder: Path) -> object:
    from depthforge.config import load_config

    return load_config(overrides=[data.decode("utf-8", errors="replace")])


def manifest_seeds() -> list[bytes]:
    return [b"image,depth,split,scale\nimg/a.png,dep/a.png,train,1000\nimg/b.png,dep/b.npy,val,\n",
            b"image,depth\nimg/a.png,dep/a.png\n"]


def read_manifest_bytes(data: bytes, folder: Path) -> object:
    from depthforge.data.folder import ManifestDataset

    (folder / "img").mkdir()
    (folder / "dep").mkdir()
    for stem in ("a", "b"):
        Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(folder / "img" / f"{stem}.png")
    Image.fromarray(np.full((6, 8), 2000, np.uint16)).save(folder / "dep" / "a.png")
    np.save(folder / "dep" / "b.npy", np.full((6, 8), 2.0, np.float32))
    path = folder / "list.csv"
    path.write_bytes(data)
    dataset = ManifestDataset(path, skip_invalid=False)
    for i in range(min(len(dataset), 4)):
        sample = dataset[i]
        if sample is not None and sample["image"].ndim != 3:
            raise ContractBroken(f"manifest sample {i}: image {tuple(sample['image'].shape)}")
    return None


@cache
def video_seeds() -> list[bytes]:
    import av

    out = []
    for codec, fmt in (("mpeg4", "mp4"), ("mjpeg", "avi")):
        buf = io.BytesIO()
        with av.open(buf, mode="w", format=fmt) as container:
            stream = container.add_stream(codec, rate=5)
            stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p" if codec == "mpeg4" else "yuvj420p"
            for i in range(3):
                frame = np.full((24, 32, 3), 40 * i, np.uint8)
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        out.append(buf.getvalue())
    return out


def read_video_bytes(data: bytes, folder: Path) -> object:
    from depthforge.video.frames import read_frames

    path = folder / ("clip.avi" if data[:4] == b"RIFF" else "clip.mp4")
    path.write_bytes(data)
    for i, frame in enumerate(read_frames(path)):
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ContractBroken(f"frame {i}: {frame.dtype} {frame.shape}")
        if i > 50:
            break
    return None


@cache
def shared_seeds() -> list[bytes]:
    import torch

    from depthforge.config import load_config
    from depthforge.models import model_from_config
    from depthforge.sources.hub import save_pretrained

    # a ConvNeXt U-Net of 21,000 weights (a 120 KB checkpoint): every byte of it can be mutated, and a fuzzer that
    # keeps a few thousand inputs in memory is not measuring its own footprint
    cfg = load_config(overrides=["model.name=unet_convnext_atto", "model.kwargs.widths=[8, 8, 8, 8]",
                                 "model.kwargs.encoder_kwargs={depths: [1, 1, 1, 1], dims: [8, 16, 16, 16]}"])
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_pretrained(model_from_config(cfg.model, cfg.data.max_depth), cfg, Path(tmp) / "shared")
        return [(folder / "config.json").read_bytes()]


@cache
def _shared_weights() -> bytes:
    import torch

    from depthforge.config import load_config
    from depthforge.models import model_from_config
    from depthforge.sources.hub import save_pretrained

    cfg = load_config(base=json.loads(shared_seeds()[0])["config"])
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_pretrained(model_from_config(cfg.model, cfg.data.max_depth), cfg, Path(tmp) / "shared")
        return (folder / "model.safetensors").read_bytes()


def read_shared_bytes(data: bytes, folder: Path) -> object:
    """A shared model folder whose config.json is the input (its weights are the seed model's)."""
    from depthforge.sources.hub import load_pretrained

    shared = folder / "shared"
    shared.mkdir()
    (shared / "config.json").write_bytes(data)
    (shared / "model.safetensors").write_bytes(_shared_weights())
    (shared / "README.md").write_text("---\nlicense: apache-2.0\n---\n")
    return load_pretrained(shared)


def card_seeds() -> list[bytes]:
    return [b"---\nlicense: cc-by-nc-4.0\ntags: [depth]\n---\n# A model\n\nText.\n",
            b"---\nlicense: other\nlicense_name: research\n---\n# M\n\n## License\n\nResearch purposes only.\n",
            b"---\nlicense: [apache-2.0]\n---\n"]


def read_card_bytes(data: bytes, folder: Path) -> object:
    """A model card (README.md) whose licence depthforge reads: it never fails, unknown when it says nothing."""
    from depthforge.sources.license_sources import from_card

    card = folder / "README.md"
    card.write_bytes(data)
    found = from_card(card, "hf:x")
    if found["terms"] not in ("commercial", "non-commercial", "unknown") or "\n" in found.get("text", ""):
        raise ContractBroken(f"from_card gave {found}")
    return found


@cache
def checkpoint_seeds() -> list[bytes]:
    import torch

    from depthforge.config import load_config
    from depthforge.models import model_from_config

    cfg = load_config(base=json.loads(shared_seeds()[0])["config"])
    torch.manual_seed(0)
    model = model_from_config(cfg.model, cfg.data.max_depth)
    buf = io.BytesIO()
    torch.save({"depthforge": {"version": "0", "model_name": cfg.model.name, "config": cfg.to_dict()},
                "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, buf)
    return [buf.getvalue()]


def read_checkpoint_bytes(data: bytes, folder: Path) -> object:
    from depthforge.sources import load_checkpoint

    path = folder / "model.ckpt"
    path.write_bytes(data)
    return load_checkpoint(path)


TARGETS = {t.name: t for t in [
    Target("image", "bytes", image_seeds, read_image),
    Target("depth", "bytes", depth_seeds, read_depth_bytes),
    Target("sidecar", "text", sidecar_seeds, read_sidecar_bytes),
    Target("points_csv", "text", points_seeds, read_points_bytes),
    Target("point_option", "text", point_seeds, parse_point_bytes, names_file=False),
    Target("config_yaml", "text", config_seeds, read_config_bytes),
    Target("override", "text", override_seeds, read_override_bytes, names_file=False),
    Target("manifest", "text", manifest_seeds, read_manifest_bytes),
    Target("video", "bytes", video_seeds, read_video_bytes),
    Target("shared_folder", "text", shared_seeds, read_shared_bytes, collect=True),
    Target("checkpoint", "bytes", checkpoint_seeds, read_checkpoint_bytes, collect=True),
    Target("model_card", "text", card_seeds, read_card_bytes),
]}

# ---- mutations (hypothesis) -----------------------------------------------------------------------------------

BIG, EDGE = 1 << 20, 4096  # seeds over BIG bytes are mutated in their first and last EDGE bytes only
EXTREMES = [0, 1, 0x7F, 0xFF, 0x7FFF, 0xFFFF, 50000, 0x7FFFFFFF, 0xFFFFFFFF]
TEXT_PIECES = ["\n", ",", "=", ":", "[", "{", "}", "]", "&a", "*a", "!!python/object:os.system", "nan", "inf", "-inf",
               "1e309", "-1", "0", "99999999999999999999", "../", "/etc/passwd", "\x00", "\ufeff", "é", "'", '"', "#",
               "- ", "  ", "null", "true", "1_000", "0x10", "..", "\r\n", "\t"]


def mutated(seeds: list[bytes], kind: str):
    """A hypothesis strategy: a seed with 1-8 edits (bit flips, bytes set, inserted, deleted, a cut, a header
    integer set to an extreme; for text also syntax pieces spliced in)."""
    from hypothesis import strategies as st

    @st.composite
    def build(draw):
        data = bytearray(draw(st.sampled_from(seeds)))
        for _ in range(draw(st.integers(1, 8))):
            if len(data) > BIG:  # a checkpoint: its structure (zip headers, pickle, central directory) is at the ends
                pos = draw(st.one_of(st.integers(0, EDGE - 1), st.integers(len(data) - EDGE, len(data) - 1)))
            else:
                pos = draw(st.integers(0, max(len(data), 1) - 1)) if data else 0
            op = draw(st.sampled_from(["flip", "set", "insert", "delete", "cut", "int", "piece"]
                                      if kind == "text" else ["flip", "set", "insert", "delete", "cut", "int"]))
            if op == "flip" and data:
                data[pos] ^= 1 << draw(st.integers(0, 7))
            elif op == "set" and data:
                data[pos] = draw(st.integers(0, 255))
            elif op == "insert":
                data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
            elif op == "delete" and data:
                del data[pos:pos + draw(st.integers(1, 16))]
            elif op == "cut":
                del data[pos:]
            elif op == "int" and data:
                value = draw(st.sampled_from(EXTREMES))
                width = draw(st.sampled_from([2, 4]))
                order = draw(st.sampled_from(["little", "big"]))
                data[pos:pos + width] = (value % (1 << (8 * width))).to_bytes(width, order)
            elif op == "piece":
                data[pos:pos] = draw(st.sampled_from(TEXT_PIECES)).encode()
        return bytes(data)

    return build()
