"""Pseudo stage: the per-image pipeline, its manifest and the label PNGs."""
from wsss.pseudo.manifest import read_manifest
from wsss.pseudo.pipeline import PseudoLabeler, generate_pseudo_labels

__all__ = ["PseudoLabeler", "generate_pseudo_labels", "read_manifest"]
