"""Write ``wsss/classifier/imagenet_wordnet.json``: the WordNet 3.0 view of the ImageNet-1k classes.

One-off generator, run by a maintainer (pip users have no WordNet; the JSON ships in the package)::

    apt-get install -y wordnet-base      # WordNet 3.0 under /usr/share/wordnet
    python tools/make_imagenet_wordnet.py

It reads ``data.noun`` / ``index.noun`` / ``noun.exc`` directly (nltk's reader is not needed), timm's
``imagenet_synsets.txt`` for the class order, and torchvision's category names (checked to agree with the
WordNet ids, so the class order is the one the bundled classifier uses).

The JSON holds, for the 1000 classes in class-index order: the torchvision name, the WordNet id, the lemmas
and the ancestor synsets (offsets, over hypernym and instance-hypernym links); then the lemmas of every
"relevant" synset (a class or an ancestor of one), a lemma -> relevant synsets index in WordNet sense order,
``near``: for nouns none of whose senses is relevant, the nearest relevant ancestors of their first sense
(only where those cover few classes: "giraffe" -> ruminant, "cow" -> cattle), and irregular plurals.
"""
from __future__ import annotations

import argparse
import json
import os
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "wsss" / "classifier" / "imagenet_wordnet.json"
# a "near" hint is a relevant ancestor at most NEAR_MAX_UP links above a noun's first sense, covering at most
# NEAR_MAX_CLASSES classes: "giraffe" -> ruminant (1 up) helps; "idea" -> abstraction (5 up) is noise
NEAR_MAX_UP = 2
NEAR_MAX_CLASSES = 50


def norm(lemma: str) -> str:
    """WordNet lemma -> the form wsss compares: lower case, '_' and '-' as spaces."""
    return " ".join(lemma.lower().replace("_", " ").replace("-", " ").split())


def parse_data_noun(path: Path) -> tuple[dict[int, list[str]], dict[int, list[int]]]:
    """offset -> words (WordNet spelling), offset -> hypernyms (``@`` and ``@i``)."""
    words: dict[int, list[str]] = {}
    hypernyms: dict[int, list[int]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith(" "):  # the licence header lines start with two spaces
            continue
        fields = line.split(" | ")[0].split()
        offset, n_words = int(fields[0]), int(fields[3], 16)
        words[offset] = [fields[4 + 2 * i] for i in range(n_words)]
        k = 4 + 2 * n_words
        n_ptrs = int(fields[k])
        ups = []
        for j in range(n_ptrs):
            symbol, target, pos = fields[k + 1 + 4 * j: k + 4 + 4 * j]
            if symbol in ("@", "@i") and pos == "n":
                ups.append(int(target))
        hypernyms[offset] = ups
    return words, hypernyms


def parse_index_noun(path: Path) -> dict[str, list[int]]:
    """lemma (WordNet spelling) -> synset offsets, most common sense first."""
    senses: dict[str, list[int]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith(" "):
            continue
        fields = line.split()
        n_synsets = int(fields[2])
        senses[fields[0]] = [int(f) for f in fields[-n_synsets:]]
    return senses


def ancestors(offset: int, hypernyms: dict[int, list[int]]) -> set[int]:
    seen: set[int] = set()
    stack = list(hypernyms[offset])
    while stack:
        o = stack.pop()
        if o not in seen:
            seen.add(o)
            stack.extend(hypernyms[o])
    return seen


def nearest_relevant(offset: int, hypernyms: dict[int, list[int]], relevant: set[int], max_up: int) -> list[int]:
    """The relevant synsets closest above ``offset`` (breadth first: all of the first level that has any)."""
    level, seen = list(hypernyms[offset]), set()
    for _ in range(max_up):
        hits = sorted({o for o in level if o in relevant})
        if hits:
            return hits
        seen.update(level)
        level = [u for o in level for u in hypernyms[o] if u not in seen]
    return []


def timm_synsets() -> list[str]:
    import timm

    path = Path(os.path.dirname(timm.__file__)) / "data" / "_info" / "imagenet_synsets.txt"
    return path.read_text().split()


def torchvision_names() -> list[str]:
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def build(wordnet: Path) -> dict:
    words, hypernyms = parse_data_noun(wordnet / "data.noun")
    index = parse_index_noun(wordnet / "index.noun")
    wnids, names = timm_synsets(), torchvision_names()
    assert len(wnids) == len(names) == 1000, (len(wnids), len(names))
    classes = [int(w[1:]) for w in wnids]
    class_lemmas = [[norm(w) for w in words[o]] for o in classes]
    # torchvision's names are WordNet lemmas (two duplicates disambiguated: 'crane bird', 'maillot tank suit');
    # a name sharing nothing with its synset's lemmas means the two orders differ
    for i, (name, lemmas) in enumerate(zip(names, class_lemmas)):
        if norm(name) in lemmas:
            continue
        if not any(lemma in norm(name) for lemma in lemmas):
            raise SystemExit(f"class {i}: torchvision name {name!r} does not match {wnids[i]} {lemmas}: orders differ")
        print(f"note: class {i} torchvision name {name!r} extends the WordNet lemmas {lemmas}")
    class_ancestors = [sorted(ancestors(o, hypernyms)) for o in classes]
    relevant = set(classes).union(*map(set, class_ancestors))

    covers: dict[int, int] = defaultdict(int)  # relevant synset -> number of classes under it (itself included)
    for o, ups in zip(classes, class_ancestors):
        for a in {o, *ups}:
            covers[a] += 1

    senses: dict[str, list[int]] = {}
    near: dict[str, list[int]] = {}
    for lemma, offsets in index.items():
        kept = [o for o in offsets if o in relevant]
        key = norm(lemma)
        if kept:
            senses.setdefault(key, [])
            senses[key] += [o for o in kept if o not in senses[key]]
            continue
        hits = nearest_relevant(offsets[0], hypernyms, relevant, NEAR_MAX_UP)
        if hits and sum(covers[h] for h in hits) <= NEAR_MAX_CLASSES:
            near.setdefault(key, hits)
    for key in senses:  # a lemma with a relevant sense under another spelling needs no hint
        near.pop(key, None)

    known = set(senses) | set(near)
    plurals = {}
    for line in (wordnet / "noun.exc").read_text(encoding="utf-8").splitlines():
        inflected, *bases = line.split()
        base = next((norm(b) for b in bases if norm(b) in known), None)
        if base and norm(inflected) not in known:
            plurals[norm(inflected)] = base

    return {
        "source": "WordNet 3.0 noun hierarchy (hypernym and instance-hypernym links) for the ImageNet-1k classes; "
                  "written by tools/make_imagenet_wordnet.py",
        "names": names,
        "wnids": wnids,
        "lemmas": class_lemmas,
        "ancestors": class_ancestors,
        "synsets": {str(o): [norm(w) for w in words[o]] for o in sorted(relevant)},
        "senses": senses,
        "near": near,
        "plurals": plurals,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wordnet", type=Path, default=Path("/usr/share/wordnet"), help="WordNet 3.0 dict folder")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    table = build(args.wordnet)
    args.out.write_text(json.dumps(table, separators=(",", ":"), ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB): {len(table['synsets'])} relevant synsets, "
          f"{len(table['senses'])} lemmas, {len(table['near'])} near hints, {len(table['plurals'])} plurals")


if __name__ == "__main__":
    main()
