"""The demo's engine, gallery, export and callbacks on a tiny trained classifier (no browser)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image

from wsss.app.engine import DemoEngine, DemoResult, checkpoints_configured, mask_model_choices
from wsss.app.export import coco_rle_json, mask_png_bytes, write_exports
from wsss.app.gallery import ALL_CLASSES, GalleryIndex
from wsss.masks import REFINERS


@pytest.fixture(scope="module")
def engine(tiny_run: tuple) -> DemoEngine:
    cfg, work_dir, _ = tiny_run
    eng = DemoEngine(cfg, work_dir, max_side=96)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def sample(engine: DemoEngine):
    split = engine.cfg.data.split
    return engine.load_sample(split, engine.datasets[split].ids[0])


def test_generate_reports_consistent_result(engine: DemoEngine, sample) -> None:
    events = list(engine.generate(sample, engine.default_params()))
    result = events[-1]
    assert isinstance(result, DemoResult)
    lines = [e for e in events if isinstance(e, str)]
    assert [s for s in ("[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]") if any(line.startswith(s) for line in lines)] == [
        "[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"]
    probs = engine.classifier.predict([sample.image])[0]
    assert result.predicted == max(probs, key=probs.get) == result.target
    assert result.confidence == pytest.approx(probs[result.target])
    assert result.mask.shape == sample.image.shape[:2]
    np.testing.assert_array_equal(result.mask, result.label_map == result.target)
    valid = sample.mask != 255
    gt = (sample.mask == result.target) & valid
    union = (gt | (result.mask & valid)).sum()
    if union:
        assert result.iou == pytest.approx((gt & result.mask).sum() / union)
    assert result.road is not None and np.isfinite(result.road) and -1.0 <= result.road <= 1.0
    titles = [t for _, t in result.stages]
    assert titles[0].startswith("CAM") and titles[1].startswith("boxes") and titles[-1] == "final mask"
    assert any(t.startswith("GrabCut seed") for t in titles)  # the default refiner is GrabCut-CAM
    for img, _ in result.stages:
        assert img.shape == sample.image.shape and img.dtype == np.uint8
    assert f"IoU vs ground truth: {result.iou:.3f}" in result.metrics_text() if result.iou is not None else True


def test_only_changed_stages_are_rebuilt(engine: DemoEngine, sample) -> None:
    p = engine.default_params()
    engine.run(sample, p)
    model = engine.classifier.model
    before = dict(engine.builds)
    engine.run(sample, p)
    assert dict(engine.builds) == before
    engine.run(sample, dataclasses.replace(p, box_threshold=0.3))
    assert engine.builds["boxes"] == before["boxes"] + 1
    assert (engine.builds["cam"], engine.builds["masks"]) == (before["cam"], before["masks"])
    engine.run(sample, dataclasses.replace(p, box_threshold=0.3, cam_method="EigenCAM"))
    assert engine.builds["cam"] == before["cam"] + 1 and engine.builds["boxes"] == before["boxes"] + 1
    assert engine.classifier.model is model  # the classifier is never reloaded


@pytest.mark.parametrize("name", [n for n in REFINERS.names() if n not in ("sam_box", "sam_cam_match")])
def test_every_offered_refiner_runs(engine: DemoEngine, sample, name: str) -> None:
    offered = [n for _, n in mask_model_choices(engine.cfg)]
    if name not in offered:
        pytest.skip(f"{name} needs a checkpoint that is not configured")
    res = engine.run(sample, dataclasses.replace(engine.default_params(), mask_model=name))
    assert res.mask.shape == sample.image.shape[:2]
    assert set(np.unique(res.label_map)) <= {0, res.target, 255}
    assert [t for _, t in res.stages][-1] == "final mask"


def test_target_class_override(engine: DemoEngine, sample) -> None:
    probs = engine.classifier.predict([sample.image])[0]
    other = min(probs, key=probs.get)
    res = engine.run(sample, dataclasses.replace(engine.default_params(), target=other))
    assert res.target == other and res.target_name == engine.class_names[other]
    assert res.confidence == pytest.approx(probs[other])
    with pytest.raises(ValueError, match="target class"):
        engine.run(sample, dataclasses.replace(engine.default_params(), target=len(engine.class_names) + 3))


def test_demo_and_gen_pseudo_give_the_same_label_map(tiny_run: tuple, tmp_path) -> None:
    """The demo is a view over the CLI's stage one: same image, same config -> same label map and ROAD."""
    from tests.conftest import QUICKSTART
    from wsss.config import load_config
    from wsss.data import build_dataset
    from wsss.pseudo import generate_pseudo_labels
    from wsss.record import Resources
    from wsss.utils.io import read_label_png

    _, work_dir, overrides = tiny_run
    # one class per image on both sides (the demo labels its predicted class); ROAD recorded by the CLI too
    cfg = load_config(QUICKSTART, overrides + ["labels.name=classifier", "labels.classifier.top_k=1", "cam.gradcam.road=true",
                                               "pseudo.overlays=0"])
    dataset = build_dataset(cfg.data, cfg.data.split)
    ids = dataset.ids[:3]
    out = tmp_path / "pseudo"
    records = generate_pseudo_labels(cfg, dataset, Resources(cfg, dataset.class_names, work_dir, "cpu"), out, ids)
    demo = DemoEngine(cfg, work_dir)
    try:
        for image_id in ids:
            res = demo.run(demo.load_sample(cfg.data.split, image_id), demo.default_params())
            assert records[image_id]["classes"] == [res.target]
            np.testing.assert_array_equal(res.label_map, read_label_png(out / "labels" / f"{image_id}.png"))
            assert res.road == pytest.approx(records[image_id]["extras"]["road"][str(res.target)], abs=1e-5)
    finally:
        demo.close()


