"""One SAM / SAM 2 model behind one interface, with the image embedding computed once per image.

``SamEngine.ensure_image(rec)`` encodes ``rec.image`` the first time and keeps the embedding in
``rec.cache``; the box-prompt decoder and the automatic mask generator both start from it. The
automatic masks come from ``wsss.sam.fast_auto`` (default: the libraries' point grid decoded from
the cached embedding, the library's filters and NMS on tensors instead of RLEs, the same masks) or, with
``auto.engine: library``, from the library's own generator, handed a predictor whose ``set_image``
for the full-image crop restores the cached embedding instead of encoding again. Either can be limited
to the grid points inside given boxes (paper 000's ``grid: boxes``).

Everything that depends on the library (segment_anything, sam2, ...) is in the family's adapter,
``wsss.sam.adapters.ADAPTERS[family]``; this module only caches and dispatches.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch

from wsss.paths import wsss_home
from wsss.record import Record, Resources
from wsss.sam.adapters import ADAPTERS, SAM2_CONFIGS, SAM_VARIANTS, SamAdapter, adapter_class

__all__ = ["SAM2_CONFIGS", "SAM_VARIANTS", "AutoMaskParams", "SamEngine", "SamModelParams", "get_engine",
           "load_sam_model", "sam_resource_key"]


def _families() -> list[str]:
    return sorted(ADAPTERS)


@dataclasses.dataclass
class SamModelParams:
    # a key of wsss.sam.adapters.ADAPTERS: sam (segment_anything) or sam2
    family: str = dataclasses.field(default="sam", metadata={"choices": _families})
    variant: str = "vit_b"  # sam: vit_b / vit_l / vit_h; sam2: hiera_t / hiera_s / hiera_b+ / hiera_l
    # local path, hf:<owner>/<repo>/<file> or https URL; default: $WSSS_HOME/checkpoints/sam_vit_b_01ec64.pth
    checkpoint: str = dataclasses.field(default_factory=lambda: str(wsss_home() / "checkpoints" / "sam_vit_b_01ec64.pth"))

    def __post_init__(self) -> None:
        valid = adapter_class(self.family).variants
        if self.variant not in valid:
            raise ValueError(f"variant '{self.variant}' is not a {self.family} model; choose one of {valid}")


@dataclasses.dataclass
class AutoMaskParams:
    """The automatic mask generator's parameters (same names as the libraries')."""

    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    min_mask_region_area: int = 0
    # fast engine: 0 = the library's numbers bitwise (whole batches of points_per_batch); K > 0 = passes of K
    # prompts through the re-associated transformer (wsss.sam.decoders.fast_transformer), equal to the library's
    # to float rounding; 4 suits a CPU (cache-sized per-prompt tensors). docs/sam.md, "Speed on CPU"
    decode_batch: int = 0
    # fast: wsss.sam.fast_auto (the library's filters and NMS without RLEs: the same masks, docs/sam.md "Fidelity");
    # library: the libraries' own generate(). crop_n_layers > 0 or min_mask_region_area > 0 always use the library.
    engine: Literal["fast", "library"] = "fast"

    def __post_init__(self) -> None:
        if self.engine not in ("fast", "library"):
            raise ValueError(f"auto.engine is '{self.engine}'; choose 'fast' or 'library'")

    def library_kwargs(self) -> dict[str, Any]:
        """The libraries' own generator arguments (all fields but wsss's ``engine`` and ``decode_batch``)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ("engine", "decode_batch")}


def sam_resource_key(p: SamModelParams) -> str:
    """The ``Resources`` key of a model; tests pre-fill it with a tiny model."""
    return f"sam:{p.family}:{p.variant}:{p.checkpoint}"


def load_sam_model(p: SamModelParams, device: torch.device, key: str = "masks.<refiner>.model.checkpoint") -> Any:
    """The model with its checkpoint loaded (weights_only); a missing file is an error, never random weights."""
    return adapter_class(p.family).load(p.variant, p.checkpoint, device, key)


