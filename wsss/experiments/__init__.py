"""Paper-table harnesses above the stages: sweeps that combine CAMs, boxes, refiners and scoring."""
