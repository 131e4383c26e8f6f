"""The Python API: stage one in a few lines, for notebooks and other programs.

    import wsss
    labeler = wsss.Labeler.from_config("photos", classes=["cat", "dog"])  # a shipped preset or a path
    result = labeler(image)            # HxWx3 uint8 RGB array, or a path
    result.label_map, result.classes, result.scores, result.boxes, result.masks(), result.overlay()
    labeler.run("photos/", "out/")     # the resumable batch run: the same outputs as gen_pseudo
    wsss.evaluate("out/labels", "truth/", classes=["background", "cat", "dog"])
    wsss.export("out/", "yolo")

Models load once per :class:`Labeler` (on the first image) and every call runs the CLI's own
:class:`~wsss.pseudo.PseudoLabeler`, so a result equals the label ``gen_pseudo`` writes for that image.
"""
from __future__ import annotations

import copy
import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

PathLike = str | os.PathLike


@dataclasses.dataclass
class LabelResult:
    """One image's pseudo-label: the label map (0 background, 255 uncertain) and what led to it."""

    image: np.ndarray
    label_map: np.ndarray
    class_names: list[str]  # of the label map's indices (0 = background)
    classes: list[str]  # the classes found in the image
    scores: dict[str, float]  # label-stage score of each class
    boxes: list[tuple[str, list[int], float]]  # (class, [x0, y0, x1, y1], score)
    extras: dict[str, Any]

    def masks(self) -> dict[str, np.ndarray]:
        """One HxW bool mask per class found (uncertain pixels belong to none)."""
        return {name: self.label_map == self.class_names.index(name) for name in self.classes}

    def overlay(self) -> np.ndarray:
        """The label map painted over the image (RGB uint8), for a quick look."""
        from wsss.viz import overlay

        return overlay(self.image, self.label_map)


def _class_override(classes: list[str] | None) -> list[str]:
    if not classes:
        return []
    names = ["background", *[c for c in classes if c != "background"]]
    return [f"data.folder.class_names=[{', '.join(names)}]"]


def _as_overrides(overrides: dict[str, Any]) -> list[str]:
    """``{"masks.name": "grabcut_box"}`` as ``--set`` strings (values written as YAML)."""
    import yaml

    return [f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"
            for k, v in overrides.items()]


