"""One SAM / SAM 2 model behind one interface, with the image embedding computed once per image.

``SamEngine.ensure_image(rec)`` encodes ``rec.image`` the first time and keeps the embedding in
``rec.cache``; the box-prompt decoder and the automatic mask generator both start from it. The
automatic masks come from ``wsss.sam.fast_auto`` (default: the libraries' point grid decoded from
the cached embedding, filtered and NMS'd on the low-res logits, only survivors upsampled) or, with
``auto.engine: library``, from the library's own generator, handed a predictor whose ``set_image``
for the full-image crop restores the cached embedding instead of encoding again.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Literal

import numpy as np
import torch

from wsss.models.weights import resolve_checkpoint
from wsss.record import Record, Resources

SAM_VARIANTS = ("vit_b", "vit_l", "vit_h")
SAM2_CONFIGS = {  # variant -> the sam2 package's own hydra config
    "hiera_t": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "hiera_s": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "hiera_b+": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "hiera_l": "configs/sam2.1/sam2.1_hiera_l.yaml",
}


@dataclasses.dataclass
class SamModelParams:
    family: Literal["sam", "sam2"] = "sam"
    variant: str = "vit_b"  # sam: vit_b / vit_l / vit_h; sam2: hiera_t / hiera_s / hiera_b+ / hiera_l
    checkpoint: str = "checkpoints/sam_vit_b_01ec64.pth"  # local path, hf:<owner>/<repo>/<file> or https URL

    def __post_init__(self) -> None:
        valid = SAM_VARIANTS if self.family == "sam" else tuple(SAM2_CONFIGS)
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
    # fast: wsss.sam.fast_auto (filters and NMS on the low-res logits, upsamples only survivors);
    # library: the libraries' own generate(). crop_n_layers > 0 or min_mask_region_area > 0 always use the library.
    engine: Literal["fast", "library"] = "fast"

    def __post_init__(self) -> None:
        if self.engine not in ("fast", "library"):
            raise ValueError(f"auto.engine is '{self.engine}'; choose 'fast' or 'library'")


def sam_resource_key(p: SamModelParams) -> str:
    """The ``Resources`` key of a model; tests pre-fill it with a tiny model."""
    return f"sam:{p.family}:{p.variant}:{p.checkpoint}"


def load_sam_model(p: SamModelParams, device: torch.device, key: str = "masks.<refiner>.model.checkpoint") -> Any:
    """The model with its checkpoint loaded (weights_only); a missing file is an error, never random weights."""
    path = resolve_checkpoint(p.checkpoint, p.family, key)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if p.family == "sam":
        from segment_anything import sam_model_registry

        model = sam_model_registry[p.variant](checkpoint=None)
    else:
        from sam2.build_sam import build_sam2

        model = build_sam2(SAM2_CONFIGS[p.variant], ckpt_path=None, device="cpu", mode="eval")
        state = state.get("model", state)
    model.load_state_dict(state)
    return model.to(device).eval()


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
    """A SAM or SAM 2 model with its predictor; ``family`` picks the library calls."""

    def __init__(self, model: Any, family: Literal["sam", "sam2"], name: str = "sam") -> None:
        self.model, self.family, self.name = model, family, name
        if family == "sam":
            from segment_anything import SamPredictor

            self.predictor = SamPredictor(model)
        else:
            from sam2.sam2_image_predictor import SAM2ImagePredictor

            self.predictor = SAM2ImagePredictor(model)
            size = model.image_size  # the predictor assumes 1024 px inputs; follow the model's own size
            self.predictor._bb_feat_sizes = [(size // 4, size // 4), (size // 8, size // 8), (size // 16, size // 16)]
        self._generators: dict[tuple, Any] = {}

    # -- the embedding, once per image ------------------------------------------------------
    def _state_names(self) -> tuple[str, ...]:
        if self.family == "sam":
            return "features", "original_size", "input_size", "is_image_set"
        return "_features", "_orig_hw", "_is_image_set", "_is_batch"

    @torch.no_grad()
    def ensure_image(self, rec: Record) -> None:
        """Encode ``rec.image`` once; later calls restore the cached embedding into the predictor."""
        key = f"sam_embedding:{self.name}"
        state = rec.cache.get(key)
        if state is None:
            self.predictor.set_image(np.ascontiguousarray(rec.image))
            rec.cache[key] = {n: getattr(self.predictor, n) for n in self._state_names()}
        else:
            for n, v in state.items():
                setattr(self.predictor, n, v)

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
        boxes_t = torch.as_tensor(np.asarray(boxes, np.float32), device=self.predictor.device)
        if self.family == "sam":
            boxes_t = self.predictor.transform.apply_boxes_torch(boxes_t, self.predictor.original_size)
            masks, ious, _ = self.predictor.predict_torch(None, None, boxes=boxes_t, multimask_output=multimask,
                                                          return_logits=logits)
        else:
            _, _, _, unnorm_box = self.predictor._prep_prompts(None, None, boxes_t, None, normalize_coords=True)
            masks, ious, _ = self.predictor._predict(None, None, boxes=unnorm_box, multimask_output=multimask,
                                                     return_logits=logits)
        masks = masks.float().cpu().numpy() if logits else masks.cpu().numpy().astype(bool)
        return masks, ious.float().cpu().numpy()

    # -- automatic masks from the same embedding ---------------------------------------------
    def _generator(self, p: AutoMaskParams) -> Any:
        key = tuple(dataclasses.astuple(p))
        if key not in self._generators:
            kwargs = dataclasses.asdict(p) | {"output_mode": "binary_mask"}
            kwargs.pop("engine")
            if self.family == "sam":
                from segment_anything import SamAutomaticMaskGenerator

                self._generators[key] = SamAutomaticMaskGenerator(self.model, **kwargs)
            else:
                from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

                self._generators[key] = SAM2AutomaticMaskGenerator(self.model, **kwargs)
        return self._generators[key]

    @torch.no_grad()
    def auto_masks(self, rec: Record, p: AutoMaskParams) -> list[dict]:
        """Automatic masks (dicts with ``segmentation``, ``area``, ``bbox``, ``predicted_iou``, ...), best first."""
        key = f"sam_auto:{self.name}:{dataclasses.astuple(p)}"
        if key in rec.cache:
            return rec.cache[key]
        if p.engine == "fast" and p.crop_n_layers == 0 and p.min_mask_region_area == 0:
            from wsss.sam.fast_auto import fast_auto_masks

            self.ensure_image(rec)
            rec.cache[key] = fast_auto_masks(self.predictor, self.family, rec.image.shape[:2], p.points_per_side,
                                             p.points_per_batch, p.pred_iou_thresh, p.stability_score_thresh,
                                             p.stability_score_offset, p.box_nms_thresh)
        else:
            gen = self._generator(p)
            gen.predictor = _CachedEmbeddingPredictor(self, rec)
            try:
                rec.cache[key] = gen.generate(np.ascontiguousarray(rec.image))
            finally:
                gen.predictor = self.predictor
        return rec.cache[key]


def get_engine(p: SamModelParams, resources: Resources, key: str) -> SamEngine:
    """The process-wide engine for ``p`` (loaded once); ``key`` names the config key in errors."""
    name = sam_resource_key(p)
    return resources.get(name, lambda: SamEngine(load_sam_model(p, resources.device, key), p.family, name))
