"""One small adapter per SAM family: the only place that knows a library's predictor.

``SamEngine`` (``wsss.sam.engine``) and the fast automatic-mask path (``wsss.sam.fast_auto``) talk to a
model only through :class:`SamAdapter`, so adding a family (SAM-HQ, MobileSAM, ...) is one subclass here and
one entry in :data:`ADAPTERS` (see docs/sam.md, "Adding a SAM family"). The adapters use the libraries'
public APIs where they exist; the few private sam2 attributes they need are wrapped in
:class:`Sam2Adapter`, each with the reason.
"""
from __future__ import annotations

import abc
from typing import Any, ClassVar

import numpy as np
import torch

from wsss.models.weights import resolve_checkpoint

SAM_VARIANTS = ("vit_b", "vit_l", "vit_h")
SAM2_CONFIGS = {  # variant -> the sam2 package's own hydra config
    "hiera_t": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "hiera_s": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "hiera_b+": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "hiera_l": "configs/sam2.1/sam2.1_hiera_l.yaml",
}

State = dict[str, Any]  # a predictor's per-image state (the embedding and the image sizes), cached in rec.cache


class SamAdapter(abc.ABC):
    """What wsss needs from a SAM-like model: encode once, restore the cached embedding, decode prompts.

    A subclass wraps one library's predictor (``self.predictor``) around ``model``. Decoders work on the
    embedding the predictor currently holds (set by :meth:`encode` or put back by :meth:`restore`).
    """

    variants: ClassVar[tuple[str, ...]] = ()  # the names SamModelParams.variant accepts for this family
    weights_kind: ClassVar[str] = "sam"  # key of wsss.models.weights.PUBLISHED named when a checkpoint is missing

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.predictor = self.make_predictor(model)

    # -- the model ---------------------------------------------------------------------------
    @classmethod
    @abc.abstractmethod
    def build(cls, variant: str) -> torch.nn.Module:
        """The architecture of ``variant`` with random weights (the checkpoint is loaded by :meth:`load`)."""

    @classmethod
    def checkpoint_state(cls, state: dict[str, Any]) -> dict[str, Any]:
        """The model's state dict inside a loaded checkpoint file (some families nest it)."""
        return state

    @classmethod
    def load(cls, variant: str, checkpoint: str, device: torch.device, key: str) -> torch.nn.Module:
        """``variant`` with its checkpoint loaded strictly (weights_only); a missing file is an error naming ``key``."""
        path = resolve_checkpoint(checkpoint, cls.weights_kind, key)
        state = torch.load(path, map_location="cpu", weights_only=True)
        model = cls.build(variant)
        model.load_state_dict(cls.checkpoint_state(state))
        return model.to(device).eval()

    @abc.abstractmethod
    def make_predictor(self, model: torch.nn.Module) -> Any:
        """The library's image predictor around ``model``."""

    @property
    def device(self) -> torch.device:
        return self.predictor.device

    # -- the embedding -----------------------------------------------------------------------
    @abc.abstractmethod
    def encode(self, image: np.ndarray) -> State:
        """Run the image encoder on ``image`` (H, W, 3 uint8) and return the predictor state to cache."""

    @abc.abstractmethod
    def restore(self, state: State) -> None:
        """Put a state from :meth:`encode` back into the predictor, so decoding needs no encoder pass."""

    # -- prompts -----------------------------------------------------------------------------
    @abc.abstractmethod
    def decode_boxes(self, boxes_xyxy: torch.Tensor, multimask: bool,
                     return_logits: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """All N boxes (xyxy image pixels, float32 on :attr:`device`) in one decoder call.

        Returns masks (N, M, H, W) at image resolution (bool, or float logits with ``return_logits``),
        predicted IoUs (N, M) and low-res logits (N, M, h, w); M = 3 if ``multimask`` else 1.
        """

    @abc.abstractmethod
    def decode_points(self, points: np.ndarray, labels: np.ndarray | None = None,
                      multimask: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Low-res logits (N, M, h, w) and predicted IoUs (N, M) for N prompts of K points each.

        ``points`` (N, K, 2) are xy image pixels, ``labels`` (N, K) 1 = foreground / 0 = background (None: all 1).
        Nothing is upsampled: the automatic-mask path drops masks by predicted IoU before upsampling.
        """

    @property
    @abc.abstractmethod
    def mask_threshold(self) -> float:
        """The logit threshold the library's automatic generator uses for binary masks."""

    @abc.abstractmethod
    def upsample(self, low: torch.Tensor, orig_hw: tuple[int, int]) -> torch.Tensor:
        """Low-res logits (N, h, w) to image-resolution logits (N, H, W), as the library upsamples its masks."""

    # -- the library's automatic mask generator -----------------------------------------------
    @abc.abstractmethod
    def generator_class(self) -> type:
        """The library's automatic mask generator class (constructed as ``cls(model, **kwargs)``)."""

    def auto_generator(self, kwargs: dict[str, Any]) -> Any:
        """The library's generator (``kwargs``: its own argument names) using *this* predictor.

        The generator builds a predictor of its own; replacing it means the engine's cached embedding (and, for
        sam2, the predictor's feature sizes fitted to the model) serve ``generate()`` too.
        """
        generator = self.generator_class()(self.model, **kwargs)
        generator.predictor = self.predictor
        return generator


def _prompts(points: np.ndarray, labels: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    points = np.asarray(points)
    if points.ndim == 2:  # one point per prompt
        points = points[:, None]
    labels = np.ones(points.shape[:2], np.int32) if labels is None else np.asarray(labels).reshape(points.shape[:2])
    return points, labels


class SegmentAnythingAdapter(SamAdapter):
    """segment_anything's ``SamPredictor`` (family ``sam``): public API only."""

    variants = SAM_VARIANTS
    weights_kind = "sam"
    STATE = ("features", "original_size", "input_size", "is_image_set")  # what SamPredictor.set_image sets

    @classmethod
    def build(cls, variant: str) -> torch.nn.Module:
        from segment_anything import sam_model_registry

        return sam_model_registry[variant](checkpoint=None)

    def make_predictor(self, model: torch.nn.Module) -> Any:
        from segment_anything import SamPredictor

        return SamPredictor(model)

    def encode(self, image: np.ndarray) -> State:
        self.predictor.set_image(image)
        return {n: getattr(self.predictor, n) for n in self.STATE}

    def restore(self, state: State) -> None:
        for n, v in state.items():
            setattr(self.predictor, n, v)

    def decode_boxes(self, boxes_xyxy: torch.Tensor, multimask: bool,
                     return_logits: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pr = self.predictor
        boxes = pr.transform.apply_boxes_torch(boxes_xyxy, pr.original_size)
        return pr.predict_torch(None, None, boxes=boxes, multimask_output=multimask, return_logits=return_logits)

    def decode_points(self, points: np.ndarray, labels: np.ndarray | None = None,
                      multimask: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        # predict_torch would upsample every mask to image size; the encoder/decoder calls it makes, without that
        pr, model = self.predictor, self.model
        points, labels = _prompts(points, labels)
        coords = torch.as_tensor(pr.transform.apply_coords(points, pr.original_size), device=pr.device)
        labels_t = torch.as_tensor(labels, dtype=torch.int, device=pr.device)
        sparse, dense = model.prompt_encoder(points=(coords, labels_t), boxes=None, masks=None)
        low, iou = model.mask_decoder(image_embeddings=pr.features, image_pe=model.prompt_encoder.get_dense_pe(),
                                      sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                      multimask_output=multimask)
        return low, iou

    @property
    def mask_threshold(self) -> float:
        return float(self.model.mask_threshold)

    def upsample(self, low: torch.Tensor, orig_hw: tuple[int, int]) -> torch.Tensor:
        return self.model.postprocess_masks(low[:, None], self.predictor.input_size, orig_hw)[:, 0]

    def generator_class(self) -> type:
        from segment_anything import SamAutomaticMaskGenerator

        return SamAutomaticMaskGenerator


class Sam2Adapter(SamAdapter):
    """sam2's ``SAM2ImagePredictor`` (family ``sam2``).

    SAM2ImagePredictor has no public way to read or restore its image state or to decode without
    upsampling, so this class (and only this class) touches its private attributes; each use says why.
    """

    variants = tuple(SAM2_CONFIGS)
    weights_kind = "sam2"
    # set_image() sets these and nothing public exposes them (get_image_embedding() returns only image_embed,
    # not the high-res features the decoder also needs, nor the original size)
    STATE = ("_features", "_orig_hw", "_is_image_set", "_is_batch")

    @classmethod
    def build(cls, variant: str) -> torch.nn.Module:
        from sam2.build_sam import build_sam2

        return build_sam2(SAM2_CONFIGS[variant], ckpt_path=None, device="cpu", mode="eval")

    @classmethod
    def checkpoint_state(cls, state: dict[str, Any]) -> dict[str, Any]:
        return state.get("model", state)  # the published files nest the weights under "model"

    def make_predictor(self, model: torch.nn.Module) -> Any:
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        predictor = SAM2ImagePredictor(model)
        # the predictor hard-codes the feature sizes of 1024 px inputs; a model of another image_size (tests'
        # tiny models) needs its own, and there is no constructor argument for them
        size = model.image_size
        predictor._bb_feat_sizes = [(size // 4, size // 4), (size // 8, size // 8), (size // 16, size // 16)]
        return predictor

    def encode(self, image: np.ndarray) -> State:
        self.predictor.set_image(image)
        return {n: getattr(self.predictor, n) for n in self.STATE}

    def restore(self, state: State) -> None:
        for n, v in state.items():
            setattr(self.predictor, n, v)

    def decode_boxes(self, boxes_xyxy: torch.Tensor, multimask: bool,
                     return_logits: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # the public predict() does the same two calls but returns numpy arrays with the batch axis squeezed
        # (one box loses it); _prep_prompts + _predict decode all boxes in one batch on the cached features and
        # keep the (N, M, H, W) tensors on the device
        pr = self.predictor
        _, _, _, boxes = pr._prep_prompts(None, None, boxes_xyxy, None, normalize_coords=True)
        return pr._predict(None, None, boxes=boxes, multimask_output=multimask, return_logits=return_logits)

    def decode_points(self, points: np.ndarray, labels: np.ndarray | None = None,
                      multimask: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        # _predict's prompt-encoder and mask-decoder calls without its upsampling of every mask to image size;
        # the coordinate transform and the features live in the private _transforms / _orig_hw / _features
        pr, model = self.predictor, self.model
        points, labels = _prompts(points, labels)
        pts = torch.as_tensor(points, dtype=torch.float32, device=pr.device)
        coords = pr._transforms.transform_coords(pts, normalize=True, orig_hw=pr._orig_hw[-1])
        labels_t = torch.as_tensor(labels, dtype=torch.int, device=pr.device)
        sparse, dense = model.sam_prompt_encoder(points=(coords, labels_t), boxes=None, masks=None)
        high_res = [f[-1].unsqueeze(0) for f in pr._features["high_res_feats"]]
        low, iou, _, _ = model.sam_mask_decoder(
            image_embeddings=pr._features["image_embed"][-1].unsqueeze(0),
            image_pe=model.sam_prompt_encoder.get_dense_pe(), sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense, multimask_output=multimask, repeat_image=len(coords) > 1,
            high_res_features=high_res)
        return low, iou

    @property
    def mask_threshold(self) -> float:
        return 0.0  # SAM2AutomaticMaskGenerator's default

    def upsample(self, low: torch.Tensor, orig_hw: tuple[int, int]) -> torch.Tensor:
        # the predictor's own SAM2Transforms (private attribute), so survivors match _predict's masks exactly
        return self.predictor._transforms.postprocess_masks(low[:, None], orig_hw)[:, 0]

    def generator_class(self) -> type:
        from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

        return SAM2AutomaticMaskGenerator


# family name (SamModelParams.family) -> adapter class; a new family is one class above and one entry here
ADAPTERS: dict[str, type[SamAdapter]] = {"sam": SegmentAnythingAdapter, "sam2": Sam2Adapter}


def adapter_class(family: str) -> type[SamAdapter]:
    """The adapter of ``family``; an unknown name is an error listing the registered ones."""
    if family not in ADAPTERS:
        raise ValueError(f"SAM family '{family}' is not registered; choose one of {tuple(sorted(ADAPTERS))}")
    return ADAPTERS[family]