class Labeler:
    """Stage one for single images and folders, built from a config (models load once per labeler)."""

    def __init__(self, cfg: Any, work_dir: PathLike | None = None, device: str | None = None,
                 class_names: list[str] | None = None) -> None:
        from wsss.record import Resources
        from wsss.utils.runtime import resolve_device

        self.cfg = cfg
        self.work_dir = Path(work_dir) if work_dir is not None else Path("work_dirs") / str(cfg.name)
        self.class_names = list(class_names) if class_names else self._data_class_names(cfg)
        self.resources = Resources(cfg, self.class_names, self.work_dir, resolve_device(device or cfg.device))
        self._labeler: Any = None

    @classmethod
    def from_config(cls, config: PathLike, classes: list[str] | None = None, work_dir: PathLike | None = None,
                    device: str | None = None, **overrides: Any) -> Labeler:
        """A labeler from a shipped preset (``"photos"``) or a YAML path.

        ``classes`` names the foreground classes in plain words (the photo route maps them to ImageNet
        through WordNet); ``overrides`` are dotted config keys, e.g. ``**{"masks.name": "grabcut_box"}``.
        """
        from wsss.config import load_config

        path = _resolve_config(config)
        sets = _class_override(classes) + _as_overrides(overrides)
        cfg = load_config(path, sets)
        names = ["background", *[c for c in classes if c != "background"]] if classes else None
        return cls(cfg, work_dir, device, names)

    @staticmethod
    def _data_class_names(cfg: Any) -> list[str]:
        names = getattr(getattr(cfg.data, cfg.data.name, None), "class_names", None)
        if names:
            return list(names)
        from wsss.data import build_dataset

        return build_dataset(cfg.data, cfg.data.split).class_names

    @property
    def pipeline(self) -> Any:
        """The :class:`~wsss.pseudo.PseudoLabeler` (built, and its models loaded, on first use)."""
        if self._labeler is None:
            from wsss.pseudo import PseudoLabeler

            self._labeler = PseudoLabeler(self.cfg, self.resources)
        return self._labeler

    def __call__(self, image: np.ndarray | PathLike, image_id: str | None = None) -> LabelResult:
        """Label one image (an RGB array or an image file), exactly as ``gen_pseudo`` would."""
        from wsss.data.base import Sample
        from wsss.pseudo.pipeline import run_stages, seed_image
        from wsss.record import Record
        from wsss.utils.io import read_image

        if isinstance(image, (str, os.PathLike)):
            image_id = image_id or Path(image).stem
            image = read_image(image)
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 RGB image, got an array of shape {image.shape} and "
                             f"dtype {image.dtype}")
        image_id = image_id or "image"
        seed_image(self.cfg.seed, image_id)
        rec = run_stages(self.pipeline, Record(Sample(image_id, image)), self.cfg.pseudo, self.pipeline.steps_needed())
        names = self.class_names
        return LabelResult(image, rec.label_map, names, [names[c] for c in rec.classes],
                           {names[c]: float(s) for c, s in rec.scores.items() if c < len(names)},
                           [(names[b.cls], [int(v) for v in b.as_list()], float(b.score)) for b in rec.boxes],
                           dict(rec.extras))

    def run(self, folder: PathLike, out_dir: PathLike, split: str = "all") -> dict[str, dict]:
        """Label every image of ``folder`` into ``out_dir`` (labels/, manifest.jsonl, overlays/), resumable.

        The same outputs and rules as ``gen_pseudo``: finished images are skipped on a rerun, a bad image
        is recorded and the run goes on, ``out_dir`` is locked while it runs. Returns the manifest.
        """
        from wsss.data import build_dataset
        from wsss.pseudo import generate_pseudo_labels

        cfg = copy.deepcopy(self.cfg)
        cfg.data.name = "folder"
        cfg.data.split = split
        cfg.data.folder.root = str(folder)
        cfg.data.folder.class_names = list(self.class_names)
        dataset = build_dataset(cfg.data, split)
        return generate_pseudo_labels(cfg, dataset, self.resources, out_dir)


def _resolve_config(config: PathLike) -> Path:
    """A path as is; otherwise a shipped preset's name (``photos``, ``quickstart``, ``train/voc_mask2former``)."""
    from wsss.paths import resolve_config

    return Path(resolve_config(str(config)))


def evaluate(pred_dir: PathLike, gt_dir: PathLike, classes: list[str] | None = None) -> dict:
    """mIoU, fwIoU, mAcc, Dice ... of the label PNGs in ``pred_dir`` against those in ``gt_dir`` (same file
    stems; 255 in the ground truth is ignored; a missing prediction counts as background).

    ``classes`` names the indices (0 = background); by default they are 0..the largest index found.
    """
    from wsss.evaluation import evaluate_label_dir
    from wsss.utils.io import read_label_png

    gt_dir = Path(gt_dir)
    paths = sorted(gt_dir.glob("*.png"))
    if not paths:
        raise FileNotFoundError(f"{gt_dir}: no ground-truth label PNGs (<id>.png with class indices)")
    if classes is None:
        top = max(int(np.max(np.where(m == 255, 0, m))) for m in (read_label_png(p) for p in paths))
        classes = ["background", *[f"class_{i}" for i in range(1, top + 1)]]
    return evaluate_label_dir(pred_dir, _LabelFolder(gt_dir, list(classes), paths))


class _LabelFolder:
    """A folder of ground-truth label PNGs as a data set (for scoring only: no images)."""

    def __init__(self, root: Path, class_names: list[str], paths: list[Path]) -> None:
        self.root, self.class_names = root, class_names
        self.ids = [p.stem for p in paths]

    def mask_path(self, image_id: str) -> str:
        return str(self.root / f"{image_id}.png")

    def labels(self, image_id: str) -> None:
        return None

    def load(self, image_id: str) -> Any:
        raise NotImplementedError("a label folder holds no images")


def export(pseudo_dir: PathLike, fmt: str, out: PathLike | None = None, **options: Any) -> dict:
    """Write ``pseudo_dir``'s labels in an annotation tool's format (``wsss.exporters.EXPORTERS`` lists them)."""
    from wsss.exporters import export as export_labels

    return export_labels(pseudo_dir, fmt, out=out, **options)
