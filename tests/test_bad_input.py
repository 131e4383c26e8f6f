"""Bad input gives a clear message naming the file; a run over many images records failures and goes on."""
from __future__ import annotations

import io
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from tests._mini_layouts import make_kvasir, make_voc
from wsss.config import load_config
from wsss.data import build_dataset
from wsss.data.layout import read_index_mask
from wsss.pseudo import generate_pseudo_labels
from wsss.record import Resources
from wsss.utils.io import ImageSizeError, current_umask, read_image, voc_palette, write_image, write_json_atomic, write_label_png

REPO = Path(__file__).resolve().parents[1]


def _cfg(name: str, root: Path, extra: list[str] = ()) -> object:
    return load_config(REPO / "configs" / "quickstart.yaml",
                       [f"data.name={name}", f"data.{name}.root={root}", "device=cpu", *extra])


def _jpeg_bytes(arr: np.ndarray, **kw: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", **kw)
    return buf.getvalue()


# --- images ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_unreadable_image_names_the_file(tmp_path: Path, damage: str) -> None:
    data = _jpeg_bytes(np.random.default_rng(0).integers(0, 255, (48, 48, 3), dtype=np.uint8))
    path = tmp_path / f"{damage}.jpg"
    path.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"not an image at all", "empty": b""}[damage])
    with pytest.raises(ValueError, match=f"{damage}.jpg"):
        read_image(path)


def test_missing_image_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothere.png"):
        read_image(tmp_path / "nothere.png")


def test_cmyk_image_becomes_rgb(tmp_path: Path) -> None:
    cmyk = np.zeros((16, 20, 4), np.uint8)
    cmyk[:, 10:, 0] = 255  # full cyan on the right half, white on the left
    Image.fromarray(cmyk, mode="CMYK").save(tmp_path / "cmyk.tif")
    rgb = read_image(tmp_path / "cmyk.tif")
    assert rgb.shape == (16, 20, 3) and rgb.dtype == np.uint8
    assert (rgb[:, :10] == 255).all() and (rgb[:, 10:, 0] == 0).all() and (rgb[:, 10:, 1:] == 255).all()


def test_16_bit_image_is_scaled_to_8_bit(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(0, 60000, 32).astype(np.uint16), (8, 1))
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    rgb = read_image(tmp_path / "deep.png")
    assert rgb.shape == (8, 32, 3) and rgb[0, -1, 0] == 255 and rgb[0, 0, 0] == 0
    assert (np.diff(rgb[0, :, 0].astype(int)) >= 0).all()  # order of gray levels kept


def test_rgba_and_grayscale_images(tmp_path: Path) -> None:
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, :4, 3] = 255  # left opaque red, right fully transparent
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "alpha.png")
    out = read_image(tmp_path / "alpha.png")
    assert (out[:, :4] == [200, 0, 0]).all() and (out[:, 4:] == 0).all()
    Image.fromarray(np.full((8, 8), 77, np.uint8), mode="L").save(tmp_path / "gray.png")
    assert (read_image(tmp_path / "gray.png") == 77).all()


def test_exif_rotated_image_is_turned_upright(tmp_path: Path) -> None:
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = 255  # white left half of a landscape image
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    (tmp_path / "rot.jpg").write_bytes(_jpeg_bytes(arr, exif=exif.tobytes(), quality=100))
    out = read_image(tmp_path / "rot.jpg")
    assert out.shape == (40, 20, 3)  # portrait after applying the tag
    assert out[:15].mean() > 200 and out[25:].mean() < 50  # the white half is now on top


