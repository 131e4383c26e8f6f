"""Where the automatic-mask path's time goes on SAM vit_b, part by part: CPU seconds per point prompt and per image.

Point decoder (N one-point prompts, multimask, on one cached embedding), alternated over ``--rounds``:
  library        segment_anything's ``MaskDecoder.forward`` in batches of 64 (the generator's points_per_batch);
  exact @64      ``SegmentAnythingAdapter.decode_point_masks``: the image side once per batch (wsss.sam.decoders);
  exact @K       the same in passes of K prompts (cache-sized on a CPU);
  fast @K        passes of K through the re-associated transformer (what ``auto.decode_batch: K`` runs);
  compiled @K    the same after ``SamEngine.compile`` (``pseudo.compile``).
Image encoder: eager and compiled, one 1024 px image. The compilation itself is timed apart (once per process).

    OMP_NUM_THREADS=1 python benchmarks/bench_sam_decoder.py --prompts 64 --rounds 2
    python benchmarks/bench_sam_decoder.py --device cuda --checkpoint sam_vit_b_01ec64.pth
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wsss.sam.adapters import SegmentAnythingAdapter  # noqa: E402
from wsss.sam.engine import SamEngine, SamModelParams, load_sam_model  # noqa: E402


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    c = time.process_time() if device.type == "cpu" else time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.process_time() if device.type == "cpu" else time.perf_counter()) - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="vit_b")
    ap.add_argument("--checkpoint", default="", help="a SAM checkpoint (default: the architecture, random weights)")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--decode-batch", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    if args.checkpoint:
        model = load_sam_model(SamModelParams(variant=args.variant, checkpoint=args.checkpoint), device, "--checkpoint")
    else:
        model = SegmentAnythingAdapter.build(args.variant).to(device).eval()
    eager, compiled = SamEngine(model, "sam"), SamEngine(copy.deepcopy(model), "sam")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (768, 1024, 3), dtype=np.uint8)
    points = rng.uniform(0, 768, (args.prompts, 2))
    k = args.decode_batch

    def library(engine: SamEngine, n: int) -> None:
        for s in range(0, len(points), n):
            engine.adapter.decode_points(points[s:s + n])

    def wsss(engine: SamEngine, n: int, fast: bool = False) -> None:
        for s in range(0, len(points), n):
            engine.adapter.decode_point_masks(points[s:s + n], 0.0, fast=fast)

    with torch.inference_mode():
        eager.adapter.encode(image)
        compiled.compile()
        compile_s = timed(lambda: compiled.adapter.encode(image), device)
        compile_s += timed(lambda: wsss(compiled, k, fast=True), device)
        parts = {"library @64": lambda: library(eager, 64), "exact @64": lambda: wsss(eager, 64),
                 f"exact @{k}": lambda: wsss(eager, k), f"fast @{k}": lambda: wsss(eager, k, fast=True),
                 f"compiled @{k}": lambda: wsss(compiled, k, fast=True)}
        decoder: dict[str, list[float]] = {n: [] for n in parts}
        encoder: dict[str, list[float]] = {"eager": [], "compiled": []}
        for _ in range(args.rounds):
            for n, fn in parts.items():
                decoder[n].append(timed(fn, device) / len(points))
            encoder["eager"].append(timed(lambda: eager.adapter.encode(image), device))
            encoder["compiled"].append(timed(lambda: compiled.adapter.encode(image), device))
    unit = "CPU-s" if device.type == "cpu" else "s"
    print(f"SAM {args.variant} ({'checkpoint' if args.checkpoint else 'random weights'}), {device}, "
          f"{torch.get_num_threads()} threads, {args.prompts} prompts, {args.rounds} rounds (mean); "
          f"compilation {compile_s:.1f} {unit} once\n")
    base = np.mean(decoder["library @64"])
    print(f"| point decoder | {unit} / prompt | vs library |\n|---|---:|---:|")
    for n, v in decoder.items():
        print(f"| {n} | {np.mean(v):.4f} | {base / np.mean(v):.2f}x |")
    print(f"\n| image encoder | {unit} / image | vs eager |\n|---|---:|---:|")
    for n, v in encoder.items():
        print(f"| {n} | {np.mean(v):.2f} | {np.mean(encoder['eager']) / np.mean(v):.2f}x |")


if __name__ == "__main__":
    main()
