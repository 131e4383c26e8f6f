"""A reduced quickstart end to end: data -> classifier -> pseudo-labels -> DeepLabV3+ -> table."""
import json
from pathlib import Path

from wsss.quickstart import main

from .conftest import tiny_overrides


def test_quickstart_end_to_end(tmp_path: Path, capsys) -> None:
    work = tmp_path / "work"
    main(["--work-dir", str(work), "--set", *tiny_overrides(tmp_path, num_train=12, num_val=4)])
    out = capsys.readouterr().out
    result = json.loads((work / "quickstart.json").read_text())
    rows = result["rows"]
    assert len(rows) == 3
    for metrics in rows.values():
        assert 0.0 <= metrics["mIoU"] <= 1.0
    assert "CAM threshold" in out and "GrabCut-CAM" in out and "DeepLabV3+" in out
    assert (work / "train" / "best.pth").is_file() and (work / "train" / "last.pth").is_file()
    assert len(list((work / "overlays").glob("*.png"))) == 4
    assert len(list((work / "pseudo" / "labels").glob("*.png"))) == 12
    # a second run resumes: nothing is recomputed, the same numbers come out
    main(["--work-dir", str(work), "--set", *tiny_overrides(tmp_path, num_train=12, num_val=4)])
    again = json.loads((work / "quickstart.json").read_text())
    assert again["rows"] == rows
    assert again["walls"]["pseudo_grabcut_cam"] < result["walls"]["pseudo_grabcut_cam"] + 5
