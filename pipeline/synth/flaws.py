"""Encoding clean images, and the flaws real face collections have.

Every injected flaw is listed in the truth sidecar with what curation should do with it
(``expect``): ``keep``, ``convert`` (decode into correct RGB, orientation applied) or
``reject:<reason>`` with the reason the rejects table must give.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image

JPEG_FLAWS = ("grayscale", "cmyk", "exif_rotated", "truncated", "corrupt", "zero_byte", "not_an_image",
              "aspect", "aspect_boundary", "duplicate", "cross_duplicate")
PNG_FLAWS = ("grayscale", "rgba", "png16", "palette", "truncated", "zero_byte", "not_an_image", "duplicate")
EXPECT = {
    "": "keep", "aspect_boundary": "keep",
    "grayscale": "convert", "cmyk": "convert", "exif_rotated": "convert", "rgba": "convert", "png16": "convert",
    "palette": "convert",
    "truncated": "reject:truncated", "corrupt": "reject:corrupt", "zero_byte": "reject:empty",
    "not_an_image": "reject:not_an_image", "aspect": "reject:aspect",
    "duplicate": "reject:duplicate", "cross_duplicate": "reject:duplicate",
}
# EXIF orientation -> np.rot90 turns applied to the upright image before storing it, so that
# applying the orientation (PIL's ImageOps.exif_transpose) gives the upright face back.
EXIF_TURNS = {3: 2, 6: 1, 8: 3}
NOT_AN_IMAGE = b"<!DOCTYPE html>\n<html><head><title>403 Forbidden</title></head><body>Access denied</body></html>\n"


def encode(img_bgr: np.ndarray, fmt: str, quality: int = 90) -> bytes:
    """Encode a clean BGR image as ``jpg`` or ``png`` (deterministic bytes)."""
    if fmt == "jpg":
        ok, buf = cv2.imencode(".jpg", img_bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    else:
        ok, buf = cv2.imencode(".png", img_bgr, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {img_bgr.shape} image as {fmt}")
    return buf.tobytes()


def _pil_bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    img.save(out, format="JPEG" if fmt == "jpg" else "PNG", **kw)
    return out.getvalue()


def encode_flawed(img_bgr: np.ndarray, fmt: str, kind: str, rng: np.random.Generator, quality: int = 90) -> tuple[bytes, str]:
    """Bytes of ``img_bgr`` carrying flaw ``kind``, and a short detail for the sidecar.

    ``aspect``/``aspect_boundary`` change the canvas and duplicates reuse other files' bytes,
    so the caller handles those; here they encode cleanly.
    """
    rgb = Image.fromarray(cv2.cvtColor(img_bgr, cv2.COLOR_BGR2RGB))
    if kind == "grayscale":
        return encode(cv2.cvtColor(img_bgr, cv2.COLOR_BGR2GRAY), fmt, quality), "single channel"
    if kind == "cmyk":
        return _pil_bytes(rgb.convert("CMYK"), fmt, quality=quality), "CMYK JPEG"
    if kind == "exif_rotated":
        orientation = int(rng.choice(list(EXIF_TURNS)))
        stored = Image.fromarray(np.ascontiguousarray(np.rot90(np.asarray(rgb), EXIF_TURNS[orientation])))
        exif = Image.Exif()
        exif[0x0112] = orientation
        return _pil_bytes(stored, fmt, quality=quality, exif=exif.tobytes()), f"EXIF orientation {orientation}"
    if kind == "rgba":
        h, w = img_bgr.shape[:2]
        alpha = np.zeros((h, w), np.uint8)
        cv2.ellipse(alpha, (w // 2, h // 2), (int(w * 0.42), int(h * 0.48)), 0, 0, 360, 255, -1)
        bgra = np.dstack([img_bgr * (alpha[..., None] > 0), alpha])
        return encode(bgra.astype(np.uint8), "png"), "RGBA, transparent outside the face"
    if kind == "png16":
        return encode(img_bgr.astype(np.uint16) * 257, "png"), "16-bit RGB"
    if kind == "palette":
        return _pil_bytes(rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=256), "png"), "8-bit palette"
    clean = encode(img_bgr, fmt, quality)
    if kind == "truncated":
        cut = int(len(clean) * 0.6)
        return clean[:cut], f"cut to {cut} of {len(clean)} bytes"
    if kind == "corrupt":
        garbage = rng.integers(0, 256, len(clean) - 4, dtype=np.uint8).tobytes()
        return clean[:4] + garbage, "valid magic number, garbage after it"
    if kind == "zero_byte":
        return b"", "empty file"
    if kind == "not_an_image":
        return NOT_AN_IMAGE, "an HTML error page saved with an image extension"
    return clean, ""