class _CachedEmbeddingPredictor:
    """Stands in for the automatic generator's predictor: the full-image crop reuses the cached embedding."""

    def __init__(self, engine: SamEngine, rec: Record) -> None:
        self._engine, self._rec = engine, rec

    def set_image(self, image: np.ndarray, *args: Any, **kwargs: Any) -> None:
        if image.shape[:2] == self._rec.image.shape[:2]:  # the full-image crop: restore, do not encode
            self._engine.ensure_image(self._rec)
        else:  # a zoomed crop (crop_n_layers > 0) is another image and needs its own embedding
            self._engine.predictor.set_image(image, *args, **kwargs)

    def reset_image(self) -> None:  # keep the state: the box decoder may still use it
        pass

    reset_predictor = reset_image

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine.predictor, name)


class SamEngine:
    """A SAM-family model behind its adapter (``wsss.sam.adapters.ADAPTERS[family]``); no family branches here."""

    def __init__(self, model: Any, family: str, name: str = "sam") -> None:
        self.model, self.family, self.name = model, family, name
        self.adapter: SamAdapter = adapter_class(family)(model)
        self._generators: dict[tuple, Any] = {}

    def compile(self) -> None:
        """``torch.compile`` the model's image encoder and mask decoder parts (``pseudo.compile``), once."""
        self.adapter.compile()

    @property
    def device(self) -> torch.device:
        return self.adapter.device

    @property
    def embedding_key(self) -> str:
        """Where an image's predictor state (its embedding) lives in ``rec.cache``."""
        return f"sam_embedding:{self.name}"

    @property
    def predictor(self) -> Any:
        """The library's predictor (the adapter's): the generator and zoomed crops use it directly."""
        return self.adapter.predictor

    # -- the embedding, once per image ------------------------------------------------------
    @torch.no_grad()
    def ensure_image(self, rec: Record) -> None:
        """Encode ``rec.image`` once; later calls restore the cached embedding into the predictor."""
        key = self.embedding_key
        state = rec.cache.get(key)
        if state is None:
            rec.cache[key] = self.adapter.encode(np.ascontiguousarray(rec.image))
        else:
            self.adapter.restore(state)

    @torch.no_grad()
    def encode_batch(self, recs: Sequence[Record], batched: bool | None = None) -> None:
        """:meth:`ensure_image` for several records: the encoder runs once on the stacked images of those not yet
        encoded (``batched`` None: on CUDA only; on CPU each image alone, so its embedding is bitwise the
        per-image one). States are stored in float32 whatever autocast the encoder ran under, so the decoder
        (which runs in float32) takes them."""
        key = self.embedding_key
        todo = [r for r in recs if key not in r.cache]
        if batched is None:
            batched = self.adapter.device.type == "cuda"
        if not batched or len(todo) < 2:
            states = [self.adapter.encode(np.ascontiguousarray(r.image)) for r in todo]
        else:
            states = self.adapter.encode_batch([np.ascontiguousarray(r.image) for r in todo])
        for rec, state in zip(todo, states):
            rec.cache[key] = _float32(state)

    # -- box prompts: all boxes of an image in one decoder call ------------------------------
    @torch.no_grad()
    def box_masks(self, rec: Record, boxes: np.ndarray, multimask: bool,
                  logits: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Masks (N, M, H, W) bool and predicted IoUs (N, M) for N xyxy boxes; M = 3 if multimask else 1.

        ``logits=True``: the decoder's float32 logits at image resolution instead (mask = logits > 0, the
        libraries' mask threshold), e.g. for stability scores.
        """
        h, w = rec.image.shape[:2]
        m = 3 if multimask else 1
        if len(boxes) == 0:
            return np.zeros((0, m, h, w), np.float32 if logits else bool), np.zeros((0, m), np.float32)
        self.ensure_image(rec)
        boxes_t = torch.as_tensor(np.asarray(boxes, np.float32), device=self.adapter.device)
        masks, ious, _ = self.adapter.decode_boxes(boxes_t, multimask, return_logits=logits)
        masks = masks.float().cpu().numpy() if logits else masks.cpu().numpy().astype(bool)
        return masks, ious.float().cpu().numpy()

    # -- automatic masks from the same embedding ---------------------------------------------
    def _generator(self, p: AutoMaskParams) -> Any:
        key = tuple(dataclasses.astuple(p))
        if key not in self._generators:
            kwargs = p.library_kwargs() | {"output_mode": "binary_mask"}
            self._generators[key] = self.adapter.auto_generator(kwargs)
        return self._generators[key]

    @torch.no_grad()
    def auto_masks(self, rec: Record, p: AutoMaskParams, boxes: np.ndarray | None = None,
                   box_margin: float = 0.0) -> list[dict]:
        """Automatic masks (dicts with ``segmentation``, ``area``, ``bbox``, ``predicted_iou``, ...), best first.

        ``boxes`` (N, 4) xyxy: only the grid points inside them, each grown by ``box_margin`` × its size
        (``wsss.sam.fast_auto.grid_in_boxes``), all decoded together (one decoder call up to
        ``fast_auto.MAX_POINTS_PER_CALL`` points, or ``points_per_batch`` if larger): the masks the generator
        would make from those points alone. Needs ``crop_n_layers == 0``.
        """
        from wsss.sam import fast_auto

        selected = points = None
        key = f"sam_auto:{self.name}:{dataclasses.astuple(p)}"
        if boxes is not None:
            if p.crop_n_layers > 0:
                raise ValueError("automatic masks on the grid inside boxes need auto.crop_n_layers = 0 "
                                 "(a zoomed crop has a grid of its own)")
            boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
            grid = fast_auto.point_grid(p.points_per_side, *rec.image.shape[:2])
            selected = fast_auto.grid_in_boxes(grid, boxes, box_margin)
            points = grid[selected]
            key += f":boxes:{boxes.tobytes().hex()}:{box_margin}"
        if key in rec.cache:
            return rec.cache[key]
        if p.engine == "fast" and p.crop_n_layers == 0 and p.min_mask_region_area == 0:
            self.ensure_image(rec)
            batch = p.points_per_batch if selected is None else _one_batch(len(selected), p.points_per_batch)
            rec.cache[key] = fast_auto.fast_auto_masks(self.adapter, rec.image.shape[:2], p.points_per_side, batch,
                                                       p.pred_iou_thresh, p.stability_score_thresh,
                                                       p.stability_score_offset, p.box_nms_thresh, points=points,
                                                       decode_batch=p.decode_batch)
        else:
            gen = self._generator(p)
            saved = gen.point_grids, gen.points_per_batch
            if selected is not None:  # the library's own option for explicit grids (normalised coordinates)
                from segment_anything.utils.amg import build_point_grid

                gen.point_grids = [build_point_grid(p.points_per_side)[selected]]
                gen.points_per_batch = _one_batch(len(selected), p.points_per_batch)
            gen.predictor = _CachedEmbeddingPredictor(self, rec)
            try:
                rec.cache[key] = gen.generate(np.ascontiguousarray(rec.image))
            finally:
                gen.predictor = self.predictor
                gen.point_grids, gen.points_per_batch = saved
        return rec.cache[key]


def _float32(state: Any) -> Any:
    """``state`` with every floating tensor in float32 (an embedding computed under bf16 autocast)."""
    if isinstance(state, torch.Tensor):
        return state.float() if state.is_floating_point() else state
    if isinstance(state, dict):
        return {k: _float32(v) for k, v in state.items()}
    if isinstance(state, list | tuple):
        return type(state)(_float32(v) for v in state)
    return state


def _one_batch(n: int, points_per_batch: int) -> int:
    """The batch size that decodes ``n`` points in one call, bounded by ``fast_auto.MAX_POINTS_PER_CALL``
    (or ``points_per_batch`` where that is larger) to bound the decoder's memory."""
    from wsss.sam.fast_auto import MAX_POINTS_PER_CALL

    return max(1, min(n, max(points_per_batch, MAX_POINTS_PER_CALL)))


def get_engine(p: SamModelParams, resources: Resources, key: str) -> SamEngine:
    """The process-wide engine for ``p`` (loaded once); ``key`` names the config key in errors."""
    name = sam_resource_key(p)
    return resources.get(name, lambda: SamEngine(load_sam_model(p, resources.device, key), p.family, name))
