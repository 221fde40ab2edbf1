"""What a predict request carries: its options (query parameters, validated before anything runs) and its image
(a multipart upload or the raw bytes), read within a byte limit and a time limit and checked from its header before
it is decoded. Every way a request can be wrong is a `BadRequest` with a status and one line."""

from __future__ import annotations

import asyncio
import io
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from depthforge.io import DataError, image_size, read_rgb

RESPONSE_FORMATS = ("npy", "png16", "json", "ply", "npz")
# Pillow's format name -> the suffix the CLI would see; other formats are refused (415)
SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "TIFF": ".tif", "BMP": ".bmp"}
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/tiff", "image/bmp", "application/octet-stream")
# TTA factors and tile windows a public endpoint runs: beyond them one request costs minutes
SCALE_RANGE, MIN_TILE = (0.25, 4.0), 32
Point = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,5},[0-9]{1,5},[0-9]{1,4}(\.[0-9]{1,6})?$")]


class BadRequest(Exception):
    """A request the server refuses: HTTP ``status`` and a one-line reason (``headers`` e.g. Retry-After)."""

    def __init__(self, status: int, reason: str, headers: dict | None = None):
        super().__init__(reason)
        self.status, self.reason, self.headers = status, reason, headers or {}


class PredictQuery(BaseModel):
    """The options of ``POST /predict`` (query parameters; the same as ``depthforge predict``'s flags)."""

    model_config = ConfigDict(extra="forbid")

    format: Literal[RESPONSE_FORMATS] = Field("npy", description=(
        "npy: the float32 .npy file; png16: the 16-bit PNG (millimetres); json: the sidecar and summary "
        "statistics; ply: the coloured point cloud (metric depth only); npz: depth, valid mask and uncertainty "
        "(what depthforge.Client reads). Binary answers carry the sidecar in the X-Depth-Sidecar header"))
    flip_tta: bool = Field(False, description="average with the horizontally flipped prediction")
    tta_scales: str | None = Field(None, max_length=64, pattern=r"^[0-9.]+(,[0-9.]+){0,7}$",
                                   description="multi-scale TTA factors, e.g. 0.83,1,1.17 (each 0.25..4)")
    tile: str | None = Field(None, pattern=r"^[0-9]{2,5}x[0-9]{2,5}$", description="tiled inference window HxW")
    overlap: float = Field(0.25, ge=0, le=0.75, description="tile overlap fraction")
    uncertainty: Literal["model", "tta"] | None = Field(None, description="also the uncertainty (json / npz)")
    point: list[Point] = Field(default_factory=list, max_length=32,
                               description="a known distance x,y,metres (repeat): the depth is calibrated")
    shift: bool = Field(False, description="the calibration also fits a shift")
    fx: float | None = Field(None, gt=0, lt=1e6, description="focal length in pixels (else EXIF, else --hfov)")
    fy: float | None = Field(None, gt=0, lt=1e6, description="vertical focal length in pixels (default: fx)")
    cx: float | None = Field(None, ge=-1e6, lt=1e6, description="principal point x in pixels")
    cy: float | None = Field(None, ge=-1e6, lt=1e6, description="principal point y in pixels")
    hfov: float = Field(60.0, ge=1, le=179, description="horizontal field of view guess in degrees")
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$",
                             description="the stem of the answer's file name (default: the upload's)")

    @field_validator("tta_scales")
    @classmethod
    def _scales(cls, text: str | None) -> str | None:
        if text is not None:
            values = [float(v) if re.fullmatch(r"[0-9]*\.?[0-9]+", v) else -1.0 for v in text.split(",")]
            if not all(SCALE_RANGE[0] <= v <= SCALE_RANGE[1] for v in values):
                raise ValueError(f"each TTA scale must be a number in {SCALE_RANGE[0]}..{SCALE_RANGE[1]}")
        return text

    @field_validator("tile")
    @classmethod
    def _tile(cls, text: str | None) -> str | None:
        if text is not None and min(int(v) for v in text.split("x")) < MIN_TILE:
            raise ValueError(f"each side of the tile window must be at least {MIN_TILE} pixels")
        return text

    def options(self, size: tuple[int, int]) -> dict:
        """The `depthforge.predict.Options` keywords, the known distances checked against the image size."""
        from depthforge.geometry.calibration import parse_point
        from depthforge.io import DataError

        points = []
        for text in self.point:
            try:
                x, y, m = parse_point(text)
            except DataError as err:
                raise BadRequest(422, f"point {err}") from None
            if not (x < size[1] and y < size[0]):
                raise BadRequest(422, f"point {text}: x,y must lie in the {size[1]}x{size[0]} image and the "
                                      "distance be over 0 m")
            points.append((x, y, m))
        scales = tuple(float(v) for v in self.tta_scales.split(",")) if self.tta_scales else (1.0,)
        return {"flip_tta": self.flip_tta, "tta_scales": scales, "tile": self.tile, "overlap": self.overlap,
                "uncertainty": self.uncertainty, "points": points, "shift": True if self.shift else None,
                "fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy, "hfov": self.hfov}


async def read_body(request, max_bytes: int, read_timeout: float) -> bytes:
    """The request's body, refused (413) past ``max_bytes`` (from Content-Length before reading, else while
    reading) and (408) when it takes longer than ``read_timeout`` seconds to arrive (a slow client)."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > max_bytes):
        raise BadRequest(413, f"the upload is {declared} bytes, over the {max_bytes}-byte limit (--max-bytes)")
    chunks, total = [], 0
    try:
        async with asyncio.timeout(read_timeout):
            async for chunk in request.stream():
                total += len(chunk)
                if total > max_bytes:
                    raise BadRequest(413, f"the upload is over the {max_bytes}-byte limit (--max-bytes)")
                chunks.append(chunk)
    except TimeoutError:
        raise BadRequest(408, f"the upload took over {read_timeout:g} s to arrive (--read-timeout)") from None
    return b"".join(chunks)


async def upload(request, max_bytes: int, read_timeout: float) -> tuple[bytes, str | None]:
    """The image bytes and the upload's file name: a multipart form's ``image`` file, or the raw body."""
    from starlette.formparsers import MultiPartException, MultiPartParser

    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "multipart/form-data" and kind not in IMAGE_TYPES:
        raise BadRequest(415, f"content type '{kind or 'none'}': send the image as multipart/form-data (field "
                              f"'image') or as the raw body ({', '.join(IMAGE_TYPES)})")
    body = await read_body(request, max_bytes, read_timeout)
    if kind != "multipart/form-data":
        return body, None

    async def stream():
        yield body

    try:
        form = await MultiPartParser(request.headers, stream(), max_files=1, max_fields=8,
                                     max_part_size=64 * 1024).parse()
    except MultiPartException as err:
        raise BadRequest(400, f"the multipart form cannot be read: {err}") from None
    image = form.get("image")
    if image is None or isinstance(image, str):
        raise BadRequest(422, "the multipart form has no file field 'image'")
    try:
        return await image.read(), image.filename
    finally:
        await form.close()


def check_image(data: bytes, max_pixels: int) -> tuple[str, tuple[int, int]]:
    """The suffix of the image format and its (H, W), from the header (nothing decoded yet), then decoded once in
    full so a truncated or corrupt file is refused here (422) and not inside a batch."""
    from PIL import Image

    if not data:
        raise BadRequest(422, "the image is empty (0 bytes)")
    try:
        size = image_size(io.BytesIO(data), max_pixels)
        with Image.open(io.BytesIO(data)) as img:
            fmt = img.format
        if fmt not in SUFFIXES:
            raise BadRequest(415, f"image format {fmt}: send JPEG, PNG, WebP, TIFF or BMP")
        read_rgb(io.BytesIO(data))  # the size was checked above; a truncated body fails here
    except DataError as err:
        cause = err.__cause__
        if cause is None:  # a limit, refused from the header
            raise BadRequest(413, str(err).removeprefix("the image: ").split("; re-export")[0]) from None
        # the decoder's own failure on the bytes (the reader's DataError wraps it)
        raise BadRequest(422, f"not an image Pillow can read ({type(cause).__name__}: {cause})") from None
    except BadRequest:
        raise
    except Exception as err:  # untrusted bytes meet a C decoder: any failure of it is the file's, not the server's
        raise BadRequest(422, f"not an image Pillow can read ({type(err).__name__}: {err})") from None
    return SUFFIXES[fmt], size
