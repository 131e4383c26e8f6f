"""The ``wsss`` command, its twins in tools/, the shipped configs by name, and where config paths point."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from wsss import cli, paths
from wsss.commands import COMMANDS, load
from wsss.commands.configs import copy_config, format_listing

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "cv2", "timm", "pytorch_grad_cam", "transformers", "gradio")
TOOLS = {"gen-pseudo": "gen_pseudo", "train": "train", "train-classifier": "train_classifier", "eval": "eval",
         "test": "test", "sweep": "sweep", "review": "review", "demo": "demo"}


def _main(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[object, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


# --- the command line -----------------------------------------------------------------------------------------------
def test_help_lists_every_command_on_one_line(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = _main(["--help"], capsys)
    assert code == 0
    for name, (_, line) in COMMANDS.items():
        assert any(row.split() and row.split()[0] == name and line in row for row in out.splitlines()), name
    assert {"quickstart", "gen-pseudo", "train", "train-classifier", "eval", "test", "export", "review", "demo",
            "configs"} <= set(COMMANDS)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_command_help_is_its_docstring(name: str, capsys: pytest.CaptureFixture) -> None:
    code, out, _ = _main([name, "--help"], capsys)
    assert code == 0 and out.startswith(f"usage: wsss {name}")
    first = (load(name).__doc__ or "").strip().splitlines()[0]
    assert first in out and "{prog}" not in out and "{script}" not in out


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture) -> None:
    code, _, err = _main([], capsys)
    assert code == 2 and "gen-pseudo" in err


def test_tool_spelling_of_a_command_is_accepted(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = _main(["gen_pseudo", "--help"], capsys)
    assert code == 0 and "usage: wsss gen-pseudo" in out


def _tool(stem: str) -> object:
    spec = importlib.util.spec_from_file_location(f"tool_{stem}", REPO / "tools" / f"{stem}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name,stem", sorted(TOOLS.items()))
def test_each_tool_is_a_thin_twin_of_its_command(name: str, stem: str) -> None:
    assert _tool(stem).command is load(name)


def test_gen_pseudo_keeps_its_documented_exit_codes() -> None:
    from wsss.commands import gen_pseudo

    assert (gen_pseudo.EXIT_OK, gen_pseudo.EXIT_FAULT, gen_pseudo.EXIT_USAGE, gen_pseudo.EXIT_IMAGES_FAILED) == (0, 1, 2, 3)
    doc = gen_pseudo.__doc__ or ""
    for line in ("0  every image labelled", "1  the run stopped", "2  usage or config error", "3  the run finished",
                 "130  interrupted"):
        assert line in doc


def test_help_path_imports_no_heavy_library() -> None:
    """Building every command's parser, and every tool's --help, leaves torch & co. unimported."""
    code = f"""
import json, runpy, sys
from pathlib import Path
from wsss import cli
from wsss.commands import COMMANDS
for name in COMMANDS:
    cli.build_main_parser(name)
for tool in sorted(Path("tools").glob("*.py")):
    sys.argv = [str(tool), "--help"]
    try:
        runpy.run_path(str(tool), run_name="__main__")
    except SystemExit:
        pass
