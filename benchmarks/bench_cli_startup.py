"""CPU seconds of every ``--help``: ``wsss --help``, ``wsss <command> --help`` and ``python tools/<tool>.py --help``.

    OMP_NUM_THREADS=1 python benchmarks/bench_cli_startup.py [--repeat 3] [--only gen-pseudo ...]

Each command runs in a fresh interpreter (``python -m wsss`` stands for the console script, which runs the
same ``wsss.cli.main``); the figure is the child's user + system CPU time from ``resource.getrusage``, the
median of ``--repeat`` runs, so a loaded machine's waiting does not count. The target is under 2 s each:
``--help`` must never import torch, cv2, timm, pytorch_grad_cam, transformers or gradio.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wsss.commands import COMMANDS  # noqa: E402  (light: names only)

TARGET_S = 2.0


def cpu_seconds(cmd: list[str]) -> tuple[float, int]:
    """User + system CPU seconds of one child process, and its exit code."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, env=os.environ | {"OMP_NUM_THREADS": "1"})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), proc.returncode


def commands() -> list[tuple[str, list[str]]]:
    python = sys.executable
    out = [("wsss --help", [python, "-m", "wsss", "--help"])]
    out += [(f"wsss {name} --help", [python, "-m", "wsss", name, "--help"]) for name in COMMANDS]
    out += [(f"tools/{p.name} --help", [python, str(p), "--help"]) for p in sorted((ROOT / "tools").glob("*.py"))]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="runs per command (the median is reported)")
    parser.add_argument("--only", nargs="+", default=[], help="substrings of the labels to run")
    args = parser.parse_args()
    slow = []
    print(f"{'command':<40} {'CPU s':>6}  rc")
    for label, cmd in commands():
        if args.only and not any(s in label for s in args.only):
            continue
        runs = [cpu_seconds(cmd) for _ in range(args.repeat)]
        cpu = statistics.median(r[0] for r in runs)
        rc = runs[-1][1]
        flag = "" if cpu < TARGET_S and rc == 0 else "  <-- over 2 s or failed"
        if flag:
            slow.append(label)
        print(f"{label:<40} {cpu:6.2f}  {rc}{flag}", flush=True)
    print(f"\n{len(slow)} over {TARGET_S:g} CPU-s or failing" + (f": {', '.join(slow)}" if slow else ""))


if __name__ == "__main__":
    main()
