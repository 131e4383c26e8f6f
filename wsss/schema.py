"""The config schema: top-level sections, and one section per stage built from its registry.

A stage section has ``name`` (the implementation) and one sub-mapping of parameters per
implementation, so switching ``name`` never leaves another method's keys invalid::

    masks:
      name: grabcut_cam
      grabcut_cam: {variant: PF-PB, t: 0.3}
"""
from __future__ import annotations

import dataclasses
from typing import Any, Literal

from wsss.boxes import BOX_SOURCES
from wsss.cam import CAM_METHODS
from wsss.classifier import CLASSIFIERS
from wsss.data import DATASETS
from wsss.labels import LABEL_SOURCES
from wsss.masks import REFINERS
from wsss.registry import Registry
from wsss.train import TRAIN_MODELS, TrainParams


def stage_section(registry: Registry, default: str, extra: list[tuple[str, Any, Any]] = ()) -> type:
    fields: list[tuple[str, Any, Any]] = [
        ("name", str, dataclasses.field(default=default, metadata={"choices": registry.names}))]
    fields += list(extra)
    for entry_name in registry.names():
        entry = registry.get(entry_name)
        if entry.params is not None:
            fields.append((entry_name, entry.params, dataclasses.field(default_factory=entry.params)))
    return dataclasses.make_dataclass(f"{registry.stage.capitalize()}Section", fields)


DataSection = stage_section(DATASETS, "synthetic", [
    ("split", str, dataclasses.field(default="train")),  # images that get pseudo-labels
    ("val_split", str, dataclasses.field(default="val")),  # images the trained model is scored on
    ("max_pixels", int, dataclasses.field(default=64_000_000)),  # readers refuse larger images (0: no limit)
    ("min_side", int, dataclasses.field(default=8)),  # ... and images thinner than this
])
ClassifierSection = stage_section(CLASSIFIERS, "timm")
LabelsSection = stage_section(LABEL_SOURCES, "given")
CamSection = stage_section(CAM_METHODS, "gradcam")
BoxesSection = stage_section(BOX_SOURCES, "cam_components")
MasksSection = stage_section(REFINERS, "grabcut_cam")
ModelSection = stage_section(TRAIN_MODELS, "deeplabv3plus")


@dataclasses.dataclass
class PseudoConfig:
    out: str = "pseudo"  # folder under the work dir
    overlays: int = 8  # overlay panels for the first N images
    overwrite: bool = False  # redo finished images instead of resuming
    # the stages run on a copy whose longer side is at most this; the label map is painted back at
    # native resolution (0 = always native size)
    max_side: int = 1024
    # tiled mode for very large images (aerial photos, slides): labels and CAM still at max_side, but boxes
    # and masks on native-resolution tiles of this many px, overlapping by tile_overlap (0 = off)
    tile: int = 0
    tile_overlap: int = 128
    # images per model call of the labels and CAM stages on a GPU (1 = image by image, as before). Above 1
    # (or with workers) images decode ahead in a DataLoader and a pool-safe refiner (GrabCut) runs in worker
    # threads or processes. On the CPU the models still see one image per call: labels bitwise the per-image ones
    batch_size: int = 1
    workers: int = 0  # decode processes, and refiner + PNG-writing workers (0 = all in the main thread)
    pool: Literal["thread", "process"] = "thread"  # the refiner workers (GrabCut releases the GIL)
    autocast: bool = True  # bf16 autocast for the classifier (and declared encoders) on CUDA; no effect on CPU
    # torch.compile what the stages declare: the classifier (batched path), SAM's encoder and mask decoder
    compile: bool = False


@dataclasses.dataclass
class EvaluationConfig:
    pred_ignore: Literal["background", "exclude"] = "background"  # how predicted 255 pixels count


@dataclasses.dataclass
class Config:
    name: str | None = None  # default: the config file's stem (work_dirs/<name>)
    work_dir: str | None = None
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    data: DataSection = dataclasses.field(default_factory=DataSection)  # type: ignore[valid-type]
    classifier: ClassifierSection = dataclasses.field(default_factory=ClassifierSection)  # type: ignore[valid-type]
    labels: LabelsSection = dataclasses.field(default_factory=LabelsSection)  # type: ignore[valid-type]
    cam: CamSection = dataclasses.field(default_factory=CamSection)  # type: ignore[valid-type]
    boxes: BoxesSection = dataclasses.field(default_factory=BoxesSection)  # type: ignore[valid-type]
    masks: MasksSection = dataclasses.field(default_factory=MasksSection)  # type: ignore[valid-type]
    pseudo: PseudoConfig = dataclasses.field(default_factory=PseudoConfig)
    model: ModelSection = dataclasses.field(default_factory=ModelSection)  # type: ignore[valid-type]
    train: TrainParams = dataclasses.field(default_factory=TrainParams)
    evaluation: EvaluationConfig = dataclasses.field(default_factory=EvaluationConfig)
