"""Training throughput of the stage-two models: images/s, peak memory, share of step time waiting for data.

    python benchmarks/bench_train.py [--size 64] [--epochs 3] [--models NAME ...] [--full]

Each model trains in its own process (so peak memory is its own) through the real engine
(wsss.train.train) on the synthetic set with ground-truth masks as labels; figures are from the
last epoch (the first warms up). Tiny models on CPU by default; ``--full`` uses DeepLabV3+ R101 and
Mask2Former Swin-L at 512x512 crops (meant for a GPU).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY = {
    "deeplabv3plus-mobilenetv3": ["model.name=deeplabv3plus", "model.deeplabv3plus.encoder=tu-mobilenetv3_small_050",
                                  "model.deeplabv3plus.encoder_weights=null", "model.deeplabv3plus.decoder_channels=32"],
    "deeplabv3plus-resnet18": ["model.name=deeplabv3plus", "model.deeplabv3plus.encoder=resnet18",
                               "model.deeplabv3plus.encoder_weights=null", "model.deeplabv3plus.decoder_channels=64"],
    "mask2former-swin-tiny": ["model.name=mask2former", "model.mask2former.backbone=swin-tiny",
                              "model.mask2former.backbone_overrides={embed_dim: 32, depths: [1,1,2,1], "
                              "num_heads: [1,2,4,8], window_size: 4}", "model.mask2former.num_queries=16",
                              "model.mask2former.hidden_dim=64", "model.mask2former.encoder_layers=2",
                              "model.mask2former.decoder_layers=3", "model.mask2former.dim_feedforward=128",
                              "model.mask2former.train_num_points=1024"],
    "mask2former-resnet-tiny": ["model.name=mask2former", "model.mask2former.backbone=resnet-50",
                                "model.mask2former.backbone_overrides={embedding_size: 16, "
                                "hidden_sizes: [32, 64, 128, 256], depths: [1,1,1,1]}",
                                "model.mask2former.num_queries=16", "model.mask2former.hidden_dim=64",
                                "model.mask2former.encoder_layers=2", "model.mask2former.decoder_layers=3",
                                "model.mask2former.dim_feedforward=128", "model.mask2former.train_num_points=1024"],
}
FULL = {
    "deeplabv3plus-r101": ["model.name=deeplabv3plus", "model.deeplabv3plus.encoder=resnet101",
                           "model.deeplabv3plus.encoder_weights=null"],
    "mask2former-swin-large": ["model.name=mask2former", "model.mask2former.backbone=swin-large"],
}


def run_one(name: str, overrides: list[str], args: argparse.Namespace, tmp: Path) -> dict:
    common = [f"data.synthetic.root={tmp}/syn{args.size}", f"data.synthetic.num_train={args.images}",
              "data.synthetic.num_val=2", f"data.synthetic.size={args.size}", f"train.labels_dir={tmp}/syn{args.size}/masks",
              f"train.crop_size={args.crop or args.size}", f"train.batch_size={args.batch}", f"train.epochs={args.epochs}",
              f"train.val_interval={args.epochs + 1}", "train.tensorboard=false", f"num_workers={args.workers}",
              f"device={args.device}"]
    code = ("import sys, json; from wsss.config import load_config; from wsss.train import train; "
            "cfg = load_config(sys.argv[1], sys.argv[3:]); train(cfg, sys.argv[2])")
    work = tmp / name
    env = os.environ | {"PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", code, str(REPO / "configs/quickstart.yaml"), str(work), *common, *overrides],
                   check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = json.loads((work / "train/log.json").read_text())[-1]
    return {k: last[k] for k in ("images_per_s", "data_wait_share", "peak_mem_mb")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=64, help="synthetic image size")
    parser.add_argument("--crop", type=int, help="training crop (default: --size)")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--full", action="store_true", help="R101 / Swin-L models (use with --device cuda)")
    parser.add_argument("--models", nargs="+", help="subset of the model names")
    args = parser.parse_args()
    models = FULL if args.full else TINY
    names = args.models or list(models)
    print(f"{'model':28s} {'images/s':>9s} {'data wait':>9s} {'peak MB':>8s}   "
          f"({args.device}, {args.size}px, batch {args.batch}, {args.workers} workers, torch threads "
          f"{os.environ.get('OMP_NUM_THREADS', 'default')})")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            r = run_one(name, models[name], args, Path(tmp))
            print(f"{name:28s} {r['images_per_s']:9.2f} {100 * r['data_wait_share']:8.1f}% {r['peak_mem_mb']:8.0f}")


if __name__ == "__main__":
    main()
