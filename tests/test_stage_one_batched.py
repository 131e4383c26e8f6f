"""The batched stage one (``pseudo.batch_size`` / ``pseudo.workers``) gives the per-image path's labels and
manifest; the stages' batch entry points; the CAM stage skipped when nothing reads it; resume without models;
the training loader reading only the image; ``--threads``."""
from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from wsss.config import load_config
from wsss.data import build_dataset
from wsss.pseudo import PseudoLabeler, generate_pseudo_labels
from wsss.pseudo import pipeline as pipeline_module
from wsss.record import Record, Resources
from wsss.utils.io import read_label_png

from .conftest import QUICKSTART, REPO

PHOTOS = REPO / "configs" / "photos.yaml"
BAD = "c_broken"  # sorts among the others: decode fails mid-batch
BIG = "b_big"  # above pseudo.max_side: runs at working size


def comparable(record: dict) -> dict:
    """A manifest line without what may differ between two identical runs: timings and the error's traceback."""
    return {k: v for k, v in record.items() if k not in ("timings", "trace")}


def assert_same_outputs(a: Path, ra: dict[str, dict], b: Path, rb: dict[str, dict], overlays: bool = True) -> None:
    assert list(ra) == list(rb)
    for image_id in ra:
        assert comparable(ra[image_id]) == comparable(rb[image_id]), image_id
        if ra[image_id]["status"] != "error":
            np.testing.assert_array_equal(read_label_png(a / "labels" / f"{image_id}.png"),
                                          read_label_png(b / "labels" / f"{image_id}.png"))
            assert set(ra[image_id]["timings"]) == set(rb[image_id]["timings"])
    if overlays:
        assert sorted(p.name for p in (a / "overlays").glob("*.jpg")) == sorted(p.name for p in (b / "overlays").glob("*.jpg"))
    assert (a / "stage_config.yaml").read_text() == (b / "stage_config.yaml").read_text()


def run(cfg: object, out: Path, work: Path, ids: list[str] | None = None) -> dict[str, dict]:
    dataset = build_dataset(cfg.data, cfg.data.split)
    return generate_pseudo_labels(cfg, dataset, Resources(cfg, dataset.class_names, work, "cpu"), out, ids=ids)


