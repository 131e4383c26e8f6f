"""Pseudo-labels out to annotation tools and training formats, and corrected labels back in.

``export(pseudo_dir, fmt, ...)`` writes one of the registered formats (``EXPORTERS.names()``); importing
this package registers them all, and heavy libraries (cv2, pycocotools) load only when a writer runs.
``wsss.exporters.import_coco.import_coco`` turns a corrected COCO json back into a pseudo dir for training.
See docs/export.md.
"""
from wsss.exporters.base import (
    EXPORTERS,
    Exporter,
    ExportItem,
    build_exporter,
    default_class_names,
    export,
    format_names,
    read_items,
)
from wsss.exporters.coco_polygons import CocoPolygonExporter, CocoPolygonParams
from wsss.exporters.coco_rle import CocoRleExporter, CocoRleParams
from wsss.exporters.cvat import CvatExporter, CvatParams
from wsss.exporters.label_studio import LabelStudioExporter, LabelStudioParams
from wsss.exporters.voc import VocExporter, VocParams
from wsss.exporters.yolo import YoloExporter, YoloParams

EXPORTERS.register("voc", VocParams)(VocExporter)
EXPORTERS.register("coco_rle", CocoRleParams)(CocoRleExporter)
EXPORTERS.register("coco_polygons", CocoPolygonParams)(CocoPolygonExporter)
EXPORTERS.register("yolo", YoloParams)(YoloExporter)
EXPORTERS.register("label_studio", LabelStudioParams)(LabelStudioExporter)
EXPORTERS.register("cvat", CvatParams)(CvatExporter)

__all__ = ["EXPORTERS", "ExportItem", "Exporter", "build_exporter", "default_class_names", "export", "format_names",
           "read_items"]
