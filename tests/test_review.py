"""The review queue: quality estimates rank constructed pseudo-labels as expected; CSV, HTML, threshold outputs."""
from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from wsss.app.gallery import GalleryIndex
from wsss.data.base import Box, Sample
from wsss.pseudo.quality import FEATURES, manifest_quality, quality_estimate, quality_features
from wsss.pseudo.review import build_review, load_queue
from wsss.record import Record
from wsss.utils.io import read_label_png, write_image, write_label_png

H = W = 96


def _blob(cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    return np.exp(-(((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2))).astype(np.float32)


def _record(name: str, cam: np.ndarray, box: tuple[int, int, int, int], mask: np.ndarray, score: float) -> Record:
    image = np.full((H, W, 3), 120, np.uint8)
    rec = Record(Sample(id=name, image=image), classes=[1], scores={1: score}, cams={1: cam},
                 boxes=[Box(1, *box)], label_map=mask.astype(np.uint8))
    return rec


def cases() -> dict[str, Record]:
    """Four pseudo-labels whose ranking a person would agree on."""
    obj = _blob(48, 48, 12)
    clean = _record("clean", obj, (28, 28, 69, 69), obj >= 0.5, 0.9)
    # the CAM lights the background around the object: its box spans the image, the mask (GrabCut found
    # the object anyway) disagrees with the CAM, and the classifier is unsure
    bg_cam = np.clip(1.0 - 1.3 * obj, 0, 1) * 0.9 + 0.1 * _blob(5, 5, 30)
    on_bg = _record("cam_on_background", bg_cam / bg_cam.max(), (0, 0, W, H), obj >= 0.5, 0.3)
    empty = _record("empty", obj, (28, 28, 69, 69), np.zeros((H, W), bool), 0.9)
    whole = _record("whole", obj, (0, 0, W, H), np.ones((H, W), bool), 0.9)
    return {r.sample.id: r for r in (clean, on_bg, empty, whole)}


def test_estimates_rank_constructed_cases() -> None:
    est = {k: quality_estimate(quality_features(r)) for k, r in cases().items()}
    assert all(0.0 <= v <= 1.0 for v in est.values())
    assert est["clean"] > est["cam_on_background"], est
    assert est["clean"] > 0.5, est
    assert est["empty"] < 0.05 and est["whole"] < 0.05, est  # degenerate masks go to the front of the queue
    assert est["cam_on_background"] < 0.6 * est["clean"], est


def test_features_cover_the_signals_and_missing_ones_are_nan() -> None:
    rec = cases()["clean"]
    f = quality_features(rec)
    assert set(f) == set(FEATURES)
    assert math.isnan(f["road"]) and math.isnan(f["sam_iou"])
    assert f["mask_cam_iou"] == pytest.approx(1.0)
    assert 0.75 < f["cam_in_box"] <= 1.0
    rec.extras["road"] = {"1": 0.4}
    rec.cache["sam_cam_match"] = [{"cls": 1, "iou": 0.8, "auto_index": 0, "box_px": 10}]
    f = quality_features(rec)
    assert f["road"] == pytest.approx(0.4) and f["sam_iou"] == pytest.approx(0.8)
    q = manifest_quality(rec)
    assert set(q) == {"estimate", "features", "per_class"} and set(q["per_class"]) == {"1"}
    json.dumps(q, allow_nan=False)  # valid JSON for the manifest


def _pseudo_dir(tmp_path: Path) -> tuple[Path, Path, dict[str, float]]:
    """A stage-one folder (labels/, manifest.jsonl) for the four cases, plus their photos."""
    pseudo, photos = tmp_path / "pseudo", tmp_path / "photos"
    lines, est = [], {}
    for name, rec in cases().items():
        write_label_png(pseudo / "labels" / f"{name}.png", rec.label_map)
        write_image(photos / f"{name}.jpg", rec.image)
        q = manifest_quality(rec)
        est[name] = q["estimate"]
        lines.append(json.dumps({"image": name, "status": "ok", "label": f"labels/{name}.png", "classes": [1],
                                 "quality": q}))
    lines.append(json.dumps({"image": "broken", "status": "error", "error": "ValueError: bad"}))
    lines.append(json.dumps({"image": "old", "status": "ok", "label": "labels/old.png", "classes": [1]}))
    write_label_png(pseudo / "labels" / "old.png", np.ones((H, W), np.uint8))
    (pseudo / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return pseudo, photos, est


def test_queue_csv_html_threshold_and_trusted(tmp_path: Path) -> None:
    pseudo, photos, est = _pseudo_dir(tmp_path)
    out = tmp_path / "review"
    threshold = (est["clean"] + est["cam_on_background"]) / 2
    s = build_review(pseudo, out, threshold=threshold, trusted=True, images_dir=photos)
    assert s["images"] == 5 and s["without_estimate"] == 1  # the error line is no label to review
    rows = list(csv.DictReader(open(out / "queue.csv")))
    ids = [r["image"] for r in rows]
    assert ids[0] == "old"  # no estimate: nothing vouches for it
    vals = [float(r["estimate"]) for r in rows[1:]]
    assert vals == sorted(vals) and ids[-1] == "clean"  # worst first
    page = (out / "index.html").read_text()
    assert page.count('<figure class="entry') == 5 and page.count('<img src="thumbs/') == 5
    assert all((out / "thumbs" / f"{k:05d}.jpg").is_file() for k in range(1, 6))
    flagged = (out / "needs_review.txt").read_text().split()
    assert flagged == [i for i in ids if i != "clean"]
    trusted = out / "trusted" / "labels"
    assert sorted(p.name for p in trusted.iterdir()) == ["clean.png"]
    assert np.array_equal(read_label_png(trusted / "clean.png"), cases()["clean"].label_map)
    assert [it.image for it in load_queue(pseudo)] == ids


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = importlib.util.spec_from_file_location("review_cli", Path(__file__).resolve().parents[1] / "tools" / "review.py")
    assert spec and spec.loader
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    pseudo, _, _ = _pseudo_dir(tmp_path)
    assert cli.main([str(pseudo), "--threshold", "0.5"]) == 0
    assert (pseudo / "review" / "needs_review.txt").is_file() and (pseudo / "review" / "queue.csv").is_file()
    assert "ranked worst first" in capsys.readouterr().out
    assert cli.main([str(tmp_path / "nothing")]) == 2


class _DS:
    class_names = ["background", "object"]
    ids = ["a", "b", "c", "d"]

    def labels(self, i: str) -> list[int]:
        return [1]

    def load(self, i: str) -> Sample:
        return Sample(id=i, image=np.zeros((8, 8, 3), np.uint8))


def test_gallery_sorts_by_estimate() -> None:
    g = GalleryIndex({"all": _DS()}, page_size=2, order={"c": 0.1, "a": 0.9, "b": 0.5})
    assert g.ids("all", "all") == ["c", "b", "a", "d"]  # worst first; ids without an estimate last
    assert g.page_ids("all", "object", 1) == ["c", "b"]
    g.sort_by({"c": 0.1, "a": 0.9, "b": 0.5}, descending=True)
    assert g.ids("all", "all") == ["a", "b", "c", "d"]
    g.sort_by(None)
    assert g.ids("all", "all") == _DS.ids


def _chromium() -> str:
    from wsss.app.browser import CHROMIUM

    return CHROMIUM


@pytest.mark.skipif(importlib.util.find_spec("playwright") is None, reason="playwright is not installed")
def test_contact_sheet_opens_in_headless_chromium(tmp_path: Path) -> None:
    if not os.path.exists(_chromium()):
        pytest.skip(f"{_chromium()} is absent (run .ci/browser-deps.sh)")
    from playwright.sync_api import sync_playwright

    from wsss.app.browser import CHROMIUM_ARGS

    pseudo, photos, _ = _pseudo_dir(tmp_path)
    s = build_review(pseudo, tmp_path / "review", images_dir=photos)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(Path(s["html"]).resolve().as_uri())
            assert page.locator("figure.entry").count() == 5
            page.wait_for_function("() => [...document.images].every(i => i.complete)", timeout=10_000)
            assert page.locator("figure.entry img").first.evaluate("img => img.naturalWidth") > 0
        finally:
            browser.close()
