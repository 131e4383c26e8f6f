"""Shared checks for the real-data readers: layout, split files, masks, with messages naming the file."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from wsss.utils.io import voc_palette


def require(path: Path, what: str, dataset: str, kind: str = "dir") -> Path:
    """``path`` if it exists as a folder (``kind='dir'``) or file, else a FileNotFoundError naming it."""
    ok = path.is_dir() if kind == "dir" else path.is_file()
    if not ok:
        noun = "folder" if kind == "dir" else "file"
        raise FileNotFoundError(f"{dataset}: missing {noun} {path} ({what}); see docs/datasets.md for the layout")
    return path


def read_split_file(path: Path, dataset: str) -> list[str]:
    """Ids one per line (only the first whitespace-separated token counts); empty or missing files fail clearly."""
    if not path.is_file():
        have = sorted(p.name for p in path.parent.glob("*.txt")) if path.parent.is_dir() else []
        raise FileNotFoundError(f"{dataset}: split file {path} is missing; split files there: {have}")
    ids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise ValueError(f"{dataset}: split file {path} is empty")
    return ids


def check_mask(mask: np.ndarray, image: np.ndarray, mask_path: str | Path, num_classes: int) -> np.ndarray:
    """The mask if it matches the image size and holds only class indices or 255; else ValueError naming the file."""
    if mask.shape != image.shape[:2]:
        raise ValueError(f"{mask_path}: mask size {mask.shape[::-1]} differs from its image size {image.shape[1::-1]}")
    bad = np.setdiff1d(np.unique(mask), np.r_[np.arange(num_classes), 255])
    if bad.size:
        raise ValueError(f"{mask_path}: values {bad.tolist()[:10]} are not class indices (0..{num_classes - 1}) or 255")
    return mask


_PALETTE = np.array(voc_palette(), np.int64).reshape(256, 3)


def read_index_mask(path: str | Path) -> np.ndarray:
    """A class-index mask: palette (P) or grayscale (L) PNGs as stored; RGB masks mapped back through the VOC palette.

    An RGB pixel whose colour is not in the palette raises ValueError naming the file and the colour.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("P", "L"):
                return np.array(im, dtype=np.uint8)
            if im.mode not in ("RGB", "RGBA"):
                raise ValueError(f"mode {im.mode}: expected a palette, grayscale or VOC-coloured RGB mask")
            rgb = np.asarray(im.convert("RGB"), np.int64)
    except (OSError, SyntaxError) as e:
        raise ValueError(f"cannot read mask {path}: {e}") from None
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    codes = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    pal_codes = (_PALETTE[:, 0] << 16) | (_PALETTE[:, 1] << 8) | _PALETTE[:, 2]
    lookup = {int(c): i for i, c in reversed(list(enumerate(pal_codes)))}  # first index wins for repeated colours
    uniq, inverse = np.unique(codes, return_inverse=True)
    unknown = [int(u) for u in uniq if int(u) not in lookup]
    if unknown:
        c = unknown[0]
        raise ValueError(f"{path}: colour {(c >> 16, (c >> 8) & 255, c & 255)} is not in the VOC palette "
                         f"({len(unknown)} unknown colours); save masks as palette PNGs of class indices")
    return np.array([lookup[int(u)] for u in uniq], np.uint8)[inverse.reshape(codes.shape)]


def read_binary_mask(path: str | Path, threshold: int = 127) -> np.ndarray:
    """A JPEG/PNG object mask (Kvasir) as 0/1 uint8: any channel's gray level > ``threshold`` is foreground."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            gray = np.asarray(im.convert("L"), np.uint8)
    except (OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"cannot read mask {path}: {e}") from None
    return (gray > threshold).astype(np.uint8)


def holdout_split(ids: list[str], split: str, val_fraction: float, seed: int, dataset: str) -> list[str]:
    """A deterministic train/val split of ``ids`` for data sets without split files; 'all' is every id."""
    if split == "all":
        return list(ids)
    if split not in ("train", "val"):
        raise ValueError(f"{dataset}: split '{split}' needs a split file; without one use train, val or all")
    order = np.random.default_rng(seed).permutation(len(ids))
    n_val = int(round(val_fraction * len(ids)))
    chosen = sorted(order[:n_val].tolist()) if split == "val" else sorted(order[n_val:].tolist())
    return [ids[i] for i in chosen]
