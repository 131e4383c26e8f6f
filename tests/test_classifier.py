"""The classifiers: the bundled ImageNet EfficientNet-Lite0 and one trained on image labels."""
import dataclasses

import numpy as np
import pytest
import torch

from wsss.classifier import CLASSIFIERS, build_classifier, imagenet_categories, train_classifier
from wsss.classifier.train import label_accuracy
from wsss.data import build_dataset
from wsss.models.backbones import create_backbone, find_target_layer
from wsss.schema import ClassifierSection


def test_bundled_lite0_loads_and_maps_classes(tmp_path) -> None:
    params = CLASSIFIERS.get("imagenet_lite0").params(class_map={"cat": ["tabby", "tiger cat", "Egyptian cat"]})
    section = ClassifierSection(name="imagenet_lite0", imagenet_lite0=params)
    clf = CLASSIFIERS.build(section, class_names=["background", "cat", "espresso"], work_dir=tmp_path,
                            device=torch.device("cpu"))
    assert len(imagenet_categories()) == 1000
    rng = np.random.default_rng(0)
    probs = clf.predict([rng.integers(0, 255, (96, 80, 3), dtype=np.uint8)])[0]
    assert set(probs) == {1, 2} and all(0.0 < p < 1.0 for p in probs.values())
    # the class probability is the sum of its ImageNet categories' softmax probabilities
    x = clf.preprocess([np.full((50, 50, 3), 128, np.uint8)])
    full = torch.softmax(clf.model(x), 1)[0]
    cats = imagenet_categories()
    expect = sum(float(full[cats.index(n)]) for n in ["tabby", "tiger cat", "Egyptian cat"])
    assert clf.predict([np.full((50, 50, 3), 128, np.uint8)])[0][1] == pytest.approx(expect, rel=1e-4)


def test_bundled_lite0_rejects_unknown_category(tmp_path) -> None:
    params = CLASSIFIERS.get("imagenet_lite0").params(class_map={"cat": ["tabbby"]})
    with pytest.raises(ValueError, match="tabbby.*not an ImageNet category.*tabby"):
        CLASSIFIERS.build(ClassifierSection(name="imagenet_lite0", imagenet_lite0=params),
                          class_names=["background", "cat"], work_dir=tmp_path, device=torch.device("cpu"))


@pytest.mark.parametrize("backbone,layer", [("tf_efficientnet_lite0", "bn2"), ("resnet18", "layer4"),
                                            ("densenet121", "features")])
def test_target_layer_found_automatically(backbone: str, layer: str) -> None:
    model = create_backbone(backbone, 3, None)
    assert find_target_layer(model) == layer


def test_classifier_training_is_deterministic(tiny_run: tuple, tmp_path) -> None:
    """Same config and seed, same weights; the checkpoint loads into a working classifier."""
    cfg, work_dir, _ = tiny_run
    again = train_classifier(cfg, tmp_path)
    first = torch.load(work_dir / "classifier" / "classifier.pth", weights_only=True)["state_dict"]
    second = torch.load(again, weights_only=True)["state_dict"]
    assert all(torch.equal(first[k], second[k]) for k in first)
    ds = build_dataset(cfg.data, "train")
    clf = build_classifier(cfg, ds.class_names, work_dir, torch.device("cpu"))
    assert clf.target_layer == "bn2" and clf.multilabel
    assert 0.0 <= label_accuracy(clf, ds) <= 1.0


def test_class_names_mismatch_is_reported(tiny_run: tuple) -> None:
    cfg, work_dir, _ = tiny_run
    with pytest.raises(ValueError, match="trained for classes"):
        build_classifier(cfg, ["background", "other"], work_dir, torch.device("cpu"))


def test_pretrained_path_missing_is_reported(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="pretrained weights not found"):
        create_backbone("resnet18", 3, str(tmp_path / "nope.pth"))
    assert dataclasses.is_dataclass(CLASSIFIERS.get("timm").params)
