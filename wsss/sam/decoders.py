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

By default only the orchestration of ``predict_masks`` is written here; every computation is the library
module's own (the transformer, the upscaling, the hypernetwork MLPs, the IoU head). Multimask output only: the
automatic mask generators always ask for it.

:func:`fast_transformer` (``auto.decode_batch`` > 0, numbers equal to float rounding) re-associates the
transformer's attention between the few tokens and the 4,096 image tokens, so the image tokens are never
projected: ``(q W_k) k^T`` instead of ``q (k W_k)^T``, ``(P v) W_v`` instead of ``P (v W_v)``; about half the
multiply-adds per prompt on vit_b (1.5x faster on CPU, compiled or not).
"""
from __future__ import annotations

import math
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


Transformer = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def decode_sam(decoder: torch.nn.Module, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
               sparse: torch.Tensor, dense: torch.Tensor, min_iou: float,
               transformer: Transformer | None = None) -> PointMasks:
    """segment_anything's ``MaskDecoder.predict_masks`` for N point prompts on one image embedding.

    ``transformer`` replaces ``decoder.transformer`` (e.g. :func:`fast_transformer` bound to it)."""
    n = sparse.shape[0]
    out_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
    tokens = torch.cat((out_tokens.unsqueeze(0).expand(n, -1, -1), sparse), dim=1)
    hs, src = (transformer or decoder.transformer)(_image_side(image_embeddings, dense), image_pe, tokens)
    iou = decoder.iou_prediction_head(hs[:, 0])[:, 1:]
    return _kept_masks(hs[:, 1:1 + decoder.num_mask_tokens], src, iou, min_iou, image_embeddings.shape[-2:],
                       decoder.output_upscaling, decoder.output_hypernetworks_mlps)


def decode_sam2(decoder: torch.nn.Module, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                sparse: torch.Tensor, dense: torch.Tensor, high_res: Sequence[torch.Tensor] | None,
                min_iou: float, transformer: Transformer | None = None) -> PointMasks:
    """sam2's ``MaskDecoder.predict_masks`` (+ its multimask slicing) for N point prompts on one image.

    Without ``transformer`` the library's numbers bitwise; with one (:func:`fast_transformer` bound to the
    decoder's), the image side once per batch too (float rounding either way)."""
    n = sparse.shape[0]
    s = 1 if decoder.pred_obj_scores else 0  # the object-score token comes first when the model has one
    weights = ([decoder.obj_score_token.weight] if s else []) + [decoder.iou_token.weight, decoder.mask_tokens.weight]
    tokens = torch.cat((torch.cat(weights, dim=0).unsqueeze(0).expand(n, -1, -1), sparse), dim=1)
    if transformer is None:
        # the image side repeated per prompt as the library does: sam2's attention (scaled_dot_product_attention)
        # rounds differently when it broadcasts a batch-1 image side (1e-7), and the output must stay the library's
        src = torch.repeat_interleave(image_embeddings, n, dim=0) + dense
        hs, src = decoder.transformer(src, torch.repeat_interleave(image_pe, n, dim=0), tokens)
    else:
        hs, src = transformer(_image_side(image_embeddings, dense), image_pe, tokens)
    iou = decoder.iou_prediction_head(hs[:, s])[:, 1:]

    def upscale(x: torch.Tensor) -> torch.Tensor:
        if not decoder.use_high_res_features:
            return decoder.output_upscaling(x)
        dc1, ln1, act1, dc2, act2 = decoder.output_upscaling
        feat_s0, feat_s1 = high_res
        return act2(dc2(act1(ln1(dc1(x) + feat_s1))) + feat_s0)

    return _kept_masks(hs[:, s + 1:s + 1 + decoder.num_mask_tokens], src, iou, min_iou,
                       image_embeddings.shape[-2:], upscale, decoder.output_hypernetworks_mlps)


