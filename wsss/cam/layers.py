"""Where a CAM looks: target layers and reshape transforms for CNN, NHWC and ViT backbones.

CNNs (timm, torchvision) give NCHW maps and need no transform. Vision transformers give tokens
``(B, prefix + h*w, C)``: the prefix (class / register tokens) is dropped and the rest is laid out
on the patch grid. timm's Swin and similar give NHWC maps, which are permuted to NCHW.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn


def forward_zero_image(model: nn.Module, hooks: list, input_size: int) -> None:
    """One eval-mode, no-grad forward pass of a zero image; removes ``hooks`` afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, input_size, input_size, device=next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)


def probe_shapes(model: nn.Module, names: list[str], input_size: int) -> dict[str, tuple[int, ...] | None]:
    """The output shape of each named submodule for one zero image (eval mode, no grad)."""
    shapes: dict[str, tuple[int, ...] | None] = {}
    hooks = []
    for n in names:
        m = model.get_submodule(n)
        hooks.append(m.register_forward_hook(
            lambda _m, _i, o, n=n: shapes.__setitem__(n, tuple(o.shape) if torch.is_tensor(o) else None)))
    forward_zero_image(model, hooks, input_size)
    return shapes


def last_transformer_norm(model: nn.Module) -> str | None:
    """The first norm of the last transformer block (timm ``blocks.N.norm1``, torchvision ``ln_1``)."""
    found = [n for n, _ in model.named_modules() if n.endswith(".norm1") or n.endswith(".ln_1")]
    return found[-1] if found else None


def prefix_tokens(model: nn.Module, num_tokens: int) -> int:
    """How many leading tokens are not patches (class token, registers)."""
    p = getattr(model, "num_prefix_tokens", None)
    if p is not None:
        return int(p)
    return num_tokens - int(math.isqrt(num_tokens)) ** 2


def tokens_to_map(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """Reshape ``(B, prefix + h*w, C)`` tokens to ``(B, C, h, w)`` for a square patch grid."""

    def transform(x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:  # a conv layer (FullGrad hooks the patch embedding too)
            return x
        p = prefix_tokens(model, x.shape[1])
        x = x[:, p:, :]
        side = math.isqrt(x.shape[1])
        if side * side != x.shape[1]:
            raise ValueError(f"{type(model).__name__}: {x.shape[1]} patch tokens do not form a square grid; "
                             "use a square input size")
        return x.reshape(x.shape[0], side, side, x.shape[2]).permute(0, 3, 1, 2)

    return transform


def nhwc_to_nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2)


def resolve_target_layer(model: nn.Module, name: str | None = None,
                         input_size: int = 64) -> tuple[str, Callable | None, str]:
    """``(layer name, reshape transform or None, kind)`` with kind ``cnn``, ``nhwc`` or ``vit``.

    ``name`` (dotted, e.g. ``layer4`` or ``blocks.11.norm1``) overrides the search; otherwise the
    last top-level child with a spatial output is used, or for a transformer the first norm of
    its last block.
    """
    if name is None:
        children = [n for n, _ in model.named_children()]
        shapes = probe_shapes(model, children, input_size)
        spatial = [n for n in children if shapes.get(n) is not None and len(shapes[n]) == 4
                   and min(shapes[n][1:]) > 1]
        tokens = last_transformer_norm(model)
        # a ViT's only 4D child is its patch embedding; its blocks are where the class evidence is
        token_model = any(shapes.get(n) is not None and len(shapes[n]) == 3 for n in children)
        if tokens is not None and (token_model or not spatial):
            name = tokens
        elif spatial:
            name = spatial[-1]
        else:
            raise ValueError(f"{type(model).__name__}: no layer with a spatial output found; set cam.gradcam.target_layer "
                             "to a dotted module name (see model.named_modules())")
    try:
        model.get_submodule(name)
    except AttributeError:
        raise ValueError(f"target layer '{name}' is not a submodule of {type(model).__name__}") from None
    shape = probe_shapes(model, [name], input_size)[name]
    if shape is None:
        raise ValueError(f"target layer '{name}' does not output a tensor")
    if len(shape) == 3:
        return name, tokens_to_map(model), "vit"
    if len(shape) == 4 and getattr(model, "output_fmt", "NCHW") == "NHWC" and shape[-1] > shape[1]:
        return name, nhwc_to_nchw, "nhwc"
    if len(shape) != 4:
        raise ValueError(f"target layer '{name}' outputs shape {shape}; a CAM needs (B, C, H, W) or tokens (B, N, C)")
    return name, None, "cnn"


def find_guide_layer(model: nn.Module, input_size: int = 64, stride: int = 8, max_depth: int = 2) -> str:
    """The last module (at most ``max_depth`` deep) whose output has the given stride: rCAM's shape guide.

    Paper 002 takes GoogLeNet's 28x28 maps for a 224 input (stride 8): ``layer2`` of a ResNet,
    ``blocks.2`` of an EfficientNet, ``features.denseblock2`` of a DenseNet.
    """
    names = [n for n, _ in model.named_modules() if n and n.count(".") < max_depth]
    order: list[str] = []
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = []
    for n in names:
        m = model.get_submodule(n)

        def hook(_m: nn.Module, _i: object, o: object, n: str = n) -> None:
            if torch.is_tensor(o) and o.dim() == 4:
                order.append(n)
                shapes[n] = tuple(o.shape)

        hooks.append(m.register_forward_hook(hook))
    forward_zero_image(model, hooks, input_size)
    want = {input_size // stride, -(-input_size // stride)}  # 'same' padding rounds up
    hits = [n for n in order if shapes[n][2] in want and shapes[n][3] in want]
    if not hits:
        raise ValueError(f"{type(model).__name__}: no module up to depth {max_depth} outputs a stride-{stride} map "
                         f"for a {input_size}px input; set masks.rcam.guide_layer")
    return hits[-1]