def test_checkpoint_gating(tmp_path) -> None:
    @dataclasses.dataclass
    class Model:
        family: str = "sam"
        checkpoint: str = str(tmp_path / "missing.pth")

    @dataclasses.dataclass
    class Refiner:
        model: Model = dataclasses.field(default_factory=Model)

    @dataclasses.dataclass
    class NoWeights:
        t: float = 0.3

    assert not checkpoints_configured(Refiner())
    (tmp_path / "sam.pth").write_bytes(b"x")
    assert checkpoints_configured(Refiner(Model(checkpoint=str(tmp_path / "sam.pth"))))
    assert checkpoints_configured(NoWeights()) and checkpoints_configured(None)


def test_mask_model_choices_offer_grabcut_and_hide_unconfigured_sam(engine: DemoEngine) -> None:
    names = [n for _, n in mask_model_choices(engine.cfg)]
    assert "grabcut_cam" in names
    if "rcam" in REFINERS:
        assert "rcam" in names
    for sam in ("sam_box", "sam_cam_match"):
        if sam in REFINERS:
            assert (sam in names) == checkpoints_configured(getattr(engine.cfg.masks, sam))


def test_check_image_converts_and_limits_size(engine: DemoEngine) -> None:
    rgba = np.random.default_rng(0).integers(0, 255, (300, 150, 4), dtype=np.uint8)
    out = engine.check_image(rgba)
    assert out.shape == (96, 48, 3) and out.dtype == np.uint8
    assert engine.check_image(np.zeros((20, 30), np.uint8)).shape == (20, 30, 3)
    with pytest.raises(ValueError, match="RGB image"):
        engine.check_image(np.zeros((4, 4, 3), np.uint8))


def test_gallery_paging_and_class_filter(engine: DemoEngine) -> None:
    g = GalleryIndex(engine.datasets, page_size=5)
    split = g.splits()[0]
    ds = engine.datasets[split]
    all_ids = g.ids(split, ALL_CLASSES)
    paged = [i for page in range(1, g.num_pages(split, ALL_CLASSES) + 1) for i in g.page_ids(split, ALL_CLASSES, page)]
    assert paged == all_ids == list(ds.ids)
    for c, name in enumerate(ds.class_names[1:], start=1):
        ids = g.ids(split, name)
        assert all(c in ds.labels(i) for i in ids)
        assert len(ids) == sum(c in (ds.labels(i) or []) for i in ds.ids)
    s = g.select(split, ALL_CLASSES, 2, 1)
    assert s.id == all_ids[6]
    with pytest.raises(IndexError):
        g.select(split, ALL_CLASSES, 1, 99)
    with pytest.raises(KeyError):
        g.ids("../etc", ALL_CLASSES)


def test_exports_round_trip(tmp_path) -> None:
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    mask = np.zeros((20, 30), bool)
    mask[3:9, 5:17] = True
    png = np.array(Image.open(__import__("io").BytesIO(mask_png_bytes(mask))))
    np.testing.assert_array_equal(png > 0, mask)
    coco = coco_rle_json(mask, "disc", 1, "x.png", 0.9)
    seg = coco["annotations"][0]["segmentation"]
    np.testing.assert_array_equal(mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()}), mask)
    assert coco["annotations"][0]["area"] == mask.sum()
    assert coco["annotations"][0]["bbox"] == [5.0, 3.0, 12.0, 6.0]
    png_path, json_path = write_exports(tmp_path, "img_disc", mask, "disc", 1)
    api = COCO(str(json_path))
    np.testing.assert_array_equal(api.annToMask(api.loadAnns(api.getAnnIds())[0]), mask)
    assert json.loads(json_path.read_text())["categories"] == [{"id": 1, "name": "disc"}]
    np.testing.assert_array_equal(np.array(Image.open(png_path)) > 0, mask)


