"""torchrun with 2 gloo processes on CPU gives the 1-process result, for training and for stage one."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from tests.test_train_engine import REPO, tiny_overrides, weights
from wsss.config import load_config
from wsss.distributed import DistInfo, all_reduce_sum, init_distributed, shard
from wsss.pseudo import read_manifest
from wsss.runner import gen_pseudo
from wsss.train import build_model, train

CONFIG = REPO / "configs/quickstart.yaml"


def torchrun(tool: str, work_dir: Path, overrides: list[str]) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(REPO / "tools" / tool), str(CONFIG), "--work-dir", str(work_dir), "--set", *overrides]
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_single_process_helpers_are_no_ops() -> None:
    info = init_distributed("cpu")
    assert (info.rank, info.world_size, info.enabled) == (0, 1, False)
    assert all_reduce_sum(info, [1, 2]).tolist() == [1, 2]
    ids = [f"i{k}" for k in range(5)]
    parts = [shard(ids, DistInfo(rank=r, world_size=2)) for r in range(2)]
    assert sorted(parts[0] + parts[1]) == ids and abs(len(parts[0]) - len(parts[1])) <= 1


def test_two_rank_training_matches_one_process(tmp_path: Path) -> None:
    # global batch 4 = 2 ranks x 2 images, or 1 process x 2 images x 2 accumulation steps
    overrides = tiny_overrides(tmp_path / "syn") + ["train.epochs=2", "train.val_interval=1", "train.batch_size=4",
                                                    "train.micro_batch=2", "train.tensorboard=true"]
    cfg = load_config(CONFIG, overrides)
    one = train(cfg, tmp_path / "one")
    torchrun("train.py", tmp_path / "two", overrides)
    a, b = weights(tmp_path / "one/train/last.pth"), weights(tmp_path / "two/train/last.pth")
    # every learned weight is the same; BatchNorm running statistics are not: rank 0 keeps the mean of
    # its own forward passes only (as DDP without SyncBN does), so validation scores may differ slightly
    params = [name for name, _ in build_model(cfg, 5).named_parameters()]
    for key in params:
        torch.testing.assert_close(a[key], b[key], msg=key)
    log_one = json.loads((tmp_path / "one/train/log.json").read_text())
    log_two = json.loads((tmp_path / "two/train/log.json").read_text())
    assert [e["loss"] for e in log_one] == [e["loss"] for e in log_two]
    assert abs(log_two[-1]["val"]["mIoU"] - one["mIoU"]) < 0.05
    assert list((tmp_path / "two/train/tb").glob("events.out.tfevents.*")), "rank 0 writes TensorBoard events"


def test_sharded_stage_one_matches_one_process(tmp_path: Path) -> None:
    overrides = [f"data.synthetic.root={tmp_path}/syn", "data.synthetic.num_train=6", "data.synthetic.size=48",
                 "device=cpu", "labels.name=given", "classifier.name=imagenet_lite0",
                 "classifier.imagenet_lite0.input_size=64", "pseudo.overlays=1",
                 "classifier.imagenet_lite0.class_map={disc: [tench], block: [goldfish], triangle: [hammerhead], "
                 "cross: [goldfinch]}"]
    cfg = load_config(CONFIG, overrides)
    out_one, records_one = gen_pseudo(cfg, tmp_path / "one")
    torchrun("gen_pseudo.py", tmp_path / "two", overrides)
    out_two = tmp_path / "two/pseudo"
    assert not list(out_two.glob("manifest.rank*.jsonl")), "rank parts are merged away"
    records_two = read_manifest(out_two / "manifest.jsonl")
    assert list(records_two) == list(records_one) and len(records_one) == 6
    for image_id, rec in records_one.items():
        assert rec["status"] == "ok" == records_two[image_id]["status"]
        assert rec["boxes"] == records_two[image_id]["boxes"]
        assert (out_one / rec["label"]).read_bytes() == (out_two / rec["label"]).read_bytes(), image_id
    # a rerun with 2 ranks resumes: nothing is redone, the manifest stays whole
    before = {p.name: p.stat().st_mtime_ns for p in (out_two / "labels").iterdir()}
    torchrun("gen_pseudo.py", tmp_path / "two", overrides)
    assert {p.name: p.stat().st_mtime_ns for p in (out_two / "labels").iterdir()} == before
    assert list(read_manifest(out_two / "manifest.jsonl")) == list(records_one)
