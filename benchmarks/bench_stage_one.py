"""Stage-one throughput: a naive composition, wsss image by image, and wsss batched.

    OMP_NUM_THREADS=1 python benchmarks/bench_stage_one.py [--images 4] [--batch-size 4] [--workers 2]
    python benchmarks/bench_stage_one.py --device cuda --full --images 64 --batch-size 16 --workers 8 --train-busy

Rows (each in its own process, so its peak memory is its own):

* ``naive``: the route as plain library calls, image by image: PIL decode -> ImageNet Lite0 (timm) ->
  pytorch-grad-cam GradCAM of the top-1 category on ``conv_head`` -> one box at CAM >= 0.5 -> OpenCV
  GrabCut rectangle x5 -> PIL PNG. (It does less work than the route: one CAM target, no mirrored copy.)
* ``per-image``: ``generate_pseudo_labels`` with ``pseudo.batch_size=1, workers=0`` (the default path).
* ``batched``: the same with ``pseudo.batch_size`` / ``pseudo.workers`` / ``pseudo.pool`` from the options.

Routes: ``grabcut_cam`` (the photo route, ``configs/photos.yaml``), and the photo route with the SAM refiners
``sam_cam_match`` and ``sam_box``: on tiny random SAM / SAM 2 models (``wsss/models/tiny.py``; their state dict
is saved to a temp file that ``masks.<refiner>.model.checkpoint`` names, and the engine is put in ``Resources``
as tests/test_sam_engine.py does, since a tiny state dict does not load into a real variant) or, with
``--full``, ``vit_h`` and SAM 2.1 ``hiera_l`` with random weights (automatic-mask filters at 0, so every mask
goes through selection: an upper bound of that cost). Timing starts after a one-image warm-up run (models
loaded); per-stage seconds are the manifest's timings (a batched stage's time is shared by its images).
``--repeats R`` runs the rows R times, interleaved, and reports each row's fastest run.

Peak RSS is ``resource.getrusage`` of the row's process (forked loader and pool workers share its pages and
are not added); CPU s/image counts the process's threads and its reaped children; on CUDA also
``torch.cuda.max_memory_allocated``. On CUDA each row also gets the projected wall time for VOC train_aug
(10,582 images) against the target of 30 min (>= 5.9 img/s), and ``--train-busy`` measures the GPU-busy
share of stage-two training (the union of CUDA kernel intervals over the wall time of profiled optimizer
steps after a warm-up, torch.profiler; target >= 90 %). Thread count: whatever torch has (OMP_NUM_THREADS),
printed; ``--threads N`` sets it explicitly.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

VOC_TRAIN_AUG = 10_582
TARGET_MIN = 30.0
STAGES = ("labels", "cam", "boxes", "masks")
SAM_ROUTES = ("sam_cam_match", "sam_box")
FULL_VARIANTS = {"sam": "vit_h", "sam2": "hiera_l"}


def _peaks(device: str) -> dict[str, float]:
    import torch

    out = {"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.startswith("cuda"):
        out["cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def _cpu_seconds() -> float:
    """CPU time of this process (all its threads) and of its reaped children (loader and pool workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _overrides(args: argparse.Namespace, route: str, family: str, tmp: Path) -> list[str]:
    over = [f"data.folder.root={args.data}", "data.folder.merge_classes=true", f"device={args.device}",
            "pseudo.overlays=0", *args.overrides]
    if route in SAM_ROUTES:
        variant = FULL_VARIANTS[family] if args.full else ("vit_b" if family == "sam" else "hiera_t")
        over += [f"masks.name={route}", f"masks.{route}.model.family={family}", f"masks.{route}.model.variant={variant}",
                 f"masks.{route}.model.checkpoint={tmp / f'{family}_{variant}.pth'}",
                 f"masks.{route}.auto.points_per_side={args.points_per_side}",
                 f"masks.{route}.auto.pred_iou_thresh=0", f"masks.{route}.auto.stability_score_thresh=0"]
    return over


def _prefill_sam(cfg: Any, route: str, resources: Any, full: bool) -> None:
    """The SAM engine in ``resources`` (a tiny model, or the full architecture with random weights)."""
    import torch

    from wsss.models.tiny import build_tiny_sam, build_tiny_sam2
    from wsss.sam.adapters import adapter_class
    from wsss.sam.engine import SamEngine, sam_resource_key

    p = getattr(cfg.masks, route).model
    if full:
        model = adapter_class(p.family).build(p.variant)
    else:
        model = build_tiny_sam() if p.family == "sam" else build_tiny_sam2()
        torch.save(model.state_dict(), p.checkpoint)  # what the config names (stage_config.yaml records it)
    model = model.to(resources.device).eval()
    key = sam_resource_key(p)
    resources.get(key, lambda: SamEngine(model, p.family, key))


def run_wsss(args: argparse.Namespace, route: str, family: str, mode: str, tmp: Path) -> dict:
    import torch

    from wsss.config import load_config
    from wsss.data import build_dataset
    from wsss.pseudo import generate_pseudo_labels
    from wsss.record import Resources
    from wsss.utils.runtime import resolve_device

    over = _overrides(args, route, family, tmp)
    if mode == "batched":
        over += [f"pseudo.batch_size={args.batch_size}", f"pseudo.workers={args.workers}", f"pseudo.pool={args.pool}"]
    cfg = load_config(str(REPO / "configs" / "photos.yaml"), over)
    dataset = build_dataset(cfg.data, cfg.data.split)
    ids = dataset.ids[: args.images]
    resources = Resources(cfg, dataset.class_names, tmp / "work", resolve_device(cfg.device))
    if route in SAM_ROUTES:
        _prefill_sam(cfg, route, resources, args.full)
    generate_pseudo_labels(cfg, dataset, resources, tmp / "warm", ids=ids[:1])  # models load, lazy imports
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    _sync(args.device)
    start, cpu = time.perf_counter(), _cpu_seconds()
    records = generate_pseudo_labels(cfg, dataset, resources, tmp / "out", ids=ids)
    _sync(args.device)
    wall, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
    ok = [r for r in records.values() if r.get("timings")]
    stages = {k: sum(r["timings"].get(k, 0.0) for r in ok) / max(len(ok), 1) for k in STAGES}
    return {"images": len(ids), "wall": wall, "cpu": cpu, "stages": stages,
            "failed": sum(r["status"] == "error" for r in records.values()), **_peaks(args.device)}


def run_naive(args: argparse.Namespace, tmp: Path) -> dict:
    """The route as a user would compose it from the libraries, image by image."""
    import cv2
    import numpy as np
    import torch
    from PIL import Image
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from wsss.models.backbones import LITE0_MEAN_STD, create_backbone, load_lite0_imagenet

    device = torch.device(args.device)
    model = create_backbone("tf_efficientnet_lite0", 1000, None)
    load_lite0_imagenet(model, skip_head=False)
    model = model.to(device).eval()
    cam = GradCAM(model, [model.get_submodule("conv_head")])
    mean = torch.tensor(LITE0_MEAN_STD[0], device=device).view(1, 3, 1, 1)
    std = torch.tensor(LITE0_MEAN_STD[1], device=device).view(1, 3, 1, 1)
    paths = sorted(p for p in (Path(args.data) / "images").iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    paths = paths[: args.images]
    (tmp / "naive").mkdir(parents=True, exist_ok=True)
    times = {k: 0.0 for k in ("decode", "classifier", "cam", "box", "grabcut", "write")}

    def lap(clock: dict[str, float], key: str, since: float) -> float:
        now = time.perf_counter()
        clock[key] += now - since
        return now

    def one(path: Path, clock: dict[str, float]) -> None:
        t = time.perf_counter()
        image = np.asarray(Image.open(path).convert("RGB"))
        h, w = image.shape[:2]
        t = lap(clock, "decode", t)
        x = torch.from_numpy(cv2.resize(image, (224, 224), interpolation=cv2.INTER_AREA)).to(device)
        x = (x.permute(2, 0, 1)[None].float() / 255 - mean) / std
        with torch.no_grad():
            top = int(model(x)[0].argmax())
        t = lap(clock, "classifier", t)
        m = cv2.resize(cam(input_tensor=x, targets=[ClassifierOutputTarget(top)])[0], (w, h))
        m = (m - m.min()) / max(float(m.max() - m.min()), 1e-8)
        t = lap(clock, "cam", t)
        ys, xs = np.nonzero(m >= 0.5)
        x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
        if (x0, y0, x1, y1) == (0, 0, w, h):  # GrabCut needs some background outside the rectangle
            x0, y0, x1, y1 = 1, 1, w - 1, h - 1
        t = lap(clock, "box", t)
        mask = np.zeros((h, w), np.uint8)
        cv2.grabCut(np.ascontiguousarray(image[..., ::-1]), mask, (x0, y0, x1 - x0, y1 - y0), np.zeros((1, 65)),
                    np.zeros((1, 65)), 5, cv2.GC_INIT_WITH_RECT)
        label = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)
        t = lap(clock, "grabcut", t)
        Image.fromarray(label).save(tmp / "naive" / f"{path.stem}.png")
        lap(clock, "write", t)

    one(paths[0], dict(times))  # warm-up, as the wsss rows get
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    start, cpu = time.perf_counter(), _cpu_seconds()
    for path in paths:
        one(path, times)
    wall, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
    return {"images": len(paths), "wall": wall, "cpu": cpu, "stages": {k: v / len(paths) for k, v in times.items()},
            "failed": 0, **_peaks(args.device)}


def train_busy_share(args: argparse.Namespace, tmp: Path) -> dict:
    """GPU-busy share of stage-two training: the union of CUDA kernel intervals over the wall time of the
    profiled optimizer steps (after ``warm`` steps), for DeepLabV3+ R101 on synthetic images."""
    from torch.optim.optimizer import register_optimizer_step_post_hook
    from torch.profiler import ProfilerActivity, profile, schedule

    from wsss.config import load_config
    from wsss.train import train

    size, warm, active = args.train_size, 3, args.train_steps
    over = [f"data.synthetic.root={tmp}/syn", f"data.synthetic.num_train={args.train_images}", "data.synthetic.num_val=2",
            f"data.synthetic.size={size}", f"train.labels_dir={tmp}/syn/masks", f"train.crop_size={size}",
            f"train.batch_size={args.train_batch}", "train.epochs=50", "train.val_interval=1000", "train.tensorboard=false",
            f"num_workers={args.workers}", f"device={args.device}", "model.deeplabv3plus.encoder=resnet101",
            "model.deeplabv3plus.encoder_weights=null", *args.overrides]
    cfg = load_config(str(REPO / "configs" / "quickstart.yaml"), over)
    on_cuda = args.device.startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda else [])
    steps = [0]

    class Done(Exception):
        pass

    with profile(activities=activities, schedule=schedule(wait=0, warmup=warm, active=active, repeat=1)) as prof:
        def step_hook(*_: Any) -> None:
            steps[0] += 1
            prof.step()
            if steps[0] >= warm + active + 1:
                raise Done  # enough steps: stop the training run here

        handle = register_optimizer_step_post_hook(step_hook)
        try:
            train(cfg, tmp / "train")
        except Done:
            pass
        finally:
            handle.remove()
    events = prof.events()
    spans = [e.time_range for e in events if e.name.startswith("ProfilerStep")]  # "#N" or "*" by version
    if not spans:
        return {"busy_share": float("nan"), "steps": 0}
    lo, hi = min(s.start for s in spans), max(s.end for s in spans)
    kernels = sorted((max(e.time_range.start, lo), min(e.time_range.end, hi)) for e in events
                     if e.device_type.name == "CUDA" and e.time_range.end > lo and e.time_range.start < hi)
    busy, end = 0.0, lo
    for s, t in kernels:  # union of the intervals (kernels of several streams may overlap)
        if t > end:
            busy += t - max(s, end)
            end = t
    return {"busy_share": busy / max(hi - lo, 1e-9), "steps": len(spans), "window_s": (hi - lo) / 1e6}


