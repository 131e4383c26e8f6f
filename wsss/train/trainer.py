"""Stage two: train a segmentation model on pseudo-labels (ignore 255) and score it on ground truth.

Checkpoints ``last.pth`` (every epoch) and ``best.pth`` (best val mIoU) are written atomically;
``resume`` continues from ``last.pth``. Each epoch reseeds every random source from
``seed + epoch``, so a resumed run gives the same weights as an uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from wsss.classifier.backbones import normalisation
from wsss.data import SegDataset, build_dataset
from wsss.evaluation import ConfusionMatrix
from wsss.train.data import PseudoLabelSet
from wsss.train.models import TRAIN_MODELS
from wsss.utils.io import IGNORE_INDEX, atomic_path, write_label_png
from wsss.utils.runtime import resolve_device, seed_everything


@dataclasses.dataclass
class TrainParams:
    labels_dir: str | None = None  # default: <work_dir>/<pseudo.out>/labels
    epochs: int = 8
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    poly_power: float = 0.9
    crop_size: int = 128
    scale: list[float] = dataclasses.field(default_factory=lambda: [0.75, 1.5])
    val_interval: int = 4  # epochs between validations (the last epoch always validates)
    out: str = "train"  # folder under the work dir


def build_model(cfg: Any, num_classes: int) -> nn.Module:
    return TRAIN_MODELS.build(cfg.model, num_classes=num_classes)


def model_normalisation(cfg: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    weights = getattr(getattr(cfg.model, cfg.model.name, None), "encoder_weights", None)
    return normalisation(weights)


@torch.no_grad()
def predict(model: nn.Module, image: np.ndarray, mean: tuple, std: tuple, device: torch.device, multiple: int = 32) -> np.ndarray:
    """Label map of one image; padded to a multiple of the output stride, then cropped back."""
    h, w = image.shape[:2]
    x = torch.from_numpy(np.array(image)).to(device).permute(2, 0, 1)[None].float() / 255.0
    x = (x - torch.tensor(mean, device=device).view(1, 3, 1, 1)) / torch.tensor(std, device=device).view(1, 3, 1, 1)
    ph, pw = (-h) % multiple, (-w) % multiple
    x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "constant")
    return model(x)[0, :, :h, :w].argmax(0).byte().cpu().numpy()


def evaluate_model(model: nn.Module, dataset: SegDataset, mean: tuple, std: tuple, device: torch.device,
                   out_dir: Path | None = None) -> dict:
    """mIoU etc. of the model on every image of ``dataset`` with a mask; optionally writes predictions."""
    model.eval()
    cm = ConfusionMatrix(len(dataset.class_names))
    for image_id in tqdm(dataset.ids, desc="validate", unit="img", leave=False):
        sample = dataset.load(image_id)
        pred = predict(model, sample.image, mean, std, device)
        if out_dir is not None:
            write_label_png(out_dir / f"{image_id}.png", pred)
        if sample.mask is not None:
            cm.update(pred, sample.mask)
    return cm.metrics()


def _poly_lr(base: float, it: int, total: int, power: float) -> float:
    return base * (1 - it / max(total, 1)) ** power


def train(cfg: Any, work_dir: str | Path, resume: bool = False) -> dict:
    """Train ``cfg.model`` on pseudo-labels of ``data.split``; returns the final val metrics."""
    p = cfg.train
    work_dir = Path(work_dir)
    out = work_dir / p.out
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    train_set = build_dataset(cfg.data, cfg.data.split)
    val_set = build_dataset(cfg.data, cfg.data.val_split)
    num_classes = len(train_set.class_names)
    mean, std = model_normalisation(cfg)
    labels_dir = Path(p.labels_dir) if p.labels_dir else work_dir / cfg.pseudo.out / "labels"
    data = PseudoLabelSet(train_set, labels_dir, p.crop_size, (p.scale[0], p.scale[1]), mean, std, cfg.seed)
    model = build_model(cfg, num_classes).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=p.lr, weight_decay=p.weight_decay)
    loss_fn = nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
    drop_last = len(data) > p.batch_size
    iters_per_epoch = len(data) // p.batch_size if drop_last else 1
    total = p.epochs * iters_per_epoch
    start_epoch, best, history = 0, -1.0, []
    if resume and (out / "last.pth").is_file():
        state = torch.load(out / "last.pth", map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start_epoch, best, history = state["epoch"] + 1, state["best_miou"], json.loads(state["history"])
    bar = tqdm(total=total, initial=start_epoch * iters_per_epoch, desc="train", unit="it")
    metrics: dict = history[-1]["val"] if history and history[-1].get("val") else {}
    for epoch in range(start_epoch, p.epochs):
        seed_everything(cfg.seed + epoch)
        data.reseed(cfg.seed + epoch)
        loader = DataLoader(data, batch_size=p.batch_size, shuffle=True, drop_last=drop_last, num_workers=cfg.num_workers,
                            generator=torch.Generator().manual_seed(cfg.seed + epoch))
        model.train()
        losses = []
        for i, (x, y) in enumerate(loader):
            for group in opt.param_groups:
                group["lr"] = _poly_lr(p.lr, epoch * iters_per_epoch + i, total, p.poly_power)
            loss = loss_fn(model(x.to(device)), y.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
        entry: dict = {"epoch": epoch + 1, "loss": float(np.mean(losses))}
        if (epoch + 1) % p.val_interval == 0 or epoch + 1 == p.epochs:
            metrics = evaluate_model(model, val_set, mean, std, device)
            entry["val"] = {k: metrics[k] for k in ("mIoU", "fwIoU", "mAcc", "IoU")}
            if metrics["mIoU"] > best:
                best = metrics["mIoU"]
                _save(out / "best.pth", model, opt, epoch, best, history + [entry])
        history.append(entry)
        _save(out / "last.pth", model, opt, epoch, best, history)
    bar.close()
    with atomic_path(out / "log.json") as tmp:
        tmp.write_text(json.dumps(history, indent=1))
    return metrics


def _save(path: Path, model: nn.Module, opt: torch.optim.Optimizer, epoch: int, best: float, history: list) -> None:
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch, "best_miou": best,
             "history": json.dumps(history)}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
