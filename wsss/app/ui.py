"""The Gradio page of paper 000: how-to and live log | parameters, final mask, stage images | gallery.

``Callbacks`` holds the logic of every event as plain methods (unit-tested without a browser);
``build_app`` only lays out components and wires them to those methods.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from wsss.app.engine import DemoEngine, DemoParams, DemoResult, mask_model_choices
from wsss.app.export import write_exports
from wsss.app.gallery import ALL_CLASSES, GalleryIndex
from wsss.cam.gradcam import cam_method_names
from wsss.data.base import Sample

PREDICTED = -1  # target-class dropdown value: the class the classifier predicts

HOW_TO = """### How to start
1. Pick a **data set** and **class** on the right; page through the gallery with the slider.
2. **Click an image**: the mask is generated with the parameters in the middle (or upload your own image below).
3. Follow the steps in the log below; the final mask and the images of each stage appear in the middle.
4. Change parameters and press **Generate again**; **Accept and export** saves the mask as PNG and COCO RLE JSON.
"""


def _display(image: np.ndarray, min_side: int = 256) -> np.ndarray:
    """Small images (the 64-128 px synthetic set) enlarged with nearest-neighbour so pixels stay visible."""
    k = int(np.ceil(min_side / max(1, min(image.shape[:2]))))
    return np.repeat(np.repeat(image, k, 0), k, 1) if k > 1 else image


ORDER_DATASET, ORDER_WORST, ORDER_BEST = "data set", "quality: worst first", "quality: best first"


def _safe_stem(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:80] or "mask"


class Callbacks:
    """Event logic, independent of the page layout."""

    def __init__(self, engine: DemoEngine, page_size: int = 12, export_dir: str | Path | None = None) -> None:
        self.engine = engine
        self.gallery = GalleryIndex(engine.datasets, page_size)
        self.quality = engine.quality_estimates()  # {id: estimate} of the config's pseudo-label run, if any
        self.export_dir = Path(export_dir or tempfile.mkdtemp(prefix="wsss-demo-"))

    # ---------------------------------------------------------------- gallery column
    def change_split(self, split: str) -> tuple[Any, ...]:
        choices = self.gallery.class_choices(split)
        return (gr.update(choices=choices, value=ALL_CLASSES),) + self.change_class(split, ALL_CLASSES)

    def change_class(self, split: str, cls: str) -> tuple[Any, ...]:
        pages = self.gallery.num_pages(split, cls)
        return (gr.update(minimum=1, maximum=max(pages, 2), value=1, interactive=pages > 1),) + self.show_page(split, cls, 1)

    def change_order(self, split: str, cls: str, order: str) -> tuple[Any, ...]:
        """Data-set order, or by the pseudo-label quality estimate (worst first: check those first)."""
        if order == ORDER_DATASET:
            self.gallery.sort_by(None)
        else:
            self.gallery.sort_by(self.quality, descending=order == ORDER_BEST)
        return self.change_class(split, cls)

    def show_page(self, split: str, cls: str, page: float) -> tuple[list, str]:
        n, pages = len(self.gallery.ids(split, cls)), self.gallery.num_pages(split, cls)
        page = min(max(int(page), 1), pages)
        return self.gallery.thumbnails(split, cls, page), f"page {page} of {pages} · {n} images of class '{cls}' in '{split}'"

    # ---------------------------------------------------------------- generation
    @staticmethod
    def params(cam_method: str, eigen: bool, aug: bool, box_threshold: float, mask_model: str, target: int | None) -> DemoParams:
        t = None if target in (None, PREDICTED) else int(target)
        return DemoParams(cam_method, bool(eigen), bool(aug), float(box_threshold), mask_model, t)

    def select_sample(self, split: str, cls: str, page: float, index: int) -> Sample:
        return self.gallery.select(split, cls, int(page), int(index))

    def upload_sample(self, image: np.ndarray | str | None) -> Sample | None:
        """The upload as a sample; a file path (what the page sends) is size-checked before decoding.

        A refused image raises ``gr.Error`` with the reason, shown to the user; the chained generation is
        skipped (``.success``), so the previous sample is not silently regenerated.
        """
        if image is None:
            return None
        try:
            return Sample("upload", self.engine.check_image(image))
        except (ValueError, FileNotFoundError) as e:
            raise gr.Error(str(e)) from None

    def generate(self, sample: Sample | None, p: DemoParams) -> Iterator[tuple[Any, ...]]:
        """Yields (log, final image, metrics, stage gallery, params accordion, stages accordion, result)."""
        if sample is None:
            yield (
                "Pick an image in the gallery or upload one first.",
                gr.skip(),
                gr.skip(),
                gr.skip(),
                gr.skip(),
                gr.skip(),
                gr.skip(),
            )
            return
        lines: list[str] = []
        try:
            for event in self.engine.generate(sample, p):
                if isinstance(event, DemoResult):
                    overlay = _display(event.stages[-1][0], 320)
                    stages = [(_display(img), title) for img, title in event.stages]
                    yield (
                        "\n".join(lines),
                        overlay,
                        event.metrics_text(),
                        stages,
                        gr.Accordion(open=False),
                        gr.Accordion(open=True),
                        event,
                    )
                else:
                    lines.append(event)
                    yield "\n".join(lines), gr.skip(), "generating ...", gr.skip(), gr.skip(), gr.skip(), gr.skip()
        except Exception as e:  # shown to the user; the server keeps running
            lines.append(f"error: {type(e).__name__}: {e}")
            yield "\n".join(lines), None, f"error: {e}", [], gr.skip(), gr.skip(), None

    def export(self, result: DemoResult | None) -> list[str]:
        if result is None:
            raise gr.Error("Generate a mask first.")
        stem = _safe_stem(f"{result.image_id}_{result.target_name}")
        png, js = write_exports(self.export_dir, stem, result.mask, result.target_name, result.target, result.confidence)
        return [str(png), str(js)]


def build_app(engine: DemoEngine, page_size: int = 12, export_dir: str | Path | None = None) -> gr.Blocks:
    cb = Callbacks(engine, page_size, export_dir)
    d = engine.default_params()
    splits = cb.gallery.splits()
    targets = [("predicted class", PREDICTED)] + [(n, i) for i, n in enumerate(engine.class_names) if i > 0]
    with gr.Blocks(title="wsss · mask generator") as app:
        sample_state = gr.State(None)
        result_state = gr.State(None)
        gr.Markdown("## Masks from a classifier: CAM → box → mask refiner")
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                gr.Markdown(HOW_TO)
                log = gr.Textbox(label="Generation log", lines=16, max_lines=30, interactive=False, elem_id="log")
                # a file path, not an array: gradio then hands the file over undecoded (image_mode=None) and
                # check_image refuses an oversized one from its header, in milliseconds
                upload = gr.Image(label="Or upload an image", sources=["upload"], type="filepath", image_mode=None,
                                  height=180, elem_id="upload")
            with gr.Column(scale=4):
                with gr.Accordion("Generation parameters", open=True) as params_box:
                    cam_method = gr.Dropdown(cam_method_names(), value=d.cam_method, label="CAM method")
                    with gr.Row():
                        eigen = gr.Checkbox(value=d.eigen_smooth, label="Eigen smoothing")
                        aug = gr.Checkbox(value=d.aug_smooth, label="Augmentation smoothing")
                    box_threshold = gr.Slider(0.0, 1.0, value=d.box_threshold, step=0.05, label="Box threshold (CAM ≥ t)")
                    mask_model = gr.Radio(mask_model_choices(engine.cfg), value=d.mask_model, label="Mask model")
                    target = gr.Dropdown(targets, value=PREDICTED, label="Target class")
                    again = gr.Button("Generate again", variant="primary")
                with gr.Accordion("Final mask", open=True):
                    final = gr.Image(label="Final mask", interactive=False, height=320, elem_id="final-mask")
                    metrics = gr.Textbox(label="Metrics", interactive=False, elem_id="metrics")
                    accept = gr.Button("Accept and export (PNG + COCO RLE)")
                    files = gr.File(label="Exported mask", file_count="multiple", interactive=False, elem_id="exports")
                with gr.Accordion("Images of the stages", open=False) as stages_box:
                    stages = gr.Gallery(label="Stages", columns=3, height="auto", allow_preview=True, elem_id="stages")
            with gr.Column(scale=4):
                split = gr.Dropdown(splits, value=splits[0], label="Data set")
                cls = gr.Dropdown(cb.gallery.class_choices(splits[0]), value=ALL_CLASSES, label="Class")
                pages = cb.gallery.num_pages(splits[0], ALL_CLASSES)
                page = gr.Slider(1, max(pages, 2), value=1, step=1, label="Page", interactive=pages > 1)
                first, first_caption = cb.show_page(splits[0], ALL_CLASSES, 1)
                gallery = gr.Gallery(first, label="Gallery (click to generate)", columns=4, allow_preview=False, elem_id="gallery")
                caption = gr.Markdown(first_caption)
                order = gr.Radio([ORDER_DATASET, ORDER_WORST, ORDER_BEST], value=ORDER_DATASET, elem_id="order",
                                 label="Order (by the quality estimate of the config's pseudo-labels)",
                                 visible=bool(cb.quality))

        param_inputs = [cam_method, eigen, aug, box_threshold, mask_model, target]
        gen_outputs = [log, final, metrics, stages, params_box, stages_box, result_state]

        def run(sample: Sample | None, *values: Any) -> Iterator[tuple[Any, ...]]:
            yield from cb.generate(sample, cb.params(*values))

        def on_select(split_v: str, cls_v: str, page_v: float, evt: gr.SelectData) -> Sample:
            return cb.select_sample(split_v, cls_v, page_v, evt.index)

        split.change(cb.change_split, [split], [cls, page, gallery, caption])
        cls.input(cb.change_class, [split, cls], [page, gallery, caption])
        page.release(cb.show_page, [split, cls, page], [gallery, caption])
        order.input(cb.change_order, [split, cls, order], [page, gallery, caption])
        gallery.select(on_select, [split, cls, page], [sample_state]).then(run, [sample_state, *param_inputs], gen_outputs)
        upload.upload(cb.upload_sample, [upload], [sample_state]).success(run, [sample_state, *param_inputs], gen_outputs)
        again.click(run, [sample_state, *param_inputs], gen_outputs)
        accept.click(cb.export, [result_state], [files])
    return app