# -- the re-associated two-way transformer (decode_batch > 0) --------------------------------------------------
def _heads(x: torch.Tensor, h: int) -> torch.Tensor:
    n, t, c = x.shape
    return x.view(n, t, h, c // h).transpose(1, 2)  # (N, heads, T, d)


def _tokens_to_image(attn: torch.nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``attn(q=tokens, k=image, v=image)`` without projecting the HW image tokens: the query is pulled
    through the key projection instead (``(q W_k) k^T``; the key bias adds a constant per query row, which
    the softmax removes) and the value projection is applied after the weighting (rows of the softmax sum to 1,
    so the value bias passes unchanged)."""
    if k.shape[0] == 1:  # one image side for all prompts (the first block): the library's module, projected once
        return attn(q=q, k=k, v=v)
    h, (n, t, c) = attn.num_heads, q.shape
    d = attn.internal_dim // h
    qp = _heads(attn.q_proj(q), h)
    a = torch.einsum("nhtd,hdc->nhtc", qp, attn.k_proj.weight.view(h, d, c)).reshape(n, h * t, c)
    p = torch.softmax((a @ k.transpose(1, 2)) / math.sqrt(d), dim=-1)  # (N, heads * T, HW)
    pv = (p @ v).view(n, h, t, c)
    out = torch.einsum("nhtc,hdc->nhtd", pv, attn.v_proj.weight.view(h, d, c)) + attn.v_proj.bias.view(h, 1, d)
    return attn.out_proj(out.transpose(1, 2).reshape(n, t, h * d))


def _image_to_tokens(attn: torch.nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``attn(q=image, k=tokens, v=tokens)`` without projecting the HW image tokens: the key is pulled through
    the query projection (``q (W_q^T k^T) + b_q k^T``) and the output projection is applied to the values
    before the weighting (``P (v W_out^T)``)."""
    h, (n, t, c) = attn.num_heads, k.shape
    d = attn.internal_dim // h
    kp, vp = _heads(attn.k_proj(k), h), _heads(attn.v_proj(v), h)  # (N, heads, T, d)
    m = torch.einsum("hdc,nhtd->nhtc", attn.q_proj.weight.view(h, d, c), kp).reshape(n, h * t, c)
    bias = torch.einsum("hd,nhtd->nht", attn.q_proj.bias.view(h, d), kp).reshape(n, 1, h * t)
    if q.shape[0] == 1:  # one image side for all prompts: one matrix product, not a broadcast copy per prompt
        logits = (q[0] @ m.reshape(n * h * t, c).T).view(-1, n, h * t).transpose(0, 1)
    else:
        logits = q @ m.transpose(1, 2)
    p = torch.softmax(((logits + bias) / math.sqrt(d)).view(n, -1, h, t), dim=-1).view(n, -1, h * t)
    u = torch.einsum("nhtd,chd->nhtc", vp, attn.out_proj.weight.view(c, h, d)).reshape(n, h * t, c)
    return p @ u + attn.out_proj.bias


def _block(layer: torch.nn.Module, queries: torch.Tensor, keys: torch.Tensor, query_pe: torch.Tensor,
           key_pe: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``TwoWayAttentionBlock.forward`` with the image-side attentions re-associated (and ``keys + key_pe``
    added once, not twice)."""
    if layer.skip_first_layer_pe:
        queries = layer.self_attn(q=queries, k=queries, v=queries)
    else:
        q = queries + query_pe
        queries = queries + layer.self_attn(q=q, k=q, v=queries)
    queries = layer.norm1(queries)
    k = keys + key_pe
    queries = layer.norm2(queries + _tokens_to_image(layer.cross_attn_token_to_image, queries + query_pe, k, keys))
    queries = layer.norm3(queries + layer.mlp(queries))
    keys = layer.norm4(keys + _image_to_tokens(layer.cross_attn_image_to_token, k, queries + query_pe, queries))
    return queries, keys


def fast_transformer(transformer: torch.nn.Module, image_embedding: torch.Tensor, image_pe: torch.Tensor,
                     point_embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``TwoWayTransformer.forward`` (segment_anything's and sam2's, the same design) with the attention
    re-associated: equal to it up to float rounding, with about half the multiply-adds per prompt (the image
    tokens are never projected). The image side may have batch 1 for N prompts (it broadcasts)."""
    image = image_embedding.flatten(2).permute(0, 2, 1)
    pe = image_pe.flatten(2).permute(0, 2, 1)
    queries, keys = point_embedding, image
    for layer in transformer.layers:
        queries, keys = _block(layer, queries, keys, point_embedding, pe)
    attn_out = _tokens_to_image(transformer.final_attn_token_to_image, queries + point_embedding, keys + pe, keys)
    return transformer.norm_final_attn(queries + attn_out), keys
