"""One small adapter per SAM family: the only place that knows a library's predictor.

``SamEngine`` (``wsss.sam.engine``) and the fast automatic-mask path (``wsss.sam.fast_auto``) talk to a
model only through :class:`SamAdapter`, so adding a family (SAM-HQ, MobileSAM, ...) is one subclass here and
one entry in :data:`ADAPTERS` (see docs/sam.md, "Adding a SAM family"). The adapters use the libraries'
public APIs where they exist; the few private sam2 attributes they need are wrapped in
:class:`Sam2Adapter`, each with the reason.
"""
from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from wsss.models.weights import resolve_checkpoint
from wsss.sam.decoders import PointMasks, Transformer, decode_sam, decode_sam2, fast_transformer

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
        self._fast_transformer = fast_transformer  # what decode_point_masks(fast=True) runs (compile() wraps it)
        self._compiled = False

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

    def compile_targets(self) -> list[tuple[torch.nn.Module, str]]:
        """(owner, attribute) of the submodules :meth:`compile` wraps: the image encoder by default."""
        return [(self.model, "image_encoder")]

    def compile(self) -> None:
        """Put :meth:`compile_targets` through ``torch.compile`` in place (the library's code then calls the
        compiled modules), and the re-associated transformer of ``fast`` decoding; a second call does nothing.
        Shapes vary (the IoU filter's survivors), so dynamic shapes are left to torch's default."""
        if self._compiled:
            return
        for owner, name in self.compile_targets():
            setattr(owner, name, torch.compile(getattr(owner, name)))
        self._fast_transformer = torch.compile(fast_transformer)
        self._compiled = True

    def point_transformer(self, decoder: torch.nn.Module, fast: bool) -> Transformer | None:
        """The transformer ``decode_point_masks`` runs: None (the decoder's own) or, ``fast``, the re-associated
        one bound to it (``wsss.sam.decoders.fast_transformer``)."""
        if not fast:
            return None
        run = self._fast_transformer
        # the compiled modules keep the library's attribute; the fast path needs the original's submodules
        inner = getattr(decoder.transformer, "_orig_mod", decoder.transformer)
        return lambda image, pe, tokens: run(inner, image, pe, tokens)

    # -- the embedding -----------------------------------------------------------------------
    STATE: ClassVar[tuple[str, ...]] = ()  # the predictor attributes its set_image() sets: the state to cache

    def encode(self, image: np.ndarray) -> State:
        """Run the image encoder on ``image`` (H, W, 3 uint8) through the predictor's ``set_image`` and return
        the predictor state to cache (its :attr:`STATE` attributes)."""
        self.predictor.set_image(image)
        return {n: getattr(self.predictor, n) for n in self.STATE}

    def restore(self, state: State) -> None:
        """Put a state from :meth:`encode` back into the predictor, so decoding needs no encoder pass."""
        for n, v in state.items():
            setattr(self.predictor, n, v)

    def encode_batch(self, images: Sequence[np.ndarray]) -> list[State]:
        """:meth:`encode` of each image, the encoder run once on the stacked batch (this default: one by one).
        A state from here restores exactly as one from :meth:`encode`."""
        return [self.encode(image) for image in images]

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

    def decode_point_masks(self, points: np.ndarray, min_iou: float, fast: bool = False) -> PointMasks:
        """The multimask outputs of N one-point prompts whose predicted IoU is above ``min_iou`` (0: all), low-res.

        What the automatic-mask path needs; this default filters :meth:`decode_points` (and ignores ``fast``).
        The families below compute the image side once per batch, upscale only the prompts with a mask kept,
        and with ``fast`` run the re-associated transformer (``wsss.sam.decoders``; float rounding).
        """
        low, iou = self.decode_points(points)
        keep = iou > min_iou if min_iou > 0 else torch.ones_like(iou, dtype=torch.bool)
        prompt = torch.arange(len(iou), device=iou.device)[:, None].expand_as(keep)
        return PointMasks(low=low[keep], iou=iou[keep], prompt=prompt[keep])

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

    def encode_batch(self, images: Sequence[np.ndarray]) -> list[State]:
        # SamPredictor.set_image's steps (resize, preprocess = normalise + pad to the square input) per image,
        # then one image_encoder call; there is no batched set_image in segment_anything
        pr, model = self.predictor, self.model
        inputs, sizes = [], []
        for image in images:
            if model.image_format != "RGB":  # set_image's channel flip for a BGR model
                image = image[..., ::-1]
            x = torch.as_tensor(pr.transform.apply_image(image), device=pr.device).permute(2, 0, 1).contiguous()[None]
            sizes.append((tuple(image.shape[:2]), tuple(x.shape[-2:])))
            inputs.append(model.preprocess(x))
        features = model.image_encoder(torch.cat(inputs))
        return [{"features": features[i:i + 1], "original_size": orig, "input_size": size, "is_image_set": True}
                for i, (orig, size) in enumerate(sizes)]

    def decode_boxes(self, boxes_xyxy: torch.Tensor, multimask: bool,
                     return_logits: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pr = self.predictor
        boxes = pr.transform.apply_boxes_torch(boxes_xyxy, pr.original_size)
        return pr.predict_torch(None, None, boxes=boxes, multimask_output=multimask, return_logits=return_logits)

    def decode_points(self, points: np.ndarray, labels: np.ndarray | None = None,
                      multimask: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        # predict_torch would upsample every mask to image size; the encoder/decoder calls it makes, without that
        sparse, dense = self._encode_points(points, labels)
        model = self.model
        low, iou = model.mask_decoder(image_embeddings=self.predictor.features,
                                      image_pe=model.prompt_encoder.get_dense_pe(), sparse_prompt_embeddings=sparse,
                                      dense_prompt_embeddings=dense, multimask_output=multimask)
        return low, iou

    def decode_point_masks(self, points: np.ndarray, min_iou: float, fast: bool = False) -> PointMasks:
        sparse, dense = self._encode_points(points, None)
        model = self.model
        return decode_sam(model.mask_decoder, self.predictor.features, model.prompt_encoder.get_dense_pe(),
                          sparse, dense, min_iou, self.point_transformer(model.mask_decoder, fast))

    def _encode_points(self, points: np.ndarray, labels: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor]:
        pr = self.predictor
        points, labels = _prompts(points, labels)
        coords = torch.as_tensor(pr.transform.apply_coords(points, pr.original_size), device=pr.device)
        labels_t = torch.as_tensor(labels, dtype=torch.int, device=pr.device)
        return self.model.prompt_encoder(points=(coords, labels_t), boxes=None, masks=None)

    @property
    def mask_threshold(self) -> float:
        return float(self.model.mask_threshold)

    def upsample(self, low: torch.Tensor, orig_hw: tuple[int, int]) -> torch.Tensor:
        return self.model.postprocess_masks(low[:, None], self.predictor.input_size, orig_hw)[:, 0]

    def compile_targets(self) -> list[tuple[torch.nn.Module, str]]:
        decoder = self.model.mask_decoder
        return super().compile_targets() + [(decoder, "transformer"), (decoder, "output_upscaling")]

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

    def encode_batch(self, images: Sequence[np.ndarray]) -> list[State]:
        # the public set_image_batch, then its batch state cut into the per-image state set_image would leave
        pr = self.predictor
        pr.set_image_batch([np.ascontiguousarray(image) for image in images])
        feats = pr._features
        return [{"_features": {"image_embed": feats["image_embed"][i:i + 1],
                               "high_res_feats": [f[i:i + 1] for f in feats["high_res_feats"]]},
                 "_orig_hw": [pr._orig_hw[i]], "_is_image_set": True, "_is_batch": False}
                for i in range(len(images))]

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
        sparse, dense = self._encode_points(points, labels)
        image, high_res = self._image_features()
        model = self.model
        low, iou, _, _ = model.sam_mask_decoder(
            image_embeddings=image, image_pe=model.sam_prompt_encoder.get_dense_pe(), sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense, multimask_output=multimask, repeat_image=len(sparse) > 1,
            high_res_features=high_res)
        return low, iou

    def decode_point_masks(self, points: np.ndarray, min_iou: float, fast: bool = False) -> PointMasks:
        sparse, dense = self._encode_points(points, None)
        image, high_res = self._image_features()
        decoder = self.model.sam_mask_decoder
        return decode_sam2(decoder, image, self.model.sam_prompt_encoder.get_dense_pe(), sparse, dense, high_res,
                           min_iou, self.point_transformer(decoder, fast))

    def _encode_points(self, points: np.ndarray, labels: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor]:
        pr = self.predictor
        points, labels = _prompts(points, labels)
        pts = torch.as_tensor(points, dtype=torch.float32, device=pr.device)
        coords = pr._transforms.transform_coords(pts, normalize=True, orig_hw=pr._orig_hw[-1])
        labels_t = torch.as_tensor(labels, dtype=torch.int, device=pr.device)
        return self.model.sam_prompt_encoder(points=(coords, labels_t), boxes=None, masks=None)

    def _image_features(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The last image's embedding and high-res features, batch 1 (as _predict indexes them)."""
        feats = self.predictor._features
        return feats["image_embed"][-1].unsqueeze(0), [f[-1].unsqueeze(0) for f in feats["high_res_feats"]]

    @property
    def mask_threshold(self) -> float:
        return 0.0  # SAM2AutomaticMaskGenerator's default

    def upsample(self, low: torch.Tensor, orig_hw: tuple[int, int]) -> torch.Tensor:
        # the predictor's own SAM2Transforms (private attribute), so survivors match _predict's masks exactly
        return self.predictor._transforms.postprocess_masks(low[:, None], orig_hw)[:, 0]

    def compile_targets(self) -> list[tuple[torch.nn.Module, str]]:
        # not output_upscaling: the decoder (and wsss.sam.decoders) unpack it into its five layers
        return super().compile_targets() + [(self.model.sam_mask_decoder, "transformer")]

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
