"""wsss.exporters: every registered format read back by its own reader, the import of corrected labels, the CLIs."""
from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from PIL import Image

from tests._mini_layouts import make_kvasir
from wsss.exporters import EXPORTERS, build_exporter, export, read_items
from wsss.exporters.import_coco import import_coco
from wsss.exporters.label_studio import brush_rle
from wsss.exporters.polygons import component_polygons
from wsss.exporters.yolo import split_of
from wsss.pseudo.manifest import ManifestWriter, read_manifest
from wsss.utils.io import read_label_png, write_label_png

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["background", "polyp", "tool"]
FORMATS = ["coco_polygons", "coco_rle", "cvat", "label_studio", "voc", "yolo"]
Masks = dict[str, dict[int, np.ndarray]]  # image id -> class index -> HxW bool


def _labels() -> dict[str, np.ndarray]:
    """Label maps with holes, two components of one class, a circle, 255 pixels and an all-background image."""
    a = np.zeros((40, 48), np.uint8)
    a[4:20, 4:24] = 1
    a[8:12, 8:14] = 0  # a hole
    a[14:18, 18:22] = 255  # an uncertain hole
    a[25:35, 30:44] = 2  # two components of class 2
    a[2:8, 36:46] = 2
    a[36:40, 0:48] = 255  # an uncertain band at the border
    b = np.zeros((36, 44), np.uint8)
    cv2.circle(b, (20, 18), 12, 1, -1)
    cv2.circle(b, (20, 18), 4, 2, -1)  # class 2 inside class 1: a hole of class 1 filled by class 2
    b[0:3, :] = 255
    c = np.zeros((32, 32), np.uint8)
    c[10:20, 10:20] = 255  # uncertain only: exported as an image without annotations
    d = np.zeros((32, 40), np.uint8)
    d[5:25, 12:30] = 2
    return {"im_a": a, "im_b": b, "im_c": c, "im_d": d}


@pytest.fixture()
def pseudo(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """A stage-one folder: four labelled images (one low_confidence), one failed, one whose PNG is gone."""
    root = tmp_path / "pseudo"
    labels = _labels()
    writer = ManifestWriter(root / "manifest.jsonl")
    for image_id, label in labels.items():
        write_label_png(root / "labels" / f"{image_id}.png", label)
        status = "low_confidence" if image_id == "im_d" else "ok"
        writer.append({"image": image_id, "status": status, "label": f"labels/{image_id}.png",
                       "scores": {"1": 0.8, "2": 0.6}, "quality": {"estimate": 0.42} if image_id == "im_a" else None})
    writer.append({"image": "broken", "status": "error", "error": "ValueError: cannot read image"})
    writer.append({"image": "gone", "status": "ok", "label": "labels/gone.png"})
    writer.close()
    return root, labels


def _images(tmp_path: Path, labels: dict[str, np.ndarray]) -> dict[str, Path]:
    files = {}
    for image_id, label in labels.items():
        files[image_id] = tmp_path / "images" / f"{image_id}.png"
        files[image_id].parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((*label.shape, 3), 128, np.uint8)).save(files[image_id])
    return files


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


# ---------------------------------------------------------------------------------------------------------------
# readers, one per format, written from each format's documentation (not from wsss's writers)

def read_coco(path: Path) -> Masks:
    """pycocotools' own loader and annToMask."""
    from pycocotools.coco import COCO

    coco = COCO(str(path))
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    assert [names[k] for k in sorted(names)] == CLASSES[1:]
    out: Masks = {}
    for img in coco.loadImgs(coco.getImgIds()):
        masks = out.setdefault(img["wsss_id"], {})
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=img["id"])):
            m = coco.annToMask(ann).astype(bool)
            masks[ann["category_id"]] = masks.get(ann["category_id"], np.zeros_like(m)) | m
    return out


def read_voc(path: Path) -> Masks:
    out: Masks = {}
    ids = (path / "ImageSets" / "Segmentation" / "default.txt").read_text().split()
    lines = [line for line in (path / "labelmap.txt").read_text().splitlines() if not line.startswith("#")]
    assert [line.split(":")[0] for line in lines] == CLASSES
    for image_id in ids:
        with Image.open(path / "SegmentationClass" / f"{image_id}.png") as im:
            assert im.mode == "P" and im.getpalette()[3:6] == [128, 0, 0]
            label = np.array(im)
        out[image_id] = {c: label == c for c in range(1, len(CLASSES))}
        out[image_id][255] = label == 255
    return out


