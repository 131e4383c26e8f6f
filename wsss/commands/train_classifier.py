"""Train the classifier (classifier.timm) on image-level labels; CAMs and label prediction use it.

    {prog} CONFIG [--work-dir DIR] [--set KEY=VALUE ...]

It learns from the image labels of ``classifier.timm.split``, which defaults to ``data.split``: the
images ``wsss gen-pseudo`` labels (e.g. VOC's train_aug). Set classifier.timm.split to use others.
"""
from __future__ import annotations

import argparse

from wsss.runner import add_config_args
from wsss.utils.cli import add_debug_arg


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_args(parser)
    add_debug_arg(parser)


def run(args: argparse.Namespace) -> None:
    from wsss.classifier import build_classifier, train_classifier
    from wsss.classifier.train import classifier_split, label_accuracy
    from wsss.data import build_dataset
    from wsss.runner import setup
    from wsss.utils.runtime import resolve_device

    cfg, work_dir = setup(args)
    path = train_classifier(cfg, work_dir)
    val = build_dataset(cfg.data, cfg.data.val_split)
    clf = build_classifier(cfg, val.class_names, work_dir, resolve_device(cfg.device))
    print(f"checkpoint: {path} (trained on split {classifier_split(cfg)})\n"
          f"exact-match label accuracy on {cfg.data.val_split}: {label_accuracy(clf, val):.3f}")
