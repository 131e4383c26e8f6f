"""Stage-two engine: both models overfit a tiny set, a SIGKILLed run resumes to the uninterrupted result."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from wsss.config import load_config
from wsss.data import build_dataset
from wsss.train import TRAIN_MODELS, build_model, evaluate_model, train
from wsss.train.data import BlockSampler
from wsss.train.trainer import TrainParams, lr_at, micro_batching, model_normalisation

REPO = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)  # 2 shared cores: one thread per process is several times faster here

TINY_MODELS = {
    "deeplabv3plus": ["model.deeplabv3plus.encoder=tu-mobilenetv3_small_050", "model.deeplabv3plus.encoder_weights=null",
                      "model.deeplabv3plus.decoder_channels=16"],
    "mask2former": ["model.mask2former.backbone=swin-tiny",
                    "model.mask2former.backbone_overrides={embed_dim: 16, depths: [1,1,1,1], num_heads: [1,1,2,2], "
                    "window_size: 4}", "model.mask2former.num_queries=8", "model.mask2former.hidden_dim=32",
                    "model.mask2former.encoder_layers=1", "model.mask2former.decoder_layers=2",
                    "model.mask2former.num_attention_heads=2", "model.mask2former.dim_feedforward=64",
                    "model.mask2former.train_num_points=256"],
}


def tiny_overrides(root: Path, model: str = "deeplabv3plus", num_train: int = 8) -> list[str]:
    """Synthetic 48 px images; their ground-truth masks stand in for pseudo-labels."""
    return [f"data.synthetic.root={root}", f"data.synthetic.num_train={num_train}", "data.synthetic.num_val=4",
            "data.synthetic.size=48", f"train.labels_dir={root}/masks", "train.crop_size=32", "device=cpu",
            "train.tensorboard=false", f"model.name={model}", *TINY_MODELS[model]]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def test_models_registered_and_output_class_scores() -> None:
    assert {"deeplabv3plus", "mask2former"} <= set(TRAIN_MODELS.names())
    for name in TINY_MODELS:
        cfg = load_config(REPO / "configs/quickstart.yaml", tiny_overrides(Path("/nonexistent"), name))
        model = build_model(cfg, 5).eval()
        with torch.no_grad():
            out = model(torch.randn(2, 3, 64, 64))
        assert out.shape == (2, 5, 64, 64), name


def test_poly_warmup_and_micro_batching() -> None:
    p = TrainParams(lr=1.0, warmup_iters=10, warmup_ratio=0.0, poly_power=1.0)
    assert lr_at(p, 0, 100) == 0.0 and lr_at(p, 5, 100) == pytest.approx(0.5 * 0.95)
    assert lr_at(p, 50, 100) == pytest.approx(0.5)
    assert micro_batching(TrainParams(batch_size=16, micro_batch=4), 2) == (4, 2)
    with pytest.raises(ValueError, match="micro_batch"):
        micro_batching(TrainParams(batch_size=16, micro_batch=3), 2)


def test_block_sampler_ranks_split_one_order() -> None:
    data = list(range(10))
    one = list(BlockSampler(data, micro_batch=2, accum=2, rank=0, world_size=1, seed=3))
    two = [list(BlockSampler(data, micro_batch=2, accum=1, rank=r, world_size=2, seed=3)) for r in range(2)]
    assert len(one) == 8 and sorted(one) == sorted(two[0] + two[1])
    # forward pass k of rank r is block 2k + r of the single-process order
    assert two[0][:2] == one[0:2] and two[1][:2] == one[2:4] and two[0][2:4] == one[4:6]


@pytest.mark.parametrize("model", ["deeplabv3plus", "mask2former"])
def test_tiny_overfit_reaches_high_train_miou(model: str, tmp_path: Path) -> None:
    lr = {"deeplabv3plus": 0.01, "mask2former": 0.001}[model]
    cfg = load_config(REPO / "configs/quickstart.yaml", tiny_overrides(tmp_path / "syn", model, num_train=4) + [
        "data.val_split=train", "train.epochs=150", "train.val_interval=150", "train.batch_size=4",
        "train.crop_size=48", "train.scale=[1.0,1.0]", f"train.lr={lr}"])
    metrics = train(cfg, tmp_path / "work")
    assert metrics["mIoU"] > 0.7, metrics
    # best.pth reloads into a fresh model with the same score
    fresh = build_model(cfg, 5)
    fresh.load_state_dict(weights(tmp_path / "work/train/best.pth"))
    again = evaluate_model(fresh, build_dataset(cfg.data, "train"), *model_normalisation(cfg), torch.device("cpu"))
    assert again["mIoU"] == pytest.approx(metrics["mIoU"])


def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path: Path) -> None:
    overrides = tiny_overrides(tmp_path / "syn") + ["train.epochs=8", "train.val_interval=3", "train.batch_size=4"]
    cmd = [sys.executable, str(REPO / "tools/train.py"), str(REPO / "configs/quickstart.yaml"),
           "--work-dir", str(tmp_path / "killed"), "--set", *overrides]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = tmp_path / "killed/train/last.pth"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if last.is_file() and torch.load(last, weights_only=True)["epoch"] >= 1:  # complete whenever it is seen
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed mid-way"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = torch.load(last, weights_only=True)  # never half-written: always loads
    assert 1 <= state["epoch"] < 7
    cfg = load_config(REPO / "configs/quickstart.yaml", overrides)
    resumed = train(cfg, tmp_path / "killed", resume=True)
    assert not list((tmp_path / "killed/train").glob(".*tmp*")), "a temp file of the killed write was left"
    straight = train(cfg, tmp_path / "straight")
    assert resumed["mIoU"] == pytest.approx(straight["mIoU"])
    a, b = weights(last), weights(tmp_path / "straight/train/last.pth")
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=key)


@pytest.mark.parametrize("model", ["deeplabv3plus", "mask2former"])
def test_slide_and_tta_inference(model: str) -> None:
    from wsss.train.inference import TestOptions, predict_tta
    from wsss.train.trainer import predict

    cfg = load_config(REPO / "configs/quickstart.yaml", tiny_overrides(Path("/nonexistent"), model))
    net = build_model(cfg, 5).eval()
    image = torch.randint(0, 255, (64, 96, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)).numpy()
    args = (net, image, (0.5,) * 3, (0.5,) * 3, torch.device("cpu"))
    whole, scores = predict_tta(*args, TestOptions())
    assert (whole == predict(*args)).all() and scores.shape == (5, 64, 96)
    # one window covering the image is whole-image inference
    assert (predict_tta(*args, TestOptions("slide", crop=96, stride=32))[0] == whole).all()
    slide, slide_scores = predict_tta(*args, TestOptions("slide", crop=64, stride=32, scales=(0.75, 1.0), flip=True))
    assert slide.shape == (64, 96) and np.isfinite(slide_scores).all()


def test_existing_last_checkpoint_needs_resume_or_overwrite(tmp_path: Path) -> None:
    cfg = load_config(REPO / "configs/quickstart.yaml", tiny_overrides(tmp_path / "syn", num_train=4)
                      + ["train.epochs=1", "train.batch_size=4"])
    last = tmp_path / "work/train/last.pth"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"truncated chec")
    with pytest.raises(FileExistsError, match="--resume.*--overwrite"):  # a plain rerun would replace it
        train(cfg, tmp_path / "work")
    with pytest.raises(ValueError, match=rf"{last}: not a readable checkpoint.*delete it or retrain"):
        train(cfg, tmp_path / "work", resume=True)
    train(cfg, tmp_path / "work", overwrite=True)
    assert weights(last)  # started again and replaced the corrupt file