def parse_yolo(path: Path, classes: list[str] = CLASSES) -> dict[str, tuple[str, list[tuple[int, np.ndarray]]]]:
    """id -> (split, [(class id, Nx2 normalised polygon)]), with the checks Ultralytics' loader makes."""
    data = yaml.safe_load((path / "data.yaml").read_text())
    assert data["train"] == "images/train" and data["val"] == "images/val" and Path(data["path"]) == path.resolve()
    assert data["names"] == dict(enumerate(classes[1:]))  # background dropped, 0-based
    out = {}
    for split in ("train", "val"):
        for txt in sorted((path / "labels" / split).glob("*.txt")):
            polys = []
            for line in txt.read_text().splitlines():
                cls, *coords = line.split()
                xy = np.asarray(coords, float).reshape(-1, 2)
                assert len(coords) % 2 == 0 and len(xy) >= 3 and 0 <= xy.min() and xy.max() <= 1
                polys.append((int(cls), xy))
            out[txt.stem] = (split, polys)
    return out


def rasterise_yolo(polys: list[tuple[int, np.ndarray]], h: int, w: int, ultralytics: bool = False) -> dict[int, np.ndarray]:
    """Class -> mask with cv2.fillPoly. Sampled at pixel centres (fill 8x larger, read each pixel's centre), or as
    Ultralytics' polygon2mask does (int coordinates; fillPoly also fills the right / bottom edge pixels)."""
    scale = 1 if ultralytics else 8
    masks: dict[int, np.ndarray] = {}
    for cls, xy in polys:
        m = masks.setdefault(cls + 1, np.zeros((h * scale, w * scale), np.uint8))
        cv2.fillPoly(m, [np.round(xy * (w * scale, h * scale)).astype(np.int32)], 1)
    centre = slice(scale // 2, None, scale)
    return {c: m[centre, centre].astype(bool) for c, m in masks.items()}


def read_yolo(path: Path, labels: dict[str, np.ndarray]) -> Masks:
    return {image_id: rasterise_yolo(polys, *labels[image_id].shape) for image_id, (_, polys) in parse_yolo(path).items()}


def decode_brush(rle: list[int], print_params: bool = False) -> np.ndarray:
    """Label Studio's brush RLE, decoded from its documented layout (header, then repeat / literal blocks)."""
    bits = np.unpackbits(np.asarray(rle, np.uint8))
    pos = 0

    def read(n: int) -> int:
        nonlocal pos
        value = int("".join("01"[b] for b in bits[pos:pos + n]), 2)
        pos += n
        return value

    num, word = read(32), read(5) + 1
    widths = [read(4) + 1 for _ in range(4)]
    out = np.zeros(num, np.uint8)
    i = 0
    while i < num:
        repeat = read(1)
        j = i + 1 + read(widths[read(2)])
        if repeat:
            out[i:j] = read(word)
        else:
            for k in range(i, j):
                out[k] = read(word)
        i = j
    return out


def reference_decoder() -> Callable[[list[int]], np.ndarray] | None:
    try:
        from label_studio_converter.brush import decode_rle
    except ImportError:
        return None
    return decode_rle


def read_label_studio(path: Path, decode: Callable[[list[int]], np.ndarray] = decode_brush) -> Masks:
    tasks = json.loads(path.read_text())
    config = ET.fromstring((path.parent / "label_config.xml").read_text())
    brush = config.find("BrushLabels")
    assert [lab.get("value") for lab in brush.findall("Label")] == CLASSES[1:]
    out: Masks = {}
    for task in tasks:
        (prediction,) = task["predictions"]
        assert prediction["model_version"] == "wsss" and 0 <= prediction["score"] <= 1
        masks = out.setdefault(task["data"]["wsss_id"], {})
        for r in prediction["result"]:
            assert r["type"] == "brushlabels" and r["value"]["format"] == "rle"
            assert r["from_name"] == brush.get("name") and r["to_name"] == brush.get("toName")
            h, w = r["original_height"], r["original_width"]
            rgba = decode(r["value"]["rle"]).reshape(h, w, 4)
            assert (rgba == rgba[..., :1]).all()  # all four channels carry the mask
            c = CLASSES.index(r["value"]["brushlabels"][0])
            masks[c] = masks.get(c, np.zeros((h, w), bool)) | (rgba[..., 3] > 0)
    return out


def read_output(fmt: str, out: Path, labels: dict[str, np.ndarray]) -> Masks:
    if fmt in ("coco_rle", "coco_polygons", "cvat"):
        return read_coco(out)
    if fmt == "voc":
        return read_voc(out)
    if fmt == "yolo":
        return read_yolo(out, labels)
    if fmt == "label_studio":
        return read_label_studio(out)
    raise AssertionError(f"no reader for {fmt}: add one to tests/test_export.py")


# how closely each format reproduces the masks: exact, or a minimum IoU per class and image (cvat simplifies
# outlines by 1 px: a radius-4 disc keeps IoU 0.89)
MIN_IOU = {"coco_rle": 1.0, "voc": 1.0, "label_studio": 1.0, "coco_polygons": 1.0, "cvat": 0.85, "yolo": 1.0}


def test_every_registered_format_has_a_reader_and_a_tolerance() -> None:
    assert EXPORTERS.names() == FORMATS == sorted(MIN_IOU)


@pytest.mark.parametrize("fmt", FORMATS)
def test_format_round_trips_the_masks(fmt: str, pseudo: tuple[Path, dict], tmp_path: Path) -> None:
    root, labels = pseudo
    counts = export(root, fmt, class_names=CLASSES, image_files=_images(tmp_path, labels), progress=False)
    assert counts["images"] == 4 and counts["skipped"] == ["broken", "gone"]
    out = Path(counts["out"])
    assert out.exists() and out.is_relative_to(root)  # the default place is under the pseudo dir
    got = read_output(fmt, out, labels)
    assert sorted(got) == sorted(labels)  # failed and missing images left out, the others all there
    for image_id, label in labels.items():
        exported = got[image_id]
        for c in (1, 2):
            truth = label == c
            mask = exported.get(c, np.zeros_like(truth))
            if MIN_IOU[fmt] == 1.0:
                np.testing.assert_array_equal(mask, truth, err_msg=f"{fmt} {image_id} class {c}")
            else:
                assert iou(mask, truth) >= MIN_IOU[fmt], (fmt, image_id, c, iou(mask, truth))
        if fmt != "voc":  # uncertain pixels are exported as nothing (VOC keeps them as its 255 "void")
            covered = np.logical_or.reduce([m for c, m in exported.items() if c != 255] or [np.zeros_like(label, bool)])
            if MIN_IOU[fmt] == 1.0:
                assert not (covered & (label == 255)).any(), (fmt, image_id)
            assert not exported.get(255, np.zeros(1, bool)).any()
    if fmt == "voc":
        np.testing.assert_array_equal(got["im_a"][255], labels["im_a"] == 255)


@pytest.mark.parametrize("fmt", ["coco_rle", "coco_polygons", "label_studio"])
def test_per_component_gives_one_annotation_per_component(fmt: str, pseudo: tuple[Path, dict]) -> None:
    root, labels = pseudo
    whole = export(root, fmt, root / f"whole_{fmt}.json", CLASSES, progress=False)
    parts = export(root, fmt, root / f"parts_{fmt}.json", CLASSES, per_component=True, progress=False)
    # im_a: class 1 (one part) + class 2 (two parts); im_b: 1 + 1; im_c: none; im_d: 1
    assert whole["annotations"] == 2 + 2 + 0 + 1 and parts["annotations"] == 3 + 2 + 0 + 1
    reader = read_label_studio if fmt == "label_studio" else read_coco
    for image_id, masks in reader(Path(parts["out"])).items():
        for c, m in masks.items():
            np.testing.assert_array_equal(m, labels[image_id] == c)


def test_polygons_are_exact_pixel_outlines_for_pycocotools() -> None:
    """Random masks (1-px features, holes, diagonal contacts): polygons rasterise back to the same pixels."""
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(0)
    for t in range(60):
        h, w = (int(v) for v in rng.integers(6, 40, 2))
        m = rng.random((h, w)) < rng.uniform(0.2, 0.8)
        if t % 2:
            m = cv2.GaussianBlur(m.astype(np.float32), (0, 0), 1.5) > 0.5
        if not m.any():
            continue
        polys = component_polygons(m, min_pixels=0)
        rle = mask_utils.merge(mask_utils.frPyObjects([p.ravel().tolist() for p in polys], h, w))
        np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool), m, err_msg=f"mask {t}")


