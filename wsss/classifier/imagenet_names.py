"""Map plain class words ("cat", "dog", "car", "person") to ImageNet-1k categories by name and WordNet.

The bundled ImageNet classifier scores 1000 categories; a data set names its own classes. This module says
which categories stand for a word, using the WordNet 3.0 noun hierarchy shipped in ``imagenet_wordnet.json``
(written once by ``tools/make_imagenet_wordnet.py``, so no WordNet install is needed at run time).

:func:`categories_for` applies, in order:

1. normalise: lower case, spaces / underscores / hyphens alike; a plural falls back to its singular
   ("cats", "buses", "people", "mice");
2. a category name or lemma ("tabby", "hotdog", "remote") gives that category and any other sharing the lemma;
3. in addition, the word's first WordNet noun sense that has ImageNet categories below it gives all of them
   ("dog" -> dog.n.01 -> 118 breeds; "bottle" -> beer bottle, wine bottle, ...);
4. a phrase WordNet lacks is tried joined ("cell phone" -> cellphone), then by its head noun, the last word
   ("sports ball" -> ball -> soccer ball, tennis ball, ...).

A few VOC / COCO names that WordNet places badly or not at all are fixed in :data:`ALIASES` (run-together
"tvmonitor", "pottedplant", "diningtable"; "tv", "cow", "train", ...). Nouns with no category below them
("giraffe") map to nothing: their nearest WordNet ancestors with categories ("ruminant") are only offered by
:func:`suggest`, since mapping through them is often wrong ("suitcase" -> case -> wallet).

:func:`map_class_words` applies ``overrides`` first and raises with :func:`suggest`'s alternatives when a
word matches nothing.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import itertools
import json
import math
from pathlib import Path

TABLE_PATH = Path(__file__).with_name("imagenet_wordnet.json")

# VOC / COCO names WordNet places badly or not at all -> ImageNet (torchvision) category names
ALIASES: dict[str, list[str]] = {
    "aeroplane": ["airliner", "warplane"],  # WordNet files warplane beside airplane, not under it
    "airplane": ["airliner", "warplane"],
    "book": ["comic book", "book jacket"],  # book.n.01 is the written work; no bound-pages category
    "cow": ["ox"],  # cow.n.01 has no category below it; ox is its sibling under cattle
    "handbag": ["purse"],  # ImageNet's purse images are handbags
    "sink": ["washbasin"],  # WordNet files washbasin under basin, not sink
    "toilet": ["toilet seat"],  # toilet.n.01 is the room
    "train": ["bullet train", "electric locomotive", "steam locomotive", "passenger car", "freight car"],
    "tv": ["television", "monitor", "screen"],  # WordNet's tv is the receiver, ImageNet's the system
    "tv monitor": ["television", "monitor", "screen"],
    "tvmonitor": ["television", "monitor", "screen"],
    "potted plant": ["pot"],  # pot, flowerpot; the head noun "plant" is the industrial plant (lumbermill)
    "pottedplant": ["pot"],
    "diningtable": ["dining table"],
}

# irregular plurals WordNet's exception list lacks (it lists "people" as its own noun, with no category)
_IRREGULAR = {"people": "person", "persons": "person"}
# WordNet's morphy rules for nouns, most specific first
_SUFFIXES = (("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"), ("men", "man"), ("ies", "y"),
             ("s", ""))
# shown when nothing is close to a word: general words that cover many categories
_GENERAL = ("animal", "dog", "cat", "bird", "person", "vehicle", "car", "boat", "furniture", "food", "fruit")


@dataclasses.dataclass(frozen=True)
class _Table:
    names: list[str]  # torchvision names, class-index order
    by_lemma: dict[str, list[int]]  # normalised class name or lemma -> class indices
    below: dict[int, list[int]]  # relevant synset offset -> class indices at or under it
    senses: dict[str, list[int]]  # lemma -> relevant synsets, WordNet sense order
    synsets: dict[int, list[str]]  # relevant synset -> lemmas
    near: dict[str, list[int]]  # noun with no relevant sense -> nearest relevant ancestors of its first sense
    plurals: dict[str, str]  # irregular plural -> singular


def normalise(word: str) -> str:
    """Lower case, stripped, with '_' and '-' read as spaces and runs of spaces collapsed."""
    return " ".join(word.lower().replace("_", " ").replace("-", " ").split())


@functools.lru_cache(maxsize=1)
def _table() -> _Table:
    raw = json.loads(TABLE_PATH.read_text(encoding="utf-8"))
    by_lemma: dict[str, list[int]] = {}
    below: dict[int, list[int]] = {}
    for i, (name, wnid, lemmas, ups) in enumerate(zip(raw["names"], raw["wnids"], raw["lemmas"], raw["ancestors"])):
        for key in dict.fromkeys([normalise(name), *lemmas]):
            by_lemma.setdefault(key, []).append(i)
        for offset in (int(wnid[1:]), *ups):
            below.setdefault(offset, []).append(i)
    return _Table(names=list(raw["names"]), by_lemma=by_lemma, below=below, senses=raw["senses"],
                  synsets={int(k): v for k, v in raw["synsets"].items()}, near=raw["near"],
                  plurals={**raw["plurals"], **_IRREGULAR})


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet category names in class-index order (torchvision's names, without importing it)."""
    return list(_table().names)


def _singulars(phrase: str) -> list[str]:
    """Singular readings of the phrase's last word that WordNet or ImageNet knows ("buses" -> "bus")."""
    t = _table()
    head, _, last = phrase.rpartition(" ")
    forms = [t.plurals[last]] if last in t.plurals else []
    forms += [last[: -len(suffix)] + base for suffix, base in _SUFFIXES if last.endswith(suffix) and len(last) > len(suffix) + 1]
    out = []
    for form in dict.fromkeys(forms):
        candidate = f"{head} {form}" if head else form
        if _known(candidate):
            out.append(candidate)
    return out


