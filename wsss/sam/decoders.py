"""Point prompts through the libraries' mask decoders: the image side once per batch, masks only where kept.

The libraries' ``predict_masks`` copy the image embedding and its positional encoding once per prompt
(``repeat_interleave``) before the two-way transformer. For point prompts the dense prompt embedding is the
same "no mask" vector for every prompt, so until the first block's image-to-token attention the image side
is the same for the whole batch. Handing the transformer the image side with batch 1 lets every operation
broadcast: the first block's key/value/query projections of the 4,096 image tokens (and the copies) run once
per batch instead of once per prompt, and the results are the same numbers (bitwise at the same batch, in
tests/test_sam_decoders.py). segment_anything only: sam2's attention rounds a broadcast batch differently.

The IoU head reads only the output tokens, so a prompt whose masks all fail the predicted-IoU filter is never
upscaled (the upscaling and hypernetwork product are ~¼ of the decoder's time on vit_b).

Only the orchestration of ``predict_masks`` is written here; every computation is the library module's own
(the transformer, the upscaling, the hypernetwork MLPs, the IoU head). Multimask output only: the automatic
mask generators always ask for it.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch


@dataclass
class PointMasks:
    """The masks of a batch of point prompts that pass the predicted-IoU filter, in (prompt, mask) order."""

    low: torch.Tensor  # (K, h, w) low-res logits
    iou: torch.Tensor  # (K,) predicted IoU
    prompt: torch.Tensor  # (K,) index of each mask's prompt in the batch


def _image_side(image_embeddings: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
    """The batch-1 transformer input the library builds per prompt (embedding + dense prompt embedding)."""
    if image_embeddings.shape[0] != 1:
        raise ValueError("the shared image side needs one image embedding (batch 1)")
    if dense.shape[0] > 1 and dense.stride(0) != 0 and not torch.equal(dense, dense[:1].expand_as(dense)):
        raise ValueError("point prompts with mask inputs have per-prompt dense embeddings; use the library decoder")
    return image_embeddings + dense[:1]


def _kept_masks(hs_masks: torch.Tensor, src: torch.Tensor, iou: torch.Tensor, min_iou: float, hw: Sequence[int],
                upscale: Callable[[torch.Tensor], torch.Tensor], hypernets: Sequence[torch.nn.Module]) -> PointMasks:
    """Upscale only the prompts with a mask above ``min_iou``; ``hs_masks`` (N, 4, C) are the mask tokens."""
    keep = iou > min_iou if min_iou > 0 else torch.ones_like(iou, dtype=torch.bool)  # the generators' filter
    rows = keep.any(1).nonzero()[:, 0]
    # the hypernetwork on every prompt (cheap), as the library does, so the numbers do not depend on the subset
    hyper = torch.stack([mlp(hs_masks[:, i]) for i, mlp in enumerate(hypernets)], 1)[rows]
    c, (h, w) = src.shape[-1], hw
    up = upscale(src[rows].transpose(1, 2).view(len(rows), c, h, w))
    b, c, uh, uw = up.shape
    masks = (hyper @ up.view(b, c, uh * uw)).view(b, -1, uh, uw)[:, 1:]  # multimask: outputs 1..3
    k = keep[rows]
    prompt = rows[:, None].expand_as(k)
    return PointMasks(low=masks[k], iou=iou[rows][k], prompt=prompt[k])


def decode_sam(decoder: torch.nn.Module, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
               sparse: torch.Tensor, dense: torch.Tensor, min_iou: float) -> PointMasks:
    """segment_anything's ``MaskDecoder.predict_masks`` for N point prompts on one image embedding."""
    n = sparse.shape[0]
    out_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
    tokens = torch.cat((out_tokens.unsqueeze(0).expand(n, -1, -1), sparse), dim=1)
    hs, src = decoder.transformer(_image_side(image_embeddings, dense), image_pe, tokens)
    iou = decoder.iou_prediction_head(hs[:, 0])[:, 1:]
    return _kept_masks(hs[:, 1:1 + decoder.num_mask_tokens], src, iou, min_iou, image_embeddings.shape[-2:],
                       decoder.output_upscaling, decoder.output_hypernetworks_mlps)


def decode_sam2(decoder: torch.nn.Module, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                sparse: torch.Tensor, dense: torch.Tensor, high_res: Sequence[torch.Tensor] | None,
                min_iou: float) -> PointMasks:
    """sam2's ``MaskDecoder.predict_masks`` (+ its multimask slicing) for N point prompts on one image."""
    n = sparse.shape[0]
    s = 1 if decoder.pred_obj_scores else 0  # the object-score token comes first when the model has one
    weights = ([decoder.obj_score_token.weight] if s else []) + [decoder.iou_token.weight, decoder.mask_tokens.weight]
    tokens = torch.cat((torch.cat(weights, dim=0).unsqueeze(0).expand(n, -1, -1), sparse), dim=1)
    # the image side repeated per prompt as the library does: sam2's attention (scaled_dot_product_attention)
    # rounds differently when it broadcasts a batch-1 image side (1e-7), and the output must stay the library's
    src = torch.repeat_interleave(image_embeddings, n, dim=0) + dense
    hs, src = decoder.transformer(src, torch.repeat_interleave(image_pe, n, dim=0), tokens)
    iou = decoder.iou_prediction_head(hs[:, s])[:, 1:]

    def upscale(x: torch.Tensor) -> torch.Tensor:
        if not decoder.use_high_res_features:
            return decoder.output_upscaling(x)
        dc1, ln1, act1, dc2, act2 = decoder.output_upscaling
        feat_s0, feat_s1 = high_res
        return act2(dc2(act1(ln1(dc1(x) + feat_s1))) + feat_s0)

    return _kept_masks(hs[:, s + 1:s + 1 + decoder.num_mask_tokens], src, iou, min_iou,
                       image_embeddings.shape[-2:], upscale, decoder.output_hypernetworks_mlps)
