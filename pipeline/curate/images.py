"""The per-image path of Face9M curation: header probe, decode, normalise, resize, encode.

- :func:`probe` reads only the header (size, EXIF orientation): never a full decode to filter.
- :func:`load_face` decodes one image into an RGB array of ``size x size``: JPEGs are decoded
  at a reduced DCT scale (Pillow's ``draft``: 1/2, 1/4 or 1/8) whenever that still leaves at
  least ``size`` pixels on both sides of the region kept, which is what makes large JPEGs cheap;
  EXIF orientation is applied; grayscale, CMYK, palette, alpha and 16-bit images become RGB
  (alpha is composited over white); downscaling uses area interpolation and upscaling bicubic
  (area interpolation degenerates to nearest-neighbour when enlarging).

Failures raise :class:`Rejected` with one of :data:`REASONS`.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

REASONS = ("empty", "not_an_image", "corrupt", "truncated", "aspect", "too_small", "duplicate", "near_duplicate")
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"RIFF", b"II*\x00", b"MM\x00*")
_TRANSPOSED = {5, 6, 7, 8}  # EXIF orientations that swap width and height
Image.MAX_IMAGE_PIXELS = 200_000_000  # web photos can be large; still guard against decompression bombs


class Rejected(Exception):
    def __init__(self, reason: str, detail: str = ""):
        assert reason in REASONS, reason
        self.reason, self.detail = reason, detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


@dataclass(frozen=True)
class Header:
    width: int  # as displayed, EXIF orientation applied
    height: int
    format: str
    orientation: int


def _classify_open_error(head: bytes) -> Rejected:
    if not head:
        return Rejected("empty")
    if head.startswith(_IMAGE_MAGIC):
        return Rejected("corrupt", "image signature but unreadable header")
    return Rejected("not_an_image", repr(head[:16]))


def probe(data_or_file) -> Header:
    """Header-only size of an image (bytes or a binary file object)."""
    fp = io.BytesIO(data_or_file) if isinstance(data_or_file, (bytes, bytearray)) else data_or_file
    head = fp.read(16)
    fp.seek(0)
    if not head:
        raise Rejected("empty")
    try:
        with Image.open(fp) as im:
            w, h = im.size
            # EXIF sits in the header of these formats; for PNG, Pillow would read the whole
            # file looking for an eXIf chunk, so PNGs are taken as upright.
            orientation = int(im.getexif().get(0x0112, 1) or 1) if im.format in ("JPEG", "TIFF", "WEBP") else 1
            fmt = im.format or ""
    except (UnidentifiedImageError, SyntaxError, ValueError, OSError):
        raise _classify_open_error(head) from None
    if orientation in _TRANSPOSED:
        w, h = h, w
    return Header(w, h, fmt, orientation)


def aspect_ratio(width: float, height: float) -> float:
    """Long side over short side (>= 1)."""
    return max(width, height) / min(width, height)


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode == "RGB":
        return im
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.uint32)
        return Image.fromarray((arr >> 8 if arr.max() > 255 else arr).astype(np.uint8), "L").convert("RGB")
    if im.mode == "P" and "transparency" not in im.info:
        return im.convert("RGB")
    if im.mode in ("RGBA", "LA", "PA", "P", "RGBa"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")  # L, 1, CMYK, YCbCr, F


def load_face(data: bytes, size: int, crop: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """Decode ``data`` into RGB uint8 [size, size, 3]; ``crop`` = (x, y, w, h) in displayed pixels."""
    header = probe(data)
    im = Image.open(io.BytesIO(data))
    region_w, region_h = (crop[2], crop[3]) if crop else (header.width, header.height)
    if region_w < 1 or region_h < 1:
        raise Rejected("corrupt", f"empty crop {crop}")
    if im.format == "JPEG":
        scale = max(size / region_w, size / region_h)
        req = (math.ceil(header.width * scale), math.ceil(header.height * scale))
        if header.orientation in _TRANSPOSED:
            req = req[::-1]
        im.draft(im.mode, req)
    try:
        im.load()
    except (OSError, SyntaxError, ValueError) as err:
        reason = "truncated" if "truncat" in str(err).lower() else "corrupt"
        raise Rejected(reason, str(err)) from None
    im = _to_rgb(ImageOps.exif_transpose(im))
    arr = np.asarray(im)
    if crop:
        k = im.size[0] / header.width  # DCT reduction actually applied
        x0, y0 = max(0, round(crop[0] * k)), max(0, round(crop[1] * k))
        x1, y1 = min(arr.shape[1], round((crop[0] + crop[2]) * k)), min(arr.shape[0], round((crop[1] + crop[3]) * k))
        if x1 - x0 < 1 or y1 - y0 < 1:
            raise Rejected("corrupt", f"crop {crop} outside the {header.width}x{header.height} image")
        arr = arr[y0:y1, x0:x1]
    shrink = arr.shape[0] >= size and arr.shape[1] >= size
    return cv2.resize(arr, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV failed to encode a JPEG")
    return buf.tobytes()


def difference_hash(data: bytes) -> int:
    """64-bit difference hash of the image (grey 9x8 thumbnail, adjacent-pixel comparisons)."""
    im = Image.open(io.BytesIO(data))
    if im.format == "JPEG":
        im.draft("L", (64, 64))
    grey = np.asarray(_to_rgb(ImageOps.exif_transpose(im)).convert("L").resize((9, 8), Image.Resampling.BILINEAR), dtype=np.int16)
    bits = (grey[:, 1:] > grey[:, :-1]).flatten()
    return int(np.packbits(bits).view(">u8")[0])