def test_polygon_options_drop_specks_and_simplify() -> None:
    from pycocotools import mask as mask_utils

    disc = np.zeros((60, 60), np.uint8)
    cv2.circle(disc, (30, 30), 20, 1, -1)
    m = disc.astype(bool)
    m[2:4, 2] = True  # a 2-px speck
    assert len(component_polygons(m)) == 1 and len(component_polygons(m, min_pixels=0)) == 2
    exact, simple = component_polygons(m)[0], component_polygons(m, tolerance=1.0)[0]
    assert len(simple) < len(exact) / 2
    back = mask_utils.decode(mask_utils.frPyObjects([simple.ravel().tolist()], 60, 60))[..., 0].astype(bool)
    assert iou(back, disc.astype(bool)) > 0.95


def test_yolo_split_images_and_options(pseudo: tuple[Path, dict], tmp_path: Path) -> None:
    root, labels = pseudo
    files = _images(tmp_path, labels)
    out = tmp_path / "yolo"
    counts = export(root, "yolo", out, CLASSES, image_files=files, val_fraction=0.5, seed=1, progress=False)
    assert counts["train"] + counts["val"] == 4 and counts["images_missing"] == 0
    parsed = parse_yolo(out)
    for image_id, (split, _) in parsed.items():
        assert split == split_of(image_id, 1, 0.5)
        img = out / "images" / split / f"{image_id}.png"
        assert img.is_symlink() and img.resolve() == files[image_id].resolve()
    assert parsed["im_c"][1] == []  # uncertain only: an empty label file, a background image
    # the same seed gives the same split; the split of an id does not depend on the other ids
    assert [split_of(f"x{i}", 1, 0.5) for i in range(50)] == [split_of(f"x{i}", 1, 0.5) for i in range(50)]
    assert 10 < sum(split_of(f"x{i}", 3, 0.3) == "val" for i in range(200)) < 110
    assert [split_of(f"x{i}", 1, 0.5) for i in range(50)] != [split_of(f"x{i}", 2, 0.5) for i in range(50)]
    # another seed moves images between splits without leaving stale copies; copy mode writes real files
    export(root, "yolo", out, CLASSES, image_files=files, val_fraction=0.5, seed=2, images="copy", progress=False)
    for image_id, (split, _) in parse_yolo(out).items():
        other = "val" if split == "train" else "train"
        assert not (out / "images" / other / f"{image_id}.png").exists()
        assert not (out / "labels" / other / f"{image_id}.txt").exists()
        assert (out / "images" / split / f"{image_id}.png").is_file()
        assert not (out / "images" / split / f"{image_id}.png").is_symlink()


