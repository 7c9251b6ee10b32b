"""Image checks and the vectors k-means clusters images on, per batch.

`check_and_decode` opens an encoded image with Pillow and either returns it as
8-bit RGB or says, in words, why it cannot be used: empty, not an image, a format
outside SUPPORTED, more pixels than the cap (checked from the header, before any
pixel is decoded: decompression bombs never expand), truncated data. Odd modes are
converted: CMYK, 16-bit and 32-bit grey, palette, alpha (composited on white), 1-bit.

`thumbnail_vectors` turns a batch of images into small fixed-size vectors (grey or
colour, values in [0, 1]): cheap and deterministic. JPEGs are decoded at reduced
scale (Pillow's draft mode), so a thumbnail costs less than a full decode.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile

SUPPORTED = ("PNG", "JPEG", "BMP", "GIF", "WEBP")
DEFAULT_MAX_PIXELS = 64_000_000  # ~8000 x 8000; Pillow's own bomb limit is 89M
FORMAT_NAMES = {"JPEG": "jpeg", "PNG": "png", "BMP": "bmp", "GIF": "gif", "WEBP": "webp"}

ImageFile.LOAD_TRUNCATED_IMAGES = False


def open_checked(data: bytes, max_pixels: int) -> tuple[Image.Image | None, str | None, str | None]:
    """(image not yet decoded, format, None) or (None, None, reason), from the header only."""
    if not data:
        return None, None, "empty file (0 bytes)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        return None, None, f"image too large to open safely: {e}"
    except Exception as e:  # noqa: BLE001 - Pillow raises many types for bad data
        return None, None, f"not an image Pillow can read ({type(e).__name__})"
    fmt = img.format or "unknown"
    if fmt not in SUPPORTED:
        return None, None, f"unsupported format {fmt} (supported: {', '.join(SUPPORTED)})"
    w, h = img.size
    if w * h > max_pixels:
        return None, None, f"image is {w}x{h} = {w * h} pixels, over the cap of {max_pixels} (--max_pixels)"
    if w == 0 or h == 0:
        return None, None, f"image has no pixels ({w}x{h})"
    return img, FORMAT_NAMES[fmt], None


def to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB from any mode Pillow decodes (alpha composited on white)."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
        return Image.fromarray(a.astype(np.uint8), "L").convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV


def decode(data: bytes, max_pixels: int, draft: tuple[int, int] | None = None):
    """(RGB image, format, None) or (None, None, reason). `draft`: decode JPEG at reduced scale."""
    img, fmt, reason = open_checked(data, max_pixels)
    if reason:
        return None, None, reason
    return load_rgb(img, fmt, draft)


def load_rgb(img: Image.Image, fmt: str, draft: tuple[int, int] | None = None):
    """Decodes the pixels of an image `open_checked` passed: (RGB image, format, None) or
    (None, None, reason). Safe on several threads at once (one image each)."""
    try:
        if draft and fmt == "jpeg":
            img.draft("RGB", draft)
        img.seek(0)  # GIF, WebP: the first frame
        img.load()
        return to_rgb(img), fmt, None
    except Exception as e:  # noqa: BLE001 - truncated or corrupt pixel data
        return None, None, f"truncated or corrupt image data ({type(e).__name__}: {e})"


def thumbnail(img: Image.Image, size: int, color: bool) -> np.ndarray:
    """A size x size thumbnail (aspect ignored), float32 in [0, 1], flattened."""
    small = img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    if not color:
        small = small.convert("L")
    return (np.asarray(small, dtype=np.float32) / 255.0).ravel()


def thumbnail_dim(size: int, color: bool) -> int:
    return size * size * (3 if color else 1)


def batch_vectors(blobs, max_pixels: int, dim: int, to_vector, draft: tuple[int, int] | None = None,
                  threads=None):
    """Per batch: (vectors float32[n, dim] (zeros where rejected), formats, reasons).

    Each image is checked and decoded once; `to_vector(rgb_image)` gives its vector.
    With `threads` (an Executor), batches of images larger than THREADED_PIXELS on
    average are cut into DECODE_RUNS runs decoded on it: Pillow releases the GIL while
    it decodes and resizes. Results do not depend on the threads (each image's vector is
    computed alone).
    """
    n = len(blobs)
    out = np.zeros((n, dim), np.float32)
    formats = np.full(n, None, dtype=object)
    reasons = np.full(n, None, dtype=object)

    # Headers are checked here, in this thread (cheap, and open_checked's
    # warnings.catch_warnings is not thread-safe); the pixels are decoded on the threads.
    opened = [open_checked(data, max_pixels) for data in blobs]

    def run(lo: int, hi: int) -> None:
        for i in range(lo, hi):
            img, fmt, reason = opened[i]
            if not reason:
                img, fmt, reason = load_rgb(img, fmt, draft)
            if reason:
                reasons[i] = reason
                continue
            formats[i] = fmt
            out[i] = to_vector(img)
            opened[i] = None  # the decoded image is not needed any more

    pixels = sum(img.size[0] * img.size[1] for img, _, reason in opened if not reason)
    cuts = np.linspace(0, n, min(n, DECODE_RUNS) + 1).astype(int) if n else [0, 0]
    if threads is None or len(cuts) <= 2 or pixels < THREADED_PIXELS * n:
        run(0, n)
    else:
        list(threads.map(run, cuts[:-1], cuts[1:]))  # list(): re-raises a thread's error
    return out, formats, reasons


# Threads pay off where decoding dominates: 384 px images (half PNG, half JPEG) ran 1.55x
# faster on two threads, 64 px PNGs 5% slower (per-image Python work holds the GIL).
THREADED_PIXELS = 128 * 128  # mean pixels per image from which a batch is decoded on threads
DECODE_RUNS = 4  # runs of images per batch decoded on threads (as many as a worker's threads, at most)


def thumbnail_vectors(blobs, max_pixels: int, size: int, color: bool, threads=None):
    """Thumbnails of a batch; JPEGs decode at reduced scale (draft mode)."""
    return batch_vectors(blobs, max_pixels, thumbnail_dim(size, color), lambda img: thumbnail(img, size, color),
                         draft=(4 * size, 4 * size), threads=threads)


def model_input(img: Image.Image, size: int) -> np.ndarray:
    """RGB resized to size x size, scaled to [-1, 1] as InceptionV3 expects."""
    arr = np.asarray(img.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)
    return arr / 127.5 - 1.0


EMBEDDING_DIM = 2048  # InceptionV3 without its top, average-pooled


@dataclass(frozen=True)
class ImageVectors:
    """What k-means clusters an image on: a thumbnail, or the input of an InceptionV3 embedding."""

    cluster_on: str = "thumbnail"  # thumbnail | inception_v3
    max_pixels: int = DEFAULT_MAX_PIXELS
    thumbnail_size: int = 16
    thumbnail_color: bool = False
    embedding_image_size: int = 299
    embedding_weights: str = "imagenet"

    @property
    def dim(self) -> int:
        """Length of the clustering vector (the embedding's, for inception_v3)."""
        if self.cluster_on == "inception_v3":
            return EMBEDDING_DIM
        return thumbnail_dim(self.thumbnail_size, self.thumbnail_color)

    def vectorize(self, blobs, threads=None):
        """blobs -> (vectors, formats, reasons): thumbnails, or model inputs for the embedding
        (large images decoded on `threads`, an Executor, where given)."""
        if self.cluster_on == "thumbnail":
            return thumbnail_vectors(blobs, self.max_pixels, self.thumbnail_size, self.thumbnail_color, threads)
        size = self.embedding_image_size
        return batch_vectors(blobs, self.max_pixels, size * size * 3, lambda img: model_input(img, size).ravel(),
                             threads=threads)
