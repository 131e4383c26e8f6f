"""Label source ``clip`` (paper 003): CLIP zero-shot image labels from prompt templates, top-k or threshold.

With ``head`` set, an augmented-CLIP linear head (LayerNorm + Linear on frozen image features,
trained by ``train_clip_head`` on labelled images) gives the probabilities instead of the prompts.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from wsss.labels.base import LabelSource
from wsss.models.weights import PUBLISHED
from wsss.record import Record, Resources

TEMPLATES = ["a photo of a {}.", "a photo of the {}.", "a cropped photo of a {}.", "an image containing a {}."]


@dataclasses.dataclass
class ClipLabelParams:
    model: str = "ViT-B-16"  # an open_clip architecture name
    pretrained: str = "checkpoints/open_clip_vit_b16.bin"  # local weights file, or an open_clip tag such as 'openai'
    templates: list[str] = dataclasses.field(default_factory=lambda: list(TEMPLATES))
    class_names: list[str] | None = None  # prompt names for classes 1..K; null = the data set's names
    top_k: int = 1  # keep at most this many classes (0 = no limit)
    threshold: float = 0.0  # and only those with probability >= threshold (the top one is always kept)
    head: str = ""  # optional linear head from train_clip_head (a .pt file)

    def __post_init__(self) -> None:
        if not self.templates or any("{}" not in t for t in self.templates):
            raise ValueError("labels.clip.templates: every template needs a '{}' for the class name")


class ClipHead(torch.nn.Module):
    """Paper 003's augmented CLIP head: a normalisation layer and a fully connected classifier."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.norm = torch.nn.LayerNorm(dim)
        self.fc = torch.nn.Linear(dim, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(features))


def load_open_clip(model_name: str, pretrained: str, device: torch.device) -> tuple[Any, Any, Any]:
    """(model, preprocess, tokenizer); a local ``pretrained`` path must exist, a tag downloads (online only)."""
    import open_clip

    local = "/" in pretrained or pretrained.endswith((".bin", ".pt", ".pth", ".safetensors"))
    if local and not pretrained.startswith("hf-hub:") and not Path(pretrained).is_file():
        raise FileNotFoundError(f"labels.clip.pretrained: no CLIP weights at '{Path(pretrained).resolve()}'. Download "
                                f"them there ({PUBLISHED['clip']}), or name an open_clip tag when online.")
    model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=pretrained, device=device)
    return model.eval(), preprocess, open_clip.get_tokenizer(model_name)


class ClipZeroShot:
    """Image -> class probabilities with a CLIP model (any open_clip model object)."""

    def __init__(self, model: Any, preprocess: Any, tokenizer: Any, class_names: list[str], templates: list[str],
                 device: torch.device, head: ClipHead | None = None) -> None:
        from PIL import Image

        self._to_pil = Image.fromarray
        self.model, self.preprocess, self.device, self.head = model, preprocess, device, head
        with torch.no_grad():
            text = [[t.format(name) for t in templates] for name in class_names]
            tokens = tokenizer([p for prompts in text for p in prompts]).to(device)
            emb = torch.nn.functional.normalize(model.encode_text(tokens).float(), dim=-1)
            emb = emb.view(len(class_names), len(templates), -1).mean(1)  # prompt ensemble per class
            self.text = torch.nn.functional.normalize(emb, dim=-1)

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


def select_labels(probs: np.ndarray, top_k: int, threshold: float) -> list[int]:
    """Class indices (1-based) by descending probability: top-k, then threshold; the best always stays."""
    ranked = [int(i) for i in np.argsort(-probs, kind="stable")]
    keep = ranked[:top_k] if top_k else ranked
    keep = [i for i in keep if probs[i] >= threshold] or ranked[:1]
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
        names = params.class_names or list(resources.class_names[1:])
        if len(names) != len(resources.class_names) - 1:
            raise ValueError(f"labels.clip.class_names has {len(names)} names for {len(resources.class_names) - 1} classes")
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
        self.clip = ClipZeroShot(model, preprocess, tokenizer, names, params.templates, resources.device, head)

    def __call__(self, rec: Record) -> tuple[list[int], dict[int, float]]:
        probs = self.clip.probabilities([rec.image])[0]
        return select_labels(probs, self.p.top_k, self.p.threshold), {i + 1: float(p) for i, p in enumerate(probs)}