def test_yolo_polygons_as_ultralytics_rasterises_them(pseudo: tuple[Path, dict]) -> None:
    """Ultralytics' int-coordinate fillPoly overfills by one pixel row / column: close on objects of some size."""
    root, labels = pseudo
    counts = export(root, "yolo", None, CLASSES, progress=False)
    parsed = parse_yolo(Path(counts["out"]))
    for image_id, c in (("im_a", 1), ("im_b", 1), ("im_d", 2)):  # not the radius-4 disc: 1 px is a lot there
        mask = rasterise_yolo(parsed[image_id][1], *labels[image_id].shape, ultralytics=True)[c]
        assert iou(mask, labels[image_id] == c) > 0.8, (image_id, c)


def test_label_studio_rle_matches_label_studio_converter(pseudo: tuple[Path, dict]) -> None:
    """label-studio-converter (the dev extra) decodes our RLE to the same masks as the test's own decoder."""
    decode = reference_decoder()
    if decode is None:
        pytest.skip("label-studio-converter is not installed (pip install -e '.[dev]')")
    root, labels = pseudo
    counts = export(root, "label_studio", None, CLASSES, per_component=True, url_prefix="/data/local-files/?d=",
                    progress=False)
    tasks = json.loads(Path(counts["out"]).read_text())
    assert tasks[0]["data"]["image"] == "/data/local-files/?d=im_a.jpg"
    assert tasks[0]["predictions"][0]["score"] == 0.42 and tasks[1]["predictions"][0]["score"] == 0.7
    for image_id, masks in read_label_studio(Path(counts["out"]), decode).items():
        for c in (1, 2):
            np.testing.assert_array_equal(masks.get(c, np.zeros_like(labels[image_id], bool)), labels[image_id] == c)


