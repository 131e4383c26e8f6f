"""A wheel of wsss installs and works outside the repository: the command, the shipped configs, a copy of one.

Builds the wheel from a snapshot of setup.py, pyproject.toml and wsss/ (so nothing is written into the
working tree), installs it with --no-deps --no-index into a fresh venv that sees the system's packages
(torch and the rest), and runs it from a folder outside the repository. About 10 s.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "WSSS_DEBUG")} | {"OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=600)
    if check:
        assert proc.returncode == 0, f"{cmd}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the venv, a working folder outside the repository)."""
    tmp = tmp_path_factory.mktemp("packaging")
    src = tmp / "src"
    src.mkdir()
    for name in ("setup.py", "pyproject.toml"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "wsss", src / "wsss", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", ".", "-w", str(tmp / "dist")], src)
    wheels = list((tmp / "dist").glob("wsss-*.whl"))
    assert len(wheels) == 1, wheels
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], tmp)
    python = venv / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", str(wheels[0])], tmp)  # the system's pip
    work = tmp / "elsewhere"
    work.mkdir()
    return venv, work


def test_the_installed_package_comes_from_the_venv(installed: tuple[Path, Path]) -> None:
    venv, work = installed
    code = ("import json, wsss, wsss.paths; "
            "print(json.dumps([wsss.__file__, str(wsss.paths.configs_root()), wsss.paths.shipped_configs()]))")
    out = _run([str(venv / "bin" / "python"), "-c", code], work).stdout
    module, configs, names = json.loads(out.strip().splitlines()[-1])
    assert Path(module).resolve().is_relative_to(venv.resolve()), module
    assert Path(configs).resolve().is_relative_to(venv.resolve()) and not Path(configs).resolve().is_relative_to(REPO)
    assert {"photos", "quickstart", "train/voc_deeplabv3plus"} <= set(names)


def test_wsss_command_runs_outside_the_repo(installed: tuple[Path, Path]) -> None:
    venv, work = installed
    wsss = str(venv / "bin" / "wsss")
    out = _run([wsss, "--help"], work).stdout
    assert "gen-pseudo" in out and "configs" in out and "quickstart" in out
    assert "usage: wsss gen-pseudo" in _run([wsss, "gen-pseudo", "--help"], work).stdout
    listing = _run([wsss, "configs"], work).stdout
    assert any(line.startswith("photos ") for line in listing.splitlines())
    assert any(line.startswith("quickstart ") for line in listing.splitlines())
    _run([wsss, "configs", "copy", "photos", "x.yaml"], work)
    copied = (work / "x.yaml").read_text()
    assert copied.startswith("# Real photos") and "_base_:" in copied
    again = _run([wsss, "configs", "copy", "photos", "x.yaml"], work, check=False)
    assert again.returncode == 1 and "already exists" in again.stderr and (work / "x.yaml").read_text() == copied
    assert sorted(p.name for p in work.iterdir()) == ["x.yaml"]  # nothing else lands in the current directory


def test_the_copy_and_the_shipped_bases_load_in_the_venv(installed: tuple[Path, Path]) -> None:
    """The _base_ chain and the path rule, in the installed package (merging only: no torch needed)."""
    venv, work = installed
    if not (work / "x.yaml").is_file():
        _run([str(venv / "bin" / "wsss"), "configs", "copy", "photos", "x.yaml"], work)
    code = ("import json; from wsss.config import load_yaml_with_bases as load; from wsss.paths import resolve_config; "
            "print(json.dumps([load('x.yaml'), load(resolve_config('quickstart'))]))")
    copy, quickstart = json.loads(_run([str(venv / "bin" / "python"), "-c", code], work).stdout.strip().splitlines()[-1])
    assert copy["model"]["name"] == "deeplabv3plus"  # from _base_/deeplabv3plus.yaml, found in the package
    assert copy["data"]["folder"]["root"] == str(work.resolve() / "data" / "photos")
    assert quickstart["data"]["name"] == "synthetic" and quickstart["classifier"]["name"] == "timm"


def test_the_python_api_finds_a_shipped_preset_in_the_venv(installed: tuple[Path, Path]) -> None:
    """``wsss.Labeler.from_config("photos", ...)`` outside the checkout (config and class names; no image run)."""
    venv, work = installed
    code = ("import json, wsss; lab = wsss.Labeler.from_config('photos', classes=['cat', 'dog'], work_dir='w', "
            "device='cpu'); print(json.dumps([lab.class_names, lab.cfg.classifier.name, wsss.__file__]))")
    names, classifier, where = json.loads(_run([str(venv / "bin" / "python"), "-c", code], work).stdout.strip().splitlines()[-1])
    assert names == ["background", "cat", "dog"] and classifier == "imagenet_lite0"
    assert str(venv) in where
