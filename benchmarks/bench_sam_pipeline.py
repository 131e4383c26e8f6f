"""Paper 000's CAM-box -> SAM -> automatic-mask match: the published composition versus wsss, full grid and box grid.

naive (as the published code composes it): ``SamPredictor.set_image`` + ``predict`` once per box, then
``SamAutomaticMaskGenerator.generate`` on the same image (which encodes the image again), then the same
pruning and matching rules as wsss.
wsss full grid: the ``sam_cam_match`` refiner (one embedding per image, all boxes in one decoder call, automatic
masks from ``wsss.sam.fast_auto``: the library's masks without its RLE round trip).
wsss box grid: the same refiner with ``grid: boxes`` (only the grid points inside the boxes grown by ``box_margin``).
The pipelines run alternated, image by image (the order rotating), in one process; times are CPU seconds
(``time.process_time``; run with OMP_NUM_THREADS=1 on a shared CPU) and wall seconds.

Agreement of the box grid with the full grid, per box: the chosen automatic mask is the same mask (or both keep the
box mask); per image: the label maps are equal; their IoU (mean over the classes either map has). The label maps of
both wsss paths are also compared with the naive composition's.

    python benchmarks/bench_sam_pipeline.py --images 4 --size 256            # tiny random SAM, synthetic images, CPU
    OMP_NUM_THREADS=1 python benchmarks/bench_sam_pipeline.py --variant vit_b --random-weights --coherent 64 \\
        --coco /work/shared/data/coco_dev --images 4 --max-side 512 --points-per-side 32 \\
        --pred-iou-thresh 0 --stability-thresh 0.8                         # real vit_b architecture, real photos
    python benchmarks/bench_sam_pipeline.py --variant vit_b --checkpoint sam_vit_b_01ec64.pth --coco DIR --device cuda
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wsss.data.base import Box, Sample  # noqa: E402
from wsss.masks.compose import compose_label_map  # noqa: E402
from wsss.masks.sam_refiners import SamCamMatch, SamCamMatchParams  # noqa: E402
from wsss.masks.sam_selection import iou_matrix, match_box_mask  # noqa: E402
from wsss.record import Record, Resources  # noqa: E402
from wsss.sam.adapters import SegmentAnythingAdapter  # noqa: E402
from wsss.sam.engine import AutoMaskParams, SamEngine, SamModelParams, load_sam_model, sam_resource_key  # noqa: E402
from wsss.sam.fast_auto import grid_in_boxes, point_grid  # noqa: E402


# -- images and boxes --------------------------------------------------------------------------------------
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


def coco_images(root: Path, n: int, max_side: int, min_frac: float) -> list[Record]:
    """The first ``n`` photos of a coco_dev-style folder (images/*.jpg, masks/*.png with class indices), resized to
    ``max_side``; boxes = bounding boxes of the ground-truth masks' connected components per class covering at
    least ``min_frac`` of the image (instance-like boxes, as CAM components would give)."""
    import cv2
    from PIL import Image

    recs = []
    for path in sorted((root / "images").glob("*.jpg"))[:n]:
        image = Image.open(path).convert("RGB")
        mask = Image.open(root / "masks" / f"{path.stem}.png")
        s = max_side / max(image.size)
        size = (round(image.size[0] * s), round(image.size[1] * s))
        img = np.asarray(image.resize(size, Image.BILINEAR))
        gt = np.asarray(mask.resize(size, Image.NEAREST))
        boxes = []
        for c in sorted(set(np.unique(gt).tolist()) - {0, 255}):
            count, _, stats, _ = cv2.connectedComponentsWithStats((gt == c).astype(np.uint8), connectivity=8)
            for x, y, w, h, area in stats[1:count]:
                if area >= min_frac * gt.size:
                    boxes.append(Box(int(c), int(x), int(y), int(x + w), int(y + h), 1.0))
        if boxes:
            rec = Record(Sample(path.stem, img))
            rec.classes, rec.boxes = sorted({b.cls for b in boxes}), boxes
            recs.append(rec)
    return recs




# -- the pipelines ---------------------------------------------------------------------------------------
class Naive:
    """The published composition, with wsss's pruning, matching and label-map rules (so outputs compare)."""

    def __init__(self, model: torch.nn.Module, p: SamCamMatchParams) -> None:
        from segment_anything import SamAutomaticMaskGenerator, SamPredictor

        self.p = p
        self.predictor = SamPredictor(model)
        self.generator = SamAutomaticMaskGenerator(model, output_mode="binary_mask", **p.auto.library_kwargs())

    def __call__(self, rec: Record) -> np.ndarray:
        p, shape = self.p, rec.image.shape[:2]
        self.predictor.set_image(rec.image)
        box_masks = [self.predictor.predict(box=np.array(b.as_list()), multimask_output=False)[0][0]
                     for b in rec.boxes]
        auto = [r["segmentation"] for r in self.generator.generate(rec.image)]
        auto = np.stack(auto) if auto else np.zeros((0, *shape), bool)
        auto = auto[p.prune(auto, rec.image)]
        masks: dict[int, np.ndarray] = {}
        for box, bm in zip(rec.boxes, box_masks):
            m = match_box_mask(bm, auto, p.min_iou, p.min_box_mask_px, p.small_box_mask)[0]
            masks[box.cls] = masks.get(box.cls, np.zeros(shape, bool)) | m
        conf = {c: np.full(shape, max(b.score for b in rec.boxes if b.cls == c), np.float32) for c in masks}
        return compose_label_map(shape, masks, conf, p.overlap)


def chosen_masks(refiner: SamCamMatch, rec: Record) -> list[np.ndarray]:
    """The mask each box ended with (the chosen automatic mask, or its box mask), from the refiner's caches."""
    records = refiner.auto_records(rec)  # cached by the refiner's call
    box_masks = rec.cache["sam_cam_match_views"][0][1]
    return [records[m["auto_index"]]["segmentation"] if m["auto_index"] >= 0 else box_masks[i]
            for i, m in enumerate(rec.cache["sam_cam_match"])]


def label_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Mean IoU over the classes (other than background) either label map has; 1 for two empty maps."""
    classes = sorted((set(np.unique(a).tolist()) | set(np.unique(b).tolist())) - {0})
    if not classes:
        return 1.0
    return float(np.mean([iou_matrix((a == c)[None], (b == c)[None])[0, 0] for c in classes]))


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="tiny", help="tiny (random, wsss/models/tiny.py) or vit_b / vit_l / vit_h")
    ap.add_argument("--checkpoint", default="", help="SAM checkpoint for vit_*")
    ap.add_argument("--random-weights", action="store_true", help="vit_*: the real architecture, random weights")
    ap.add_argument("--coherent", type=float, default=0.0, metavar="GAIN",
                    help="random weights: blocky decoder with this logit gain (object-like masks, see coherent()) "
                         "so that matching has masks; vit_b's logits need ~64 to reach +-4; 0 = off")
    ap.add_argument("--tiny-size", type=int, default=256, help="input size of the tiny model")
    ap.add_argument("--coco", type=Path, default=None, help="coco_dev-style folder: real photos, GT-mask boxes")
    ap.add_argument("--max-side", type=int, default=512, help="--coco: resize photos to this longest side")
    ap.add_argument("--min-box-frac", type=float, default=0.01, help="--coco: smallest GT component boxed")
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--max-share", type=float, default=1.0,
                    help="--coco: only photos whose box grid holds at most this share of the grid points "
                         "(the first --images of them, by id): small objects")
    ap.add_argument("--size", type=int, default=192, help="synthetic images: height (width = 4/3 of it)")
    ap.add_argument("--points-per-side", type=int, default=16)
    ap.add_argument("--pred-iou-thresh", type=float, default=None, help="default: 0 for random weights, else 0.88")
    ap.add_argument("--stability-thresh", type=float, default=None, help="default: 0 for tiny, else 0.95")
    ap.add_argument("--box-margin", type=float, default=SamCamMatchParams.box_margin)
    ap.add_argument("--max-area", type=float, default=SamCamMatchParams.max_area,
                    help="pruning's upper area bound (>= 1 = off): random decoders' few NMS survivors are large")
    ap.add_argument("--pipelines", default="naive,full,boxes", help="any of naive, full, boxes, library")
    ap.add_argument("--decode-batch", type=int, default=0,
                    help="wsss pipelines: auto.decode_batch (prompts per decoder pass; 4 suits a CPU; 0 = the batch)")
    ap.add_argument("--compile", action="store_true",
                    help="wsss pipelines: pseudo.compile (torch.compile of SAM's encoder and decoder, on a copy of "
                         "the model; the compilation runs on a warm-up image first and is reported apart)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args()


def build_model(args: argparse.Namespace, device: torch.device) -> tuple[torch.nn.Module, SamModelParams]:
    if args.variant == "tiny":
        from wsss.models.tiny import build_tiny_sam

        model = build_tiny_sam(img_size=args.tiny_size, embed_dim=96, prompt_dim=64)
        mp = SamModelParams(checkpoint="<tiny random>")
    elif args.random_weights:
        model = SegmentAnythingAdapter.build(args.variant)
        mp = SamModelParams(variant=args.variant, checkpoint=f"<{args.variant} random>")
    else:
        mp = SamModelParams(variant=args.variant, checkpoint=args.checkpoint)
        model = load_sam_model(mp, device, "--checkpoint")
    if args.coherent:
        from wsss.models.tiny import coherent

        coherent(model, args.coherent)
    return model.to(device).eval(), mp


@dataclasses.dataclass
class Results:
    cpu: dict[str, list[float]]
    wall: dict[str, list[float]]
    labels: dict[str, list[np.ndarray]]
    chosen: dict[str, list[list[np.ndarray]]]  # per image, per box: the mask the box ended with
    took_auto: dict[str, list[bool]]  # per box: an automatic mask replaced the box mask
    n_auto: dict[str, list[int]]  # automatic masks kept after pruning, per image
    fractions: list[float]  # per image: the box grid's share of the grid points

    @classmethod
    def empty(cls, names: list[str]) -> Results:
        return cls(*({n: [] for n in names} for _ in range(6)), [])


def box_share(rec: Record, points_per_side: int, box_margin: float) -> float:
    """The share of the grid points that ``grid: boxes`` prompts on ``rec``."""
    grid = point_grid(points_per_side, *rec.image.shape[:2])
    boxes = np.array([b.as_list() for b in rec.boxes], np.float64)
    return len(grid_in_boxes(grid, boxes, box_margin)) / len(grid)


def run(runners: dict, recs: list[Record], points_per_side: int, box_margin: float, device: torch.device) -> Results:
    """Every pipeline on every image, alternated image by image (the order rotating), fresh records each time."""
    names = list(runners)
    r = Results.empty(names)
    with torch.inference_mode():
        for i, rec in enumerate(recs):
            r.fractions.append(box_share(rec, points_per_side, box_margin))
            for n in names[i % len(names):] + names[:i % len(names)]:
                fresh = Record(rec.sample, classes=rec.classes, boxes=rec.boxes)  # no cached embedding
                if device.type == "cuda":
                    torch.cuda.synchronize()
                c, t = time.process_time(), time.perf_counter()
                r.labels[n].append(runners[n](fresh))
                if device.type == "cuda":
                    torch.cuda.synchronize()
                r.cpu[n].append(time.process_time() - c)
                r.wall[n].append(time.perf_counter() - t)
                if n != "naive":
                    r.chosen[n].append(chosen_masks(runners[n], fresh))
                    r.took_auto[n] += [m["auto_index"] >= 0 for m in fresh.cache["sam_cam_match"]]
                    r.n_auto[n].append(len(fresh.cache["sam_cam_match_views"][1][1]))
            print(f"image {rec.sample.id} {rec.image.shape[1]}x{rec.image.shape[0]}, {len(rec.boxes)} boxes, "
                  f"box grid {r.fractions[-1]:.0%} of the points: "
                  + ", ".join(f"{n} {r.cpu[n][-1]:.1f} CPU-s" for n in names), flush=True)
    return r


def report(r: Results, names: list[str]) -> None:
    ref = "naive" if "naive" in names else names[0]
    total = {n: float(np.sum(r.cpu[n])) for n in names}
    print(f"\n| pipeline | CPU s/img | wall s/img | speed-up vs {ref} (CPU) | label maps equal to {ref} | "
          "automatic masks kept after pruning / img | boxes taking an automatic mask |")
    print("|---|---|---|---|---|---|---|")
    for n in names:
        equal = np.mean([np.array_equal(x, y) for x, y in zip(r.labels[ref], r.labels[n])])
        kept = f"{np.mean(r.n_auto[n]):.1f}" if r.n_auto[n] else "-"
        took = f"{np.sum(r.took_auto[n])}/{len(r.took_auto[n])}" if r.took_auto[n] else "-"
        print(f"| {n} | {np.mean(r.cpu[n]):.2f} | {np.mean(r.wall[n]):.2f} | {total[ref] / total[n]:.2f}x | "
              f"{equal:.0%} | {kept} | {took} |")
    if {"naive", "full", "boxes"} <= set(names):
        print(f"\nnaive : full grid : box grid (CPU s) = 1 : {total['full'] / total['naive']:.3f} : "
              f"{total['boxes'] / total['naive']:.3f}  (speed-ups {total['naive'] / total['full']:.2f}x, "
              f"{total['naive'] / total['boxes']:.2f}x)")
    if {"full", "boxes"} <= set(names):
        same_box = [np.array_equal(a, b) for ca, cb in zip(r.chosen["full"], r.chosen["boxes"]) for a, b in zip(ca, cb)]
        same_map = [np.array_equal(a, b) for a, b in zip(r.labels["full"], r.labels["boxes"])]
        ious = [label_iou(a, b) for a, b in zip(r.labels["full"], r.labels["boxes"])]
        print(f"box grid vs full grid: chosen mask equal for {np.sum(same_box)}/{len(same_box)} boxes "
              f"({np.mean(same_box):.1%}), label map equal for {np.sum(same_map)}/{len(same_map)} images, "
              f"label-map IoU mean {np.mean(ious):.4f} (min {np.min(ious):.4f})")


def warm_up(engine: SamEngine, runners: dict, rec: Record) -> float:
    """``pseudo.compile`` for the wsss pipelines, compiled on one run of each over ``rec``: CPU seconds."""
    engine.compile()
    c = time.process_time()
    with torch.inference_mode():
        for n, runner in runners.items():
            if n != "naive":
                runner(Record(rec.sample, classes=rec.classes, boxes=rec.boxes))
    return time.process_time() - c


def main() -> None:
    args = parse_args()
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    random = args.variant == "tiny" or args.random_weights
    model, mp = build_model(args, device)
    # random weights predict IoUs below 0.1 (docs/sam.md): no IoU filter, or no automatic mask survives at all
    iou_t = args.pred_iou_thresh if args.pred_iou_thresh is not None else (0.0 if random else 0.88)
    stab_t = args.stability_thresh if args.stability_thresh is not None else (0.0 if args.variant == "tiny" else 0.95)
    auto = AutoMaskParams(points_per_side=args.points_per_side, pred_iou_thresh=iou_t, stability_score_thresh=stab_t,
                          decode_batch=args.decode_batch)
    res = Resources(None, ["background", "object"], ".", device)
    engine = SamEngine(copy.deepcopy(model) if args.compile else model, mp.family, sam_resource_key(mp))
    res.get(sam_resource_key(mp), lambda: engine)
    common = {"model": mp, "max_area": args.max_area}
    params = {
        "full": SamCamMatchParams(auto=auto, **common),
        "boxes": SamCamMatchParams(auto=auto, grid="boxes", box_margin=args.box_margin, **common),
        "library": SamCamMatchParams(auto=dataclasses.replace(auto, engine="library"), **common),
    }
    names = [n.strip() for n in args.pipelines.split(",")]
    runners = {n: Naive(model, params["full"]) if n == "naive" else SamCamMatch(params[n], res) for n in names}
    if args.coco:
        recs = coco_images(args.coco, args.images if args.max_share >= 1 else 10**6, args.max_side, args.min_box_frac)
        recs = [r for r in recs if box_share(r, args.points_per_side, args.box_margin) <= args.max_share][:args.images]
        source = f"{len(recs)} photos of {args.coco} (longest side {args.max_side}), boxes of GT components"
        if args.max_share < 1:
            source += f", box grid <= {args.max_share:.0%} of the points"
    else:
        recs = make_images(args.images, args.size, args.seed)
        source = f"{len(recs)} synthetic images {args.size}x{int(args.size * 4 / 3)}"
    compile_s = warm_up(engine, runners, recs[0]) if args.compile else 0.0
    r = run(runners, recs, args.points_per_side, args.box_margin, device)
    nparams = sum(q.numel() for q in model.parameters()) / 1e6
    print(f"\nmodel {args.variant}{' random' if random else ''}{f' coherent x{args.coherent:g}' if args.coherent else ''} "
          f"({nparams:.1f} M params, input {model.image_encoder.img_size}), device {device}, {source}, "
          f"{args.points_per_side}^2 points, pred_iou_thresh {iou_t}, stability_score_thresh {stab_t}, "
          f"box_margin {args.box_margin}, max_area {args.max_area}, decode_batch {args.decode_batch}, "
          f"{torch.get_num_threads()} threads; box grid: {np.mean(r.fractions):.0%} of the points on average")
    if args.compile:
        print(f"wsss pipelines compiled (torch.compile): warm-up {compile_s:.1f} CPU-s, once per process, not in the table")
    report(r, names)
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    if device.type == "cuda":
        print(f"peak CUDA memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MB")


if __name__ == "__main__":
    main()