def test_brush_rle_long_runs_and_edge_cases() -> None:
    """Runs longer than the 16-bit run field, all-empty and all-full masks; the library's decoder agrees."""
    from wsss.exporters.label_studio import brush_mask, decode_brush_rle

    for m in (np.zeros((300, 300), bool), np.ones((300, 300), bool), np.eye(7, dtype=bool)):
        flat = decode_brush(brush_rle(m))
        assert flat.size == m.size * 4
        np.testing.assert_array_equal(flat.reshape(*m.shape, 4)[..., 3] > 0, m)
        np.testing.assert_array_equal(decode_brush_rle(brush_rle(m)), flat)
        np.testing.assert_array_equal(brush_mask(brush_rle(m), *m.shape), m)
        decode = reference_decoder()
        if decode is not None:
            np.testing.assert_array_equal(decode(brush_rle(m)), flat)
    # a literal block (flag 0: eight values follow one by one), which Label Studio's own encoder writes for
    # runs of length 1, then a repeat block
    values = [0, 255, 255, 0, 255, 0, 0, 255]
    stream = f"{12:032b}{7:05b}0010001101111111" + "0" + "00" + "111" + "".join(f"{v:08b}" for v in values)
    stream += "1" + "00" + "011" + f"{255:08b}"
    stream += "0" * (-len(stream) % 8)
    rle = [int(stream[i:i + 8], 2) for i in range(0, len(stream), 8)]
    np.testing.assert_array_equal(decode_brush_rle(rle), values + [255] * 4)
    np.testing.assert_array_equal(decode_brush(rle), values + [255] * 4)