def child(args: argparse.Namespace) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        route, family, mode = args.one.split(":")
        if mode == "train":
            result = train_busy_share(args, Path(tmp))
        elif mode == "naive":
            result = run_naive(args, Path(tmp))
        else:
            result = run_wsss(args, route, family, mode, Path(tmp))
    result["threads"] = torch.get_num_threads()
    print("RESULT " + json.dumps(result))


def rows(args: argparse.Namespace) -> list[str]:
    out = []
    for route in args.routes:
        families = args.sam_families if route in SAM_ROUTES else ["-"]
        for family in families:
            modes = (["naive"] if route == "grabcut_cam" else []) + ["per-image", "batched"]
            out += [f"{route}:{family}:{m}" for m in modes]
    return out


def spawn(args: argparse.Namespace, one: str) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), *sys.argv[1:], "--one", one]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ | {"PYTHONPATH": str(REPO)})
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return {"error": " | ".join(tail)}
    return json.loads(lines[-1][len("RESULT "):])


def fmt_row(one: str, r: dict, device: str) -> str:
    route, family, mode = one.split(":")
    name = f"{route} ({family})" if family != "-" else route
    if "error" in r:
        return f"| {name} | {mode} | failed: {r['error'][:160]} |"
    ips = r["images"] / r["wall"]
    stages = " / ".join(f"{v:.3f}" for v in r["stages"].values())
    line = (f"| {name} | {mode} | {ips:.3f} | {r['wall'] / r['images']:.2f} | {r['cpu'] / r['images']:.2f} | {stages} "
            f"| {r['rss_mb']:.0f} |")
    if device.startswith("cuda"):
        minutes = VOC_TRAIN_AUG / ips / 60
        verdict = "meets" if minutes < TARGET_MIN else "misses"
        line += f" {r.get('cuda_mb', 0):.0f} | {minutes:.1f} min ({verdict} < {TARGET_MIN:.0f} min) |"
    return line


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "coco_dev"),
                    help="a photo folder (DIR/images/*.jpg), default ../shared/data/coco_dev")
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=4, help="pseudo.batch_size of the batched rows")
    ap.add_argument("--workers", type=int, default=2, help="pseudo.workers of the batched rows (and training)")
    ap.add_argument("--pool", choices=("thread", "process"), default="thread")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--full", action="store_true", help="vit_h / SAM 2.1 hiera_l (random weights; use with --device cuda)")
    ap.add_argument("--routes", nargs="+", default=["grabcut_cam", *SAM_ROUTES])
    ap.add_argument("--sam-families", nargs="+", default=["sam", "sam2"], choices=["sam", "sam2"])
    ap.add_argument("--points-per-side", type=int, default=16, help="SAM automatic-mask grid")
    ap.add_argument("--repeats", type=int, default=1, help="run the rows this many times, interleaved; report the fastest")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads in each row (0: leave as is)")
    ap.add_argument("--train-busy", action="store_true", help="also measure the GPU-busy share of stage-two training")
    ap.add_argument("--train-size", type=int, default=512)
    ap.add_argument("--train-batch", type=int, default=16)
    ap.add_argument("--train-images", type=int, default=64)
    ap.add_argument("--train-steps", type=int, default=10, help="profiled optimizer steps (after 3 warm-up steps)")
    ap.add_argument("--set", dest="overrides", nargs="+", default=[], help="config overrides for every row")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one row in this process
    args = ap.parse_args()
    if args.one:
        child(args)
        return
    import torch

    threads = args.threads or torch.get_num_threads()
    print(f"device {args.device}, {args.images} images of {args.data}, batched rows: batch {args.batch_size}, "
          f"{args.workers} workers ({args.pool} pool); torch threads per process {threads} "
          f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}); SAM {'full-size, random' if args.full else 'tiny'}")
    head = "| route | pipeline | images/s | wall s/image | CPU s/image | s per stage | peak RSS MB |"
    rule = "|---|---|---:|---:|---:|---|---:|"
    if args.device.startswith("cuda"):
        head += " peak CUDA MB | VOC train_aug (10,582) |"
        rule += "---:|---|"
    print("s per stage: naive decode / classifier / cam / box / grabcut / write; wsss labels / cam / boxes / masks")
    print(head)
    print(rule)
    best: dict[str, dict] = {}
    for _ in range(args.repeats):  # rows interleaved, best of the repeats: a shared machine's load drifts
        for one in rows(args):
            r = spawn(args, one)
            if one not in best or "error" in best[one] or ("error" not in r and r["wall"] < best[one]["wall"]):
                best[one] = r
    for one, r in best.items():
        print(fmt_row(one, r, args.device), flush=True)
    if args.train_busy:
        r = spawn(args, "train:-:train")
        if "error" in r:
            print(f"stage-two GPU-busy share: failed: {r['error']}")
        elif args.device.startswith("cuda"):
            verdict = "meets" if r["busy_share"] >= 0.9 else "misses"
            print(f"stage-two GPU-busy share (DeepLabV3+ R101, {args.train_size}px, batch {args.train_batch}, "
                  f"{r['steps']} steps, {r['window_s']:.1f} s): {100 * r['busy_share']:.1f} % ({verdict} >= 90 %)")
        else:
            print(f"stage-two GPU-busy share: needs --device cuda (profiled {r['steps']} CPU steps)")


if __name__ == "__main__":
    main()
