"""Expected failures reach the user as one `error:` line and a non-zero exit; --debug shows the traceback."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from wsss.utils.cli import add_debug_arg, run_cli
from wsss.utils.io import write_label_png

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "configs" / "quickstart.yaml"


def _run_cli(main: object, argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> tuple:
    monkeypatch.setattr(sys, "argv", ["tool", *argv])
    monkeypatch.delenv("WSSS_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main)
    return exit_info.value.code, capsys.readouterr().err


# --- run_cli ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("exc, expected", [
    (FileNotFoundError("data folder /x: missing 'images/'"), "error: data folder /x: missing 'images/'"),
    (ValueError("a.png: values [7] are not class indices"), "error: a.png: values [7] are not class indices"),
    (PermissionError(13, "Permission denied", "/ro/work"), "error: /ro/work: permission denied; choose a writable"),
    (NotADirectoryError(20, "Not a directory", "/f/work"), "error: /f/work: Not a directory"),
    (KeyError("model"), "error: missing key 'model'"),
    (RuntimeError("CUDA out of memory.\nTried to allocate 2 GiB"), "error: CUDA out of memory. ..."),
])
def test_run_cli_prints_one_error_line_and_exits_1(exc: Exception, expected: str, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture) -> None:
    def main() -> None:
        raise exc

    code, err = _run_cli(main, [], monkeypatch, capsys)
    assert code == 1
    assert err.splitlines()[0].startswith(expected), err
    assert "Traceback" not in err and "--debug" in err


def test_run_cli_debug_flag_or_env_keeps_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def main() -> None:
        raise FileNotFoundError("gone")

    monkeypatch.setattr(sys, "argv", ["tool", "cfg.yaml", "--debug"])
    with pytest.raises(FileNotFoundError, match="gone"):
        run_cli(main)
    monkeypatch.setattr(sys, "argv", ["tool"])
    monkeypatch.setenv("WSSS_DEBUG", "1")
    with pytest.raises(FileNotFoundError):
        run_cli(main)


def test_run_cli_ctrl_c_is_130_and_bugs_keep_their_traceback(monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture) -> None:
    def interrupted() -> None:
        raise KeyboardInterrupt

    def bug() -> None:
        raise TypeError("unsupported operand")  # a programming error: never hidden behind one line

    assert _run_cli(interrupted, [], monkeypatch, capsys)[0] == 130
    with pytest.raises(TypeError):
        run_cli(bug)


def test_add_debug_arg_is_accepted_by_the_parser() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    add_debug_arg(parser)
    assert parser.parse_args(["--debug"]).debug


# --- the tools, end to end (one subprocess each: imports cost seconds on 2 cores) -----------------------------------
def _tool(tool: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "WSSS_DEBUG"} | {"OMP_NUM_THREADS": "1"} | (env or {})
    return subprocess.run([sys.executable, str(REPO / "tools" / tool), *args], capture_output=True, text=True,
                          env=env, timeout=300)


def _folder_set(root: Path, classes: list[str] | None = ("background", "cat"), labels: dict | None = None) -> Path:
    (root / "images").mkdir(parents=True)
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(root / "images" / "a.png")
    if classes:
        (root / "classes.txt").write_text("\n".join(classes) + "\n")
    if labels is not None:
        (root / "labels.json").write_text(json.dumps(labels))
    return root


def _eval_case(tmp_path: Path, case: str) -> tuple[list[str], str]:
    """eval.py arguments for one broken setup, and the text its error line must hold."""
    root = tmp_path / "data"
    if case == "missing_classes":
        _folder_set(root, classes=None)
    elif case == "unknown_class":
        _folder_set(root, labels={"a": ["dog"]})
    elif case != "missing_folder":
        _folder_set(root)
    work = tmp_path / "work"
    if case == "bad_work_dir":
        (tmp_path / "file").write_text("x")
        work = tmp_path / "file" / "work"  # under a plain file: mkdir fails (root ignores chmod, so not EACCES)
    (tmp_path / "pred").mkdir()
    args = [str(QUICKSTART), "--pred", str(tmp_path / "pred"), "--work-dir", str(work), "--set", "data.name=folder",
            f"data.folder.root={root}"]
    expected = {"missing_folder": f"data folder {root}", "missing_classes": f"{root / 'classes.txt'} is missing",
                "unknown_class": "unknown class 'dog'", "bad_work_dir": f"{tmp_path / 'file'}"}[case]
    return args, expected


def test_eval_tool_subprocess_one_line_error(tmp_path: Path) -> None:
    args, expected = _eval_case(tmp_path, "missing_folder")
    proc = _tool("eval.py", *args)
    assert proc.returncode == 1, proc.stderr
    first = proc.stderr.strip().splitlines()[0]
    assert first.startswith("error: ") and expected in first, proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("case", ["missing_classes", "unknown_class", "bad_work_dir"])
def test_eval_tool_one_line_errors(tmp_path: Path, case: str, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture) -> None:
    import runpy

    args, expected = _eval_case(tmp_path, case)
    code, err = _run_cli(lambda: runpy.run_path(str(REPO / "tools" / "eval.py"), run_name="__main__"), args,
                         monkeypatch, capsys)  # in-process: the same tool, without seconds of imports per case
    assert code == 1
    assert err.startswith("error: ") and expected in err.splitlines()[0], err


def test_debug_flag_shows_the_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import runpy

    args, _ = _eval_case(tmp_path, "missing_folder")
    monkeypatch.setattr(sys, "argv", ["eval.py", *args, "--debug"])
    with pytest.raises(FileNotFoundError, match="data folder"):  # the real exception, traceback and all
        runpy.run_path(str(REPO / "tools" / "eval.py"), run_name="__main__")


def test_train_tool_refuses_to_overwrite_last_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "work" / "train").mkdir(parents=True)
    (tmp_path / "work" / "train" / "last.pth").write_bytes(b"an earlier run")
    proc = _tool("train.py", str(QUICKSTART), "--work-dir", str(tmp_path / "work"), "--set", "device=cpu",
                 f"data.synthetic.root={tmp_path / 'syn'}")
    assert proc.returncode == 1, proc.stderr
    assert "--resume" in proc.stderr and "--overwrite" in proc.stderr and "Traceback" not in proc.stderr
    assert (tmp_path / "work" / "train" / "last.pth").read_bytes() == b"an earlier run"


# --- corrupt checkpoints name their file ----------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "wrong_kind"])
def test_corrupt_classifier_checkpoint_names_its_file(tmp_path: Path, damage: str) -> None:
    from wsss.classifier import build_classifier
    from wsss.config import load_config

    path = tmp_path / "classifier.pth"
    torch.save({"state_dict": {"w": torch.zeros(64)}}, path)
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"not a torch file", "empty": b"",
                      "wrong_kind": data}[damage])
    cfg = load_config(QUICKSTART, [f"classifier.timm.checkpoint={path}", "device=cpu"])
    with pytest.raises(ValueError, match=rf"{path}: not a (readable checkpoint|checkpoint of this kind).*delete it"):
        build_classifier(cfg, ["background", "a"], tmp_path, torch.device("cpu"))


# --- Grounding-DINO offline -----------------------------------------------------------------------------------------
def test_grounding_dino_offline_names_the_key_and_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import transformers

    from wsss.boxes.grounding_dino import load_grounding_dino

    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files, and couldn't find them "
                      "in the cached files.\nCheck your internet connection")

    monkeypatch.setattr(transformers.GroundingDinoForObjectDetection, "from_pretrained", offline)
    monkeypatch.chdir(tmp_path)  # the default 'checkpoints/grounding-dino-tiny' looks like a hub id here
    with pytest.raises(OSError, match=r"boxes\.grounding_dino\.model.*save_pretrained"):
        load_grounding_dino("checkpoints/grounding-dino-tiny", torch.device("cpu"))


# --- scoring skips a bad ground-truth mask and names it -------------------------------------------------------------
def _scored_folder(tmp_path: Path, bad_value: int = 7) -> tuple:
    from wsss.data import FolderDataset

    root = tmp_path / "set"
    (root / "images").mkdir(parents=True)
    (tmp_path / "pred").mkdir()
    (root / "classes.txt").write_text("background\ncat\n")
    for i, value in enumerate((1, bad_value, 1)):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "images" / f"im{i}.png")
        mask = np.zeros((8, 8), np.uint8)
        mask[2:6, 2:6] = value
        write_label_png(root / "masks" / f"im{i}.png", mask)
        write_label_png(tmp_path / "pred" / f"im{i}.png", (mask == 1).astype(np.uint8))
    return FolderDataset(root, "all"), root


def test_evaluate_label_dir_skips_and_names_a_bad_mask(tmp_path: Path) -> None:
    from wsss.evaluation import evaluate_label_dir, format_skipped

    dataset, root = _scored_folder(tmp_path)
    metrics = evaluate_label_dir(tmp_path / "pred", dataset)
    assert [s["image"] for s in metrics["skipped"]] == ["im1"]
    assert str(root / "masks" / "im1.png") in metrics["skipped"][0]["error"]
    assert metrics["mIoU"] == pytest.approx(1.0)  # the table is still there, from the two good images
    assert "im1" in format_skipped(metrics["skipped"])


def test_eval_report_path_skips_a_bad_mask(tmp_path: Path) -> None:
    from wsss.evaluation import CheckedGT
    from wsss.evaluation.report import evaluate_dir

    dataset, _ = _scored_folder(tmp_path)
    checked = CheckedGT(dataset)
    metrics = evaluate_dir(tmp_path / "pred", checked)
    assert metrics["images"] == 2 and [s["image"] for s in checked.skipped] == ["im1"]


def test_read_gt_checks_a_reader_without_gt(tmp_path: Path) -> None:
    from wsss.data import read_gt

    path = tmp_path / "m.png"
    write_label_png(path, np.full((4, 4), 9, np.uint8))
    reader = SimpleNamespace(class_names=["background", "a"], ids=["m"], mask_path=lambda i: str(path))
    with pytest.raises(ValueError, match=rf"{path}: values \[9\]"):
        read_gt(reader, "m")


def test_confusion_error_names_the_image_and_prediction(tmp_path: Path) -> None:
    from wsss.evaluation import evaluate_label_dir

    dataset, _ = _scored_folder(tmp_path, bad_value=1)
    write_label_png(tmp_path / "pred" / "im2.png", np.full((8, 8), 5, np.uint8))  # class 5 of a 2-class set
    with pytest.raises(ValueError, match=r"image 'im2' \(prediction .*im2\.png"):
        evaluate_label_dir(tmp_path / "pred", dataset)


# --- classifier and stage one agree on the split --------------------------------------------------------------------
def test_classifier_split_defaults_to_data_split() -> None:
    from wsss.classifier.train import classifier_split

    cfg = SimpleNamespace(data=SimpleNamespace(split="train_aug"), classifier=SimpleNamespace(timm=SimpleNamespace(split=None)))
    assert classifier_split(cfg) == "train_aug"
    cfg.classifier.timm.split = "train"
    assert classifier_split(cfg) == "train"
