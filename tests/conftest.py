"""Shared fixtures: a tiny synthetic data set and a tiny trained classifier in a temp work dir."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "configs" / "quickstart.yaml"


def tiny_overrides(root: Path, num_train: int = 16, num_val: int = 6, size: int = 64) -> list[str]:
    """Config overrides that shrink the quickstart to seconds: small images, one epoch, no pretrained weights."""
    return [
        f"data.synthetic.root={root / 'data'}",
        f"data.synthetic.num_train={num_train}",
        f"data.synthetic.num_val={num_val}",
        f"data.synthetic.size={size}",
        "classifier.timm.pretrained=null",
        "classifier.timm.epochs=2",
        "classifier.timm.batch_size=8",
        f"classifier.timm.input_size={size}",
        "model.deeplabv3plus.encoder_weights=null",
        "train.epochs=1",
        "train.batch_size=4",
        f"train.crop_size={size}",
        "device=cpu",
    ]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """(cfg, work_dir) with the data generated and a classifier trained."""
    from wsss.classifier import train_classifier
    from wsss.config import load_config

    root = tmp_path_factory.mktemp("tiny")
    overrides = tiny_overrides(root)
    cfg = load_config(QUICKSTART, overrides)
    train_classifier(cfg, root / "work")
    return cfg, root / "work", overrides