def test_registry_is_complete_after_importing_the_package_alone() -> None:
    code = ("import sys, json, wsss.exporters as e; "
            "print(json.dumps([e.EXPORTERS.names(), [m for m in ('torch', 'cv2', 'pycocotools') if m in sys.modules]]))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60,
                         env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr
    names, heavy = json.loads(run.stdout.strip().splitlines()[-1])
    assert names == FORMATS and heavy == []
    for name in FORMATS:
        exporter = build_exporter(name)
        assert exporter.name == name and exporter.default_out


def test_unknown_format_and_option_errors_name_the_choices(pseudo: tuple[Path, dict]) -> None:
    root, _ = pseudo
    with pytest.raises(ValueError, match="unknown export format 'yolov8'. Did you mean 'yolo'") as e:
        export(root, "yolov8", class_names=CLASSES)
    assert all(name in str(e.value) for name in FORMATS)
    with pytest.raises(ValueError, match="no option 'val_frac'. Did you mean 'val_fraction'"):
        export(root, "yolo", class_names=CLASSES, val_frac=0.1)
    with pytest.raises(ValueError, match=r"export.yolo.images = 'link': choose one of 'symlink', 'copy', 'none'"):
        build_exporter("yolo", images="link")
    with pytest.raises(ValueError, match="export.cvat.tolerance = 'x': expected float"):
        build_exporter("cvat", tolerance="x")
    with pytest.raises(ValueError, match="no class names recorded there; pass class_names"):
        export(root, "voc")
    with pytest.raises(ValueError, match="label map of im_a holds class 2 but only 2 class names"):
        export(root, "coco_rle", class_names=CLASSES[:2], progress=False)
    with pytest.raises(FileNotFoundError, match="manifest.jsonl is missing"):
        export(root / "nowhere", "voc", class_names=CLASSES)


def test_class_names_default_to_the_pseudo_dir_record(pseudo: tuple[Path, dict]) -> None:
    root, _ = pseudo
    (root / "stage_config.yaml").write_text(yaml.safe_dump({"masks": {"name": "x"}, "class_names": CLASSES}))
    assert export(root, "coco_rle", progress=False)["images"] == 4


def test_items_carry_scores_and_file_names(pseudo: tuple[Path, dict]) -> None:
    root, _ = pseudo
    items = read_items(root, {"im_a": "sub/im_a.jpg"})
    got = {i.image_id: i for i in items}
    assert len(items) == 6 and items.skipped == ["broken", "gone"]
    assert got["im_a"].file_name == "sub/im_a.jpg" and got["im_b"].file_name == "im_b.jpg"
    assert got["im_a"].score == 0.42 and got["im_b"].score == pytest.approx(0.7)  # quality, else mean score
    assert (got["im_b"].width, got["im_b"].height) == (44, 36)


# ---------------------------------------------------------------------------------------------------------------
# corrected labels back in

@pytest.mark.parametrize("fmt", ["coco_polygons", "coco_rle", "cvat"])
def test_import_round_trips_an_export(fmt: str, pseudo: tuple[Path, dict], tmp_path: Path) -> None:
    root, labels = pseudo
    counts = export(root, fmt, None, CLASSES, progress=False)
    out = tmp_path / "fixed"
    imported = import_coco(counts["out"], out, CLASSES, progress=False)
    assert imported["images"] == 4 and imported["no_mask"] == 0
    records = read_manifest(out / "manifest.jsonl")
    assert sorted(records) == sorted(labels) and all(r["status"] == "ok" for r in records.values())
    for image_id, label in labels.items():
        back = read_label_png(out / "labels" / f"{image_id}.png")
        expected = np.where(label == 255, 0, label)  # checked by a person: nothing is uncertain any more
        if fmt == "cvat":  # simplified outlines
            assert all(iou(back == c, expected == c) > 0.85 for c in (1, 2) if (expected == c).any())
        else:
            np.testing.assert_array_equal(back, expected)
    # the folder is a pseudo dir again: it exports (class names recorded by the import)
    assert export(out, "coco_rle", progress=False)["images"] == 4


def _coco(tmp_path: Path, annotations: list[dict], categories: list[dict] | None = None,
          images: list[dict] | None = None) -> Path:
    path = tmp_path / "fixed.json"
    path.write_text(json.dumps({
        "images": images or [{"id": 7, "file_name": "frames/cju0001.jpg", "height": 20, "width": 30}],
        "annotations": [a | {"id": i + 1, "image_id": a.get("image_id", 7), "iscrowd": 0} for i, a in enumerate(annotations)],
        "categories": categories or [{"id": 1, "name": "Polyp"}, {"id": 2, "name": "tool"}, {"id": 3, "name": "unused"}]}))
    return path


def test_import_cvat_style_json_overlaps_and_uncompressed_rle(tmp_path: Path) -> None:
    """Polygons and uncompressed RLE (CVAT writes masks so), overlap painted smaller-on-top, id from file_name."""
    from pycocotools import mask as mask_utils

    small = np.zeros((20, 30), np.uint8)
    small[5:10, 5:10] = 1
    counts, value, run = [], 0, 0  # uncompressed RLE, column-major, starting with a background run
    for v in np.asfortranarray(small).ravel(order="F"):
        if v != value:
            counts.append(run)
            value, run = v, 0
        run += 1
    counts.append(run)
    assert mask_utils.decode(mask_utils.frPyObjects({"size": [20, 30], "counts": counts}, 20, 30)).sum() == 25
    path = _coco(tmp_path, [
        {"category_id": 2, "segmentation": {"size": [20, 30], "counts": counts}},  # small, listed first
        {"category_id": 1, "segmentation": [[0, 0, 20, 0, 20, 15, 0, 15]]},  # large, under it
        {"category_id": 1, "segmentation": [], "bbox": [1, 1, 2, 2]},  # a box only: no mask
    ])
    out = tmp_path / "out"
    result = import_coco(path, out, ["background", "polyp", "tool"], progress=False)
    assert result["images"] == 1 and result["annotations"] == 2 and result["no_mask"] == 1
    assert result["unused_categories"] == ["unused"]
    label = read_label_png(out / "labels" / "cju0001.png")
    assert (label[5:10, 5:10] == 2).all()  # the smaller annotation wins the overlap
    assert (label[0:15, 0:20][small[0:15, 0:20] == 0] == 1).all() and (label[15:, :] == 0).all()
    record = read_manifest(out / "manifest.jsonl")["cju0001"]
    assert record["status"] == "ok" and record["label"] == "labels/cju0001.png" and record["classes"] == [1, 2]


def test_import_merges_into_an_existing_pseudo_dir(pseudo: tuple[Path, dict], tmp_path: Path) -> None:
    root, labels = pseudo
    path = _coco(tmp_path, [{"category_id": 1, "segmentation": [[0, 0, 4, 0, 4, 4, 0, 4]]}],
                 images=[{"id": 7, "file_name": "x/im_b.jpg", "height": 36, "width": 44}])
    import_coco(path, root, CLASSES, progress=False)
    records = read_manifest(root / "manifest.jsonl")
    assert records["im_b"]["source"] == "import_coco:fixed.json" and records["broken"]["status"] == "error"
    assert read_label_png(root / "labels" / "im_b.png").sum() == 16
    np.testing.assert_array_equal(read_label_png(root / "labels" / "im_a.png"), labels["im_a"])


def test_import_errors_name_the_json_and_the_problem(tmp_path: Path) -> None:
    path = _coco(tmp_path, [{"category_id": 3, "segmentation": [[0, 0, 4, 0, 4, 4]]}])
    with pytest.raises(ValueError, match=r"fixed.json: category 'unused' \(id 3\) is not one of the classes"):
        import_coco(path, tmp_path / "out", CLASSES, progress=False)
    images = [{"id": 1, "file_name": "a/x.jpg", "height": 4, "width": 4}, {"id": 2, "file_name": "b/x.png", "height": 4,
                                                                            "width": 4}]
    with pytest.raises(ValueError, match="give the same label name 'x'"):
        import_coco(_coco(tmp_path, [], images=images), tmp_path / "out", CLASSES, progress=False)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="bad.json: not valid JSON"):
        import_coco(tmp_path / "bad.json", tmp_path / "out", CLASSES)


