"""Train the classifier (classifier.timm) on image-level labels; CAMs and label prediction use it.

    python tools/train_classifier.py CONFIG [--work-dir DIR] [--set KEY=VALUE ...]

It learns from the image labels of ``classifier.timm.split``, which defaults to ``data.split``: the
images tools/gen_pseudo.py labels (e.g. VOC's train_aug). Set classifier.timm.split to use others.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wsss.classifier import build_classifier, train_classifier  # noqa: E402
from wsss.classifier.train import classifier_split, label_accuracy  # noqa: E402
from wsss.data import build_dataset  # noqa: E402
from wsss.runner import add_config_args, setup  # noqa: E402
from wsss.utils.cli import add_debug_arg, run_cli  # noqa: E402
from wsss.utils.runtime import resolve_device  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    add_debug_arg(parser)
    args = parser.parse_args()
    cfg, work_dir = setup(args)
    path = train_classifier(cfg, work_dir)
    val = build_dataset(cfg.data, cfg.data.val_split)
    clf = build_classifier(cfg, val.class_names, work_dir, resolve_device(cfg.device))
    print(f"checkpoint: {path} (trained on split {classifier_split(cfg)})\n"
          f"exact-match label accuracy on {cfg.data.val_split}: {label_accuracy(clf, val):.3f}")


if __name__ == "__main__":
    run_cli(main)
