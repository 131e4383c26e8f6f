"""Stage two: train a segmentation model on pseudo-labels (ignore 255) and score it on ground truth.

Runs alone (``python tools/train.py``) or under ``torchrun`` (DDP: nccl on GPU, gloo on CPU).
``train.batch_size`` is the global batch per optimizer step; ``train.micro_batch`` images go through
one forward pass on one rank and the rest is gradient accumulation, so a config gives the same
optimisation on 1 or N GPUs. Checkpoints ``last.pth`` (every epoch) and ``best.pth`` (best val mIoU)
are written atomically by rank 0; ``resume`` continues from ``last.pth``. Every epoch reseeds from
``seed + epoch`` and every micro-batch from its global position, so a resumed (or N-rank) run gives
the weights of an uninterrupted single-process one.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import resource
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from wsss.classifier.train import load_checkpoint
from wsss.data import SegDataset, build_dataset
from wsss.distributed import DistInfo, all_reduce_sum, barrier, broadcast_buffers, init_distributed, shard
from wsss.evaluation import ConfusionMatrix, metrics_from_confusion
from wsss.models.backbones import normalisation
from wsss.train.data import BlockSampler, PseudoLabelSet
from wsss.train.models import TRAIN_MODELS, checked_model
from wsss.utils.io import IGNORE_INDEX, atomic_path, write_label_png
from wsss.utils.runtime import seed_everything


@dataclasses.dataclass
class TrainParams:
    labels_dir: str | None = None  # default: <work_dir>/<pseudo.out>/labels
    epochs: int = 8
    batch_size: int = 16  # images per optimizer step, over all ranks
    micro_batch: int | None = None  # images per forward pass per rank; default batch_size / ranks (no accumulation)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = 1e-3
    momentum: float = 0.9  # sgd only
    weight_decay: float = 1e-4
    backbone_lr_mult: float = 1.0  # lr factor of the pretrained encoder (Mask2Former recipe: 0.1)
    poly_power: float = 0.9
    warmup_iters: int = 0  # linear warmup from lr * warmup_ratio over these optimizer steps
    warmup_ratio: float = 1e-6
    clip_grad_norm: float = 0.0  # 0 = off
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"  # auto: bf16 on GPUs that have it, off on CPU
    sync_bn: bool = False  # SyncBatchNorm across ranks (CUDA only; ignored on CPU)
    crop_size: int = 128
    scale: list[float] = dataclasses.field(default_factory=lambda: [0.75, 1.5])
    val_interval: int = 4  # epochs between validations (the last epoch always validates)
    tensorboard: bool = True  # <out>/tb event files (rank 0)
    out: str = "train"  # folder under the work dir


def build_model(cfg: Any, num_classes: int) -> nn.Module:
    """The stage-two model ``model.name``, checked to declare what the trainer reads (``SegmentationModel``)."""
    return checked_model(TRAIN_MODELS.build(cfg.model, num_classes=num_classes), cfg.model.name)


def model_normalisation(cfg: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Input mean / std of the model's pretrained weights (each params class names them: ``pretrained_weights``)."""
    return normalisation(getattr(cfg.model, cfg.model.name).pretrained_weights)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


@torch.no_grad()
def predict(model: nn.Module, image: np.ndarray, mean: tuple, std: tuple, device: torch.device,
            multiple: int = 32) -> np.ndarray:
    """Label map of one image; padded to a multiple of the output stride, then cropped back."""
    h, w = image.shape[:2]
    x = torch.from_numpy(np.array(image)).to(device).permute(2, 0, 1)[None].float() / 255.0
    x = (x - torch.tensor(mean, device=device).view(1, 3, 1, 1)) / torch.tensor(std, device=device).view(1, 3, 1, 1)
    ph, pw = (-h) % multiple, (-w) % multiple
    x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "constant")
    return model(x)[0, :, :h, :w].argmax(0).byte().cpu().numpy()


def evaluate_model(model: nn.Module, dataset: SegDataset, mean: tuple, std: tuple, device: torch.device,
                   out_dir: Path | None = None, dist_info: DistInfo | None = None) -> dict:
    """mIoU etc. of the model on every image of ``dataset`` with a mask; optionally writes predictions.

    With ``dist_info`` each rank scores its shard of the images and the confusion matrices are summed.
    """
    info = dist_info or DistInfo(device=device)
    model.eval()
    cm = ConfusionMatrix(len(dataset.class_names))
    for image_id in tqdm(shard(dataset.ids, info), desc="validate", unit="img", leave=False, disable=not info.is_main):
        sample = dataset.load(image_id)
        pred = predict(model, sample.image, mean, std, device)
        if out_dir is not None:
            write_label_png(out_dir / f"{image_id}.png", pred)
        if sample.mask is not None:
            cm.update(pred, sample.mask)
    counts = all_reduce_sum(info, np.concatenate([cm.matrix.ravel(), [cm.abstained, cm.scored]]).astype(np.int64))
    matrix = counts[:-2].reshape(cm.matrix.shape)
    return metrics_from_confusion(matrix) | {"coverage": 1.0 - counts[-2] / max(counts[-1], 1)}


