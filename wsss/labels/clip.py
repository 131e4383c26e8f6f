"""Label source ``clip`` (paper 003): CLIP zero-shot image labels from prompts, top-k or threshold.

Each class's text embedding is the mean of its prompts' normalised embeddings: by default the
``templates`` filled with the class name; ``prompts`` gives a class its own list (an ontology, as in
autodistill), and ``thresholds`` its own probability cut. With ``head`` set, an augmented-CLIP linear
head (LayerNorm + Linear on frozen image features, trained by ``train_clip_head`` on labelled images)
gives the probabilities instead of the prompts.

Weights (``pretrained``): an open_clip tag (``openai``; downloads online), ``hf-hub:org/repo``
(open_clip's own hub loader: downloaded once into the Hugging Face cache, read from it offline), a
local weights file for the architecture ``model`` (or ``hf:org/repo/file`` / an https URL for one,
fetched like SAM checkpoints), or a local folder holding ``open_clip_config.json`` and the weights
(a hub snapshot copied by hand).
"""
from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from wsss.labels.base import LabelSource
from wsss.models.weights import PUBLISHED, resolve_checkpoint
from wsss.paths import wsss_home
from wsss.record import Record, Resources

TEMPLATES = ["a photo of a {}.", "a photo of the {}.", "a cropped photo of a {}.", "an image containing a {}."]
HF_HUB = "hf-hub:"
LOCAL_DIR = "local-dir:"
WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".safetensors")
TEXT_BATCH = 256  # prompts per text-encoder pass: an 80-class x 4-template ontology in 2 passes, bounded memory


@dataclasses.dataclass
class ClipLabelParams:
    model: str = "ViT-B-16"  # an open_clip architecture name (ignored for hf-hub: ids and folders: they carry theirs)
    # local weights file or folder, hf-hub:<org>/<repo>, hf:<org>/<repo>/<file>, an https URL, or an open_clip tag
    # such as 'openai' (docs/foundation_models.md)
    pretrained: str = dataclasses.field(default_factory=lambda: str(wsss_home() / "checkpoints" / "open_clip_vit_b16.bin"))
    templates: list[str] = dataclasses.field(default_factory=lambda: list(TEMPLATES))
    class_names: list[str] | None = None  # prompt names for classes 1..K; null = the data set's names
    # data-set class name -> its own prompts (their mean embedding replaces the templates for that class)
    prompts: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    top_k: int = 1  # keep at most this many classes (0 = no limit)
    threshold: float = 0.0  # and only those with probability >= threshold (if none passes, the top one is kept)
    thresholds: dict[str, float] = dataclasses.field(default_factory=dict)  # data-set class name -> its own threshold
    head: str = ""  # optional linear head from train_clip_head (a .pt file)

    def __post_init__(self) -> None:
        if not self.templates or any("{}" not in t for t in self.templates):
            raise ValueError("labels.clip.templates: every template needs a '{}' for the class name")
        for name, prompts in self.prompts.items():
            if not prompts or any(not isinstance(p, str) or not p.strip() for p in prompts):
                raise ValueError(f"prompts.{name}: give a non-empty list of non-empty prompts")


def check_class_keys(key: str, given: Iterable[str], valid: Sequence[str]) -> None:
    """A per-class mapping may only name the data set's classes: a typo would otherwise be silently ignored."""
    unknown = [k for k in given if k not in valid]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(valid), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"{key}: '{unknown[0]}' is not a class of this data set.{hint} "
                         f"Valid class names: {', '.join(valid)}")