def _jpeg_claiming_size(path: Path, width: int, height: int) -> Path:
    """A small JPEG whose header (SOF0) claims ``width`` x ``height``: a huge image without a huge file."""
    data = bytearray(_jpeg_bytes(np.full((16, 16, 3), 128, np.uint8)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5: sof + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(data))
    return path


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any pixel is decoded: the size must be refused from the header."""
    def load(self: ImageFile.ImageFile) -> None:
        raise AssertionError("pixels decoded")
    monkeypatch.setattr(ImageFile.ImageFile, "load", load)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # PIL warns; we refuse
def test_huge_image_refused_from_its_header(tmp_path: Path, no_decoding: None) -> None:
    path = _jpeg_claiming_size(tmp_path / "huge.jpg", 12000, 12000)  # the 12000x12000 photo, in 1 kB
    with pytest.raises(ImageSizeError, match=r"huge\.jpg: image is 12000x12000 px .*64 megapixels.*data\.max_pixels"):
        read_image(path)
    with pytest.raises(ImageSizeError, match="above the limit of 0.0001 megapixels"):
        read_image(_jpeg_claiming_size(tmp_path / "small.jpg", 20, 10), max_pixels=100)


def test_pil_bomb_limit_becomes_a_clear_error(tmp_path: Path, no_decoding: None) -> None:
    # 400 MP: PIL itself refuses at open (above twice its MAX_IMAGE_PIXELS); still named, with the key
    path = _jpeg_claiming_size(tmp_path / "bomb.jpg", 20000, 20000)
    with pytest.raises(ImageSizeError, match=r"bomb\.jpg.*max_pixels"):
        read_image(path)


def test_max_pixels_limit_can_be_raised_or_disabled(tmp_path: Path) -> None:
    Image.fromarray(np.full((40, 50, 3), 9, np.uint8)).save(tmp_path / "ok.png")
    with pytest.raises(ImageSizeError, match="2000x"):
        read_image(_jpeg_claiming_size(tmp_path / "big.jpg", 2000, 1000), max_pixels=1_000_000)
    for limit in (2000, None, 0):
        assert read_image(tmp_path / "ok.png", max_pixels=limit).shape == (40, 50, 3)


@pytest.mark.parametrize("size", [(1, 1), (1, 5000), (5000, 3)])
def test_degenerate_image_sizes_are_refused(tmp_path: Path, size: tuple[int, int]) -> None:
    h, w = size
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(tmp_path / "thin.png")
    with pytest.raises(ImageSizeError, match=rf"thin\.png: image is {w}x{h} px; wsss needs at least 8 px on each side"):
        read_image(tmp_path / "thin.png")
    assert read_image(tmp_path / "thin.png", min_side=1).shape == (h, w, 3)  # data.min_side=1 lets it through


# --- permissions of written files --------------------------------------------------------------------------------
@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    old = os.umask(umask)
    try:
        assert current_umask() == umask
        write_label_png(tmp_path / "labels" / "a.png", np.zeros((8, 8), np.uint8))
        write_json_atomic(tmp_path / "manifest.json", {"a": 1})
        write_image(tmp_path / "overlay.jpg", np.zeros((8, 8, 3), np.uint8))
        write_json_atomic(tmp_path / "manifest.json", {"a": 2})  # replacing an existing file too
    finally:
        os.umask(old)
    for name in ("labels/a.png", "manifest.json", "overlay.jpg"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode, name
    assert not [p for p in tmp_path.rglob("*.tmp*")]  # no temporary left behind


# --- masks -------------------------------------------------------------------------------------------------------
def test_mask_size_differs_from_image(tmp_path: Path) -> None:
    voc = make_voc(tmp_path)
    write_label_png(voc / "SegmentationClass" / "2007_000000.png", np.zeros((10, 12), np.uint8))
    ds = build_dataset(_cfg("voc", tmp_path).data, "train")
    with pytest.raises(ValueError, match=r"2007_000000\.png.*differs"):
        ds.load("2007_000000")


def test_mask_colours_outside_palette(tmp_path: Path) -> None:
    pal = np.array(voc_palette(), np.uint8).reshape(256, 3)
    rgb = pal[np.array([[0, 1], [15, 255]])]
    Image.fromarray(rgb).save(tmp_path / "coloured.png")
    np.testing.assert_array_equal(read_index_mask(tmp_path / "coloured.png"), [[0, 1], [15, 255]])
    rgb[0, 0] = (1, 2, 3)
    Image.fromarray(rgb).save(tmp_path / "off.png")
    with pytest.raises(ValueError, match=r"off\.png: colour \(1, 2, 3\)"):
        read_index_mask(tmp_path / "off.png")


def test_mask_index_outside_the_classes(tmp_path: Path) -> None:
    voc = make_voc(tmp_path)
    mask = np.zeros((40, 48), np.uint8)
    mask[0, 0] = 77
    write_label_png(voc / "SegmentationClass" / "2007_000001.png", mask)
    ds = build_dataset(_cfg("voc", tmp_path).data, "train")
    with pytest.raises(ValueError, match=r"2007_000001\.png: values \[77\]"):
        ds.load("2007_000001")


# --- split files -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["empty", "missing"])
@pytest.mark.parametrize("reader", ["voc", "kvasir_instrument", "folder"])
def test_empty_or_missing_split_file(tmp_path: Path, case: str, reader: str) -> None:
    if reader == "voc":
        make_voc(tmp_path)
        root, split_file = tmp_path, tmp_path / "VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt"
    elif reader == "kvasir_instrument":
        root = make_kvasir(tmp_path / "ki", masks_suffix=".png", bboxes="bboxes.json")
        split_file = root / "val.txt"
        split_file.write_text("cju0000\n")
    else:
        root = make_kvasir(tmp_path / "plain")
        shutil.move(root / "masks", root / "unused")
        (root / "classes.txt").write_text("background\npolyp\n")
        split_file = root / "splits" / "val.txt"
        split_file.parent.mkdir()
        split_file.write_text("cju0000\n")
        (root / "splits" / "train.txt").write_text("cju0001\n")
    if case == "empty":
        split_file.write_text("\n\n")
    else:
        split_file.unlink()
    error = ValueError if case == "empty" else FileNotFoundError
    with pytest.raises(error, match=f"{split_file}.*{case}"):
        build_dataset(_cfg(reader, root).data, "val")


# --- a run over many images --------------------------------------------------------------------------------------
def test_pipeline_records_bad_images_and_goes_on(tmp_path: Path) -> None:
    root = make_kvasir(tmp_path / "Kvasir-SEG", n=4)
    data = (root / "images" / "cju0001.jpg").read_bytes()
    (root / "images" / "cju0001.jpg").write_bytes(data[: len(data) // 3])  # truncated mid-file
    write_label_png(root / "masks" / "cju0003.jpg", np.zeros((5, 5), np.uint8))  # wrong-size mask (PNG bytes)
    cfg = _cfg("kvasir_seg", root, ["data.split=all", "cam.name=none", "boxes.name=given",
                                    "masks.name=cam_threshold", "pseudo.overlays=0"])
    ds = build_dataset(cfg.data, "all")
    records = generate_pseudo_labels(cfg, ds, Resources(cfg, ds.class_names, tmp_path, "cpu"), tmp_path / "pseudo")
    status = {k: r["status"] for k, r in records.items()}
    assert status == {"cju0000": "ok", "cju0001": "error", "cju0002": "ok", "cju0003": "error"}
    assert "cju0001.jpg" in records["cju0001"]["error"] and "cju0003.jpg" in records["cju0003"]["error"]
    assert records["cju0002"]["boxes"] == [[1, 7, 8, 31, 28, 1.0]]  # the given box went through the pipeline
    assert sorted(p.name for p in (tmp_path / "pseudo" / "labels").iterdir()) == ["cju0000.png", "cju0002.png"]
