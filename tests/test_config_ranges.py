"""Out-of-range config values fail at load time, naming the full key and the valid range."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from wsss import ranges
from wsss.config import ConfigError, from_dict, load_config
from wsss.masks.grabcut_cam import GrabCutCamParams
from wsss.schema import Config

from .conftest import QUICKSTART, REPO, tiny_overrides

SHIPPED = sorted(p for p in (REPO / "configs").rglob("*.yaml") if "_base_" not in p.relative_to(REPO / "configs").parts)

# the reliability sweep: all 14 used to be accepted and failed late (KeyError, ZeroDivisionError, ...)
SWEEP = [
    ("train.epochs=-1", "train.epochs = -1: must be >= 1"),
    ("train.batch_size=0", "train.batch_size = 0: must be >= 1"),
    ("train.val_interval=0", "train.val_interval = 0: must be >= 1"),
    ("train.lr=-1", "train.lr = -1.0: must be > 0"),
    ("train.crop_size=0", "train.crop_size = 0: must be >= 1"),
    ("masks.cam_threshold.threshold=1.5", "masks.cam_threshold.threshold = 1.5: must be in [0, 1]"),
    ("boxes.cam_components.threshold=-1", "boxes.cam_components.threshold = -1.0: must be in [0, 1]"),
    ("pseudo.overlays=-5", "pseudo.overlays = -5: must be >= 0"),
    ("data.synthetic.num_train=-3", "data.synthetic.num_train = -3: must be >= 1"),
    ("num_workers=-2", "num_workers = -2: must be >= 0"),
    ("device=tpu", "device = 'tpu': must be auto, cpu, cuda, cuda:N or mps"),
    ("masks.grabcut_cam.iterations=0", "masks.grabcut_cam.iterations = 0: must be >= 1"),
    ("train.scale=[2, 0.5]", "train.scale = [2.0, 0.5]: must be [lo, hi] with 0 < lo <= hi"),
    ("classifier.timm.epochs=0", "classifier.timm.epochs = 0: must be >= 1"),
]

# more out-of-range values, including ones a stage's __post_init__ used to report less precisely
MORE = [
    ("masks.grabcut_box.iterations=0", "masks.grabcut_box.iterations = 0: must be >= 1"),
    ("masks.grabcut_cam.t=1.5", "masks.grabcut_cam.t = 1.5: must be in [0, 1]"),
    ("masks.grabcut_cam.thresholds=[0, 0.5, 1.5]", "every threshold must be in [0, 1] (item 2 is 1.5)"),
    ("cam.rcam.scales=[448, 224]", "cam.rcam.scales = [448, 224]: must be a non-empty list"),
    ("masks.rcam.crf_params.iterations=0", "masks.rcam.crf_params.iterations = 0: must be >= 1"),
    ("masks.rcam.eps=0", "masks.rcam.eps = 0.0: must be > 0"),
    ("masks.sam_box.auto.pred_iou_thresh=1.2", "masks.sam_box.auto.pred_iou_thresh = 1.2: must be in [0, 1]"),
    ("masks.sam_cam_match.border_sides=5", "masks.sam_cam_match.border_sides = 5: must be in [0, 4]"),
    ("cam.gradcam.input_size=0", "cam.gradcam.input_size = 0: must be >= 1"),
    ("cam.gradcam.road_percentiles=[20, 120]", "every percentile must be in [0, 100] (item 1 is 120)"),
    ("data.kvasir_seg.threshold=300", "data.kvasir_seg.threshold = 300: must be in [0, 255]"),
    ("seed=-1", "seed = -1: must be in [0, 4294967295]"),
    ("model.deeplabv3plus.encoder_output_stride=32", "must be one of 8, 16"),
    ("train.micro_batch=0", "train.micro_batch = 0: must be >= 1"),
    ("labels.clip.top_k=-1", "labels.clip.top_k = -1: must be >= 0"),
    ("device=cuda:x", "device = 'cuda:x'"),
]


@pytest.mark.parametrize("override,expected", SWEEP + MORE, ids=[o for o, _ in SWEEP + MORE])
def test_out_of_range_names_key_and_range(override: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(expected)) as e:
        load_config(QUICKSTART, [override])
    assert str(e.value).startswith(f"{QUICKSTART}: ")  # one line, like the other config errors
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("override", [
    "train.epochs=1", "train.batch_size=1", "train.val_interval=1", "train.lr=1.0e-8", "train.crop_size=1",
    "masks.cam_threshold.threshold=0", "masks.cam_threshold.threshold=1", "boxes.cam_components.threshold=0.0",
    "pseudo.overlays=0", "data.synthetic.num_train=1", "num_workers=0", "device=auto", "device=cpu",
    "device=cuda", "device=cuda:1", "device=mps", "masks.grabcut_cam.iterations=1", "train.scale=[1, 1]",
    "train.scale=[0.01, 4]", "classifier.timm.epochs=1", "masks.grabcut_cam.t=0", "masks.grabcut_cam.variant=F-PB",
    "cam.gradcam.input_size=null", "train.micro_batch=null", "masks.rcam.radius=0", "cam.rcam.scales=[224, 224]",
    "seed=4294967295", "labels.classifier.top_k=0",
    # field names that mean something else in these dataclasses, so their rules differ
    "data.kvasir_seg.threshold=127", "data.kvasir_instrument.threshold=0",  # mask gray level
    "labels.classifier.min_confidence=1.01",  # > 1 flags every image (test_photo_route uses it)
    "masks.sam_cam_match.max_area=1.5",  # >= 1 = upper bound off
    "masks.grabcut_box.margin=2.0",  # context as a fraction of the box size, may exceed 1
])
def test_boundary_values_pass(override: str) -> None:
    load_config(QUICKSTART, [override])


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(REPO)) for p in SHIPPED])
def test_every_shipped_config_loads(path: Path) -> None:
    load_config(path)


def test_tiny_test_overrides_pass(tmp_path: Path) -> None:
    """Tests shrink runs to tiny values (1 epoch, 48-64 px); those are valid, not out of range."""
    load_config(QUICKSTART, tiny_overrides(tmp_path, num_train=4, num_val=2, size=48) + [
        "train.val_interval=1", "train.crop_size=32", "classifier.timm.input_size=48",
        "model.mask2former.num_queries=8", "model.mask2former.hidden_dim=32", "model.mask2former.encoder_layers=1",
        "model.mask2former.decoder_layers=2", "model.mask2former.num_attention_heads=2",
        "model.mask2former.dim_feedforward=64", "model.mask2former.train_num_points=256",
        "model.deeplabv3plus.decoder_channels=16", "classifier.imagenet_lite0.input_size=64"])


def test_defaults_are_in_range_and_every_numeric_field_has_a_rule() -> None:
    """A new numeric parameter fails here until it gets a line in wsss.ranges.RULES."""
    assert ranges.unruled(Config) == []
    assert list(ranges.check_tree(Config())) == []


def test_bad_value_in_a_yaml_file_is_reported(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(f"_base_: {QUICKSTART}\ntrain:\n  epochs: -1\n")
    with pytest.raises(ConfigError, match=re.escape(f"{cfg}: train.epochs = -1: must be >= 1")):
        load_config(cfg)


def test_range_error_comes_before_post_init_checks() -> None:
    """The range message names the key, where __post_init__ would only name the section."""
    with pytest.raises(ConfigError, match=re.escape("masks.grabcut_cam.t = -1.0: must be in [0, 1]")):
        load_config(QUICKSTART, ["masks.grabcut_cam.t=-1"])


def test_from_dict_checks_by_field_name_without_a_prefix() -> None:
    with pytest.raises(ConfigError, match=re.escape("iterations = 0: must be >= 1")):
        from_dict(GrabCutCamParams, {"iterations": 0})
    assert from_dict(GrabCutCamParams, {"iterations": 2}).iterations == 2


def test_longest_pattern_wins() -> None:
    assert ranges.rule_for("data.kvasir_seg.threshold").pattern == "data.*.threshold"
    assert ranges.rule_for("masks.cam_threshold.threshold").pattern == "threshold"
    assert ranges.rule_for("train.warmup_epochs") is None  # whole components only, not substrings
    assert ranges.rule_for("model.mask2former.backbone_overrides") is None
