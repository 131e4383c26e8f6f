"""Stage one over a split: outputs, manifest, bad images, and resume after a hard kill."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from wsss.data import build_dataset
from wsss.pseudo import read_manifest
from wsss.runner import gen_pseudo
from wsss.utils.io import read_label_png

from .conftest import QUICKSTART, REPO


def test_gen_pseudo_writes_labels_manifest_and_overlays(tiny_run: tuple, tmp_path: Path) -> None:
    cfg, work_dir, _ = tiny_run
    out_dir, records = gen_pseudo(cfg, work_dir)
    ds = build_dataset(cfg.data, cfg.data.split)
    assert list(records) == ds.ids
    for image_id, rec in records.items():
        assert rec["status"] == "ok", rec
        label = read_label_png(out_dir / rec["label"])
        assert label.shape == ds.load(image_id).image.shape[:2]
        assert set(np.unique(label)) <= {0, 255, *rec["classes"]}
        assert {"labels", "cam", "boxes", "masks"} <= set(rec["timings"])
        assert all(b[0] in rec["classes"] for b in rec["boxes"])
    assert len(list((out_dir / "overlays").glob("*.jpg"))) == min(cfg.pseudo.overlays, len(ds.ids))


def test_bad_image_is_recorded_and_run_goes_on(tiny_run: tuple, tmp_path: Path) -> None:
    import shutil

    from wsss.config import load_config

    cfg, work_dir, overrides = tiny_run
    data_copy = tmp_path / "data"
    shutil.copytree(cfg.data.synthetic.root, data_copy)
    bad_id = build_dataset(cfg.data, "train").ids[1]
    (data_copy / "images" / f"{bad_id}.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    cfg2 = load_config(QUICKSTART, overrides + ["data.name=folder", f"data.folder.root={data_copy}"])
    cfg2.classifier.timm.checkpoint = str(work_dir / "classifier" / "classifier.pth")
    _, records = gen_pseudo(cfg2, tmp_path / "work")
    assert records[bad_id]["status"] == "error"
    assert f"{bad_id}.png" in records[bad_id]["error"]
    assert sum(r["status"] == "ok" for r in records.values()) == len(records) - 1


def test_resume_after_sigkill_loses_and_duplicates_nothing(tiny_run: tuple, tmp_path: Path) -> None:
    cfg, work_dir, overrides = tiny_run
    ckpt = work_dir / "classifier" / "classifier.pth"
    args = [sys.executable, str(REPO / "tools" / "gen_pseudo.py"), str(QUICKSTART), "--no-eval",
            "--set", *overrides, f"classifier.timm.checkpoint={ckpt}", "pseudo.overlays=0"]
    killed_dir, clean_dir = tmp_path / "killed", tmp_path / "clean"
    proc = subprocess.Popen(args + ["--work-dir", str(killed_dir)], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    manifest = killed_dir / "pseudo" / "manifest.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if manifest.is_file() and len(manifest.read_text().splitlines()) >= 3:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be interrupted"
    partial = read_manifest(manifest)
    ids = build_dataset(cfg.data, cfg.data.split).ids
    assert 3 <= len(partial) < len(ids)

    subprocess.run(args + ["--work-dir", str(killed_dir)], cwd=REPO, check=True, capture_output=True)
    subprocess.run(args + ["--work-dir", str(clean_dir)], cwd=REPO, check=True, capture_output=True)
    lines = [json.loads(x) for x in manifest.read_text().splitlines()]
    assert [r["image"] for r in lines] == ids  # every image once, in order
    for image_id in ids:
        np.testing.assert_array_equal(read_label_png(killed_dir / "pseudo" / "labels" / f"{image_id}.png"),
                                      read_label_png(clean_dir / "pseudo" / "labels" / f"{image_id}.png"))
    assert not list((killed_dir / "pseudo" / "labels").glob(".*"))  # no temp files left


def test_changed_config_refuses_to_mix_results(tiny_run: tuple) -> None:
    import copy

    import pytest

    cfg, work_dir, _ = tiny_run
    gen_pseudo(cfg, work_dir)
    other = copy.deepcopy(cfg)
    other.masks.grabcut_cam.t = 0.55
    with pytest.raises(RuntimeError, match="different masks config"):
        gen_pseudo(other, work_dir)
