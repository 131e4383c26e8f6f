"""The tiled mode: boxes and masks on native-resolution tiles, merged back into one label map."""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

from tests.test_bounded_images import CLASSES, REPO, _scene
from wsss.config import load_config
from wsss.data.base import Box, Sample
from wsss.pseudo.pipeline import PseudoLabeler
from wsss.pseudo.tiling import _cores, merge_boxes, process_tiled, tile_starts
from wsss.pseudo.working_size import process_at_working_size
from wsss.record import Record, Resources
from wsss.utils.runtime import seed_everything


@pytest.fixture(scope="module")
def labeler(tmp_path_factory: pytest.TempPathFactory) -> PseudoLabeler:
    """A model-free pipeline: given labels and boxes, GrabCut inside each box."""
    cfg = load_config(REPO / "configs" / "quickstart.yaml",
                      ["labels.name=given", "cam.name=none", "boxes.name=given", "masks.name=grabcut_box", "device=cpu"])
    return PseudoLabeler(cfg, Resources(cfg, CLASSES, tmp_path_factory.mktemp("w"), "cpu"))


def test_tiles_cover_the_image_and_cores_partition_it() -> None:
    for length, tile, overlap in [(1000, 300, 64), (1000, 1000, 0), (999, 250, 0), (1500, 512, 128)]:
        starts = tile_starts(length, tile, overlap)
        assert starts[0] == 0 and starts[-1] + tile >= length
        assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))  # neighbours overlap enough
        cores = _cores(starts, tile, length)
        covered = np.zeros(length, int)
        for (a, b), s in zip(cores, starts):
            assert s <= a < b <= s + tile  # a tile paints only inside itself
            covered[a:b] += 1
        assert (covered == 1).all()


def test_boxes_cut_by_seams_merge_into_one() -> None:
    parts = [Box(1, 0, 10, 100, 50, 0.4), Box(1, 100, 12, 180, 48, 0.9), Box(2, 101, 10, 150, 50, 0.5)]
    merged = merge_boxes(parts)
    assert sorted((b.cls, b.as_list(), b.score) for b in merged) == [(1, [0, 10, 180, 50], 0.9), (2, [101, 10, 150, 50], 0.5)]
    assert len(merge_boxes([Box(1, 0, 0, 10, 10), Box(1, 20, 20, 30, 30)])) == 2  # apart: two objects


def test_tiled_refinement_at_native_size_finds_an_object_across_seams(labeler: PseudoLabeler) -> None:
    image, disc, box = _scene(1200, 1800)  # the disc crosses the seams of 512 px tiles
    rec = Record(Sample("big", image, labels=[1], boxes=[box]))
    seed_everything(0)
    out = process_tiled(labeler.process, rec, tile=512, overlap=96, max_side=512)
    assert out.label_map.shape == (1200, 1800) and out.extras["tiles"] == 3 * 5 > 1
    assert [b.as_list() for b in out.boxes] == [box.as_list()]  # the given box, rebuilt from its tile parts
    fg = out.label_map == 1
    assert (fg & disc).sum() / (fg | disc).sum() > 0.95
    seed_everything(0)
    shrunk = process_at_working_size(labeler.process, Record(Sample("big", image, labels=[1], boxes=[box])), 512)
    edge_tiled = ((out.label_map == 1) != disc).sum()
    edge_shrunk = ((shrunk.label_map == 1) != disc).sum()
    assert edge_tiled <= edge_shrunk  # native-size refinement is no coarser than the shrunk copy's


def test_a_tile_as_big_as_the_image_is_the_plain_pipeline(labeler: PseudoLabeler) -> None:
    image, _, box = _scene(300, 400)
    seed_everything(0)
    plain = process_at_working_size(labeler.process, Record(Sample("s", image, labels=[1], boxes=[box])), 1024)
    seed_everything(0)
    tiled = process_tiled(labeler.process, Record(Sample("s", image, labels=[1], boxes=[box])), 400, 32, 1024)
    np.testing.assert_array_equal(tiled.label_map, plain.label_map)
    with pytest.raises(ValueError, match="tile_overlap"):
        process_tiled(functools.partial(labeler.process), Record(Sample("s", image, labels=[1], boxes=[box])), 200, 200, 1024)


def test_gen_pseudo_runs_tiled(tmp_path: Path) -> None:
    """``pseudo.tile`` reaches the batch run: each label equals run_stages' tiled one, and the folder records it."""
    import yaml

    from tests._mini_layouts import make_kvasir
    from wsss.data import build_dataset
    from wsss.pseudo import generate_pseudo_labels
    from wsss.pseudo.pipeline import run_stages, seed_image
    from wsss.utils.io import read_label_png

    root = make_kvasir(tmp_path / "Kvasir-SEG", n=2)  # 48x56 images with given boxes
    cfg = load_config(REPO / "configs" / "quickstart.yaml", [
        "data.name=kvasir_seg", "data.split=all", f"data.kvasir_seg.root={root}", "labels.name=given", "cam.name=none",
        "boxes.name=given", "masks.name=grabcut_box", "device=cpu", "pseudo.tile=24", "pseudo.tile_overlap=8",
        "pseudo.overlays=0"])
    dataset = build_dataset(cfg.data, cfg.data.split)
    resources = Resources(cfg, dataset.class_names, tmp_path / "w", "cpu")
    records = generate_pseudo_labels(cfg, dataset, resources, tmp_path / "pseudo")
    lab = PseudoLabeler(cfg, resources)
    for i in dataset.ids:
        assert records[i]["status"] == "ok" and records[i]["extras"]["tiles"] > 1
        seed_image(cfg.seed, i)
        again = run_stages(lab, Record(dataset.load(i)), cfg.pseudo)
        np.testing.assert_array_equal(read_label_png(tmp_path / "pseudo" / "labels" / f"{i}.png"), again.label_map)
        assert [b[1:5] for b in records[i]["boxes"]] == [b.as_list() for b in dataset.load(i).boxes]  # merged back
    assert yaml.safe_load((tmp_path / "pseudo" / "stage_config.yaml").read_text())["tile"] == 24
