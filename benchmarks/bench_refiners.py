"""Images/s and peak memory of each mask refiner on CPU for 512x512 images.

    python benchmarks/bench_refiners.py [--images 3] [--size 512] [--backbone resnet18]

Each refiner runs in its own process; peak memory is the rise of the process's maximum resident
set size over what it held after setup (models built, inputs ready). rCAM uses a random-init
timm backbone at the paper's scales (224, 448); the others take a synthetic CAM and one box.
"""
import argparse
import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _run(name: str, images: int, size: int, backbone: str, queue: mp.Queue) -> None:
    import cv2
    import numpy as np
    import torch

    from wsss.classifier.model import Classifier
    from wsss.data.base import Box, Sample
    from wsss.masks import REFINERS
    from wsss.models.backbones import create_backbone, find_target_layer
    from wsss.record import Record, Resources

    torch.manual_seed(0)
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    res = Resources(None, ["background", "object"], "/tmp", torch.device("cpu"))
    if name == "rcam":
        model = create_backbone(backbone, 1, None, 16)
        res.get("classifier", lambda: Classifier(model, 224, (0.5,) * 3, (0.5,) * 3, {1: [0]},
                                                 find_target_layer(model, 224), True, torch.device("cpu")))
    entry = REFINERS.get(name)
    refiner = entry.builder(entry.params(), res)
    recs = []
    for _ in range(images):
        image = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
        cv2.circle(image, (size // 2, size // 2), size // 5, (220, 190, 50), -1)
        cam = np.zeros((size, size), np.float32)
        cv2.circle(cam, (size // 2, size // 2), size // 4, 1.0, -1)
        cam = cv2.GaussianBlur(cam, (0, 0), size / 20)
        recs.append(Record(Sample("b", image), classes=[1], cams={1: cam / cam.max()},
                           boxes=[Box(1, size // 4, size // 4, 3 * size // 4, 3 * size // 4)]))
    refiner(recs[0])  # warm-up (first-call allocations, lazy imports)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    for rec in recs:
        rec.cache.clear()
        refiner(rec)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put((name, images / seconds, (peak - base) / 1024, peak / 1024))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--refiners", nargs="+", default=["cam_threshold", "grabcut_cam", "grabcut_box", "rcam"])
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    print(f"| refiner | images/s ({args.size}x{args.size}, CPU) | peak rise MB | peak RSS MB |")
    print("|---|---:|---:|---:|")
    for name in args.refiners:
        queue = ctx.Queue()
        proc = ctx.Process(target=_run, args=(name, args.images, args.size, args.backbone, queue))
        proc.start()
        proc.join()
        if proc.exitcode != 0:
            print(f"| {name} | failed (exit {proc.exitcode}) | | |")
            continue
        n, ips, rise, peak = queue.get()
        print(f"| {n} | {ips:.2f} | {rise:.0f} | {peak:.0f} |")


if __name__ == "__main__":
    main()
