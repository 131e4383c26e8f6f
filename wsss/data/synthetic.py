"""The embedded data set: textured shapes on cluttered backgrounds, generated from a seed.

Each class is a shape *and* a texture (a striped disc, a checkered block, a dotted triangle,
a wavy cross); object colours are random, so colour alone never tells the class. Backgrounds
are smooth muted colour fields with clutter (lines, outlines, speckle). Ground-truth masks are
written for evaluation only; training code sees the image-level labels.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from wsss.data.folder import FolderDataset
from wsss.paths import wsss_home
from wsss.utils.io import write_image, write_json_atomic, write_label_png, write_text_atomic

CLASS_NAMES = ["background", "disc", "block", "triangle", "cross"]


def default_root() -> str:
    """``$WSSS_HOME/datasets/synthetic``: generated data goes to the cache dir, never into the current directory."""
    return str(wsss_home() / "datasets" / "synthetic")


@dataclasses.dataclass
class SyntheticParams:
    root: str = dataclasses.field(default_factory=default_root)
    num_train: int = 320
    num_val: int = 80
    size: int = 128
    max_objects: int = 3
    seed: int = 0


def _hsv_colour(rng: np.random.Generator, sat: tuple[float, float], val: tuple[float, float]) -> np.ndarray:
    hsv = np.uint8([[[rng.integers(0, 180), 255 * rng.uniform(*sat), 255 * rng.uniform(*val)]]])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    grid = np.stack([_hsv_colour(rng, (0.0, 0.35), (0.25, 0.8)) for _ in range(16)]).reshape(4, 4, 3)
    img = cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
    for _ in range(rng.integers(6, 14)):  # clutter: lines and small outlines
        colour = _hsv_colour(rng, (0.0, 0.6), (0.2, 0.9)).tolist()
        p = rng.integers(0, size, 4)
        if rng.random() < 0.6:
            cv2.line(img, (int(p[0]), int(p[1])), (int(p[2]), int(p[3])), colour, int(rng.integers(1, 3)))
        else:
            cv2.circle(img, (int(p[0]), int(p[1])), int(rng.integers(3, max(size // 10, 4))), colour, 1)
    img += rng.normal(0, 6, img.shape).astype(np.float32)
    return img


def _shape_mask(cls: int, size: int, centre: np.ndarray, radius: float, angle: float) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    c = tuple(int(v) for v in centre)
    if cls == 1:  # disc: an ellipse
        cv2.ellipse(mask, c, (int(radius), int(radius * 0.8)), np.degrees(angle), 0, 360, 1, -1)
    elif cls == 2:  # block: a rotated rectangle
        box = cv2.boxPoints(((c[0], c[1]), (radius * 1.8, radius * 1.2), np.degrees(angle)))
        cv2.fillPoly(mask, [box.astype(np.int32)], 1)
    elif cls == 3:  # triangle
        pts = [centre + radius * np.array([np.cos(angle + k * 2 * np.pi / 3), np.sin(angle + k * 2 * np.pi / 3)])
               for k in range(3)]
        cv2.fillPoly(mask, [np.array(pts, np.int32)], 1)
    elif cls == 4:  # cross: two bars
        for a in (angle, angle + np.pi / 2):
            box = cv2.boxPoints(((c[0], c[1]), (radius * 2.0, radius * 0.6), np.degrees(a)))
            cv2.fillPoly(mask, [box.astype(np.int32)], 1)
    return mask.astype(bool)


def _texture(cls: int, size: int, rng: np.random.Generator, angle: float) -> np.ndarray:
    """A two-colour pattern in [0,1]: stripes, checker, dots or waves by class."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    period = rng.uniform(5, 8)
    if cls == 1:
        pattern = np.sin(2 * np.pi * u / period) > 0
    elif cls == 2:
        pattern = (np.floor(u / period) + np.floor(v / period)) % 2 == 0
    elif cls == 3:
        pattern = ((u % period) - period / 2) ** 2 + ((v % period) - period / 2) ** 2 < (period / 3.5) ** 2
    else:
        pattern = np.sin(2 * np.pi * (u + 2 * np.sin(2 * np.pi * v / (2 * period))) / period) > 0.3
    return pattern.astype(np.float32)


def make_image(rng: np.random.Generator, size: int, max_objects: int) -> tuple[np.ndarray, np.ndarray]:
    """One image and its class-index mask."""
    img = _background(rng, size)
    mask = np.zeros((size, size), np.uint8)
    for _ in range(int(rng.integers(1, max_objects + 1))):
        cls = int(rng.integers(1, len(CLASS_NAMES)))
        radius = rng.uniform(0.12, 0.24) * size
        centre = rng.uniform(radius, size - radius, 2)
        angle = rng.uniform(0, np.pi)
        shape = _shape_mask(cls, size, centre, radius, angle)
        if shape.sum() < 40:
            continue
        c1 = _hsv_colour(rng, (0.55, 1.0), (0.55, 1.0))
        c2 = c1 * rng.uniform(0.35, 0.6)
        tex = _texture(cls, size, rng, rng.uniform(0, np.pi))[..., None]
        obj = tex * c1 + (1 - tex) * c2
        img[shape] = obj[shape]
        mask[shape] = cls
    img += rng.normal(0, 4, img.shape).astype(np.float32)
    img = cv2.GaussianBlur(img, (3, 3), 0.6)
    return np.clip(img, 0, 255).astype(np.uint8), mask


def generate(params: SyntheticParams) -> Path:
    """Write the data set in the folder layout under ``params.root`` (skipped if already there)."""
    root = Path(params.root)
    meta = dataclasses.asdict(params) | {"version": 1}
    stamp = hashlib.sha1(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:12]
    if (root / "meta.json").is_file() and json.loads((root / "meta.json").read_text()).get("stamp") == stamp:
        return root
    rng = np.random.default_rng(params.seed)
    splits: dict[str, list[str]] = {"train": [], "val": []}
    labels: dict[str, list[str]] = {}
    total = params.num_train + params.num_val
    for i in tqdm(range(total), desc="synthetic data", unit="img"):
        split = "train" if i < params.num_train else "val"
        image_id = f"{split}_{i:05d}"
        img, mask = make_image(rng, params.size, params.max_objects)
        write_image(root / "images" / f"{image_id}.png", img)
        write_label_png(root / "masks" / f"{image_id}.png", mask)
        labels[image_id] = [CLASS_NAMES[c] for c in np.unique(mask) if c > 0]
        splits[split].append(image_id)
    for split, ids in splits.items():
        write_text_atomic(root / "splits" / f"{split}.txt", "\n".join(ids) + "\n")
    write_text_atomic(root / "classes.txt", "\n".join(CLASS_NAMES) + "\n")
    write_json_atomic(root / "labels.json", labels)
    write_json_atomic(root / "meta.json", meta | {"stamp": stamp})  # last: marks the set complete
    return root


def synthetic_dataset(params: SyntheticParams, split: str) -> FolderDataset:
    return FolderDataset(generate(params), split)