class ClipHead(torch.nn.Module):
    """Paper 003's augmented CLIP head: a normalisation layer and a fully connected classifier."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.norm = torch.nn.LayerNorm(dim)
        self.fc = torch.nn.Linear(dim, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(features))


def open_clip_source(model_name: str, pretrained: str) -> tuple[str, str | None]:
    """(model_name, pretrained) as open_clip's factory wants them.

    open_clip takes hub ids and folders as the *model name* (``hf-hub:org/repo``, ``local-dir:DIR``) and
    then ignores ``pretrained``; wsss lets ``pretrained`` hold them, so one key says where weights come from.
    """
    for spec in (pretrained, model_name):
        if spec.startswith((HF_HUB, LOCAL_DIR)):
            return spec, None
    if pretrained and Path(pretrained).expanduser().is_dir():
        return LOCAL_DIR + str(Path(pretrained).expanduser()), None
    return model_name, pretrained


def _fail(spec: str, reason: str) -> OSError:
    return OSError(f"labels.clip.pretrained: cannot load CLIP '{spec}' ({reason}). Offline, point it at a local "
                   f"copy: a weights file (with labels.clip.model its architecture), a folder with open_clip_config.json "
                   f"and the weights, or an hf-hub: id already in the Hugging Face cache. Published: {PUBLISHED['clip']}")


def _check_weights_exist(name: str, pretrained: str | None) -> None:
    """open_clip warns and goes on with *random* weights when a hub repo or folder lacks them: refuse instead."""
    from open_clip.pretrained import download_pretrained_from_hf

    if name.startswith(HF_HUB):
        try:  # open_clip's own download (cached; a cache hit offline), so create_model finds the same file
            download_pretrained_from_hf(name[len(HF_HUB):], filename="open_clip_config.json")
            download_pretrained_from_hf(name[len(HF_HUB):])
        except Exception as e:  # huggingface_hub raises many kinds; the message names the key and the fix
            raise _fail(name, (str(e).strip().splitlines() or [""])[0][:200]) from e
    elif name.startswith(LOCAL_DIR):
        folder = Path(name[len(LOCAL_DIR):]).expanduser()
        if not (folder / "open_clip_config.json").is_file() or not any(
                p.suffix in WEIGHT_SUFFIXES for p in (folder.iterdir() if folder.is_dir() else ())):
            raise FileNotFoundError(f"labels.clip.pretrained: '{folder.resolve()}' needs open_clip_config.json and a "
                                    f"weights file ({', '.join(WEIGHT_SUFFIXES)}); published: {PUBLISHED['clip']}")
    elif not pretrained:
        raise FileNotFoundError(f"labels.clip.pretrained is empty: name CLIP weights ({PUBLISHED['clip']})")
    else:
        local = "/" in pretrained or pretrained.endswith(WEIGHT_SUFFIXES)
        if local and not Path(pretrained).expanduser().is_file():
            raise FileNotFoundError(f"labels.clip.pretrained: no CLIP weights at '{Path(pretrained).resolve()}'. Download "
                                    f"them there ({PUBLISHED['clip']}), or name an open_clip tag or hf-hub: id when online.")


def load_open_clip(model_name: str, pretrained: str, device: torch.device) -> tuple[Any, Any, Any]:
    """(model, preprocess, tokenizer) through open_clip's own loaders, so online users get its downloads and cache.

    A local path must exist and a hub repo must hold weights: never a silently random model.
    """
    import open_clip

    if pretrained.startswith(("hf:", "http://", "https://")):  # one weights file, as SAM checkpoints are named
        pretrained = str(resolve_checkpoint(pretrained, "clip", "labels.clip.pretrained"))
    name, weights = open_clip_source(model_name, pretrained)
    _check_weights_exist(name, weights)
    if weights is not None and ("/" in weights or weights.endswith(WEIGHT_SUFFIXES)):
        weights = str(Path(weights).expanduser())
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=weights, device=device)
        tokenizer = open_clip.get_tokenizer(name)
    except RuntimeError as e:  # unknown tag / architecture, failed download: open_clip's message, plus the key
        raise _fail(pretrained if weights is not None else name, (str(e).strip().splitlines() or [""])[0][:300]) from e
    return model.eval(), preprocess, tokenizer


class ClipZeroShot:
    """Image -> class probabilities with a CLIP model (any open_clip model object)."""

    def __init__(self, model: Any, preprocess: Any, tokenizer: Any, class_names: list[str], templates: list[str],
                 device: torch.device, head: ClipHead | None = None, prompts: list[list[str]] | None = None) -> None:
        """``prompts[i]``: class i's prompts; default: every template filled with ``class_names[i]``."""
        from PIL import Image

        self._to_pil = Image.fromarray
        self.model, self.preprocess, self.device, self.head = model, preprocess, device, head
        if prompts is None:
            prompts = [[t.format(name) for t in templates] for name in class_names]
        if len(prompts) != len(class_names) or not all(prompts):
            raise ValueError(f"{len(prompts)} prompt lists for {len(class_names)} classes (each needs at least one)")
        self.prompts = prompts
        self.text = self.encode_prompts(tokenizer, prompts)

    @torch.no_grad()
    def encode_prompts(self, tokenizer: Any, prompts: list[list[str]]) -> torch.Tensor:
        """(K, D): per class, the normalised mean of its prompts' normalised embeddings (CLIP's prompt ensemble)."""
        flat = [p for class_prompts in prompts for p in class_prompts]
        emb = torch.cat([torch.nn.functional.normalize(
            self.model.encode_text(tokenizer(flat[i: i + TEXT_BATCH]).to(self.device)).float(), dim=-1)
            for i in range(0, len(flat), TEXT_BATCH)])
        means = [chunk.mean(0) for chunk in emb.split([len(p) for p in prompts])]
        return torch.nn.functional.normalize(torch.stack(means), dim=-1)

    @torch.no_grad()
    def features(self, images: list[np.ndarray]) -> torch.Tensor:
        x = torch.stack([self.preprocess(self._to_pil(im)) for im in images]).to(self.device)
        return torch.nn.functional.normalize(self.model.encode_image(x).float(), dim=-1)

    @torch.no_grad()
    def probabilities(self, images: list[np.ndarray]) -> np.ndarray:
        """(N, K) for foreground classes 1..K: softmax over classes, or the head's sigmoids."""
        f = self.features(images)
        if self.head is not None:
            return torch.sigmoid(self.head(f)).cpu().numpy()
        scale = float(self.model.logit_scale.exp()) if hasattr(self.model, "logit_scale") else 100.0
        return (scale * f @ self.text.T).softmax(-1).cpu().numpy()


