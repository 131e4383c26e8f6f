"""Shared model plumbing below every stage: timm backbones, target-layer search, weight tables.

The classifier, the CAM methods, stage-two models and the foundation-model stages all build on
these, so they sit beneath the stage packages rather than inside one of them.
"""
