"""The steps the command-line tools chain: work dirs, stage one over a split, scoring.

Importing this module is cheap (the data, model and pipeline packages load inside the functions), so a
command's ``--help`` never pays for torch.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wsss.config import ConfigError, load_config, to_dict


def add_config_args(parser: argparse.ArgumentParser, config_required: bool = True) -> None:
    """CONFIG, --work-dir and --set: the arguments every tool shares."""
    group = parser.add_argument_group("config")
    group.add_argument("config", nargs=None if config_required else "?",
                       help="YAML config: a file, or a shipped config's name such as photos (`wsss configs` lists them)")
    group.add_argument("--work-dir", help="output folder (default: ./work_dirs/<config name>, under the current directory)")
    group.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                       help="override config keys, e.g. --set masks.grabcut_cam.t=0.4 train.epochs=2")


def add_threads_arg(parser: argparse.ArgumentParser) -> None:
    """``--threads N``: CPU threads per process, for several processes on one host (docs/training.md)."""
    parser.add_argument("--threads", type=int, metavar="N",
                        help="CPU threads of torch and OpenCV in this process (default: OMP_NUM_THREADS if set, "
                             "else every core; torchrun sets OMP_NUM_THREADS=1). Give each of several processes "
                             "on one host its share of the cores")


def set_threads(n: int | None) -> None:
    """Apply ``--threads``: torch's intra-op threads and OpenCV's (GrabCut) threads; ``OMP_NUM_THREADS`` for
    the processes this one starts. None leaves the defaults."""
    if n is None:
        return
    if n < 1:
        raise SystemExit(f"--threads must be >= 1, got {n}")
    import cv2
    import torch

    torch.set_num_threads(n)
    cv2.setNumThreads(n)
    os.environ["OMP_NUM_THREADS"] = str(n)


def setup(args: argparse.Namespace, extra: list[str] | None = None) -> tuple[Any, Path]:
    """Load and validate the config, choose the work dir and save the resolved config there."""
    import yaml

    from wsss.utils.io import write_text_atomic
    from wsss.utils.runtime import seed_everything

    try:
        cfg = load_config(args.config, list(args.overrides or []) + list(extra or []))
    except ConfigError as e:
        raise SystemExit(f"config error: {e}") from None
    work_dir = Path(args.work_dir or cfg.work_dir or Path("work_dirs") / cfg.name)
    work_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(work_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    seed_everything(cfg.seed)
    return cfg, work_dir


def gen_pseudo(cfg: Any, work_dir: Path, desc: str = "pseudo-labels") -> tuple[Path, dict[str, dict]]:
    """Stage one over ``data.split``; returns the output folder and its manifest records."""
    from wsss.data import build_dataset
    from wsss.pseudo import generate_pseudo_labels
    from wsss.record import Resources
    from wsss.utils.runtime import resolve_device

    dataset = build_dataset(cfg.data, cfg.data.split)
    resources = Resources(cfg, dataset.class_names, work_dir, resolve_device(cfg.device))
    out_dir = work_dir / cfg.pseudo.out
    records = generate_pseudo_labels(cfg, dataset, resources, out_dir, desc=desc)
    return out_dir, records


def score_pseudo(cfg: Any, out_dir: Path) -> dict:
    """Pseudo-labels of ``data.split`` against its ground truth."""
    from wsss.data import build_dataset
    from wsss.evaluation import evaluate_label_dir

    dataset = build_dataset(cfg.data, cfg.data.split)
    return evaluate_label_dir(out_dir / "labels", dataset, cfg.evaluation.pred_ignore)


JOB_LOCK_NAME = ".lock.job"  # next to ``.lock``: which torchrun job (rdzv id) holds it


def _job_lock_path(out_dir: Path) -> Path:
    return out_dir / JOB_LOCK_NAME


def _record_job(out_dir: Path, job: str | None) -> None:
    """Note which torchrun job holds ``<out>/.lock`` (with the lock's exact content, so a later lock of
    another run is never mistaken for it)."""
    from wsss.pseudo.lock import LOCK_NAME
    from wsss.utils.io import write_text_atomic

    if job is not None:
        lock_text = (out_dir / LOCK_NAME).read_text()
        write_text_atomic(_job_lock_path(out_dir), json.dumps({"job": job, "lock": lock_text}))


def take_over_job_lock(out_dir: Path, job: str | None) -> bool:
    """Remove ``<out>/.lock`` when an earlier attempt of this same torchrun job left it; True if removed.

    A lock from another host cannot be checked for liveness (lock.py never takes it over), but under
    torchrun one ``--rdzv-id`` is one job, and a new rendezvous round of it only starts once every node
    stopped its workers: so a lock that job recorded is dead, wherever its rank 0 ran. That is what lets a
    restart (``--max-restarts``, a SLURM requeue with ``--rdzv-id $SLURM_JOB_ID``) whose rank 0 landed on
    another node carry on. Locks of other jobs, or of runs without a job id, stay untouched."""
    from wsss.pseudo.lock import LOCK_NAME

    if job is None:
        return False
    try:
        note = json.loads(_job_lock_path(out_dir).read_text())
        lock_text = (out_dir / LOCK_NAME).read_text()
    except (OSError, ValueError):
        return False
    if not isinstance(note, dict) or note.get("job") != job or note.get("lock") != lock_text:
        return False
    (out_dir / LOCK_NAME).unlink(missing_ok=True)
    _job_lock_path(out_dir).unlink(missing_ok=True)
    return True


@contextlib.contextmanager
def _exit_on_sigterm() -> Iterator[None]:
    """SIGTERM (torchrun stopping the group, scancel, preemption) raises SystemExit instead of killing the
    process outright, so ``finally`` blocks run and rank 0 releases the folder lock. Only SIGKILL or a lost
    node leave a lock behind."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _open_locked(out_dir: Path, cfg: Any, job: str | None) -> Any:
    """Rank 0's ``open_output_dir``, taking over a lock an earlier attempt of the same job left."""
    from wsss.pseudo.lock import LockHeld
    from wsss.pseudo.pipeline import open_output_dir

    try:
        folder_lock = open_output_dir(out_dir, cfg)
    except LockHeld:
        if not take_over_job_lock(out_dir, job):
            raise
        folder_lock = open_output_dir(out_dir, cfg)
    try:
        _record_job(out_dir, job)
    except BaseException:
        folder_lock.release()
        raise
    return folder_lock


