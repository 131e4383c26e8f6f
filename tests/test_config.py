from pathlib import Path

import pytest

from wsss.config import ConfigError, apply_overrides, load_config, load_yaml_with_bases

from .conftest import QUICKSTART


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_base_inheritance_merges_nested_keys(tmp_path: Path) -> None:
    write(tmp_path / "base.yaml", "seed: 3\nmasks:\n  name: grabcut_cam\n  grabcut_cam: {t: 0.2, iterations: 2}\n")
    child = write(tmp_path / "child.yaml", "_base_: base.yaml\nmasks:\n  grabcut_cam: {t: 0.6}\n")
    cfg = load_config(child)
    assert cfg.seed == 3
    assert cfg.masks.grabcut_cam.t == 0.6
    assert cfg.masks.grabcut_cam.iterations == 2
    assert cfg.name == "child"


def test_overrides_parse_yaml_values() -> None:
    cfg = load_config(QUICKSTART, ["masks.grabcut_cam.t=0.45", "train.scale=[0.5,2.0]", "model.deeplabv3plus.encoder_weights=null"])
    assert cfg.masks.grabcut_cam.t == 0.45
    assert cfg.train.scale == [0.5, 2.0]
    assert cfg.model.deeplabv3plus.encoder_weights is None


def test_unknown_key_names_full_path_and_closest(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(QUICKSTART, ["masks.grabcut_cam.iteratons=3"])
    assert "masks.grabcut_cam.iteratons" in str(e.value)
    assert "masks.grabcut_cam.iterations" in str(e.value)


def test_unknown_top_level_key(tmp_path: Path) -> None:
    cfg = write(tmp_path / "bad.yaml", "_base_: " + str(QUICKSTART) + "\ntrian: {epochs: 2}\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'trian'.*'train'"):
        load_config(cfg)


@pytest.mark.parametrize("override,expected", [
    ("train.epochs=two", "train.epochs: expected int"),
    ("masks.grabcut_cam.t=[1]", "masks.grabcut_cam.t: expected float"),
    ("pseudo.overwrite=3", "pseudo.overwrite: expected bool"),
    ("masks.grabcut_cam.variant=PF-BP", "Did you mean 'PF-PB'"),
])
def test_wrong_type_names_expected_type(override: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_config(QUICKSTART, [override])


def test_unknown_implementation_name_suggests_closest() -> None:
    with pytest.raises(ConfigError, match=r"masks.name.*grabcut_cm.*Did you mean 'grabcut_cam'"):
        load_config(QUICKSTART, ["masks.name=grabcut_cm"])


def test_invalid_threshold_order_is_reported() -> None:
    with pytest.raises(ConfigError, match="t0 <= t1 < t2"):
        load_config(QUICKSTART, ["masks.grabcut_cam.variant=custom", "masks.grabcut_cam.thresholds=[0.5,0.4,0.9]"])


def test_base_cycle_and_missing_file(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "_base_: b.yaml\n")
    write(tmp_path / "b.yaml", "_base_: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_yaml_with_bases(tmp_path / "a.yaml")
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_override_without_equals_fails() -> None:
    with pytest.raises(ConfigError, match="key.sub=value"):
        apply_overrides({}, ["train.epochs"])