def lr_at(p: TrainParams, it: int, total: int) -> float:
    """Poly decay over ``total`` steps, with a linear warmup from ``lr * warmup_ratio``."""
    lr = p.lr * (1 - it / max(total, 1)) ** p.poly_power
    if it < p.warmup_iters:
        lr *= p.warmup_ratio + (1 - p.warmup_ratio) * it / p.warmup_iters
    return lr


def amp_dtype(p: TrainParams, device: torch.device) -> torch.dtype | None:
    if p.amp == "off" or (p.amp == "auto" and device.type != "cuda"):
        return None
    if p.amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if p.amp == "bf16" else torch.float16


def micro_batching(p: TrainParams, world_size: int) -> tuple[int, int]:
    """(images per forward per rank, accumulation steps) for the global ``batch_size``."""
    micro = p.micro_batch or max(p.batch_size // world_size, 1)
    if p.batch_size % (micro * world_size):
        raise ValueError(f"train.batch_size {p.batch_size} is not a multiple of train.micro_batch {micro} x "
                         f"{world_size} ranks: change one of them")
    return micro, p.batch_size // (micro * world_size)


def build_optimizer(p: TrainParams, model: nn.Module) -> torch.optim.Optimizer:
    enc_ids = {id(q) for q in model.encoder.parameters()}
    groups = [{"params": [q for q in model.parameters() if id(q) in enc_ids], "lr_mult": p.backbone_lr_mult},
              {"params": [q for q in model.parameters() if id(q) not in enc_ids], "lr_mult": 1.0}]
    groups = [g for g in groups if g["params"]]
    if p.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay)
    return torch.optim.AdamW(groups, lr=p.lr, weight_decay=p.weight_decay)


def pixel_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over labelled pixels (255 ignored); 0 (with a graph) when none is labelled."""
    total = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / (labels != IGNORE_INDEX).sum().clamp(min=1)


def _micro_seed(seed: int, epoch: int, block: int) -> int:
    """Seed of one micro-batch from its global position (dropout, Mask2Former's point sampling)."""
    return (seed * 1_000_003 + epoch * 10_007 + block) % 2**63


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB -> MiB (process peak RSS)


@dataclasses.dataclass
class _Run:
    """What one training run builds once and every epoch uses."""

    cfg: Any
    info: DistInfo
    out: Path
    data: PseudoLabelSet
    val_set: SegDataset
    sampler: BlockSampler
    mean: tuple[float, ...]
    std: tuple[float, ...]
    micro: int
    accum: int
    model: nn.Module  # unwrapped; DDP (when distributed) wraps it after the resume
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    dtype: torch.dtype | None

    @property
    def p(self) -> TrainParams:
        return self.cfg.train

    @property
    def device(self) -> torch.device:
        return self.info.device

    @property
    def steps(self) -> int:
        return self.sampler.steps

    @property
    def total(self) -> int:
        return self.p.epochs * self.sampler.steps


@dataclasses.dataclass
class _Progress:
    """What a checkpoint carries over to the next epoch (and to a resumed run)."""

    start_epoch: int = 0
    best: float = -1.0
    history: list[dict] = dataclasses.field(default_factory=list)

    def last_val(self) -> dict:
        """The latest validation metrics, ``{}`` when the last finished epoch did not validate."""
        return self.history[-1]["val"] if self.history and self.history[-1].get("val") else {}


def train(cfg: Any, work_dir: str | Path, resume: bool = False, overwrite: bool = False) -> dict:
    """Train ``cfg.model`` on pseudo-labels of ``data.split``; returns the final val metrics.

    Over an existing ``last.pth`` it needs ``resume`` (continue) or ``overwrite`` (start again): a plain
    rerun would silently replace hours of training. Under torchrun every rank calls this; rank 0 writes
    checkpoints, logs and the progress bar.
    """
    work_dir = Path(work_dir)
    out = work_dir / cfg.train.out
    _refuse_to_replace(out, resume, overwrite)
    info = init_distributed(cfg.device)
    seed_everything(cfg.seed)
    run = _build_run(cfg, work_dir, out, info)
    progress = _resume(run) if resume else _Progress()
    _prepare_out_dir(out, info)
    ddp = _wrap_ddp(run.model, info)
    writer = _tensorboard(out) if run.p.tensorboard and info.is_main else None
    bar = tqdm(total=run.total, initial=progress.start_epoch * run.steps, desc="train", unit="it",
               disable=not info.is_main)
    metrics = progress.last_val()
    for epoch in range(progress.start_epoch, run.p.epochs):
        entry = _train_epoch(run, ddp, epoch, bar)
        if _validates(run.p, epoch):
            metrics = _validate(run, progress, epoch, entry)
        progress.history.append(entry)
        _checkpoint(run, progress, epoch, entry, writer)
    bar.close()
    _finish(run, progress, writer)
    return metrics


def _refuse_to_replace(out: Path, resume: bool, overwrite: bool) -> None:
    """Before any work, so nothing is touched: an existing run needs ``resume`` or ``overwrite``."""
    if not resume and not overwrite and (out / "last.pth").is_file():
        raise FileExistsError(f"{out / 'last.pth'} exists: pass --resume to continue that run, or --overwrite to "
                              "start again and replace it (or choose another --work-dir)")


def _build_run(cfg: Any, work_dir: Path, out: Path, info: DistInfo) -> _Run:
    """Data sets, sampler, model, optimiser and grad scaler, in the order that fixes the seeded init."""
    p = cfg.train
    train_set = build_dataset(cfg.data, cfg.data.split)
    val_set = build_dataset(cfg.data, cfg.data.val_split)
    mean, std = model_normalisation(cfg)
    labels_dir = Path(p.labels_dir) if p.labels_dir else work_dir / cfg.pseudo.out / "labels"
    data = PseudoLabelSet(train_set, labels_dir, p.crop_size, (p.scale[0], p.scale[1]), mean, std, cfg.seed)
    micro, accum = micro_batching(p, info.world_size)
    sampler = BlockSampler(data, micro, accum, info.rank, info.world_size, cfg.seed)
    model = build_model(cfg, len(train_set.class_names))
    if p.sync_bn and info.enabled and info.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(info.device)
    opt = build_optimizer(p, model)
    dtype = amp_dtype(p, info.device)
    scaler = torch.amp.GradScaler(info.device.type, enabled=dtype == torch.float16)
    return _Run(cfg, info, out, data, val_set, sampler, mean, std, micro, accum, model, opt, scaler, dtype)


def _resume(run: _Run) -> _Progress:
    """Model, optimiser, scaler, epoch, best mIoU and history from ``last.pth`` (a fresh start without one).

    There is no RNG state to restore: every epoch reseeds from ``seed + epoch`` (see ``_train_epoch``).
    """
    path = run.out / "last.pth"
    if not path.is_file():
        return _Progress()
    state = load_checkpoint(path, ("model", "optimizer", "epoch", "best_miou", "history"))
    run.model.load_state_dict(state["model"])
    run.opt.load_state_dict(state["optimizer"])
    if state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])
    return _Progress(state["epoch"] + 1, state["best_miou"], json.loads(state["history"]))