def _as_label_studio_export(tasks: list[dict]) -> list[dict]:
    """What Label Studio's JSON export looks like after people accepted (and edited) the predictions."""
    out = []
    for k, task in enumerate(tasks):
        result = [dict(r, origin="manual") for r in task["predictions"][0]["result"]]
        out.append(task | {"id": k + 1, "annotations": [
            {"id": 1, "result": [], "was_cancelled": True, "updated_at": "2030-01-01T00:00:00Z"},  # skipped
            {"id": 2, "result": result, "was_cancelled": False, "updated_at": "2026-01-02T10:00:00Z"}]})
    return out


def test_import_label_studio_round_trips_brush_masks(pseudo: tuple[Path, dict], tmp_path: Path) -> None:
    from wsss.exporters.imports import import_labels

    root, labels = pseudo
    counts = export(root, "label_studio", None, CLASSES, per_component=True, progress=False)
    tasks = _as_label_studio_export(json.loads(Path(counts["out"]).read_text()))
    tasks.append({"id": 99, "data": {"image": "/data/upload/3/0a1b2c3d-extra.jpg"}, "annotations": [],
                  "predictions": []})  # nobody looked at it: not imported
    path = tmp_path / "ls_export.json"
    path.write_text(json.dumps(tasks))
    out = tmp_path / "fixed"
    result = import_labels(path, out, CLASSES, progress=False)
    assert result["format"] == "label_studio" and result["images"] == 4 and result["unreviewed"] == 1
    for image_id, label in labels.items():
        np.testing.assert_array_equal(read_label_png(out / "labels" / f"{image_id}.png"), np.where(label == 255, 0, label))
    assert read_manifest(out / "manifest.jsonl")["im_c"]["classes"] == []


def test_import_label_studio_polygons_ids_and_errors(tmp_path: Path) -> None:
    from wsss.exporters.import_label_studio import import_label_studio, task_image_id

    assert task_image_id({"data": {"image": "/data/upload/3/0a1b2c3d-cju0001.jpg"}}) == "cju0001"
    assert task_image_id({"data": {"image": "/data/local-files/?d=Kvasir/images/cju0002.jpg"}}) == "cju0002"
    assert task_image_id({"data": {"image": "https://host/x/cju0003.png?sig=1", "wsss_id": "w"}}) == "w"
    polygon = {"type": "polygonlabels", "original_width": 40, "original_height": 20,
               "value": {"points": [[25, 25], [75, 25], [75, 75], [25, 75]], "polygonlabels": ["tool"]}}
    box = {"type": "rectanglelabels", "original_width": 40, "original_height": 20,
           "value": {"x": 0, "y": 0, "width": 10, "height": 10, "rectanglelabels": ["polyp"]}}
    tasks = [{"id": 1, "data": {"image": "/data/local-files/?d=im/p1.jpg"}, "annotations": [{"result": [polygon, box]}]},
             {"id": 2, "data": {"image": "p2.jpg", "width": 8, "height": 6}, "annotations": [{"result": []}]}]
    path = tmp_path / "ls.json"
    path.write_text(json.dumps(tasks))
    counts = import_label_studio(path, tmp_path / "out", CLASSES, progress=False)
    assert counts["images"] == 2 and counts["no_mask"] == 1
    label = read_label_png(tmp_path / "out" / "labels" / "p1.png")
    assert label.shape == (20, 40) and (label[5:15, 10:30] == 2).all() and label.sum() == 2 * 200
    assert read_label_png(tmp_path / "out" / "labels" / "p2.png").shape == (6, 8)  # erased: all background
    polygon["value"]["polygonlabels"] = ["cat"]
    path.write_text(json.dumps(tasks))
    with pytest.raises(ValueError, match="ls.json: label 'cat' is not one of the classes"):
        import_label_studio(path, tmp_path / "out", CLASSES, progress=False)


# ---------------------------------------------------------------------------------------------------------------
# the command-line tools