@pytest.fixture(scope="module")
def photo_folder(tiny_run: tuple, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seven photos for the photo route: synthetic scenes, one enlarged above max_side, one corrupt file."""
    cfg, _, _ = tiny_run
    src = Path(cfg.data.synthetic.root) / "images"
    root = tmp_path_factory.mktemp("photos")
    (root / "images").mkdir()
    for i, path in enumerate(sorted(src.glob("*.png"))[:5]):
        shutil.copy(path, root / "images" / f"{'adefg'[i]}_{path.name}")
    image = cv2.imread(str(sorted(src.glob("*.png"))[5]))
    cv2.imwrite(str(root / "images" / f"{BIG}.png"), cv2.resize(image, (160, 120)))
    (root / "images" / f"{BAD}.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return root


def photo_cfg(root: Path, extra: list[str] = ()) -> object:
    return load_config(PHOTOS, [f"data.folder.root={root}", "classifier.imagenet_lite0.input_size=64",
                                "pseudo.max_side=96", "pseudo.overlays=3", "device=cpu", *extra])


@pytest.fixture(scope="module")
def per_image_photos(photo_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("each") / "pseudo"
    return out, run(photo_cfg(photo_folder), out, out.parent)


@pytest.mark.parametrize("pool", ["thread", "process"])
def test_batched_photo_route_gives_the_per_image_labels_and_manifest(photo_folder: Path, per_image_photos: tuple,
                                                                     tmp_path: Path, pool: str) -> None:
    """Classifier labels of the object class, mirrored Grad-CAM of its top-3 categories, union boxes,
    GrabCut-CAM; a corrupt file and a downscaled big image among them; decode workers and a refiner pool."""
    a, ra = per_image_photos
    assert ra[BAD]["status"] == "error" and f"{BAD}.png" in ra[BAD]["error"]
    assert ra[BIG]["extras"]["working_scale"] == pytest.approx(96 / 160)
    assert sum(r["status"] != "error" for r in ra.values()) == 6
    cfg = photo_cfg(photo_folder, ["pseudo.batch_size=3", "pseudo.workers=2", f"pseudo.pool={pool}"])
    rb = run(cfg, tmp_path / "pseudo", tmp_path)
    assert_same_outputs(a, ra, tmp_path / "pseudo", rb)
    assert rb[BAD]["error"] == ra[BAD]["error"] and rb[BAD]["trace"]


def test_batched_quickstart_route_and_its_resume(tiny_run: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Given labels, Grad-CAM, component boxes, GrabCut-CAM; batched models without workers; a batched run
    resumes a per-image one; a rerun over the finished set builds no model."""
    cfg, work_dir, overrides = tiny_run
    ckpt = f"classifier.timm.checkpoint={work_dir / 'classifier' / 'classifier.pth'}"
    each = load_config(QUICKSTART, overrides + [ckpt])
    ra = run(each, tmp_path / "each", tmp_path)
    batched = load_config(QUICKSTART, overrides + [ckpt, "pseudo.batch_size=4"])
    rb = run(batched, tmp_path / "batched", tmp_path)
    assert_same_outputs(tmp_path / "each", ra, tmp_path / "batched", rb)

    ids = list(ra)
    run(each, tmp_path / "resumed", tmp_path, ids[:5])  # an interrupted per-image run ...
    resumed = run(load_config(QUICKSTART, overrides + [ckpt, "pseudo.batch_size=3", "pseudo.workers=1"]),
                  tmp_path / "resumed", tmp_path)  # ... finished batched
    assert_same_outputs(tmp_path / "each", ra, tmp_path / "resumed", resumed)

    def no_models(*args: object, **kwargs: object) -> None:
        raise AssertionError("a resume over a finished set must not build the stages")

    monkeypatch.setattr(pipeline_module, "PseudoLabeler", no_models)
    again = run(batched, tmp_path / "resumed", tmp_path)
    assert {k: comparable(v) for k, v in again.items()} == {k: comparable(v) for k, v in resumed.items()}


def test_fused_batches_agree_with_one_call_per_image(photo_folder: Path, tmp_path: Path) -> None:
    """The accelerator path (one model call per batch), forced on the CPU: the same classes and, to float
    precision, the same scores and maps as one call per image; records without classes keep their place."""
    cfg = photo_cfg(photo_folder)
    dataset = build_dataset(cfg.data, cfg.data.split)
    lab = PseudoLabeler(cfg, Resources(cfg, dataset.class_names, tmp_path, "cpu"))
    ids = [i for i in dataset.ids if i != BAD][:4]

    def records() -> list[Record]:
        return [Record(dataset.load(i)) for i in ids]

    one, fused = records(), records()
    labels, cam = lab.stage("labels"), lab.stage("cam")
    expected = [labels(r) for r in one]
    got = labels.batch(fused, fuse=True)
    for (c1, s1), (c2, s2) in zip(expected, got):
        assert c1 == c2 and s1.keys() == s2.keys()
        assert all(abs(s1[k] - s2[k]) < 1e-5 for k in s1)
    for rec, (classes, _) in zip(one + fused, expected + expected):
        rec.classes = classes
    fused[1].classes = one[1].classes = []
    maps = cam.batch(fused, fuse=True)
    assert maps[1] == {}
    for rec, got_maps in zip(one, maps):
        want = cam(rec)
        assert want.keys() == got_maps.keys()
        for c in want:
            np.testing.assert_allclose(got_maps[c], want[c], atol=1e-4)
    # on the CPU the default is one call per image: bitwise what __call__ gives
    assert all(np.array_equal(a[c], b[c]) for a, b in zip(cam.batch(one), [cam(r) for r in one]) for c in a)


def test_cam_stage_is_skipped_only_when_nothing_reads_it(tiny_run: tuple, tmp_path: Path) -> None:
    cfg, work_dir, overrides = tiny_run
    base = overrides + [f"classifier.timm.checkpoint={work_dir / 'classifier' / 'classifier.pth'}",
                        "cam.rcam.scales=[64, 64]", "masks.rcam.scales=[64, 64]", "cam.rcam.crf=false",
                        "masks.rcam.crf=false", "pseudo.overlays=0"]

    names = build_dataset(cfg.data, cfg.data.split).class_names

    def steps(extra: list[str]) -> tuple[str, ...]:
        c = load_config(QUICKSTART, base + extra)
        return PseudoLabeler(c, Resources(c, names, tmp_path, "cpu")).steps_needed()

    full = ("labels", "cam", "boxes", "masks")
    assert steps([]) == full  # GrabCut-CAM reads the CAMs
    assert steps(["masks.name=rcam"]) == full  # the boxes stage (CAM components) reads them
    assert steps(["masks.name=rcam", "boxes.name=none", "cam.name=rcam"]) == full  # the CAM stage is the refiner's rCAM
    assert steps(["masks.name=rcam", "boxes.name=none", "masks.rcam.scope=box"]) == ("labels", "boxes", "masks")
    skip = ["masks.name=rcam", "boxes.name=none"]  # Grad-CAM that rCAM never reads
    assert steps(skip) == ("labels", "boxes", "masks")

    c = load_config(QUICKSTART, base + skip)
    dataset = build_dataset(c.data, c.data.split)
    ids = dataset.ids[:2]
    records = run(c, tmp_path / "pseudo", tmp_path, ids)
    lab = PseudoLabeler(c, Resources(c, dataset.class_names, tmp_path, "cpu"))
    for image_id in ids:
        assert "cam" not in records[image_id]["timings"]
        full_rec = lab.process(Record(dataset.load(image_id)))  # with the CAM stage: the same label map
        np.testing.assert_array_equal(read_label_png(tmp_path / "pseudo" / "labels" / f"{image_id}.png"), full_rec.label_map)


def test_training_loader_reads_the_image_only(tiny_run: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    from wsss.data.folder import FolderDataset
    from wsss.train.data import PseudoLabelSet

    cfg, _, _ = tiny_run
    dataset = build_dataset(cfg.data, cfg.data.split)
    labels = Path(cfg.data.synthetic.root) / "masks"
    pairs = PseudoLabelSet(dataset, labels, 48, (0.8, 1.2), (0.5,) * 3, (0.5,) * 3, seed=3)
    before = [pairs[i] for i in range(3)]

    def no_load(self: object, image_id: str) -> None:
        raise AssertionError("training must not read ground truth through load()")

    monkeypatch.setattr(FolderDataset, "load", no_load)
    for (x0, y0), (x1, y1) in zip(before, [pairs[i] for i in range(3)]):
        assert torch.equal(x0, x1) and torch.equal(y0, y1)


def test_threads_option_sets_torch_and_opencv(monkeypatch: pytest.MonkeyPatch) -> None:
    from wsss.runner import set_threads

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # set_threads writes it for child processes; restored after
    was_torch, was_cv = torch.get_num_threads(), cv2.getNumThreads()
    try:
        set_threads(1)
        assert torch.get_num_threads() == 1 and cv2.getNumThreads() == 1
        with pytest.raises(SystemExit, match="--threads must be >= 1"):
            set_threads(0)
    finally:
        torch.set_num_threads(was_torch)
        cv2.setNumThreads(was_cv)


def test_sharded_batched_stage_one_matches_one_process(tmp_path: Path) -> None:
    """torchrun, 2 gloo ranks, each batched with a decode worker and a refiner thread: the labels and
    manifest of one per-image process; a rerun resumes without redoing anything."""
    from wsss.pseudo import read_manifest
    from wsss.runner import gen_pseudo

    from .test_distributed import torchrun

    overrides = [f"data.synthetic.root={tmp_path}/syn", "data.synthetic.num_train=7", "data.synthetic.size=48",
                 "device=cpu", "labels.name=given", "classifier.name=imagenet_lite0",
                 "classifier.imagenet_lite0.input_size=64", "pseudo.overlays=1",
                 "classifier.imagenet_lite0.class_map={disc: [tench], block: [goldfish], triangle: [hammerhead], "
                 "cross: [goldfinch]}"]
    out_one, records_one = gen_pseudo(load_config(QUICKSTART, overrides), tmp_path / "one")
    batched = overrides + ["pseudo.batch_size=2", "pseudo.workers=1"]
    torchrun("gen_pseudo.py", tmp_path / "two", batched)
    out_two = tmp_path / "two" / "pseudo"
    records_two = read_manifest(out_two / "manifest.jsonl")
    # overlays: each rank draws the first pseudo.overlays of its own share (as before batching), so not compared
    assert_same_outputs(out_one, records_one, out_two, records_two, overlays=False)
    before = {p.name: p.stat().st_mtime_ns for p in (out_two / "labels").iterdir()}
    torchrun("gen_pseudo.py", tmp_path / "two", batched)
    assert {p.name: p.stat().st_mtime_ns for p in (out_two / "labels").iterdir()} == before
    assert list(read_manifest(out_two / "manifest.jsonl")) == list(records_one)
