"""Atomic file writes, image reading with clear errors, and VOC palette PNGs."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

IGNORE_INDEX = 255

# Decoded-size guards of read_image (config keys data.max_pixels / data.min_side). 64 MP is an 8000x8000 photo,
# ~190 MB as RGB; PIL's own bomb check only errors above ~179 MP, far more than the pipeline can afford.
DEFAULT_MAX_PIXELS = 64_000_000
DEFAULT_MIN_SIDE = 8


class ImageSizeError(ValueError):
    """An image too large or too small for wsss; the message names the file and the config key."""


_umask_lock = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows.

    ``os.umask`` can only be read by setting it, which briefly changes it for every thread. Linux reports
    it in /proc/self/status (race-free); elsewhere we set-and-restore under a lock, which serialises our own
    writers but can still race with files another thread creates in that instant.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _umask_lock:
        mask = os.umask(0o077)  # the most restrictive value, should a file slip through meanwhile
        os.umask(mask)
    return mask


def voc_palette() -> list[int]:
    """The 256-colour PASCAL VOC palette (class 255 = ignore is white-ish 224,224,192)."""
    palette = []
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    palette[3 * 255: 3 * 256] = [224, 224, 192]
    return palette


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes the file 0600 whatever the umask: give it the mode open() would have given it, so
        # labels, checkpoints and exports are readable by whoever the umask allows (another account's trainer)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, default=_json_default))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def json_line(record: dict) -> str:
    return json.dumps(record, default=_json_default) + "\n"


def check_image_size(path: str | os.PathLike, width: int, height: int, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                     min_side: int = DEFAULT_MIN_SIDE) -> None:
    """Raise :class:`ImageSizeError` naming ``path`` when ``width`` x ``height`` is outside the limits.

    ``max_pixels`` None or <= 0 disables the upper limit.
    """
    if max_pixels is not None and max_pixels > 0 and width * height > max_pixels:
        raise ImageSizeError(
            f"{path}: image is {width}x{height} px ({width * height / 1e6:.1f} megapixels), above the limit of "
            f"{max_pixels / 1e6:g} megapixels; downscale it, or raise data.max_pixels (--set data.max_pixels=N)")
    if min(width, height) < min_side:
        raise ImageSizeError(f"{path}: image is {width}x{height} px; wsss needs at least {min_side} px on each side "
                             "(data.min_side)")


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) from the file's header, without decoding the pixels (before EXIF rotation)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with Image.open(path) as im:
            return im.size
    except Image.DecompressionBombError as e:
        raise ImageSizeError(f"{path}: {e}") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"cannot read image {path}: {e}. Re-export it as PNG or JPEG, or remove it.") from None


def read_image(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS,
               min_side: int = DEFAULT_MIN_SIDE) -> np.ndarray:
    """Read any image PIL understands as HxWx3 uint8 RGB, applying EXIF rotation.

    Grayscale, RGBA, CMYK, palette and 16-bit inputs are converted; unreadable files raise
    ``ValueError`` naming the file. The size is checked from the header before any pixel is decoded:
    more than ``max_pixels`` pixels (config ``data.max_pixels``; None or <= 0: no wsss limit, PIL's
    bomb check at ~179 MP still applies) or a side shorter
    than ``min_side`` (``data.min_side``) raises :class:`ImageSizeError` (a ``ValueError``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    if max_pixels is not None and max_pixels > 0 and Image.MAX_IMAGE_PIXELS is not None \
            and max_pixels > Image.MAX_IMAGE_PIXELS:
        # a limit raised in the config must not be undercut by PIL's bomb check (it errors at twice this value);
        # only ever raised, to a configured value, so concurrent readers cannot lower it for each other
        Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with Image.open(path) as im:  # lazy: only the header is read here
            check_image_size(path, *im.size, max_pixels=max_pixels, min_side=min_side)
            im.load()
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float64)
                arr = (255.0 * arr / max(arr.max(), 1.0)).astype(np.uint8)
                return np.ascontiguousarray(np.repeat(arr[..., None], 3, axis=2))
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                bg = Image.new("RGBA", im.size, (0, 0, 0, 255))
                im = Image.alpha_composite(bg, im.convert("RGBA"))
            return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))
    except ImageSizeError:
        raise
    except Image.DecompressionBombError as e:  # PIL refused at open, before our check could name the key
        raise ImageSizeError(f"{path}: {e}; raise data.max_pixels if the image is genuine") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"cannot read image {path}: {e}. Re-export it as PNG or JPEG, or remove it.") from None


def read_label_png(path: str | os.PathLike) -> np.ndarray:
    """Read a class-index PNG (palette or grayscale) as HxW uint8; 255 = ignore."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L"):
                raise ValueError(f"mode {im.mode}: a label map must be a palette (P) or grayscale (L) PNG of class indices")
            return np.array(im, dtype=np.uint8)
    except (OSError, SyntaxError) as e:
        raise ValueError(f"cannot read label map {path}: {e}") from None
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def write_label_png(path: str | os.PathLike, label: np.ndarray) -> None:
    """Write a VOC-style palette PNG of class indices, atomically."""
    if label.dtype != np.uint8 or label.ndim != 2:
        raise ValueError(f"label map must be HxW uint8, got {label.dtype} {label.shape}")
    im = Image.fromarray(label, mode="P")
    im.putpalette(voc_palette())
    with atomic_path(path) as tmp:
        im.save(tmp, format="PNG")


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an RGB uint8 image atomically (format from the suffix)."""
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format=Image.registered_extensions().get(Path(path).suffix.lower(), "PNG"))