def _tool(*args: str | Path, timeout: int = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": "/tmp"})


def test_export_and_import_tools_on_a_kvasir_config(tmp_path: Path) -> None:
    """tools/export.py (yolo, coco_polygons) and tools/import_labels.py; the import is a drop-in labels_dir."""
    root = make_kvasir(tmp_path / "Kvasir-SEG", n=3)
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump({"device": "cpu", "data": {"name": "kvasir_seg", "split": "all",
                                                                  "kvasir_seg": {"root": str(root)}}}))
    work = tmp_path / "work"
    writer = ManifestWriter(work / "pseudo" / "manifest.jsonl")
    for i in range(3):
        m = np.zeros((48, 56), np.uint8)
        m[10:20, 10:30] = 1
        write_label_png(work / "pseudo" / "labels" / f"cju{i:04d}.png", m)
        writer.append({"image": f"cju{i:04d}", "status": "ok", "label": f"labels/cju{i:04d}.png"})
    writer.close()

    run = _tool(REPO / "tools" / "export.py", cfg_path, "--work-dir", work, "--format", "yolo",
                "--option", "val_fraction=0.5", "seed=4")
    assert run.returncode == 0, run.stderr[-2000:]
    parsed = parse_yolo(work / "pseudo" / "yolo", ["background", "polyp"])
    assert sorted(parsed) == [f"cju{i:04d}" for i in range(3)]
    for image_id, (split, polys) in parsed.items():
        assert split == split_of(image_id, 4, 0.5)
        assert (work / "pseudo" / "yolo" / "images" / split / f"{image_id}.jpg").resolve() == \
            (root / "images" / f"{image_id}.jpg").resolve()
        (cls, xy), = polys
        assert cls == 0 and np.allclose(sorted(map(tuple, xy * (56, 48))), [(10, 10), (10, 20), (30, 10), (30, 20)])
    assert "3 images (train" in run.stdout

    coco = tmp_path / "fixed" / "coco.json"
    run = _tool(REPO / "tools" / "export.py", cfg_path, "--work-dir", work, "--format", "coco_polygons",
                "--relative-to", root, "--out", coco)
    assert run.returncode == 0, run.stderr[-2000:]
    data = json.loads(coco.read_text())
    assert [i["file_name"] for i in data["images"]] == [f"images/cju{i:04d}.jpg" for i in range(3)]
    assert all(a["area"] == 200 and a["bbox"] == [10, 10, 20, 10] for a in data["annotations"])
    for im in data["images"]:  # as CVAT exports it: no wsss_id, the id comes from the file name
        del im["wsss_id"]
    coco.write_text(json.dumps(data))

    fixed = tmp_path / "fixed" / "pseudo"
    run = _tool(REPO / "tools" / "import_labels.py", coco, fixed, "--classes-from", cfg_path)
    assert run.returncode == 0, run.stderr[-2000:]
    for i in range(3):
        np.testing.assert_array_equal(read_label_png(fixed / "labels" / f"cju{i:04d}.png"),
                                      read_label_png(work / "pseudo" / "labels" / f"cju{i:04d}.png"))
    from wsss.config import load_config
    from wsss.data import build_dataset
    from wsss.train.data import PseudoLabelSet

    dataset = build_dataset(load_config(cfg_path).data, "all")
    train_set = PseudoLabelSet(dataset, fixed / "labels", crop=32, scale=(1.0, 1.0), mean=(0.5,) * 3, std=(0.5,) * 3,
                               seed=0)
    assert train_set.ids == dataset.ids
    _, target = train_set[0]
    assert tuple(target.shape) == (32, 32)

    run = _tool(REPO / "tools" / "import_labels.py", coco, fixed, "--classes", "background,cat")
    assert run.returncode == 1 and "error: " in run.stderr and "category 'polyp' (id 1)" in run.stderr


def test_export_tool_help_is_fast_and_errors_are_one_line(tmp_path: Path) -> None:
    code = ("import runpy, sys; sys.argv = ['export.py', '--help']\n"
            "try:\n    runpy.run_path(%r, run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "print([m for m in ('torch', 'cv2', 'pycocotools') if m in sys.modules])")
    run = _tool("-c", code % str(REPO / "tools" / "export.py"), timeout=60)
    assert run.returncode == 0, run.stderr
    assert "--format" in run.stdout and run.stdout.strip().splitlines()[-1] == "[]"
    run = _tool(REPO / "tools" / "export.py", tmp_path / "cfg.yaml", "--format", "nope", timeout=60)
    assert run.returncode == 2 and "invalid choice: 'nope'" in run.stderr and "yolo" in run.stderr