def _known(phrase: str) -> bool:
    t = _table()
    return phrase in ALIASES or phrase in t.by_lemma or phrase in t.senses or phrase in t.near


def _lookup(phrase: str) -> list[int]:
    """Aliases and rules 2-3 for one exact (normalised) phrase."""
    t = _table()
    found = set(t.by_lemma.get(phrase, []))
    senses = t.senses.get(phrase)
    if phrase in ALIASES:
        return _names_to_indices(ALIASES[phrase])
    found = set(t.by_lemma.get(phrase, []))
    senses = t.senses.get(phrase)
    if senses:  # every synset in the table has a category below it, so the first listed is the first that counts
        found.update(t.below[senses[0]])
    return sorted(found)


def _lookup_word(phrase: str) -> list[int]:
    """:func:`_lookup` for a phrase or, failing that, its singular readings ("trains", "cats")."""
    for candidate in (phrase, *_singulars(phrase)):
        found = _lookup(candidate)
        if found:
            return found
    return []


def _names_to_indices(names: list[str]) -> list[int]:
    t = _table()
    return sorted({i for name in names for i, n in enumerate(t.names) if n == name})


def categories_for(word: str) -> list[int]:
    """The ImageNet class indices ``word`` stands for (sorted), or ``[]`` when it matches none.

    See the module docstring for the rules; e.g. "cat" gives the domestic cats and the small wild cats WordNet
    files under cat.n.01, "dog" the 118 breeds, "car" sports car, cab, jeep, ...
    """
    phrase = normalise(word)
    if not phrase:
        return []
    found = _lookup_word(phrase)
    if found:
        return found
    if " " in phrase:
        words = phrase.split(" ")
        found = _lookup_word("".join(words))  # "cell phone" -> cellphone, "wine glass" -> wineglass
        return found or categories_for(words[-1])  # head noun: "sports ball" -> ball
    return []


def _hint_words(phrase: str) -> list[str]:
    """Lemmas of the near ancestors of a noun with no category ("giraffe" -> "ruminant") that map to them."""
    t = _table()
    out = []
    for candidate in (phrase, *_singulars(phrase), phrase.rpartition(" ")[2]):
        for offset in t.near.get(candidate, []):
            # the lemma must read back as this synset: its first relevant sense is the one hinted at
            out += [lemma for lemma in t.synsets[offset] if t.senses.get(lemma, [None])[0] == offset][:1]
    return list(dict.fromkeys(out))


def suggest(word: str, n: int = 5) -> list[str]:
    """Up to ``n`` words that do map to ImageNet categories, to offer instead of ``word``.

    The nearest WordNet ancestors that have categories ("giraffe" -> "ruminant"), alternating with close
    spellings among category names and WordNet lemmas above categories, general words first on a tie
    ("kat" -> "cat"); when there are neither, a few general words ("animal", "dog", ...).
    """
    t = _table()
    phrase = normalise(word)
    hints = _hint_words(phrase) if phrase else []
    vocabulary = list(t.by_lemma) + [s for s in t.senses if s not in t.by_lemma] + list(ALIASES)
    close = difflib.get_close_matches(phrase, vocabulary, n=4 * n, cutoff=0.6)
    # similarity first, then (as a small bonus) how many categories a word covers: "cat" before "kit"
    score = {c: difflib.SequenceMatcher(None, phrase, c).ratio() + 0.02 * math.log10(len(categories_for(c))) for c in close}
    close.sort(key=lambda c: -score[c])
    # alternate the two: an ancestor helps a real noun ("giraffe"), a spelling a typo ("kat" is also khat)
    out = [w for pair in itertools.zip_longest(hints, close) for w in pair if w]
    if not out:
        out = list(_GENERAL)
    out = [w for w in dict.fromkeys(out) if w != phrase and categories_for(w)]
    return out[:n]


def _resolve_override(word: str, names: list[str]) -> list[int]:
    t = _table()
    found: set[int] = set()
    for name in names:
        # torchvision's exact name, else any spelling of a category name or lemma ("hair drier")
        idx = [i for i, n in enumerate(t.names) if n == name] or t.by_lemma.get(normalise(name), [])
        if not idx:
            close = difflib.get_close_matches(name, t.names, n=3, cutoff=0.5)
            raise ValueError(f"class '{word}': '{name}' is not an ImageNet category (close: {close}); "
                             f"use torchvision's ImageNet names")
        found.update(idx)
    return sorted(found)


def map_class_words(words: list[str], overrides: dict[str, list[str]] | None = None) -> dict[str, list[int]]:
    """Map each class word to ImageNet class indices; ``overrides`` ({word: [ImageNet names]}) win.

    Raises ``ValueError`` naming the first word that matches nothing, with suggestions, or an override naming
    an unknown category.
    """
    overrides = overrides or {}
    by_norm = {normalise(k): v for k, v in overrides.items()}
    out: dict[str, list[int]] = {}
    for word in words:
        names = overrides.get(word, by_norm.get(normalise(word)))
        if names is not None:
            out[word] = _resolve_override(word, list(names))
            continue
        found = categories_for(word)
        if not found:
            tries = ", ".join(f"'{s}'" for s in suggest(word))
            raise ValueError(f"class '{word}' matches no ImageNet category; try e.g. {tries} "
                             f"or map it in classifier.imagenet_lite0.class_map")
        out[word] = found
    return out


__all__ = ["ALIASES", "categories_for", "imagenet_class_names", "map_class_words", "normalise", "suggest"]
