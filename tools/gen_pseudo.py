"""Stage one: pseudo-labels for every image of ``data.split``.

    python tools/gen_pseudo.py CONFIG [--work-dir DIR] [--set KEY=VALUE ...]
    torchrun --nproc_per_node N tools/gen_pseudo.py CONFIG [...]   # N ranks, one GPU each

Writes <work_dir>/<pseudo.out>/{labels/*.png, manifest.jsonl, overlays/}; a rerun resumes. Under
torchrun each rank labels every N-th image into manifest.rank<r>.jsonl and rank 0 merges the parts
into manifest.jsonl at the end.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wsss.distributed import cleanup, init_distributed  # noqa: E402
from wsss.evaluation import format_table  # noqa: E402
from wsss.pseudo.manifest import is_labelled  # noqa: E402
from wsss.runner import add_config_args, gen_pseudo_sharded, score_pseudo, setup  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("--no-eval", action="store_true", help="do not score against ground truth masks")
    args = parser.parse_args()
    cfg, work_dir = setup(args)
    info = init_distributed(cfg.device)
    try:
        out_dir, records = gen_pseudo_sharded(cfg, work_dir)
        if not info.is_main:
            return
        failed = [r for r in records.values() if not is_labelled(r)]
        unsure = [r["image"] for r in records.values() if r.get("status") == "low_confidence"]
        print(f"{len(records) - len(failed)} images labelled, {len(failed)} failed -> {out_dir}")
        if unsure:
            print(f"  {len(unsure)} labelled with low classifier confidence (status low_confidence in the manifest), "
                  f"e.g. {', '.join(unsure[:5])}")
        for r in failed[:10]:
            print(f"  {r['image']}: {r['error']}")
        if not args.no_eval:
            metrics = score_pseudo(cfg, out_dir)
            if metrics["matrix"] and sum(map(sum, metrics["matrix"])):
                print(format_table({f"pseudo-labels ({cfg.masks.name})": metrics}))
    finally:
        cleanup(info)


if __name__ == "__main__":
    main()
