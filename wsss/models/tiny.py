"""Tiny randomly initialised models of the real architectures (no weights exist offline): for tests, benchmarks
and trying a config end to end without a download.

Each builder seeds torch, so a test sees the same model every run.
"""
from __future__ import annotations

from functools import partial

import torch


def build_tiny_sam(img_size: int = 64, embed_dim: int = 32, prompt_dim: int = 32, seed: int = 0) -> torch.nn.Module:
    """segment_anything's Sam with a 1-block ViT encoder on ``img_size`` inputs."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    torch.manual_seed(seed)
    patch = 8
    grid = img_size // patch
    model = Sam(
        image_encoder=ImageEncoderViT(img_size=img_size, patch_size=patch, embed_dim=embed_dim, depth=1, num_heads=2,
                                      mlp_ratio=2, out_chans=prompt_dim, qkv_bias=True,
                                      norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_rel_pos=True,
                                      window_size=0, global_attn_indexes=(0,)),
        prompt_encoder=PromptEncoder(embed_dim=prompt_dim, image_embedding_size=(grid, grid),
                                     input_image_size=(img_size, img_size), mask_in_chans=4),
        mask_decoder=MaskDecoder(num_multimask_outputs=3, transformer=TwoWayTransformer(
            depth=1, embedding_dim=prompt_dim, mlp_dim=64, num_heads=2), transformer_dim=prompt_dim,
            iou_head_depth=2, iou_head_hidden_dim=32),
        pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375])
    return model.eval()


def build_tiny_sam2(img_size: int = 64, seed: int = 0) -> torch.nn.Module:
    """The sam2 package's hiera-tiny config shrunk by hydra overrides (1 block per stage, small widths)."""
    from sam2.build_sam import build_sam2

    torch.manual_seed(seed)
    overrides = [
        f"++model.image_size={img_size}",
        "++model.image_encoder.trunk.embed_dim=16",
        "++model.image_encoder.trunk.num_heads=1",
        "++model.image_encoder.trunk.stages=[1,1,1,1]",
        "++model.image_encoder.trunk.global_att_blocks=[]",  # each block here starts a pooled stage
        "++model.image_encoder.trunk.window_pos_embed_bkg_spatial_size=[2,2]",
        "++model.image_encoder.trunk.window_spec=[4,4,4,4]",
        "++model.image_encoder.neck.backbone_channel_list=[128,64,32,16]",
        "++model.image_encoder.neck.d_model=32",
        "++model.memory_attention.d_model=32",
        "++model.memory_attention.num_layers=1",
        "++model.memory_attention.layer.d_model=32",
        "++model.memory_attention.layer.dim_feedforward=32",
        "++model.memory_attention.layer.self_attention.embedding_dim=32",
        "++model.memory_attention.layer.cross_attention.embedding_dim=32",
        "++model.memory_encoder.out_dim=16",
    ]
    return build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", ckpt_path=None, device="cpu", mode="eval",
                      hydra_overrides_extra=overrides, apply_postprocessing=False)


def build_tiny_clip(image_size: int = 32, context_length: int = 16, seed: int = 0) -> tuple:
    """open_clip's CLIP class with a 1-layer ViT and text tower; (model, preprocess, tokenizer)."""
    import open_clip
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
    from open_clip.tokenizer import SimpleTokenizer

    torch.manual_seed(seed)
    model = CLIP(embed_dim=16, vision_cfg=CLIPVisionCfg(layers=1, width=32, head_width=16, patch_size=8,
                                                        image_size=image_size),
                 text_cfg=CLIPTextCfg(context_length=context_length, vocab_size=49408, width=32, heads=2, layers=1))
    preprocess = open_clip.image_transform(image_size, is_train=False)
    return model.eval(), preprocess, SimpleTokenizer(context_length=context_length)


def build_tiny_grounding_dino(words: list[str], image_size: int = 128, seed: int = 0) -> tuple:
    """transformers' GroundingDinoForObjectDetection with a tiny Swin + BERT; (model, processor)."""
    from transformers import (
        BertConfig,
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    torch.manual_seed(seed)
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *words])}
    tokenizer = BertTokenizer(vocab=vocab)  # a vocab file yields all [UNK] in transformers 5 (pitfalls.md)
    backbone = SwinConfig(image_size=image_size, embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
                          window_size=2, out_features=["stage2", "stage3", "stage4"])
    text = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=64)
    config = GroundingDinoConfig(backbone_config=backbone, text_config=text, d_model=32, encoder_layers=1,
                                 decoder_layers=2, encoder_ffn_dim=32, decoder_ffn_dim=32, encoder_attention_heads=2,
                                 decoder_attention_heads=2, num_queries=20, num_feature_levels=4, max_text_len=32,
                                 encoder_n_points=2, decoder_n_points=2)
    model = GroundingDinoForObjectDetection(config).eval()
    processor = GroundingDinoProcessor(
        image_processor=GroundingDinoImageProcessor(size={"shortest_edge": image_size, "longest_edge": image_size}),
        tokenizer=tokenizer)
    return model, processor


def coherent(model: torch.nn.Module, gain: float = 8.0) -> torch.nn.Module:
    """A random SAM / SAM 2 decoder made blocky, in place: random decoders paint salt-and-pepper masks whose
    boxes all span the image (NMS then keeps one mask). Averaging the transposed-conv kernels makes the
    upscaling nearest-neighbour (masks become unions of embedding cells, like real objects) and ``gain``
    gives logits of real magnitude. For fidelity tests and benchmarks on random weights."""
    dec = model.mask_decoder if hasattr(model, "mask_decoder") else model.sam_mask_decoder
    with torch.no_grad():
        for m in dec.output_upscaling.modules():
            if isinstance(m, torch.nn.ConvTranspose2d):
                m.weight.copy_(m.weight.mean((2, 3), keepdim=True).expand_as(m.weight))
        for mlp in dec.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(gain)
    return model
