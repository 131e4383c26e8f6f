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


# Runs tools/gen_pseudo.py with FolderDataset.load wrapped: on reaching image STOP_AT it touches MARKER
# and sleeps. The test SIGKILLs it once MARKER exists, so the kill always lands after exactly the images
# before STOP_AT, whatever the machine's load (no timing race, no hook in the production code).
_STOP_AT_IMAGE = """
import runpy, sys, time
from pathlib import Path
from wsss.data.folder import FolderDataset
stop_at, marker, tool = sys.argv[1:4]
load = FolderDataset.load
def stopping_load(self, image_id):
    if image_id == stop_at:
        Path(marker).touch()
        time.sleep(3600)
    return load(self, image_id)
FolderDataset.load = stopping_load
sys.argv = [tool, *sys.argv[4:]]
runpy.run_path(tool, run_name="__main__")
"""


def test_resume_after_sigkill_loses_and_duplicates_nothing(tiny_run: tuple, tmp_path: Path) -> None:
    cfg, work_dir, overrides = tiny_run
    ckpt = work_dir / "classifier" / "classifier.pth"
    tool = REPO / "tools" / "gen_pseudo.py"
    args = [str(QUICKSTART), "--no-eval", "--set", *overrides, f"classifier.timm.checkpoint={ckpt}", "pseudo.overlays=0"]
    killed_dir, clean_dir = tmp_path / "killed", tmp_path / "clean"
    ids = build_dataset(cfg.data, cfg.data.split).ids
    marker = tmp_path / "reached"
    proc = subprocess.Popen([sys.executable, "-c", _STOP_AT_IMAGE, ids[3], str(marker), str(tool), *args,
                             "--work-dir", str(killed_dir)], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert marker.exists(), f"the run never reached {ids[3]} (exit code {proc.poll()})"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    out = killed_dir / "pseudo"
    manifest = out / "manifest.jsonl"
    partial = read_manifest(manifest)
    assert list(partial) == ids[:3]  # each finished image's line is on disk (fsynced) before the next starts
    assert (out / ".lock").is_file()  # left by the killed run: the rerun takes it over (its PID is dead)
    # what a kill in the middle of a write would also leave: half a manifest line, a temp label file
    with manifest.open("a") as f:
        f.write('{"image": "' + ids[3])
    (out / "labels" / f".{ids[3]}.png.k1ll3d.tmp.png").write_bytes(b"\x89PNG half")

    cmd = [sys.executable, str(tool), *args]
    subprocess.run(cmd + ["--work-dir", str(killed_dir)], cwd=REPO, check=True, capture_output=True)
    subprocess.run(cmd + ["--work-dir", str(clean_dir)], cwd=REPO, check=True, capture_output=True)
    lines = [json.loads(x) for x in manifest.read_text().splitlines()]
    assert [r["image"] for r in lines] == ids  # every image once, in order
    for image_id in ids:
        np.testing.assert_array_equal(read_label_png(out / "labels" / f"{image_id}.png"),
                                      read_label_png(clean_dir / "pseudo" / "labels" / f"{image_id}.png"))
    assert not list((out / "labels").glob(".*"))  # no temp files left
    assert not (out / ".lock").exists()  # released at exit


def test_changed_config_refuses_to_mix_results(tiny_run: tuple) -> None:
    import copy

    import pytest

    cfg, work_dir, _ = tiny_run
    gen_pseudo(cfg, work_dir)
    other = copy.deepcopy(cfg)
    other.masks.grabcut_cam.t = 0.55
    with pytest.raises(RuntimeError, match="different masks config"):
        gen_pseudo(other, work_dir)
    assert not (work_dir / cfg.pseudo.out / ".lock").exists()  # released on the way out


def test_folder_without_labels_accepts_a_changed_config(tiny_run: tuple, tmp_path: Path) -> None:
    """A first run that failed before labelling anything must not block the corrected rerun."""
    import copy

    import pytest

    from wsss.pseudo.pipeline import ConfigMismatch

    cfg, work_dir, _ = tiny_run
    bad = copy.deepcopy(cfg)
    bad.classifier.timm.checkpoint = str(tmp_path / "no_such.pth")
    with pytest.raises(FileNotFoundError, match="no_such.pth"):
        gen_pseudo(bad, tmp_path / "work")
    out = tmp_path / "work" / cfg.pseudo.out
    assert not (out / "stage_config.yaml").exists()  # recorded only with the first label
    good = copy.deepcopy(cfg)
    good.classifier.timm.checkpoint = str(work_dir / "classifier" / "classifier.pth")
    # an older folder that recorded its config early (or whose labels were deleted) is accepted too
    (out / "stage_config.yaml").write_text("classifier: {name: other}\n")
    _, records = gen_pseudo(good, tmp_path / "work")
    assert all(r["status"] == "ok" for r in records.values())
    assert "no_such" not in (out / "stage_config.yaml").read_text()
    with pytest.raises(ConfigMismatch, match="different classifier config"):  # now it holds labels
        gen_pseudo(bad, tmp_path / "work")


def test_append_after_a_half_written_line_keeps_the_new_record(tmp_path: Path) -> None:
    from wsss.pseudo.manifest import ManifestWriter

    path = tmp_path / "manifest.jsonl"
    path.write_text('{"image": "a", "status": "ok"}\n{"image": "b", "sta')  # killed mid-line
    writer = ManifestWriter(path)
    writer.append({"image": "b", "status": "ok"})
    writer.close()
    assert {k: r["status"] for k, r in read_manifest(path).items()} == {"a": "ok", "b": "ok"}