def test_callbacks_stream_log_and_export(engine: DemoEngine, tmp_path) -> None:
    from wsss.app.ui import PREDICTED, Callbacks

    cb = Callbacks(engine, page_size=4, export_dir=tmp_path)
    split = cb.gallery.splits()[0]
    thumbs, caption = cb.show_page(split, ALL_CLASSES, 1)
    assert len(thumbs) == 4 and "page 1 of" in caption
    sample = cb.select_sample(split, ALL_CLASSES, 1, 2)
    assert sample.id == thumbs[2][1]
    p = cb.params(*dataclasses.astuple(engine.default_params())[:5], PREDICTED)
    assert p.target is None
    outs = list(cb.generate(sample, p))
    assert outs[0][0].startswith("[1/5]") and len(outs[-1][0]) > len(outs[0][0])  # the log grows
    log, final, metrics, stages, *_, result = outs[-1]
    assert isinstance(result, DemoResult) and "confidence" in metrics and final.shape[0] >= 256
    assert len(stages) == len(result.stages)
    files = cb.export(result)
    assert [f.rsplit("_", 1)[-1] for f in files] == ["mask.png", "rle.json"]
    assert all((tmp_path / f.split("/")[-1]).is_file() for f in files)
    assert list(cb.generate(None, p))[0][0].startswith("Pick an image")
    upload = cb.upload_sample(np.full((40, 50, 3), 120, np.uint8))
    assert upload.id == "upload" and upload.mask is None
    err = list(cb.generate(upload, dataclasses.replace(p, mask_model="no_such_refiner")))[-1]
    assert err[0].splitlines()[-1].startswith("error: ValueError")


def test_imagenet_mode_paints_any_of_1000_classes(tiny_run: tuple) -> None:
    """The bundled ImageNet classifier on an uploaded image: a target index above 254 still gets a mask."""
    from wsss.classifier import imagenet_categories
    from wsss.data.base import Sample

    cfg, work_dir, _ = tiny_run
    cfg = dataclasses.replace(cfg, classifier=dataclasses.replace(cfg.classifier, name="imagenet_lite0"))
    eng = DemoEngine(cfg, work_dir, max_side=96)
    try:
        assert len(eng.class_names) == 1001 and not eng.has_ground_truth
        image = np.full((80, 96, 3), 90, np.uint8)
        image[20:60, 30:70] = (200, 120, 40)
        target = imagenet_categories().index("tabby") + 1
        res = eng.run(Sample("upload", eng.check_image(image)), dataclasses.replace(eng.default_params(), target=target))
        assert res.target == target and res.target_name == "tabby" and res.iou is None
        assert set(np.unique(res.label_map)) <= {0, 1, 255}
        np.testing.assert_array_equal(res.mask, res.label_map == 1)
        assert res.mask.any()
    finally:
        eng.close()


def test_gallery_orders_by_the_pseudo_label_quality(tiny_run: tuple, tmp_path) -> None:
    """With a pseudo-label run in the work dir, the gallery can show its worst estimates first."""
    pytest.importorskip("gradio")
    from tests.conftest import QUICKSTART
    from wsss.app.ui import ORDER_BEST, ORDER_DATASET, ORDER_WORST, Callbacks
    from wsss.config import load_config
    from wsss.data import build_dataset
    from wsss.pseudo import generate_pseudo_labels
    from wsss.record import Resources

    _, work_dir, overrides = tiny_run
    cfg = load_config(QUICKSTART, overrides + [f"classifier.timm.checkpoint={work_dir / 'classifier' / 'classifier.pth'}",
                                               "pseudo.overlays=0"])
    work = tmp_path / "work"
    dataset = build_dataset(cfg.data, cfg.data.split)
    ids = dataset.ids[:4]
    generate_pseudo_labels(cfg, dataset, Resources(cfg, dataset.class_names, work, "cpu"), work / cfg.pseudo.out, ids)
    demo = DemoEngine(cfg, work)
    try:
        quality = demo.quality_estimates()
        assert sorted(quality) == sorted(ids) and all(0.0 <= q <= 1.0 for q in quality.values())
        cb = Callbacks(demo, page_size=50)
        cb.change_order(cfg.data.split, ALL_CLASSES, ORDER_WORST)
        shown = cb.gallery.ids(cfg.data.split, ALL_CLASSES)
        assert shown[:4] == sorted(ids, key=quality.get) and set(shown[4:]) == set(dataset.ids) - set(ids)
        cb.change_order(cfg.data.split, ALL_CLASSES, ORDER_BEST)
        assert cb.gallery.ids(cfg.data.split, ALL_CLASSES)[:4] == sorted(ids, key=quality.get, reverse=True)
        cb.change_order(cfg.data.split, ALL_CLASSES, ORDER_DATASET)
        assert cb.gallery.ids(cfg.data.split, ALL_CLASSES) == list(dataset.ids)
    finally:
        demo.close()
