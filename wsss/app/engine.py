"""The demo's engine: a view over the CLI's :class:`~wsss.pseudo.PseudoLabeler`, one image at a time.

The user's parameters are patched into the config's own stage sections and passed to the labeler
as per-call overrides, so for the same image and parameters the demo and ``gen_pseudo`` give the same
label map. Each stage is rebuilt only when its section changes; the classifier and any other model
live in ``Resources`` and load once per process.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from wsss.cam.gradcam import cam_method_names
from wsss.classifier import get_classifier
from wsss.data import SegDataset, build_dataset
from wsss.data.base import Sample
from wsss.evaluation.metrics import class_iou
from wsss.labels import class_probabilities
from wsss.masks import REFINERS
from wsss.models.weights import checkpoint_available
from wsss.pseudo import PseudoLabeler
from wsss.pseudo.pipeline import seed_image
from wsss.record import Record, Resources
from wsss.utils.io import DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE, check_image_size, image_size, read_image
from wsss.utils.runtime import resolve_device


@dataclasses.dataclass
class DemoParams:
    """What the user sets in the middle column."""

    cam_method: str = "GradCAM"
    eigen_smooth: bool = False
    aug_smooth: bool = False
    box_threshold: float = 0.5
    mask_model: str = "grabcut_cam"
    target: int | None = None  # None = the class the classifier predicts


@dataclasses.dataclass
class DemoResult:
    image_id: str
    image: np.ndarray
    label_map: np.ndarray  # HxW uint8 from the refiner
    mask: np.ndarray  # HxW bool: the target class
    target: int
    target_name: str
    predicted: int
    confidence: float  # classifier probability of the target class
    road: float | None
    iou: float | None  # against ground truth, when the image has some
    stages: list[tuple[np.ndarray, str]]
    log: list[str]
    seconds: float

    def metrics_text(self) -> str:
        parts = [
            f"class: {self.target_name}",
            f"confidence: {self.confidence:.3f}",
            f"ROAD: {self.road:.4f}" if self.road is not None else "ROAD: n/a",
            f"IoU vs ground truth: {self.iou:.3f}" if self.iou is not None else "IoU vs ground truth: n/a",
            f"mask area: {100.0 * self.mask.mean():.1f}%",
            f"time: {self.seconds:.2f} s",
        ]
        return " | ".join(parts)


def _checkpoint_fields(params: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Every field called ``checkpoint`` (or ending in ``_checkpoint``) in a params dataclass, nested ones too."""
    out = []
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        if dataclasses.is_dataclass(value):
            out += _checkpoint_fields(value, f"{prefix}{f.name}.")
        elif f.name == "checkpoint" or f.name.endswith("_checkpoint"):
            out.append((prefix + f.name, value))
    return out


def checkpoints_configured(params: Any) -> bool:
    """True when a refiner needs no checkpoint, or at least one of its checkpoints is set and reachable."""
    if params is None or not dataclasses.is_dataclass(params):
        return True
    fields = _checkpoint_fields(params)
    if not fields:
        return True
    return any(isinstance(spec, str) and checkpoint_available(spec) for _, spec in fields)


def mask_model_choices(cfg: Any) -> list[tuple[str, str]]:
    """(label, refiner name) for every registered refiner whose checkpoints are configured.

    A SAM-family refiner shows its model family (SAM / SAM 2) in the label.
    """
    out = []
    for name in REFINERS.names():
        params = getattr(cfg.masks, name, None)
        if not checkpoints_configured(params):
            continue
        family = getattr(getattr(params, "model", None), "family", None)
        label = f"{name} ({'SAM 2' if family == 'sam2' else 'SAM'})" if family in ("sam", "sam2") else name
        out.append((label, name))
    return out


