"""wsss: weakly-supervised semantic segmentation and auto-annotation.

Stage one turns image-level knowledge into pixel pseudo-labels
(data -> labels -> cam -> boxes -> masks -> pseudo); stage two trains a segmentation model on
them (train) and everything is scored against ground truth where it exists (evaluation).
"""
__version__ = "0.1.0"