print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_config_error_exits_2_and_a_missing_config_names_the_shipped_ones(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    code, _, err = _main(["gen-pseudo", "quickstart", "--work-dir", str(tmp_path), "--set", "train.epochs=two"], capsys)
    assert code == 2 and "train.epochs: expected int" in err
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", str(tmp_path / "nope.yaml"), "--work-dir", str(tmp_path)])
    message = str(exit_info.value.code)
    assert "config file not found" in message and "photos" in message and "quickstart" in message


# --- shipped configs ------------------------------------------------------------------------------------------------
def test_configs_lists_names_with_descriptions(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = _main(["configs"], capsys)
    assert code == 0 and out.strip() == format_listing().strip()
    rows = {line.split()[0]: line for line in out.splitlines() if line and not line.startswith("use ")}
    assert "Real photos with the bundled ImageNet" in rows["photos"]
    assert "synthetic data" in rows["quickstart"] and "train/voc_deeplabv3plus" in rows
    assert not any(name.startswith("_base_") for name in rows)


def test_configs_copy_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    dest = tmp_path / "x.yaml"
    code, out, _ = _main(["configs", "copy", "photos", str(dest)], capsys)
    assert code == 0 and dest.read_text() == (paths.configs_root() / "photos.yaml").read_text()
    dest.write_text("# mine\n")
    code, _, err = _main(["configs", "copy", "photos", str(dest)], capsys)
    assert code == 1 and "already exists" in err and dest.read_text() == "# mine\n"
    assert copy_config("quickstart", tmp_path) == tmp_path / "quickstart.yaml"  # into a folder
    with pytest.raises(FileNotFoundError, match="no shipped config named 'nope'.*photos"):
        copy_config("nope", tmp_path)


def test_a_copied_config_loads_the_same_from_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from wsss.config import load_config, to_dict

    monkeypatch.chdir(tmp_path)
    for name in ("train/voc_deeplabv3plus", "quickstart", "sam2_cam_match"):
        copy = copy_config(name, tmp_path / f"{name.replace('/', '_')}.yaml")
        if name.startswith("train/"):
            assert "../" not in copy.read_text()  # its _base_ entries now name shipped configs
        ours, shipped = to_dict(load_config(copy)), to_dict(load_config(name))
        ours.pop("name"), shipped.pop("name")
        assert ours == shipped


def test_resolve_config_takes_files_and_shipped_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = paths.configs_root()
    monkeypatch.chdir(tmp_path)
    assert paths.resolve_config("photos") == root / "photos.yaml"
    assert paths.resolve_config("configs/quickstart.yaml") == root / "quickstart.yaml"  # the repo spelling, elsewhere
    assert paths.resolve_config("train/voc_deeplabv3plus") == root / "train" / "voc_deeplabv3plus.yaml"
    (tmp_path / "photos").write_text("seed: 1\n")  # a file of that name wins over the shipped config
    assert paths.resolve_config("photos") == Path("photos")
    with pytest.raises(FileNotFoundError) as e:
        paths.resolve_config("phtos")
    assert len(str(e.value).splitlines()) == 1 and "photos" in str(e.value) and "quickstart" in str(e.value)
    assert paths.find_preset("../setup.py") is None


def test_repo_configs_link_points_at_the_package() -> None:
    assert (REPO / "configs").resolve() == paths.configs_root().resolve()


# --- paths in configs -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key,value,resolved", [
    ("root", "data/x", "/base/data/x"),
    ("root", "/abs/x", "/abs/x"),
    ("work_dir", "../out", "/out"),
    ("cache_dir", "c", "/base/c"),
    ("labels_dir", "./l", "/base/l"),
    ("checkpoint", "ckpt/sam.pth", "/base/ckpt/sam.pth"),
    ("checkpoint", "hf:facebook/sam2.1-hiera-tiny/sam2.1_hiera_tiny.pt", None),
    ("checkpoint", "https://x.org/sam.pth", None),
    ("pretrained", "bundled:efficientnet-lite0", None),
    ("pretrained", "openai", None),  # an open_clip tag
    ("pretrained", "weights/clip.bin", "/base/weights/clip.bin"),
    ("encoder_weights", "imagenet", None),
    ("encoder_weights", "enc.pth", "/base/enc.pth"),
    ("model", "IDEA-Research/grounding-dino-tiny", None),  # a hub id
    ("model", "./gdino", "/base/gdino"),
    ("model", "ViT-B-16", None),
    ("mask_dir", "SegmentationClassAug", None),  # relative to the data set root, not a config path
    ("images", "images", None),
    ("out", "pseudo", None),
])
def test_path_rule(key: str, value: str, resolved: str | None) -> None:
    assert paths.resolve_value(key, value, "/base") == (value if resolved is None else resolved)


