"""Large images run at a bounded working size; the demo refuses oversized uploads from the header."""
from __future__ import annotations

import functools
import io
import struct
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image, ImageFile

from wsss.config import load_config
from wsss.data.base import Box, Sample
from wsss.pseudo.pipeline import PseudoLabeler
from wsss.pseudo.working_size import process_at_working_size, scale_box, shrink_sample, working_scale
from wsss.record import Record, Resources
from wsss.utils.io import ImageSizeError
from wsss.utils.runtime import seed_everything

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["background", "disc", "block", "triangle", "cross"]


def _scene(h: int, w: int) -> tuple[np.ndarray, np.ndarray, Box]:
    """Gray noise with a red disc: (image, truth, a box around the disc)."""
    rng = np.random.default_rng(0)
    image = rng.integers(90, 140, (h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:h, :w]
    r = min(h, w) // 4
    disc = (yy - h // 2) ** 2 + (xx - w // 2) ** 2 <= r * r
    image[disc] = (220, 30, 30)
    m = r // 5
    return image, disc, Box(1, w // 2 - r - m, h // 2 - r - m, w // 2 + r + m, h // 2 + r + m)


@pytest.fixture
def labeler(tmp_path: Path) -> SimpleNamespace:
    """A real stage-one pipeline that needs no model: given labels and boxes, GrabCut inside the box.

    ``seen`` lists the image shape the refiner ran on (the pipeline's own per-stage callback).
    """
    cfg = load_config(REPO / "configs" / "quickstart.yaml",
                      ["labels.name=given", "cam.name=none", "boxes.name=given", "masks.name=grabcut_box", "device=cpu"])
    lab = PseudoLabeler(cfg, Resources(cfg, CLASSES, tmp_path, "cpu"))
    seen: list[tuple[int, ...]] = []

    def on_step(kind: str, rec: Record) -> None:
        if kind == "masks":
            seen.append(rec.image.shape)

    return SimpleNamespace(process=functools.partial(lab.process, on_step=on_step), seen=seen)


def test_big_image_runs_at_working_size_and_comes_back_native(labeler: SimpleNamespace) -> None:
    image, disc, box = _scene(2000, 3000)  # 6 MP in memory, no huge file
    rec = Record(Sample("big", image, labels=[1], boxes=[box]))
    out = process_at_working_size(labeler.process, rec, max_side=512)
    assert labeler.seen == [(341, 512, 3)]  # the refiner saw the working copy only
    assert out.image is image and out.label_map.shape == (2000, 3000) and out.label_map.dtype == np.uint8
    assert out.boxes == [box]  # the given box, in native pixels, exactly
    assert out.extras["working_scale"] == pytest.approx(512 / 3000, abs=1e-6)
    fg = out.label_map == 1
    assert (fg & disc).sum() / (fg | disc).sum() > 0.9  # nearest-neighbour upsampling kept the object


def test_small_image_is_untouched(labeler: SimpleNamespace) -> None:
    image, _, box = _scene(96, 128)
    seed_everything(0)
    ref = labeler.process(Record(Sample("small", image.copy(), labels=[1], boxes=[box])))
    seed_everything(0)
    sample = Sample("small", image, labels=[1], boxes=[box])
    out = process_at_working_size(labeler.process, Record(sample), max_side=512)
    assert out.sample is sample and labeler.seen == [(96, 128, 3)] * 2
    np.testing.assert_array_equal(out.label_map, ref.label_map)
    assert out.boxes == ref.boxes and "working_scale" not in out.extras


def test_outputs_of_each_kind_are_brought_back() -> None:
    image = np.zeros((400, 1000, 3), np.uint8)
    mask = np.zeros((400, 1000), np.uint8)
    mask[100:300, 200:600] = 2
    seen: dict = {}

    def process(rec: Record) -> Record:
        seen.update(shape=rec.image.shape, mask=rec.sample.mask.shape, cache=dict(rec.cache))
        h, w = rec.image.shape[:2]
        rec.cams = {2: np.linspace(0, 1, w, dtype=np.float32)[None].repeat(h, 0)}
        rec.boxes = [Box(2, 20, 10, 60, 30, 0.5)]
        rec.label_map = (rec.sample.mask > 0).astype(np.uint8) * 2
        rec.cache["embedding"] = "of the working image"
        return rec

    rec = Record(Sample("x", image, mask), cache={"native": 1})
    out = process_at_working_size(process, rec, max_side=100)
    assert seen == {"shape": (40, 100, 3), "mask": (40, 100), "cache": {}}
    assert out.cache == {"native": 1}  # working-size cache entries dropped, the record's own restored
    assert out.cams[2].shape == (400, 1000) and out.cams[2].dtype == np.float32
    assert 0 <= out.cams[2].min() < 0.01 and 0.99 < out.cams[2].max() <= 1
    assert out.boxes == [Box(2, 200, 100, 600, 300, 0.5)]
    np.testing.assert_array_equal(out.label_map, mask)
    dropped = process_at_working_size(process, Record(Sample("x", image, mask)), max_side=100, keep_cams=False)
    assert dropped.cams == {}


def test_sample_restored_when_a_stage_fails() -> None:
    image = np.zeros((300, 300, 3), np.uint8)
    rec = Record(Sample("x", image))

    def fail(r: Record) -> Record:
        raise RuntimeError("stage failed")

    with pytest.raises(RuntimeError):
        process_at_working_size(fail, rec, max_side=64)
    assert rec.image is image


def test_scale_helpers() -> None:
    assert working_scale(2000, 3000, 1024) == pytest.approx(1024 / 3000)
    assert working_scale(100, 50, 1024) == working_scale(5000, 5000, 0) == 1.0
    assert scale_box(Box(1, 1, 1, 2, 2), 0.1, 10, 10) == Box(1, 0, 0, 1, 1)  # never empty
    assert scale_box(Box(1, 0, 0, 50, 50), 1.0, 20, 30) == Box(1, 0, 0, 30, 20)  # clipped
    small = shrink_sample(Sample("t", np.zeros((10, 2000, 3), np.uint8)), 0.01)
    assert small.image.shape == (1, 20, 3)  # a side never rounds to 0


# --- the demo ----------------------------------------------------------------------------------------------------
def _jpeg_claiming_size(path: Path, width: int, height: int) -> Path:
    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5: sof + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(data))
    return path


@pytest.fixture(scope="module")
def engine(tiny_run: tuple):
    from wsss.app.engine import DemoEngine

    cfg, work_dir, _ = tiny_run
    eng = DemoEngine(cfg, work_dir, max_side=96)
    yield eng
    eng.close()


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_demo_refuses_huge_upload_file_from_its_header(engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gradio as gr

    from wsss.app.ui import Callbacks

    def load(self: ImageFile.ImageFile) -> None:
        raise AssertionError("pixels decoded")

    path = _jpeg_claiming_size(tmp_path / "photo.jpg", 12000, 12000)
    with monkeypatch.context() as m:
        m.setattr(ImageFile.ImageFile, "load", load)
        start = time.perf_counter()
        with pytest.raises(ImageSizeError, match=r"photo\.jpg: image is 12000x12000 px.*data\.max_pixels"):
            engine.check_image(str(path))
        with pytest.raises(gr.Error) as e:
            Callbacks(engine, export_dir=tmp_path).upload_sample(str(path))
        assert time.perf_counter() - start < 1.0
    assert "12000x12000" in e.value.message and "max_pixels" in e.value.message


def test_demo_upload_file_is_read_and_shrunk(engine, tmp_path: Path) -> None:
    from wsss.app.ui import Callbacks

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 150, 3), dtype=np.uint8)).save(tmp_path / "ok.png")
    assert engine.check_image(tmp_path / "ok.png").shape == (96, 48, 3)
    sample = Callbacks(engine, export_dir=tmp_path).upload_sample(str(tmp_path / "ok.png"))
    assert sample.id == "upload" and sample.image.shape == (96, 48, 3)


def test_demo_refuses_oversized_array_before_resizing(engine, monkeypatch: pytest.MonkeyPatch) -> None:
    import cv2

    monkeypatch.setattr(engine.cfg.data, "max_pixels", 10_000, raising=False)  # what data.max_pixels will set
    monkeypatch.setattr(cv2, "resize", lambda *a, **k: pytest.fail("resized before the size check"))
    with pytest.raises(ImageSizeError, match="uploaded image: image is 200x100 px"):
        engine.check_image(np.zeros((100, 200, 3), np.uint8))
    assert engine.check_image(np.zeros((50, 60, 3), np.uint8)).shape == (50, 60, 3)


def test_demo_page_takes_uploads_as_files(engine, tmp_path: Path) -> None:
    from wsss.app.ui import build_app

    app = build_app(engine, page_size=4, export_dir=tmp_path)
    upload = next(c for c in app.blocks.values() if getattr(c, "elem_id", None) == "upload")
    assert upload.type == "filepath" and upload.image_mode is None  # gradio hands the file over undecoded