def _prepare_out_dir(out: Path, info: DistInfo) -> None:
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        for stale in out.glob(".*.tmp*"):  # temp files of a run killed mid-write; never a checkpoint
            stale.unlink(missing_ok=True)


def _wrap_ddp(model: nn.Module, info: DistInfo) -> nn.Module:
    """DDP under torchrun (after the resume, so every rank starts from the loaded weights), else the model."""
    if not info.enabled:
        return model
    return DistributedDataParallel(model, device_ids=[info.device] if info.device.type == "cuda" else None)


def _train_epoch(run: _Run, ddp: nn.Module, epoch: int, bar: tqdm) -> dict:
    """One pass over the pseudo-labels; returns the epoch's log entry (loss, lr, throughput, memory)."""
    seed = run.cfg.seed + epoch  # reseeded each epoch, so a resumed run repeats an uninterrupted one
    seed_everything(seed)
    run.data.reseed(seed)
    run.sampler.set_epoch(epoch)
    loader = DataLoader(run.data, batch_size=run.micro, sampler=run.sampler, num_workers=run.cfg.num_workers,
                        pin_memory=run.device.type == "cuda")
    ddp.train()
    loss_sum, wait, t_epoch = 0.0, 0.0, time.perf_counter()
    batches = iter(loader)
    for step in range(run.steps):
        last_loss, step_loss, step_wait = _optimizer_step(run, ddp, epoch, step, batches)
        loss_sum += step_loss
        wait += step_wait
        bar.update(1)
        bar.set_postfix(epoch=epoch + 1, loss=f"{last_loss:.3f}")
    return _epoch_entry(run, epoch, loss_sum, wait, time.perf_counter() - t_epoch)


