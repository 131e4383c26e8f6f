"""Train a multi-label (BCE) or single-label (CE) classifier from image-level labels only."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import albumentations as A
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from wsss.data import SegDataset, build_dataset
from wsss.models.backbones import create_backbone, normalisation
from wsss.utils.io import atomic_path
from wsss.utils.runtime import resolve_device, seed_everything


class _LabelledImages(Dataset):
    def __init__(self, dataset: SegDataset, size: int, mean: tuple, std: tuple, train: bool, seed: int = 0) -> None:
        self.dataset = dataset
        self.ids = [i for i in dataset.ids if dataset.labels(i)]
        if not self.ids:
            raise ValueError("classifier training: no image of the split has image-level labels")
        self.k = len(dataset.class_names) - 1
        ops = [A.Resize(size, size)]
        if train:
            ops += [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5),
                    A.Affine(scale=(0.8, 1.2), translate_percent=(-0.1, 0.1), rotate=(-20, 20), p=0.7),
                    A.ColorJitter(0.2, 0.2, 0.2, 0.05, p=0.5)]
        self.transform = A.Compose(ops + [A.Normalize(mean=mean, std=std)], seed=seed)  # seeded: same run, same weights

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        sample = self.dataset.load(self.ids[i])
        x = self.transform(image=sample.image)["image"]
        y = torch.zeros(self.k)
        y[[c - 1 for c in sample.labels or []]] = 1.0
        return torch.from_numpy(x.transpose(2, 0, 1).copy()), y


def default_checkpoint(work_dir: str | Path) -> Path:
    return Path(work_dir) / "classifier" / "classifier.pth"


def load_checkpoint(path: str | Path, keys: tuple[str, ...] = ()) -> dict:
    """A torch checkpoint dict holding ``keys``; a truncated, foreign or incomplete file is a ValueError naming it.

    torch.load reports such files as RuntimeError, EOFError, UnpicklingError or even KeyError, none of
    which names the path (the user cannot tell which of several .pth files to delete).
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise  # already name the path and mean something else than "corrupt"
    except Exception as e:  # noqa: BLE001 - torch raises many unrelated types for one cause
        reason = (str(e).strip().splitlines() or [""])[0][:160]
        raise ValueError(f"{path}: not a readable checkpoint ({type(e).__name__}: {reason}); "
                         "delete it or retrain") from e
    missing = [k for k in keys if not isinstance(state, dict) or k not in state]
    if missing:
        raise ValueError(f"{path}: not a checkpoint of this kind (no {missing[0]!r} entry); delete it or retrain")
    return state


def classifier_split(cfg: Any) -> str:
    """``classifier.timm.split``, or ``data.split`` when unset: by default the classifier learns from the
    image labels of the very images stage one (tools/gen_pseudo.py) labels, e.g. VOC's train_aug."""
    return cfg.classifier.timm.split or cfg.data.split


def train_classifier(cfg: Any, work_dir: str | Path) -> Path:
    """Train ``classifier.timm`` on the labels of ``data`` (split: :func:`classifier_split`)."""
    p = cfg.classifier.timm
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    dataset = build_dataset(cfg.data, classifier_split(cfg))
    mean, std = normalisation(p.pretrained)
    data = _LabelledImages(dataset, p.input_size, mean, std, train=True, seed=cfg.seed)
    loader = DataLoader(data, batch_size=p.batch_size, shuffle=True, num_workers=cfg.num_workers, drop_last=len(data) > p.batch_size,
                        generator=torch.Generator().manual_seed(cfg.seed))
    model = create_backbone(p.backbone, data.k, p.pretrained, p.output_stride, p.input_size).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=p.lr, weight_decay=p.weight_decay)
    steps = p.epochs * len(loader)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=p.lr, total_steps=max(steps, 1), pct_start=0.15)
    loss_fn = nn.BCEWithLogitsLoss() if p.multilabel else nn.CrossEntropyLoss()
    bar = tqdm(total=steps, desc="classifier", unit="it")
    for _ in range(p.epochs):
        model.train()
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            logits = model(x)
            loss = loss_fn(logits, y) if p.multilabel else loss_fn(logits, y.argmax(1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    path = Path(p.checkpoint) if p.checkpoint else default_checkpoint(work_dir)
    state = {"state_dict": model.state_dict(), "backbone": p.backbone, "num_outputs": data.k,
             "class_names": dataset.class_names, "input_size": p.input_size, "output_stride": p.output_stride,
             "multilabel": p.multilabel, "params": dataclasses.asdict(p)}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


@torch.no_grad()
def label_accuracy(classifier: Any, dataset: SegDataset, threshold: float = 0.5) -> float:
    """Exact-match accuracy of thresholded predictions against image-level labels."""
    hits, total = 0, 0
    for image_id in dataset.ids:
        truth = set(dataset.labels(image_id) or [])
        probs = classifier.predict([dataset.load(image_id).image])[0]
        hits += {c for c, p in probs.items() if p >= threshold} == truth
        total += 1
    return hits / max(total, 1)