class DemoEngine:
    """Everything the UI calls; no Gradio in here, so it is tested directly."""

    def __init__(
        self, cfg: Any, work_dir: str | Path, device: torch.device | None = None, max_side: int = 1024
    ) -> None:
        self.cfg = cfg
        self.max_side = max_side
        self.datasets: dict[str, SegDataset] = {}
        errors = []
        for split in dict.fromkeys([cfg.data.split, cfg.data.val_split]):
            try:
                self.datasets[split] = build_dataset(cfg.data, split)
            except (FileNotFoundError, ValueError) as e:
                errors.append(f"{split}: {e}")
        if not self.datasets:
            raise FileNotFoundError(
                "demo: no split of data set '{}' could be read: {}".format(cfg.data.name, "; ".join(errors))
            )
        data_classes = next(iter(self.datasets.values())).class_names
        self.class_names = self._classifier_classes(data_classes)
        self.has_ground_truth = self.class_names == data_classes  # GT indices mean the same classes
        self.resources = Resources(cfg, self.class_names, work_dir, device or resolve_device(cfg.device))
        self.classifier = get_classifier(self.resources)  # load now: the first click is fast, errors show at start
        # the CLI's own stage one; stages are built on the first click, with the user's parameters
        self.labeler = PseudoLabeler(cfg, self.resources, preload=())
        self._lock = threading.Lock()  # one generation at a time: the stages share one model

    def _classifier_classes(self, data_classes: list[str]) -> list[str]:
        """The data set's classes when the bundled ImageNet model can stand for them (class words mapped
        through WordNet, the photo route's "object"), else ImageNet's 1000 categories to choose from."""
        c = self.cfg.classifier
        if c.name == "imagenet_lite0":
            from wsss.classifier import imagenet_categories, imagenet_class_groups

            p = c.imagenet_lite0
            try:
                imagenet_class_groups(data_classes, p.class_map, p.object_class, p.unmapped)
            except ValueError:
                return ["background"] + imagenet_categories()
        return list(data_classes)

    # ------------------------------------------------------------------ parameters and stages
    def default_params(self) -> DemoParams:
        choices = [name for _, name in mask_model_choices(self.cfg)]
        mask = (
            self.cfg.masks.name
            if self.cfg.masks.name in choices
            else ("grabcut_cam" if "grabcut_cam" in choices else choices[0])
        )
        g = self.cfg.cam.gradcam
        return DemoParams(
            g.method, g.eigen_smooth, g.aug_smooth, float(self.cfg.boxes.cam_components.threshold), mask, None
        )

    @property
    def builds(self) -> Counter[str]:
        """How often each stage was built (a stage is rebuilt only when its parameters change)."""
        return self.labeler.builds

    def overrides(self, p: DemoParams) -> dict[str, Any]:
        """The config's stage sections with the user's parameters patched in.

        The CAM picker applies to ``cam.gradcam`` and the box threshold to ``boxes.cam_components``; a
        config with another CAM method or box source keeps it (the log says so). ROAD is always on: the
        demo shows it for every CAM.
        """
        cam = copy.deepcopy(self.cfg.cam)
        cam.gradcam = dataclasses.replace(cam.gradcam, method=p.cam_method, eigen_smooth=p.eigen_smooth,
                                          aug_smooth=p.aug_smooth, road=True)
        boxes = copy.deepcopy(self.cfg.boxes)
        boxes.cam_components = dataclasses.replace(boxes.cam_components, threshold=float(p.box_threshold))
        choices = [name for _, name in mask_model_choices(self.cfg)]
        if p.mask_model not in choices:
            raise ValueError(
                f"mask model '{p.mask_model}' is not available here; choose one of {choices} "
                "(SAM refiners appear once masks.<name>.model.checkpoint points at a checkpoint)"
            )
        masks = copy.deepcopy(self.cfg.masks)
        masks.name = p.mask_model
        return {"cam": cam, "boxes": boxes, "masks": masks}

    def quality_estimates(self) -> dict[str, float]:
        """{image id: quality estimate} from ``<work_dir>/<pseudo.out>/manifest.jsonl`` (empty when there is no
        run, or its lines carry no estimate): the gallery can show the worst pseudo-labels first."""
        from wsss.pseudo.review import load_queue

        try:
            items = load_queue(self.resources.work_dir / self.cfg.pseudo.out)
        except FileNotFoundError:
            return {}
        return {it.image: it.estimate for it in items if it.estimate is not None}

    # ------------------------------------------------------------------ inputs
    def pixel_limits(self) -> tuple[int | None, int]:
        """(max pixels, min side) of an upload: the config's ``data.max_pixels`` / ``data.min_side`` when set."""
        return (getattr(self.cfg.data, "max_pixels", DEFAULT_MAX_PIXELS),
                max(8, int(getattr(self.cfg.data, "min_side", DEFAULT_MIN_SIDE))))

    def check_image(self, image: np.ndarray | str | os.PathLike) -> np.ndarray:
        """An uploaded array or image file as HxWx3 uint8 RGB, its longer side capped at ``max_side``.

        More pixels than ``data.max_pixels`` raise :class:`ImageSizeError` before any resizing; a file is
        refused from its header alone, so a huge image never gets decoded and never holds the queue.
        """
        max_pixels, min_side = self.pixel_limits()
        if isinstance(image, (str, os.PathLike)):
            check_image_size(Path(image).name, *image_size(image), max_pixels=max_pixels, min_side=min_side)
            image = read_image(image, max_pixels=max_pixels, min_side=min_side)
        image = np.asarray(image)
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        if image.ndim != 3 or image.shape[2] not in (3, 4) or min(image.shape[:2]) < min_side:
            raise ValueError(
                f"expected an RGB image of at least {min_side}x{min_side} pixels, got an array of shape {image.shape}"
            )
        h, w = image.shape[:2]
        check_image_size("uploaded image", w, h, max_pixels=max_pixels, min_side=min_side)  # before the copy below
        image = np.ascontiguousarray(image[..., :3].astype(np.uint8))
        scale = self.max_side / max(image.shape[:2])
        if scale < 1:
            image = cv2.resize(
                image, (round(image.shape[1] * scale), round(image.shape[0] * scale)), interpolation=cv2.INTER_AREA
            )
        return image

    def load_sample(self, split: str, image_id: str) -> Sample:
        if split not in self.datasets or image_id not in self.datasets[split].ids:
            raise KeyError(f"no image '{image_id}' in split '{split}'")
        return self.datasets[split].load(image_id)

    # ------------------------------------------------------------------ generation
    def generate(self, sample: Sample, p: DemoParams) -> Iterator[str | DemoResult]:
        """Yield log lines while the stages run, then the :class:`DemoResult`."""
        with self._lock:
            yield from self._generate(sample, p)

    def _generate(self, sample: Sample, p: DemoParams) -> Iterator[str | DemoResult]:
        start = time.perf_counter()
        log: list[str] = []

        def say(line: str) -> str:
            log.append(line)
            return line

        h, w = sample.image.shape[:2]
        overrides = self.overrides(p)
        yield say(f"[1/5] classifying '{sample.id}' ({w}x{h})")
        seed_image(self.cfg.seed, sample.id)  # as gen_pseudo does, so both give the same label map
        rec = Record(sample)
        probs = class_probabilities(self.classifier, rec)  # the labels stage's rule and forward pass
        predicted = max(probs, key=probs.get)
        target = predicted if p.target is None else int(p.target)
        if target not in probs:
            raise ValueError(
                f"target class {target} is not one of the classifier's classes 1..{len(self.class_names) - 1}"
            )
        top = sorted(probs, key=probs.get, reverse=True)[:3]
        yield say("      top: " + ", ".join(f"{self.class_names[c]} {probs[c]:.3f}" for c in top))
        yield say(
            f"      target: {self.class_names[target]} (confidence {probs[target]:.3f}"
            f"{', predicted' if target == predicted else ''})"
        )
        rec.classes, rec.scores = [target], probs  # the user's pick stands in for the labels stage

        t = time.perf_counter()
        if self.cfg.cam.name == "gradcam":
            yield say(f"[2/5] CAM: {p.cam_method} (eigen smooth {'on' if p.eigen_smooth else 'off'}, "
                      f"aug smooth {'on' if p.aug_smooth else 'off'})")
        else:
            yield say(f"[2/5] CAM: {self.cfg.cam.name} (the config's; the CAM picker applies to gradcam)")
        self.labeler.process(rec, overrides, steps=("cam",))
        yield say(f"      done in {time.perf_counter() - t:.2f} s")
        road = rec.extras.get("road", {}).get(str(target))
        if road is None:
            yield say(f"[3/5] ROAD: n/a ({self.cfg.cam.name} records none)")
        else:
            yield say(f"[3/5] ROAD of the CAM: {road:.4f} (higher = the CAM marks what the classifier uses)")

        # a label map holds classes 0..254: ImageNet's 1000 categories are painted as class 1
        local = target if target < 255 else 1
        if local != target:
            rec.classes, rec.cams = [local], {local: rec.cams[target]}
        self.labeler.process(rec, overrides, steps=("boxes",))
        where = (f"at CAM >= {p.box_threshold:.2f}" if self.cfg.boxes.name == "cam_components"
                 else f"from {self.cfg.boxes.name}")
        yield say(f"[4/5] boxes {where}: " + (", ".join(str(b.as_list()) for b in rec.boxes) or "none"))

        t = time.perf_counter()
        yield say(f"[5/5] mask: {p.mask_model}")
        self.labeler.process(rec, overrides, steps=("masks",))
        mask = rec.label_map == local
        yield say(f"      done in {time.perf_counter() - t:.2f} s, mask covers {100.0 * mask.mean():.1f}% of the image")

        iou = None
        if sample.mask is not None and self.has_ground_truth:
            iou = class_iou(mask, sample.mask, target)
            yield say(f"      IoU vs ground truth: {iou:.3f}" if iou is not None
                      else "      IoU: no object in mask or ground truth")
        seconds = time.perf_counter() - start
        yield say(f"finished in {seconds:.2f} s")
        name = self.class_names[target]
        yield DemoResult(sample.id, sample.image, rec.label_map, mask, target, name, predicted, float(probs[target]),
                         None if road is None else float(road), iou, self.labeler.stage_images(rec, local, name),
                         log, seconds)

    def run(self, sample: Sample, p: DemoParams) -> DemoResult:
        """Generation without the live log."""
        result = None
        for event in self.generate(sample, p):
            if isinstance(event, DemoResult):
                result = event
        assert result is not None
        return result

    def close(self) -> None:
        self.labeler.close()


__all__ = [
    "DemoEngine",
    "DemoParams",
    "DemoResult",
    "cam_method_names",
    "checkpoints_configured",
    "mask_model_choices",
]