def gen_pseudo_sharded(cfg: Any, work_dir: Path, desc: str = "pseudo-labels") -> tuple[Path, dict[str, dict]]:
    """Stage one under torchrun: each rank labels every N-th image on its own device with its own models
    and manifest part (so each rank resumes on its own); rank 0 merges the parts after a barrier.
    Alone (no torchrun) it is :func:`gen_pseudo`. Returns the merged records on rank 0, {} elsewhere.

    Rank 0 holds ``<out>/.lock`` for all ranks (the parts and the merge are one run's). If it cannot
    (another run, a config mismatch, an unwritable folder) it raises before the first barrier, its
    process exits and torchrun stops the other ranks, which have written nothing yet. It releases the
    lock on any exit but SIGKILL; a lock left by an earlier attempt of the same torchrun job (same
    ``--rdzv-id``) is taken over even from another node (:func:`take_over_job_lock`).

    Several nodes: everything is keyed by global rank, not by node, in ``<out>`` on the shared file
    system, so a restart whose ranks land on other nodes (c10d numbers nodes itself) still resumes."""
    from wsss.data import build_dataset
    from wsss.distributed import barrier, init_distributed, job_id, shard
    from wsss.pseudo import generate_pseudo_labels
    from wsss.pseudo.manifest import is_labelled, merge_parts, read_manifest
    from wsss.record import Resources

    info = init_distributed(cfg.device)
    if not info.enabled:
        return gen_pseudo(cfg, work_dir, desc)
    dataset = build_dataset(cfg.data, cfg.data.split)
    out_dir = work_dir / cfg.pseudo.out
    job = job_id()
    with _exit_on_sigterm() if info.is_main else contextlib.nullcontext():
        folder_lock = _open_locked(out_dir, cfg, job) if info.is_main else None
        try:
            barrier(info)
            merged = read_manifest(out_dir / "manifest.jsonl")  # finished by an earlier run, whatever its ranks
            mine = [i for i in shard(dataset.ids, info) if cfg.pseudo.overwrite
                    or not is_labelled(merged.get(i, {})) or not (out_dir / "labels" / f"{i}.png").is_file()]
            resources = Resources(cfg, dataset.class_names, work_dir, info.device)
            generate_pseudo_labels(cfg, dataset, resources, out_dir, ids=mine, desc=f"{desc} [rank {info.rank}]",
                                   manifest_name=f"manifest.rank{info.rank}.jsonl", lock=False)
            barrier(info)
            records: dict[str, dict] = {}
            if info.is_main:
                records = merge_parts(out_dir / "manifest.jsonl", sorted(out_dir.glob("manifest.rank*.jsonl")),
                                      dataset.ids)
            barrier(info)
        finally:
            if folder_lock is not None:
                _job_lock_path(out_dir).unlink(missing_ok=True)  # before the lock: never a note without it
                folder_lock.release()
    return out_dir, records
