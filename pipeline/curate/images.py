"""The per-image path of Face9M curation: header probe, decode, normalise, resize, encode.

- :func:`probe` reads only the header (size, EXIF orientation): never a full decode to filter.
- :func:`load_face` decodes one image into an RGB array of ``size x size``: JPEGs are decoded
  by OpenCV at a reduced DCT scale (1/2, 1/4 or 1/8) whenever that still leaves at least
  ``size`` pixels on both sides of the region kept, which is what makes large JPEGs cheap, and
  PNGs by OpenCV too (its inflate is faster than Pillow's); Pillow handles other formats and
  names the reason when a file fails. EXIF orientation is applied; grayscale, CMYK, palette,
  alpha and 16-bit images become RGB (alpha is composited over white); downscaling uses area
  interpolation (see :func:`resize_square`) and upscaling bicubic (area interpolation
  degenerates to nearest-neighbour when enlarging). A JPEG without its end-of-image marker is rejected as truncated: OpenCV would
  quietly return the part it could decode.

Failures raise :class:`Rejected` with one of :data:`REASONS`.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# "unreadable": a file the scan listed that curate could not read (gone, or its permissions changed)
REASONS = ("empty", "not_an_image", "corrupt", "truncated", "aspect", "too_small", "duplicate", "near_duplicate",
           "unreadable")
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


_REDUCED = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


def _reduction(header: Header, region_w: float, region_h: float, size: int) -> int:
    """The largest DCT reduction (1, 2, 4, 8) that keeps the region at least ``size`` on both sides."""
    k = 1
    while k < 8 and region_w / (2 * k) >= size and region_h / (2 * k) >= size:
        k *= 2
    return k


def _decode_opencv(data: bytes, header: Header, size: int, region: tuple[float, float]) -> np.ndarray | None:
    """BGR uint8 via OpenCV (fast path for JPEG and PNG), or None to fall back to Pillow."""
    buf = np.frombuffer(data, np.uint8)
    if header.format == "JPEG":
        if not data.rstrip(b"\0").endswith(b"\xff\xd9"):
            raise Rejected("truncated", "no JPEG end-of-image marker")
        return cv2.imdecode(buf, _REDUCED[_reduction(header, *region, size)])  # applies EXIF orientation
    if header.format == "PNG":
        arr = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)  # keeps alpha and 16 bits
        if arr is None:
            return None
        if arr.dtype == np.uint16:
            arr = (arr >> 8).astype(np.uint8)
        if arr.ndim == 2:
            return cv2.cvtColor(arr, cv2.COLOR_GRAY2BGR)
        if arr.shape[2] == 4:  # composite over white
            alpha = arr[..., 3:4].astype(np.float32) / 255.0
            arr = (arr[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha) + 0.5).astype(np.uint8)
        return arr
    return None


def _decode_pillow(data: bytes, header: Header, size: int, region: tuple[float, float]) -> np.ndarray:
    """BGR uint8 via Pillow: every other format, and the precise reason when decoding fails."""
    im = Image.open(io.BytesIO(data))
    if im.format == "JPEG":
        scale = max(size / region[0], size / region[1])
        req = (math.ceil(header.width * scale), math.ceil(header.height * scale))
        im.draft(im.mode, req[::-1] if header.orientation in _TRANSPOSED else req)
    try:
        im.load()
    except (OSError, SyntaxError, ValueError) as err:
        reason = "truncated" if "truncat" in str(err).lower() else "corrupt"
        raise Rejected(reason, str(err)) from None
    return cv2.cvtColor(np.asarray(_to_rgb(ImageOps.exif_transpose(im))), cv2.COLOR_RGB2BGR)


def load_face(data: bytes, size: int, crop: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """Decode ``data`` into RGB uint8 [size, size, 3]; ``crop`` = (x, y, w, h) in displayed pixels."""
    return cv2.cvtColor(load_face_bgr(data, size, crop), cv2.COLOR_BGR2RGB)


def load_face_bgr(data: bytes, size: int, crop: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """:func:`load_face` in OpenCV's channel order (colour conversion after the resize is cheaper)."""
    header = probe(data)
    region = (crop[2], crop[3]) if crop else (header.width, header.height)
    if region[0] < 1 or region[1] < 1:
        raise Rejected("corrupt", f"empty crop {crop}")
    arr = _decode_opencv(data, header, size, region)
    if arr is None:
        arr = _decode_pillow(data, header, size, region)
    if crop:
        k = arr.shape[1] / header.width  # DCT reduction actually applied
        x0, y0 = max(0, round(crop[0] * k)), max(0, round(crop[1] * k))
        x1, y1 = min(arr.shape[1], round((crop[0] + crop[2]) * k)), min(arr.shape[0], round((crop[1] + crop[3]) * k))
        if x1 - x0 < 1 or y1 - y0 < 1:
            raise Rejected("corrupt", f"crop {crop} outside the {header.width}x{header.height} image")
        arr = arr[y0:y1, x0:x1]
    return resize_square(arr, size)


def resize_square(arr: np.ndarray, size: int) -> np.ndarray:
    """Resize to ``size x size`` (no crop): area when shrinking, bicubic when enlarging.

    A large shrink is done as an integer-factor area reduction, OpenCV's fast path (the
    remainder rows/columns, fewer than the factor, are dropped), then a bilinear step of
    less than 2x: a third of the time of one non-integer area resize on a 1024 px image, within
    ~2 grey levels of it.
    """
    h, w = arr.shape[:2]
    if h < size or w < size:
        return cv2.resize(arr, (size, size), interpolation=cv2.INTER_CUBIC)
    kx, ky = w // size, h // size
    if max(kx, ky) < 2:
        return cv2.resize(arr, (size, size), interpolation=cv2.INTER_AREA)
    arr = arr[: h - h % ky, : w - w % kx]
    arr = cv2.resize(arr, (arr.shape[1] // kx, arr.shape[0] // ky), interpolation=cv2.INTER_AREA)
    return cv2.resize(arr, (size, size), interpolation=cv2.INTER_LINEAR)


def encode_jpeg(bgr: np.ndarray, quality: int) -> bytes:
    """JPEG bytes of a BGR image (OpenCV's channel order)."""
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
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
