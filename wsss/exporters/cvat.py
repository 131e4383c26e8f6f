"""CVAT: the COCO polygons writer under CVAT-friendly defaults, for CVAT's "COCO 1.0" importer.

CVAT (Actions > Upload annotations > COCO 1.0) takes a COCO instances json (or a zip with
``annotations/instances_default.json``), matches images by ``file_name`` against the task's image names and
creates one polygon shape per polygon, labelled by category name (the task's labels must carry the same
names). Defaults differ from ``coco_polygons``: one annotation per component (each outline its own shape)
and outlines simplified by 1 px, so annotators drag tens of vertices, not hundreds.
"""
from __future__ import annotations

import dataclasses

from wsss.exporters.coco_polygons import CocoPolygonExporter, CocoPolygonParams


@dataclasses.dataclass
class CvatParams(CocoPolygonParams):
    per_component: bool = True  # one polygon shape per 8-connected component
    tolerance: float = 1.0  # outline simplification in pixels (0: exact pixel edges)


class CvatExporter(CocoPolygonExporter):
    """COCO 1.0 json for CVAT (polygons, one per component)."""

    name = "cvat"
    default_out = "cvat_coco/annotations/instances_default.json"
    description = "wsss pseudo-labels for CVAT (COCO 1.0)"

    def __init__(self, params: CvatParams | None = None) -> None:
        super().__init__(params or CvatParams())
