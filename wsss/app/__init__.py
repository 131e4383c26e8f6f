"""The interactive mask generator of paper 000 (Gradio): parameters, stage images, gallery, export.

``DemoEngine`` holds the stages (built once, rebuilt only when their parameters change) and is UI-free;
``wsss.app.ui.build_app`` wires it into a three-column Gradio page.
"""

from wsss.app.engine import DemoEngine, DemoParams, DemoResult, mask_model_choices
from wsss.app.export import coco_rle_json, mask_png_bytes

__all__ = ["DemoEngine", "DemoParams", "DemoResult", "coco_rle_json", "mask_model_choices", "mask_png_bytes"]