def select_labels(probs: np.ndarray, top_k: int, threshold: float | np.ndarray) -> list[int]:
    """Class indices (1-based) by descending probability: top-k, then threshold; the best always stays.

    ``threshold``: one cut for all classes, or one per class (aligned with ``probs``).
    """
    cut = np.broadcast_to(np.asarray(threshold, dtype=float), probs.shape)
    ranked = [int(i) for i in np.argsort(-probs, kind="stable")]
    keep = ranked[:top_k] if top_k else ranked
    keep = [i for i in keep if probs[i] >= cut[i]] or ranked[:1]
    return sorted(i + 1 for i in keep)


def train_clip_head(clip: ClipZeroShot, images: list[np.ndarray], labels: list[list[int]], num_classes: int,
                    epochs: int = 50, lr: float = 1e-2, seed: int = 0, batch_size: int = 64) -> ClipHead:
    """Fit the head on frozen CLIP features of labelled images (multi-label, so BCE), deterministically."""
    torch.manual_seed(seed)
    feats = torch.cat([clip.features(images[i: i + batch_size]) for i in range(0, len(images), batch_size)])
    target = torch.zeros(len(images), num_classes)
    for row, cls in enumerate(labels):
        target[row, [c - 1 for c in cls]] = 1.0
    head = ClipHead(feats.shape[1], num_classes).to(feats.device)
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    for _ in tqdm(range(epochs), desc="clip head", leave=False):
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(head(feats), target.to(feats.device))
        loss.backward()
        opt.step()
    return head.eval()


class ClipLabels(LabelSource):
    """``labels.name: clip``."""

    def __init__(self, params: ClipLabelParams, resources: Resources) -> None:
        self.p = params
        dataset_names = list(resources.class_names[1:])
        names = params.class_names or dataset_names
        if len(names) != len(dataset_names):
            raise ValueError(f"labels.clip.class_names has {len(names)} names for {len(dataset_names)} classes")
        check_class_keys("labels.clip.prompts", params.prompts, dataset_names)
        check_class_keys("labels.clip.thresholds", params.thresholds, dataset_names)
        self.thresholds = np.array([params.thresholds.get(n, params.threshold) for n in dataset_names], dtype=float)
        prompts = [params.prompts.get(key) or [t.format(name) for t in params.templates]
                   for key, name in zip(dataset_names, names)]
        model, preprocess, tokenizer = resources.get(f"clip:{params.model}:{params.pretrained}", lambda: load_open_clip(
            params.model, params.pretrained, resources.device))
        head = None
        if params.head:
            if not Path(params.head).is_file():
                raise FileNotFoundError(f"labels.clip.head: no head at '{Path(params.head).resolve()}'; train one with "
                                        "wsss.labels.clip.train_clip_head or set head: ''")
            state = torch.load(params.head, map_location="cpu", weights_only=True)
            head = ClipHead(state["fc.weight"].shape[1], len(names))
            head.load_state_dict(state)
            head = head.to(resources.device).eval()
        self.clip = ClipZeroShot(model, preprocess, tokenizer, names, params.templates, resources.device, head, prompts)

    def __call__(self, rec: Record) -> tuple[list[int], dict[int, float]]:
        probs = self.clip.probabilities([rec.image])[0]
        return select_labels(probs, self.p.top_k, self.thresholds), {i + 1: float(p) for i, p in enumerate(probs)}