def _optimizer_step(run: _Run, ddp: nn.Module, epoch: int, step: int, batches: Iterator) -> tuple[float, float, float]:
    """``accum`` micro-batches, then one optimiser step; returns (last loss, summed loss, data wait in s)."""
    it = epoch * run.steps + step
    for group in run.opt.param_groups:
        group["lr"] = lr_at(run.p, it, run.total) * group["lr_mult"]
    loss_sum, wait = 0.0, 0.0
    for a in range(run.accum):
        loss, a_wait = _micro_step(run, ddp, epoch, step * run.accum + a, batches, last=a == run.accum - 1)
        loss_sum += loss
        wait += a_wait
    if run.p.clip_grad_norm > 0:
        run.scaler.unscale_(run.opt)
        nn.utils.clip_grad_norm_(run.model.parameters(), run.p.clip_grad_norm)
    run.scaler.step(run.opt)
    run.scaler.update()
    run.opt.zero_grad(set_to_none=True)
    return loss, loss_sum, wait


def _micro_step(run: _Run, ddp: nn.Module, epoch: int, block: int, batches: Iterator, last: bool) -> tuple[float, float]:
    """Forward and backward of one micro-batch (this rank's ``block``); returns (loss, data wait in s)."""
    info, device = run.info, run.device
    t0 = time.perf_counter()
    x, y = next(batches)
    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    wait = time.perf_counter() - t0
    torch.manual_seed(_micro_seed(run.cfg.seed, epoch, block * info.world_size + info.rank))
    sync = contextlib.nullcontext() if last or not info.enabled else ddp.no_sync()  # all-reduce once per step
    with sync:
        with torch.autocast(device.type, dtype=run.dtype or torch.float32, enabled=run.dtype is not None):
            loss = ddp(x, y) if run.model.computes_loss else pixel_loss(ddp(x), y)
        run.scaler.scale(loss.float() / run.accum).backward()
    return loss.item(), wait


def _epoch_entry(run: _Run, epoch: int, loss_sum: float, wait: float, seconds: float) -> dict:
    """The epoch's log line, with loss and data wait summed over ranks."""
    p, info, steps = run.p, run.info, run.steps
    loss_total, wait_total = all_reduce_sum(info, np.array([loss_sum, wait]))
    return {"epoch": epoch + 1, "loss": float(loss_total / (steps * run.accum * info.world_size)),
            "lr": lr_at(p, (epoch + 1) * steps - 1, run.total),
            "images_per_s": round(steps * p.batch_size / seconds, 2),
            "data_wait_share": round(float(wait_total) / info.world_size / seconds, 4),
            "peak_mem_mb": round(_peak_memory_mb(run.device), 1)}


def _validates(p: TrainParams, epoch: int) -> bool:
    """Every ``val_interval`` epochs, and always after the last one."""
    return (epoch + 1) % p.val_interval == 0 or epoch + 1 == p.epochs


def _validate(run: _Run, progress: _Progress, epoch: int, entry: dict) -> dict:
    """Val metrics into ``entry``; a new best mIoU is saved as ``best.pth`` (with ``entry`` in its history)."""
    broadcast_buffers(run.info, run.model)  # score every shard with the running stats that rank 0 saves
    metrics = evaluate_model(run.model, run.val_set, run.mean, run.std, run.device, dist_info=run.info)
    entry["val"] = {k: metrics[k] for k in ("mIoU", "fwIoU", "mAcc", "IoU")}
    if metrics["mIoU"] > progress.best:
        progress.best = metrics["mIoU"]
        if run.info.is_main:
            _save(run.out / "best.pth", run.model, run.opt, run.scaler, epoch, progress.best,
                  progress.history + [entry])
    return metrics


def _checkpoint(run: _Run, progress: _Progress, epoch: int, entry: dict, writer: Any) -> None:
    """``last.pth`` (atomic) and the TensorBoard scalars by rank 0; then every rank waits for it."""
    if run.info.is_main:
        _save(run.out / "last.pth", run.model, run.opt, run.scaler, epoch, progress.best, progress.history)
        if writer is not None:
            _log_scalars(writer, entry, (epoch + 1) * run.steps)
    barrier(run.info)  # no rank starts the next epoch (or returns) before the checkpoint exists


def _finish(run: _Run, progress: _Progress, writer: Any) -> None:
    if run.info.is_main:
        with atomic_path(run.out / "log.json") as tmp:
            tmp.write_text(json.dumps(progress.history, indent=1))
    if writer is not None:
        writer.close()


def _tensorboard(out: Path) -> Any:
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(out / "tb"))


def _log_scalars(writer: Any, entry: dict, step: int) -> None:
    for key in ("loss", "lr", "images_per_s", "data_wait_share", "peak_mem_mb"):
        writer.add_scalar(f"train/{key}", entry[key], step)
    for key, value in entry.get("val", {}).items():
        if key != "IoU":
            writer.add_scalar(f"val/{key}", value, step)
    writer.flush()


def _save(path: Path, model: nn.Module, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler, epoch: int,
          best: float, history: list) -> None:
    state = {"model": _unwrap(model).state_dict(), "optimizer": opt.state_dict(), "scaler": scaler.state_dict(),
             "epoch": epoch, "best_miou": best, "history": json.dumps(history)}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
