"""Value ranges of config parameters, checked when a config loads.

Types are checked by :mod:`wsss.config`; this module checks that a well-typed value makes sense
(``train.epochs = -1`` is an int, yet fails an epoch later as ``KeyError: 'mIoU'``). One table,
:data:`RULES`, covers every numeric field of every params dataclass, so no stage has to repeat
its own checks and a bad value fails at load time naming its full key and the valid range::

    train.epochs = -1: must be >= 1

A rule's pattern matches the *end* of a dotted config path, component by component, each
component an ``fnmatch`` glob: ``epochs`` is that field name wherever it appears, and
``data.*.threshold`` only a data set's ``threshold``. Where several match, the longest pattern
wins, so a path rule overrides a field-name rule whose name means something else there.
``None`` always passes: the type check has already allowed it only where the field is Optional.
"""
from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable, Iterator
from fnmatch import fnmatchcase
from typing import Any, Union

# A check returns what is wrong ("must be >= 1") or None when the value is fine.
Check = Callable[[Any], str | None]

_SEED_MAX = 2**32 - 1  # np.random.seed rejects anything outside [0, 2**32 - 1]


def _fmt(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


def at_least(lo: float) -> Check:
    return lambda v: None if v >= lo else f"must be >= {_fmt(lo)}"


def above(lo: float) -> Check:
    return lambda v: None if v > lo else f"must be > {_fmt(lo)}"


def between(lo: float, hi: float) -> Check:
    return lambda v: None if lo <= v <= hi else f"must be in [{_fmt(lo)}, {_fmt(hi)}]"


def one_of(*choices: int) -> Check:
    return lambda v: None if v in choices else "must be one of " + ", ".join(_fmt(c) for c in choices)


def matches(pattern: str, what: str) -> Check:
    rx = re.compile(pattern)
    return lambda v: None if rx.fullmatch(v) else f"must be {what}"


def each(check: Check, what: str = "every item") -> Check:
    """Apply ``check`` to every item of a list (the error says which)."""
    def run(v: list) -> str | None:
        for i, item in enumerate(v):
            problem = check(item)
            if problem is not None:
                return f"{what} {problem} (item {i} is {item!r})"
        return None
    return run


def each_value(check: Check, what: str = "every value") -> Check:
    """Apply ``check`` to every value of a mapping (per-class settings: the error names the class)."""
    def run(v: dict) -> str | None:
        for key, item in v.items():
            problem = check(item)
            if problem is not None:
                return f"{what} {problem} ({key} is {item!r})"
        return None
    return run


def sorted_positive(v: list) -> str | None:
    """Scales: at least one, all > 0, non-decreasing (rCAM allows s1 == s2)."""
    if not v or any(s <= 0 for s in v) or list(v) != sorted(v):
        return "must be a non-empty list of sizes > 0 in increasing order"
    return None


def scale_range(v: list) -> str | None:
    """A random-resize range [lo, hi]: a pair with 0 < lo <= hi."""
    if len(v) != 2 or not 0 < v[0] <= v[1]:
        return "must be [lo, hi] with 0 < lo <= hi"
    return None


@dataclasses.dataclass(frozen=True)
class Rule:
    pattern: str  # dotted path suffix of fnmatch globs, e.g. 'epochs' or 'data.*.threshold'
    check: Check | None  # None: deliberately unchecked (shadows a field-name rule)

    def matches(self, path: str) -> bool:
        want, have = self.pattern.split("."), path.split(".")
        return len(want) <= len(have) and all(fnmatchcase(h, w) for h, w in zip(have[-len(want):], want))


def _rules(check: Check, *patterns: str) -> list[Rule]:
    return [Rule(p, check) for p in patterns]


# Field names are audited against every params dataclass (see tests/test_config_ranges.py, which
# also fails when a new numeric field has no rule). Meanings checked in the dataclass comments.
RULES: tuple[Rule, ...] = tuple(
    # counts and sizes that must be positive
    _rules(at_least(1),
           "epochs", "batch_size", "micro_batch", "iterations", "crop_size", "val_interval",
           "num_train", "num_val", "size", "input_size", "max_objects", "max_boxes_per_class",
           "object_top_k", "guide_stride", "points_per_side", "points_per_batch",
           "crop_n_points_downscale_factor", "decoder_channels", "num_queries", "hidden_dim",
           "encoder_layers", "decoder_layers", "num_attention_heads", "dim_feedforward",
           "train_num_points", "min_side")
    # counts where 0 means none / off / no limit
    + _rules(at_least(0),
             "overlays", "num_workers", "top_k", "warmup_iters", "crop_n_layers",
             "min_mask_region_area", "min_box_mask_px", "radius",
             "decode_batch",  # 0 = points_per_batch
             "min_images",  # classfolder treats 0 as 1
             "max_pixels", "max_side",  # 0 = no limit / always native size
             "pseudo.tile", "pseudo.tile_overlap",  # 0 = no tiles / tiles side by side
             "pseudo.workers")  # 0 = decode and refine in the main process
    + [Rule("border_sides", between(0, 4))]  # image edges touched; 0 = off
    # probabilities, CAM values (CAMs are in [0, 1]), IoUs and fractions
    + _rules(between(0, 1),
             "threshold", "t", "delta", "min_iou", "pred_iou_thresh", "stability_score_thresh",
             "box_nms_thresh", "crop_nms_thresh", "crop_overlap_ratio", "box_threshold",
             "text_threshold", "min_area", "max_dark_fraction", "inside_frac", "add_ratio",
             "min_ratio", "box_rect", "box_iou", "box_penalty", "val_fraction", "momentum",
             "warmup_ratio")
    + [Rule("thresholds", each(between(0, 1), "every threshold"))]  # grabcut_cam [t0, t1, t2]
    # per-class probability cuts {class name: p}; the ontology's per-class box_threshold / text_threshold
    # (boxes.grounding_dino.ontology.<class>.*) are checked by the field-name rules above
    + [Rule("clip.thresholds", each_value(between(0, 1), "every threshold"))]
    # mask gray level of the Kvasir masks (an int 0..255), not a probability like other thresholds
    + [Rule("data.*.threshold", between(0, 255))]
    # non-negative weights, margins and scores (above 1 is meaningful for these)
    + _rules(at_least(0),
             "weight_decay", "margin", "box_margin", "stability_score_offset", "iou_weight", "stability_weight",
             "backbone_lr_mult", "poly_power", "clip_grad_norm", "class_weight", "mask_weight",
             "dice_weight", "no_object_weight", "gaussian_compat", "bilateral_compat",
             "min_confidence",  # > 1 flags every image (tests use 1.01)
             "min_score",  # box score x predicted IoU; > 1 sends every box to 255
             "max_area")  # >= 1 switches the upper area bound off
    # strictly positive scales and rates (0 divides by zero or never moves)
    + _rules(above(0), "lr", "eps", "gaussian_sxy", "bilateral_sxy", "bilateral_srgb")
    + _rules(between(0, 255), "dark_level", "black_level")  # RGB intensity; 0 = off
    + [Rule("seed", between(0, _SEED_MAX)),
       Rule("output_stride", one_of(8, 16, 32)),  # what timm backbones take
       Rule("encoder_output_stride", one_of(8, 16)),  # what smp's DeepLabV3+ takes
       Rule("scale", scale_range),
       Rule("scales", sorted_positive),
       Rule("road_percentiles", each(between(0, 100), "every percentile")),
       Rule("device", matches(r"auto|cpu|mps|cuda(:\d+)?", "auto, cpu, cuda, cuda:N or mps"))]
)


def rule_for(path: str, rules: tuple[Rule, ...] = RULES) -> Rule | None:
    """The most specific rule matching ``path`` (longest pattern; the first of equals)."""
    best: Rule | None = None
    for rule in rules:
        if rule.matches(path) and (best is None or rule.pattern.count(".") > best.pattern.count(".")):
            best = rule
    return best


def problem(path: str, value: Any) -> str | None:
    """The error message for ``value`` at ``path``, or None when it is in range (or unruled)."""
    rule = rule_for(path)
    if value is None or rule is None or rule.check is None:
        return None
    try:
        issue = rule.check(value)
    except TypeError:  # e.g. a list given where a rule expects a number: the type check owns that
        return None
    return None if issue is None else f"{path} = {value!r}: {issue}"


def check_tree(obj: Any, path: str = "") -> Iterator[str]:
    """Every out-of-range message in a built config (dataclass instances, recursively)."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        full = f"{path}.{f.name}" if path else f.name
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            yield from check_tree(value, full)
        else:
            issue = problem(full, value)
            if issue is not None:
                yield issue


def _has_number(tp: Any) -> bool:
    """Does a field of this type hold numbers (int, float, or lists / Optionals of them)?"""
    if tp in (int, float):
        return True
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType, list, tuple):
        return any(_has_number(a) for a in typing.get_args(tp))
    return False


def numeric_paths(cls: type, path: str = "") -> Iterator[str]:
    """Config paths of every numeric field under dataclass ``cls`` (dict fields are free-form)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        full = f"{path}.{f.name}" if path else f.name
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from numeric_paths(tp, full)
        elif _has_number(tp):
            yield full


def unruled(cls: type) -> list[str]:
    """Numeric fields no rule covers: a new parameter needs a line in :data:`RULES`."""
    return [p for p in numeric_paths(cls) if rule_for(p) is None]


__all__ = ["RULES", "Rule", "check_tree", "numeric_paths", "problem", "rule_for", "unruled"]
