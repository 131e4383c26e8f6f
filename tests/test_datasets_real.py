"""Each real-data reader on a miniature copy of its layout: ids, labels, masks, boxes, layout errors."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests._mini_layouts import make_class_folders, make_coco, make_kvasir, make_voc
from wsss.config import load_config
from wsss.data import build_dataset, read_gt
from wsss.evaluation import evaluate_label_dir
from wsss.utils.io import read_label_png, write_label_png

REPO = Path(__file__).resolve().parents[1]


def _data(name: str, root: Path, split: str, extra: list[str] = ()) -> object:
    cfg = load_config(REPO / "configs" / "quickstart.yaml", [f"data.name={name}", f"data.{name}.root={root}", *extra])
    return build_dataset(cfg.data, split)


# --- VOC ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("root_level", ["parent", "VOCdevkit", "VOC2012"])
def test_voc_reads_splits_masks_labels_and_boxes(tmp_path: Path, root_level: str) -> None:
    voc = make_voc(tmp_path)
    root = {"parent": tmp_path, "VOCdevkit": tmp_path / "VOCdevkit", "VOC2012": voc}[root_level]
    ds = _data("voc", root, "train")
    assert len(ds.class_names) == 21 and ds.ids == ["2007_000000", "2007_000001"]
    s = ds.load("2007_000001")
    assert s.image.shape == (40, 48, 3) and s.mask.shape == (40, 48)
    assert s.labels == sorted({2, 9}) == ds.labels("2007_000001")
    assert [(b.cls, b.as_list()) for b in s.boxes] == [(2, [4, 4, 20, 20]), (9, [26, 22, 44, 36])]
    assert (s.mask[5:19, 5:19] == 2).all() and (s.mask[20, 4:20] == 255).all()


def test_voc_train_aug_uses_segmentation_class_aug_and_xml_labels(tmp_path: Path) -> None:
    voc = make_voc(tmp_path)
    shutil.rmtree(voc / "SegmentationClass")
    ds = _data("voc", tmp_path, "train_aug")
    assert len(ds.ids) == 4 and "SegmentationClassAug" in ds.mask_path(ds.ids[0])
    np.testing.assert_array_equal(read_gt(ds, ds.ids[0]), read_label_png(ds.mask_path(ds.ids[0])))
    xml = _data("voc", tmp_path, "train_aug", ["data.voc.labels_from=xml", "data.voc.skip_difficult=true"])
    assert xml.labels(xml.ids[0]) == [1]  # the second object is marked difficult


@pytest.mark.parametrize("missing", ["JPEGImages", "SegmentationClass", "ImageSets/Segmentation/val.txt"])
def test_voc_names_the_missing_folder_or_file(tmp_path: Path, missing: str) -> None:
    voc = make_voc(tmp_path)
    target = voc / missing
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(FileNotFoundError, match=missing.split("/")[-1]):
        _data("voc", tmp_path, "val")



def test_voc_honours_its_own_classes_txt(tmp_path: Path) -> None:
    voc = make_voc(tmp_path)
    mine = ["background"] + [f"part{i}" for i in range(1, 21)]
    (voc / "classes.txt").write_text("\n".join(mine) + "\n")
    assert _data("voc", tmp_path, "train").class_names == mine  # not aeroplane, bicycle, ...
    (voc / "classes.txt").write_text("background\npolyp\n")
    ds = _data("voc", tmp_path, "train")
    assert ds.class_names == ["background", "polyp"]
    with pytest.raises(ValueError, match="SegmentationClass.*are not class indices"):  # masks hold classes 2..20
        read_gt(ds, ds.ids[0])


@pytest.mark.parametrize("missing", ["SegmentationClassAug", "ImageSets/Segmentation/train_aug.txt"])
def test_voc_train_aug_missing_suggests_split_train(tmp_path: Path, missing: str) -> None:
    voc = make_voc(tmp_path)
    target = voc / missing
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(FileNotFoundError, match=rf"{missing.split('/')[-1]}.*--set data\.split=train"):
        _data("voc", tmp_path, "train_aug")
    assert _data("voc", tmp_path, "train").ids  # the suggested split works


# --- COCO --------------------------------------------------------------------------------------------------------
def test_coco_semantic_masks_contiguous_ids_crowd_ignore_and_cache(tmp_path: Path) -> None:
    root = make_coco(tmp_path / "coco")
    cache = tmp_path / "cache"
    ds = _data("coco", root, "val", [f"data.coco.cache_dir={cache}"])
    assert ds.class_names == ["background", "person", "car", "toothbrush"]
    assert ds.ids == [f"COCO_val2014_{i:012d}" for i in (1, 2, 3)]
    s = ds.load(ds.ids[1])
    # car (cat 3 -> 2) fills the top-left square; the smaller person (cat 1 -> 1) is drawn over it
    assert (s.mask[1:31, 1:7] == 2).all() and (s.mask[9:15, 9:15] == 1).all()
    assert (s.mask[21:39, 41:59] == 255).all()  # the crowd toothbrush region is ignored
    assert s.labels == [1, 2] and {b.cls for b in s.boxes} == {1, 2}
    assert ds.labels(ds.ids[0]) == [1, 3] and ds.labels(ds.ids[2]) == []
    cached = sorted(p.name for p in cache.rglob("*.png"))
    assert cached == [f"{ds.ids[1]}.png"]  # converted on demand, one PNG per image
    stamp_dir = next(cache.iterdir())
    before = (stamp_dir / cached[0]).stat().st_mtime_ns
    again = _data("coco", root, "val", [f"data.coco.cache_dir={cache}"])
    np.testing.assert_array_equal(again.gt(ds.ids[1]), s.mask)
    assert (stamp_dir / cached[0]).stat().st_mtime_ns == before  # reused, not redrawn


def test_coco_missing_annotation_file_is_named(tmp_path: Path) -> None:
    root = make_coco(tmp_path / "coco")
    with pytest.raises(FileNotFoundError, match="instances_train2014.json"):
        _data("coco", root, "train")


# --- Kvasir ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["kvasir_seg", "kvasir_instrument"])
def test_kvasir_binarises_masks_and_gives_boxes(tmp_path: Path, variant: str) -> None:
    if variant == "kvasir_seg":
        root = make_kvasir(tmp_path / "Kvasir-SEG")
        split, extra = "all", []
    else:
        root = make_kvasir(tmp_path / "kvasir-instrument", masks_suffix=".png", bboxes="bboxes.json")
        (root / "train.txt").write_text("cju0000\ncju0002\n")
        split, extra = "train", []
    ds = _data(variant, root, split, extra)
    assert len(ds.class_names) == 2
    assert ds.ids == (["cju0000", "cju0002"] if variant == "kvasir_instrument" else [f"cju{i:04d}" for i in range(5)])
    s = ds.load("cju0002")
    assert set(np.unique(s.mask)) == {0, 1}  # JPEG noise is gone after the > 127 threshold
    assert abs(int(s.mask.sum()) - 20 * 24) <= 24
    assert s.labels == [1] and [b.as_list() for b in s.boxes] == [[7, 8, 31, 28]]


def test_kvasir_holdout_split_is_disjoint_and_deterministic(tmp_path: Path) -> None:
    root = make_kvasir(tmp_path / "Kvasir-SEG", n=10)
    train, val = _data("kvasir_seg", root, "train"), _data("kvasir_seg", root, "val")
    assert len(val.ids) == 2 and not set(train.ids) & set(val.ids) and len(train.ids) == 8
    assert _data("kvasir_seg", root, "val").ids == val.ids


def test_kvasir_evaluation_reads_jpeg_ground_truth(tmp_path: Path) -> None:
    root = make_kvasir(tmp_path / "Kvasir-SEG")
    ds = _data("kvasir_seg", root, "all")
    pred_dir = tmp_path / "pred"
    for image_id in ds.ids:
        write_label_png(pred_dir / f"{image_id}.png", ds.gt(image_id))
    assert ds.mask_path(ds.ids[0]).endswith(".jpg")
    m = evaluate_label_dir(pred_dir, ds)
    assert m["mIoU"] == pytest.approx(1.0) and m["missing"] == 0


# --- classification folders and labels CSV ------------------------------------------------------------------------
def test_class_folders_labels_from_folder_names(tmp_path: Path) -> None:
    root = make_class_folders(tmp_path / "GastroVision")
    train, val = _data("class_folders", root, "train"), _data("class_folders", root, "val")
    assert train.class_names == ["background", "Colon polyps", "Normal mucosa"]
    assert len(train.ids) == 8 and len(val.ids) == 2 and not set(train.ids) & set(val.ids)
    s = train.load(train.ids[0])
    assert s.mask is None and s.labels == [int(train.ids[0].startswith("Normal")) + 1]
    assert train.mask_path(train.ids[0]) is None and read_gt(train, train.ids[0]) is None


@pytest.mark.parametrize("form", ["names", "one_hot"])
def test_folder_reads_labels_csv(tmp_path: Path, form: str) -> None:
    root = make_class_folders(tmp_path / "flat", classes=("images",), per_class=3)
    (root / "classes.txt").write_text("background\ncat\ndog\n")
    if form == "names":
        text = "image,labels\nimg0.jpg,cat;dog\nimg1,dog\nimg2.jpg,\n"
    else:
        text = "image,cat,dog\nimg0.jpg,1,1\nimg1,0,1\nimg2.jpg,0,0\n"
    (root / "labels.csv").write_text(text)
    ds = _data("folder", root, "train", ["data.folder.labels_file=labels.csv"])
    assert [ds.labels(i) for i in ds.ids] == [[1, 2], [2], []]
    (root / "labels.csv").write_text(text.replace("dog", "dgo"))
    with pytest.raises(ValueError, match="labels.csv"):
        _data("folder", root, "train", ["data.folder.labels_file=labels.csv"])



def _binary_folder(root: Path, classes: str, mask: np.ndarray) -> object:
    from PIL import Image

    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    Image.fromarray(np.zeros((*mask.shape, 3), np.uint8)).save(root / "images" / "a.png")
    Image.fromarray(mask, mode="L").save(root / "masks" / "a.png")
    (root / "classes.txt").write_text(classes)
    return _data("folder", root, "all")


def test_folder_reads_0_255_masks_as_binary_for_two_classes(tmp_path: Path) -> None:
    mask = np.zeros((8, 8), np.uint8)
    mask[2:6, 2:6] = 255  # as Kvasir-SEG and most binary tools save them
    ds = _binary_folder(tmp_path / "two", "background\npolyp\n", mask)
    s = ds.load("a")
    assert (s.mask == (mask > 0)).all() and s.labels == [1]  # foreground, not all-ignore
    assert (read_gt(ds, "a") == s.mask).all()
    mask[0, 0] = 1  # a 0/1/255 mask: 255 keeps meaning ignore
    ds = _binary_folder(tmp_path / "mixed", "background\npolyp\n", mask)
    assert ds.gt("a")[3, 3] == 255 and ds.gt("a")[0, 0] == 1


def test_folder_rejects_0_255_masks_in_a_multi_class_set(tmp_path: Path) -> None:
    mask = np.zeros((8, 8), np.uint8)
    mask[2:6, 2:6] = 255
    ds = _binary_folder(tmp_path / "three", "background\ncat\ndog\n", mask)
    with pytest.raises(ValueError, match=r"mask .*a\.png holds only 0 and 255.*two-class set.*255 means ignore"):
        ds.load("a")


# --- the shipped configs ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("config", ["voc_grabcut_cam", "coco_grabcut_cam", "kvasir_seg_grabcut_box",
                                    "kvasir_instrument_grabcut_box", "gastrovision_cam"])
def test_shipped_configs_validate(config: str) -> None:
    cfg = load_config(REPO / "configs" / f"{config}.yaml")
    assert cfg.data.name in ("voc", "coco", "kvasir_seg", "kvasir_instrument", "class_folders")
    if cfg.classifier.name == "imagenet_lite0":
        from wsss.classifier import imagenet_categories

        known = set(imagenet_categories())
        assert all(w in known for names in cfg.classifier.imagenet_lite0.class_map.values() for w in names)


def test_kvasir_config_runs_stage_one_and_scores(tmp_path: Path) -> None:
    from wsss.runner import gen_pseudo, score_pseudo

    root = make_kvasir(tmp_path / "Kvasir-SEG", n=4)
    cfg = load_config(REPO / "configs" / "kvasir_seg_grabcut_box.yaml",
                      [f"data.kvasir_seg.root={root}", "data.split=all", "device=cpu", "pseudo.overlays=1"])
    out_dir, records = gen_pseudo(cfg, tmp_path / "work")
    assert all(r["status"] == "ok" for r in records.values()) and len(records) == 4
    assert (out_dir / "overlays" / "cju0000.jpg").is_file()
    m = score_pseudo(cfg, out_dir)
    assert m["missing"] == 0 and sum(map(sum, m["matrix"])) == 4 * 48 * 56
