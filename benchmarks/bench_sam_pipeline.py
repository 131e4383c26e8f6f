"""Images/s of paper 000's CAM-box -> SAM -> automatic-mask match: wsss versus the published composition.

Plain (as the published code composes it): ``SamPredictor.set_image`` + ``predict`` once per box,
then ``SamAutomaticMaskGenerator.generate`` on the same image (which encodes the image again).
wsss fast: the ``sam_cam_match`` refiner (one embedding per image, all boxes in one decoder call, automatic
masks from ``wsss.sam.fast_auto``: filters and NMS on the low-res logits, only survivors upsampled).
wsss library: the same refiner with ``auto.engine=library`` (the library's generator on the cached embedding).
Same model, same images, same selection rules; label maps are compared with the plain composition's.

    python benchmarks/bench_sam_pipeline.py --images 4 --size 256            # tiny random SAM, CPU
    python benchmarks/bench_sam_pipeline.py --variant vit_b --checkpoint sam_vit_b_01ec64.pth --device cuda
"""
from __future__ import annotations

import argparse
import dataclasses
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wsss.data.base import (
    Box,  # noqa: E402
    Sample,  # noqa: E402
)
from wsss.masks.compose import compose_label_map  # noqa: E402
from wsss.masks.sam_refiners import SamCamMatch, SamCamMatchParams  # noqa: E402
from wsss.masks.sam_selection import match_box_mask, prune_auto_masks  # noqa: E402
from wsss.record import Record, Resources  # noqa: E402
from wsss.sam.engine import AutoMaskParams, SamEngine, SamModelParams, load_sam_model, sam_resource_key  # noqa: E402


def make_images(n: int, size: int, seed: int) -> list[Record]:
    """Textured images with 1-2 bright blobs and a box around each (as CAM components would give)."""
    rng = np.random.default_rng(seed)
    recs = []
    for i in range(n):
        h, w = size, int(size * 4 / 3)
        img = (rng.random((h, w, 3)) * 50 + 30).astype(np.uint8)
        boxes = []
        for _ in range(1 + i % 2):
            y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
            y1, x1 = y0 + rng.integers(h // 6, h // 2), x0 + rng.integers(w // 6, w // 2)
            img[y0:y1, x0:x1] = rng.integers(120, 255, 3)
            boxes.append(Box(1, int(x0), int(y0), int(x1), int(y1), 0.9))
        rec = Record(Sample(f"bench{i}", img))
        rec.classes, rec.boxes = [1], boxes
        recs.append(rec)
    return recs


def plain(model: torch.nn.Module, recs: list[Record], p: SamCamMatchParams) -> list[np.ndarray]:
    from segment_anything import SamAutomaticMaskGenerator, SamPredictor

    predictor = SamPredictor(model)
    kwargs = {k: v for k, v in dataclasses.asdict(p.auto).items() if k != "engine"}
    generator = SamAutomaticMaskGenerator(model, output_mode="binary_mask", **kwargs)
    out = []
    for rec in recs:
        predictor.set_image(rec.image)
        box_masks = [predictor.predict(box=np.array(b.as_list()), multimask_output=False)[0][0] for b in rec.boxes]
        auto = [r["segmentation"] for r in generator.generate(rec.image)]
        auto = np.stack(auto) if auto else np.zeros((0, *rec.image.shape[:2]), bool)
        auto = auto[prune_auto_masks(auto, rec.image, p.max_area, p.border_sides, p.black_level)]
        mask = np.zeros(rec.image.shape[:2], bool)
        for bm in box_masks:
            mask |= match_box_mask(bm, auto, p.min_iou)[0]
        out.append(compose_label_map(mask.shape, {1: mask}, {1: np.ones(mask.shape)}))
    return out


def ours(refiner: SamCamMatch, recs: list[Record]) -> list[np.ndarray]:
    return [refiner(Record(r.sample, classes=r.classes, boxes=r.boxes)) for r in recs]


def timed(fn, repeats: int) -> tuple[float, list[np.ndarray]]:
    best, result = float("inf"), []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        result = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="tiny", help="tiny (random, wsss/models/tiny.py) or vit_b / vit_l / vit_h")
    ap.add_argument("--checkpoint", default="", help="SAM checkpoint for vit_*; required for them")
    ap.add_argument("--tiny-size", type=int, default=256, help="input size of the tiny model")
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--size", type=int, default=192, help="image height (width = 4/3 of it)")
    ap.add_argument("--points-per-side", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    if args.variant == "tiny":
        from wsss.models.tiny import build_tiny_sam

        model = build_tiny_sam(img_size=args.tiny_size, embed_dim=96, prompt_dim=64).to(device)
        mp = SamModelParams(checkpoint="<tiny random>")
    else:
        mp = SamModelParams(variant=args.variant, checkpoint=args.checkpoint)
        model = load_sam_model(mp, device, "--checkpoint")
    # random weights predict low IoUs: no IoU/stability filtering so the matching has masks to work on
    auto = AutoMaskParams(points_per_side=args.points_per_side, pred_iou_thresh=0.0 if args.variant == "tiny" else 0.88,
                          stability_score_thresh=0.0 if args.variant == "tiny" else 0.95)
    res = Resources(None, ["background", "object"], ".", device)
    res.get(sam_resource_key(mp), lambda: SamEngine(model, mp.family, sam_resource_key(mp)))
    refiners = {e: SamCamMatch(SamCamMatchParams(model=mp, auto=dataclasses.replace(auto, engine=e)), res)
                for e in ("fast", "library")}
    p = refiners["library"].p
    recs = make_images(args.images, args.size, args.seed)

    times, labels = {}, {}
    with torch.inference_mode():
        ours(refiners["fast"], recs[:1])  # warm-up (the slow paths are long enough to need none)
        times["plain"], labels["plain"] = timed(lambda: plain(model, recs, p), args.repeats)
        for e, r in refiners.items():
            times[e], labels[e] = timed(lambda r=r: ours(r, recs), args.repeats)
    params = sum(q.numel() for q in model.parameters()) / 1e6
    print(f"model {args.variant} ({params:.1f} M params, input {model.image_encoder.img_size}), device {device}, "
          f"{args.images} images {args.size}x{int(args.size * 4 / 3)}, {args.points_per_side}^2 points, "
          f"{torch.get_num_threads()} threads")
    names = {"plain": "plain (set_image + predict per box + generate per image)",
             "fast": "wsss sam_cam_match, auto.engine=fast", "library": "wsss sam_cam_match, auto.engine=library"}
    print("| pipeline | images/s | s/image | speed-up vs plain | label pixels equal to plain |")
    print("|---|---|---|---|---|")
    for k, t in times.items():
        agree = np.mean([np.mean(x == y) for x, y in zip(labels["plain"], labels[k])])
        print(f"| {names[k]} | {args.images / t:.3f} | {t / args.images:.3f} | {times['plain'] / t:.2f}x | {agree:.4f} |")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    if torch.cuda.is_available():
        print(f"peak CUDA memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MB")


if __name__ == "__main__":
    main()
