"""Plain class words -> ImageNet-1k categories through names and the shipped WordNet table.

Only the shipped JSON is tested: its generator (tools/make_imagenet_wordnet.py) needs an apt WordNet install.
"""
from __future__ import annotations

import json
import os

import pytest

from wsss.classifier.imagenet_names import (
    ALIASES,
    TABLE_PATH,
    categories_for,
    imagenet_class_names,
    map_class_words,
    suggest,
)

NAMES = imagenet_class_names()
DOMESTIC_CATS = ["tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"]
VOC = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
       "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor"]


def names_for(word: str) -> set[str]:
    return {NAMES[i] for i in categories_for(word)}


def test_table_order_is_torchvisions_and_timms() -> None:
    import timm
    from torchvision.models import ResNet18_Weights

    table = json.loads(TABLE_PATH.read_text(encoding="utf-8"))
    assert len(NAMES) == 1000
    assert NAMES == list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
    synsets = os.path.join(os.path.dirname(timm.__file__), "data", "_info", "imagenet_synsets.txt")
    with open(synsets) as f:
        assert table["wnids"] == f.read().split()
    assert TABLE_PATH.stat().st_size < 2_000_000


def test_cat_is_every_domestic_cat_and_no_dog() -> None:
    cats = names_for("cat")
    assert set(DOMESTIC_CATS) <= cats
    assert not cats & names_for("dog")
    assert "tiger" not in cats  # big cats are under big_cat, not cat.n.01


def test_dog_is_the_breeds_and_no_cat() -> None:
    dogs = names_for("dog")
    assert len(dogs) >= 100
    assert {"golden retriever", "beagle", "Chihuahua"} <= dogs
    assert not dogs & set(DOMESTIC_CATS)


@pytest.mark.parametrize("variant, word", [("dogs", "dog"), ("  Dogs ", "dog"), ("buses", "bus"), ("people", "person"),
                                           ("mice", "mouse"), ("hot-dog", "hot dog"), ("hot_dog", "hot dog"),
                                           ("sports balls", "sports ball")])
def test_spelling_variants_and_plurals(variant: str, word: str) -> None:
    assert categories_for(variant) == categories_for(word) != []


def test_car_and_other_hypernyms() -> None:
    assert {"sports car", "cab"} <= names_for("car")
    assert {"beer bottle", "wine bottle", "water bottle"} <= names_for("bottle")
    assert {"scuba diver", "groom", "ballplayer"} <= names_for("person")
    assert "airliner" in names_for("aeroplane") and "airliner" in names_for("airplane")


def test_category_name_maps_to_itself_and_lemma_sharers() -> None:
    assert categories_for("tabby") == [NAMES.index("tabby")]
    assert names_for("Tabby Cat") == {"tabby"}  # a WordNet lemma of the class, not only torchvision's name
    assert names_for("crane") == {"crane", "crane bird"}  # the machine and the bird share the lemma
    assert names_for("remote") == {"remote control"}


def test_multi_word_names_joined_then_head_noun() -> None:
    assert names_for("dining table") == {"dining table"}
    assert names_for("cell phone") == {"cellular telephone"}  # joined: WordNet's "cellphone"
    assert {"soccer ball", "tennis ball", "golf ball"} <= names_for("sports ball")  # head noun: ball


def test_voc_names_all_map_and_aliases_are_categories() -> None:
    for word in VOC:
        assert categories_for(word), word
    for word, targets in ALIASES.items():
        assert set(targets) <= set(NAMES), word
        assert names_for(word) == set(targets)


def test_nonsense_word_raises_with_suggestions_that_map() -> None:
    with pytest.raises(ValueError) as err:
        map_class_words(["cat", "xyzzy"])
    message = str(err.value)
    assert "class 'xyzzy' matches no ImageNet category" in message and "class_map" in message
    tries = suggest("xyzzy")
    assert tries
    for word in tries:
        assert f"'{word}'" in message
        assert categories_for(word), word


@pytest.mark.parametrize("typo, meant", [("kat", "cat"), ("doog", "dog")])
def test_misspelling_suggests_the_word(typo: str, meant: str) -> None:
    assert categories_for(typo) == []
    assert meant in suggest(typo)
    with pytest.raises(ValueError, match=f"'{meant}'"):
        map_class_words([typo])


def test_noun_without_category_suggests_its_ancestor() -> None:
    assert categories_for("giraffe") == []
    tries = suggest("giraffe")
    assert tries[0] == "ruminant"
    assert {"ox", "impala", "bighorn"} <= names_for("ruminant")


def test_overrides_win() -> None:
    mapped = map_class_words(["cat", "giraffe", "dog"], overrides={"cat": ["tiger"], "giraffe": ["impala", "gazelle"]})
    assert mapped["cat"] == [NAMES.index("tiger")]
    assert mapped["giraffe"] == sorted([NAMES.index("impala"), NAMES.index("gazelle")])
    assert mapped["dog"] == categories_for("dog")


def test_override_with_unknown_name_raises_naming_it() -> None:
    with pytest.raises(ValueError) as err:
        map_class_words(["cat"], overrides={"cat": ["tabby", "tigger"]})
    message = str(err.value)
    assert "'cat'" in message and "'tigger'" in message and "tiger" in message
