"""Where a CAM looks: target layers and reshape transforms for CNN, NHWC and ViT backbones.

CNNs (timm, torchvision) give NCHW maps and need no transform. Vision transformers give tokens
``(B, prefix + h*w, C)``: the prefix (class / register tokens) is dropped and the rest is laid out
on the patch grid. timm's Swin and similar give NHWC maps, which are permuted to NCHW.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

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


def _stride_size(input_size: int, stride: int) -> set[int]:
    """Map sides a stride-``stride`` module gives for a square input ('same' padding rounds up)."""
    return {input_size // stride, -(-input_size // stride)}


def find_guide_layer(model: nn.Module, input_size: int = 64, stride: int = 8, max_depth: int = 2) -> str:
    """The last module (at most ``max_depth`` deep) whose output has the given stride.

    A single-layer shape guide (``layer2`` of a ResNet, ``blocks.2`` of an EfficientNet); rCAM's
    default guide is :func:`find_guide_layers`, every stride-8 block, as in paper 002.
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
    want = _stride_size(input_size, stride)
    hits = [n for n in order if shapes[n][2] in want and shapes[n][3] in want]
    if not hits:
        raise ValueError(f"{type(model).__name__}: no module up to depth {max_depth} outputs a stride-{stride} map "
                         f"for a {input_size}px input; set masks.rcam.guide_layer")
    return hits[-1]


# Containers whose output is just their children's: split into the children, never taken whole.
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def _first_tensor(x: object) -> torch.Tensor | None:
    """The first tensor in a hook's inputs (a DenseNet layer takes a list of tensors)."""
    if torch.is_tensor(x):
        return x
    if isinstance(x, (list, tuple)):
        for v in x:
            t = _first_tensor(v)
            if t is not None:
                return t
    return None


def _is_pointwise(module: nn.Module, in_shape: tuple[int, ...] | None, out_shape: tuple[int, ...] | None) -> bool:
    """A norm, activation, dropout or identity: no convolution inside and the input's shape kept."""
    has_conv = any(isinstance(m, nn.modules.conv._ConvNd) for m in module.modules())
    return not has_conv and in_shape is not None and in_shape == out_shape


def find_guide_layers(model: nn.Module, input_size: int = 64, stride: int = 8) -> list[str]:
    """Every block whose output has stride ``stride``, in forward order: rCAM's shape guide (paper 002).

    Paper 002 gathers *all* GoogLeNet response maps of size 28x28 (224 input) into one tensor and
    takes its first 3 principal components. Here the unit is a block, found by walking the module
    tree from the root:

    - a module is *descended* when it is a pure container (``nn.Sequential`` / ``ModuleList`` /
      ``ModuleDict`` and subclasses: ResNet ``layerN``, EfficientNet ``blocks.N``, DenseNet
      ``denseblockN`` / ``transitionN``) whose output has the stride, or when it spans the
      stride (finer input, coarser output: the root, ``features``, ``blocks``);
    - any other module with a stride-``stride`` output is one block and taken whole (ResNet
      BasicBlock / Bottleneck, EfficientNet InvertedResidual, a DenseNet dense layer, a bare conv);
      its sub-modules are not visited, so a container and its children are never both counted;
    - norms, activations, dropout and identities (no conv, shape kept) are skipped: they only
      re-scale the map before them;
    - a container entered *at* the stride that leaves it (ResNet ``layer3``, EfficientNet
      ``blocks.3``, DenseNet ``transition2``) belongs to the next stage; the stride-8 maps inside
      its first block (a 1x1 expansion before the strided conv) are not taken.

    ResNet-18: ``layer2.0, layer2.1``; EfficientNet-Lite0: ``blocks.2.0, blocks.2.1``; DenseNet:
    ``features.transition1.pool`` and every dense layer of ``denseblock2`` (together exactly the
    channels of ``denseblock2``'s concatenated output). Raises ``ValueError`` when none is found
    (ViT tokens, NHWC maps): set ``masks.rcam.guide_layer``.
    """
    modules = dict(model.named_modules())
    order, io = _block_io(model, modules, input_size)
    found: list[str] = []
    _collect_guide_blocks("", modules, io, _stride_size(input_size, stride), found)
    if not found:
        raise ValueError(f"{type(model).__name__}: no block outputs a stride-{stride} map for a {input_size}px input; "
                         "set masks.rcam.guide_layer to a dotted module name or a list of them")
    return sorted(found, key=order.__getitem__)


_Shape = tuple[int, ...] | None


def _block_io(model: nn.Module, modules: dict[str, nn.Module], input_size: int,
              ) -> tuple[dict[str, int], dict[str, tuple[_Shape, _Shape]]]:
    """Forward order and (input, output) shapes of every module that runs for one zero image."""
    order: dict[str, int] = {}
    io: dict[str, tuple[_Shape, _Shape]] = {}
    hooks = []
    for name, m in modules.items():

        def hook(_m: nn.Module, inputs: object, output: object, name: str = name) -> None:
            if name in order:  # a shared module: its first call counts
                return
            order[name] = len(order)
            t_in, t_out = _first_tensor(inputs), output if torch.is_tensor(output) else None
            io[name] = (tuple(t_in.shape) if t_in is not None else None, tuple(t_out.shape) if t_out is not None else None)

        hooks.append(m.register_forward_hook(hook))
    forward_zero_image(model, hooks, input_size)
    return order, io


def _map_side(shape: _Shape) -> int | None:
    """The side of a square NCHW map, None for tokens / vectors."""
    return shape[2] if shape is not None and len(shape) == 4 and shape[2] == shape[3] else None


def _guide_action(module: nn.Module, s_in: _Shape, s_out: _Shape, want: set[int]) -> Literal["descend", "take", "skip"]:
    """What ``find_guide_layers`` does with one called child (its docstring gives the rules)."""
    a, b = _map_side(s_in), _map_side(s_out)
    at_stride = b in want
    spans = a is not None and a > max(want) and (b is None or b < min(want))  # finer input, coarser output
    if isinstance(module, _CONTAINERS):
        return "descend" if at_stride or spans else "skip"
    if at_stride:
        return "skip" if _is_pointwise(module, s_in, s_out) else "take"
    return "descend" if spans else "skip"  # a wrapper or a whole network around the stride-8 stage


def _collect_guide_blocks(name: str, modules: dict[str, nn.Module], io: dict[str, tuple[_Shape, _Shape]],
                          want: set[int], found: list[str]) -> None:
    """Walk the children of ``name`` (depth first), appending every block taken."""
    for child, _ in modules[name].named_children():
        full = f"{name}.{child}" if name else child
        if full not in io:  # never called in forward
            continue
        action = _guide_action(modules[full], *io[full], want)
        if action == "descend":
            _collect_guide_blocks(full, modules, io, want, found)
        elif action == "take":
            found.append(full)