def test_variables_and_the_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from wsss.data.synthetic import SyntheticParams
    from wsss.models.weights import cache_dir

    monkeypatch.delenv("WSSS_HOME", raising=False)
    monkeypatch.setenv("WSSS_CACHE", str(tmp_path / "old"))  # the older name still works
    assert paths.wsss_home() == cache_dir() == tmp_path / "old"
    monkeypatch.setenv("WSSS_HOME", str(tmp_path / "home"))
    assert paths.wsss_home() == cache_dir() == tmp_path / "home"
    assert SyntheticParams().root == str(tmp_path / "home" / "datasets" / "synthetic")
    monkeypatch.setenv("MY_DATA", "/data")
    monkeypatch.chdir(tmp_path)
    got = paths.resolve_config_paths({"data": {"voc": {"root": "${MY_DATA}/voc"}, "coco": {"root": "${CWD}/c"}},
                                      "model": {"x": {"checkpoint": "${WSSS_HOME}/k.pth"}}}, "/base")
    assert got == {"data": {"voc": {"root": "/data/voc"}, "coco": {"root": str(tmp_path / "c")}},
                   "model": {"x": {"checkpoint": str(tmp_path / "home" / "k.pth")}}}
    with pytest.raises(ValueError, match=r"data\.root: \$\{NOPE_NOT_SET\} is not set"):
        paths.resolve_config_paths({"data": {"root": "${NOPE_NOT_SET}/x"}}, "/base")


def test_config_paths_follow_the_file_that_wrote_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from wsss.config import ConfigError, load_config

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "run").mkdir()
    (tmp_path / "a" / "base.yaml").write_text("data:\n  name: folder\n  folder: {root: images}\n"
                                              "classifier: {timm: {checkpoint: clf.pth}}\n")
    child = tmp_path / "b" / "child.yaml"
    child.write_text("_base_: ../a/base.yaml\ntrain: {labels_dir: labels}\nwork_dir: out\n")
    monkeypatch.setenv("WSSS_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path / "run")
    cfg = load_config(child)
    assert cfg.data.folder.root == str(tmp_path / "a" / "images")  # written in base.yaml: relative to a/
    assert cfg.classifier.timm.checkpoint == str(tmp_path / "a" / "clf.pth")
    assert cfg.train.labels_dir == str(tmp_path / "b" / "labels")  # written in child.yaml: relative to b/
    assert cfg.work_dir == str(tmp_path / "b" / "out")
    assert cfg.data.folder.images == "images"  # relative to the data set root, untouched
    assert cfg.data.synthetic.root == str(tmp_path / "home" / "datasets" / "synthetic")  # the default
    cfg = load_config(child, ["data.folder.root=mine", "train.labels_dir=/abs/labels"])  # --set: the current dir
    assert cfg.data.folder.root == str(tmp_path / "run" / "mine") and cfg.train.labels_dir == "/abs/labels"
    child.write_text("data: {folder: {root: '${NOT_SET_ANYWHERE}'}}\n")
    with pytest.raises(ConfigError, match=r"child\.yaml: data\.folder\.root: \$\{NOT_SET_ANYWHERE\} is not set"):
        load_config(child)


def test_shipped_configs_put_generated_things_in_wsss_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from wsss.config import load_config

    monkeypatch.setenv("WSSS_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    assert load_config("quickstart").data.synthetic.root == str(home / "datasets" / "synthetic")
    coco = load_config("coco_grabcut_cam").data.coco
    assert coco.cache_dir == str(home / "datasets" / "coco2014_masks") and coco.root == str(tmp_path / "data" / "coco")
    assert load_config("sam_cam_match").masks.sam_cam_match.model.checkpoint == str(home / "checkpoints" /
                                                                                     "sam_vit_b_01ec64.pth")
    train = load_config("train/voc_deeplabv3plus").train
    assert train.labels_dir == str(tmp_path / "work_dirs" / "voc_grabcut_cam" / "pseudo" / "labels")
