"""Run control of stage one: environment faults stop the run, exit codes, and the output-folder lock."""
from __future__ import annotations

import errno
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from wsss.pseudo import pipeline, read_manifest
from wsss.pseudo.lock import FolderLock, LockHeld, this_holder
from wsss.pseudo.pipeline import EnvironmentFault
from wsss.runner import gen_pseudo

from .conftest import QUICKSTART, REPO


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_pseudo_tool", REPO / "tools" / "gen_pseudo.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cli(argv: list[str]) -> int:
    """Exit code of ``tools/gen_pseudo.py argv`` as the shell sees it (run_cli included), in process."""
    from wsss.utils.cli import run_cli

    tool = _tool()
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: sys.exit(tool.main(argv)))
    code = exit_info.value.code
    return code if isinstance(code, int) else 1


def _argv(tiny_run: tuple, work: Path, *extra: str) -> list[str]:
    cfg, work_dir, overrides = tiny_run
    ckpt = work_dir / "classifier" / "classifier.pth"
    return [str(QUICKSTART), "--work-dir", str(work), "--no-eval", *extra, "--set", *overrides,
            f"classifier.timm.checkpoint={ckpt}", "pseudo.overlays=0"]


def _cfg(tiny_run: tuple) -> Any:
    import copy

    cfg, work_dir, _ = tiny_run
    cfg = copy.deepcopy(cfg)
    cfg.classifier.timm.checkpoint = str(work_dir / "classifier" / "classifier.pth")
    cfg.pseudo.overlays = 0
    return cfg


def _fail_on_call(n: int, exc: OSError, real: Any) -> tuple[Any, list[int]]:
    """A stand-in for a writer that works ``n - 1`` times and then raises ``exc`` every time."""
    calls: list[int] = []

    def writer(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) >= n:
            raise exc
        return real(*args, **kwargs)

    return writer, calls


# --- environment faults stop the run -----------------------------------------------------------------------
@pytest.mark.parametrize("code", [errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EROFS, errno.EDQUOT])
def test_write_fault_stops_the_run_at_once(tiny_run: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          code: int) -> None:
    cfg = _cfg(tiny_run)
    exc = (PermissionError if code in (errno.EACCES, errno.EPERM) else OSError)(code, os.strerror(code), "x.png")
    writer, calls = _fail_on_call(2, exc, pipeline.write_label_png)
    monkeypatch.setattr(pipeline, "write_label_png", writer)
    with pytest.raises(EnvironmentFault) as err:
        gen_pseudo(cfg, tmp_path / "work")
    out = tmp_path / "work" / cfg.pseudo.out
    second = read_manifest(out / "manifest.jsonl")
    assert len(calls) == 2  # stopped at the first failed write, not after computing every image
    assert len(second) == 1 and all(r["status"] == "ok" for r in second.values())  # nothing logged as a bad image
    assert err.value.errno == code and "labels" in str(err.value) and os.strerror(code) in str(err.value)
    assert "--work-dir" in str(err.value) and "\n" not in str(err.value)
    assert not (out / ".lock").exists()


def test_unwritable_labels_folder_fails_before_any_model_loads(tiny_run: tuple, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _cfg(tiny_run)
    real_mkstemp = tempfile.mkstemp

    def mkstemp(*args: Any, dir: Any = None, **kwargs: Any) -> Any:  # noqa: A002 - tempfile's own name
        if dir is not None and Path(dir).name == "labels":
            raise PermissionError(errno.EACCES, "Permission denied", str(dir))
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(pipeline, "PseudoLabeler", lambda *a: pytest.fail("models loaded before the check"))
    with pytest.raises(EnvironmentFault, match=r"cannot write .*labels: Permission denied; check the permissions"):
        gen_pseudo(cfg, tmp_path / "work")
    assert not (tmp_path / "work" / cfg.pseudo.out / ".lock").exists()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_labels_folder_exits_1_with_one_line(tiny_run: tuple, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    labels = tmp_path / "work" / "pseudo" / "labels"
    labels.mkdir(parents=True)
    labels.chmod(0o555)
    try:
        assert _cli(_argv(tiny_run, tmp_path / "work")) == 1
    finally:
        labels.chmod(0o755)
    err = capsys.readouterr().err
    assert f"error: cannot write {labels}: Permission denied" in err


def test_disk_full_while_computing_stops_but_unreadable_input_is_per_image(
        tiny_run: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from wsss.data.folder import FolderDataset

    cfg = _cfg(tiny_run)
    real_load = FolderDataset.load
    loader, _ = _fail_on_call(3, PermissionError(errno.EACCES, "Permission denied", "in.png"), real_load)
    monkeypatch.setattr(FolderDataset, "load", loader)
    _, records = gen_pseudo(cfg, tmp_path / "a")  # reading an input is the image's problem: recorded, goes on
    assert sum(r["status"] == "error" for r in records.values()) == len(records) - 2

    loader, calls = _fail_on_call(3, OSError(errno.ENOSPC, "No space left on device", "/tmp/cache"), real_load)
    monkeypatch.setattr(FolderDataset, "load", loader)
    with pytest.raises(EnvironmentFault, match="cannot write /tmp/cache: No space left on device"):
        gen_pseudo(cfg, tmp_path / "b")
    assert len(calls) == 3


# --- exit codes ----------------------------------------------------------------------------------------------
def test_exit_codes_for_failed_images_and_allow_failures(tiny_run: tuple, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    cfg, _, _ = tiny_run
    data = tmp_path / "data"
    shutil.copytree(cfg.data.synthetic.root, data)
    ids = sorted(p.stem for p in (data / "images").glob("train_*.png"))
    for bad in ids[1:3]:
        (data / "images" / f"{bad}.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    argv = _argv(tiny_run, tmp_path / "work") + ["data.name=folder", f"data.folder.root={data}"]
    assert _cli(argv) == 3
    out = capsys.readouterr()
    assert f"{len(ids) - 2} images labelled, 2 failed" in out.out
    assert all(f"{bad}.png" in out.out for bad in ids[1:3])
    assert "exit 3" in out.err
    assert _cli(argv[:3] + ["--allow-failures"] + argv[3:]) == 0  # the rerun retries only the 2 bad ones
    assert "2 failed" in capsys.readouterr().out


def test_summary_names_every_failure_up_to_20() -> None:
    tool = _tool()
    records = {f"im{i}": {"image": f"im{i}", "status": "error", "error": f"ValueError: im{i}.png"} for i in range(25)}
    records |= {"ok0": {"image": "ok0", "status": "ok"}, "lc0": {"image": "lc0", "status": "low_confidence"}}
    lines, failed = tool.summary(records, Path("/w/pseudo"))
    assert failed == 25 and lines[0] == "2 images labelled, 25 failed -> /w/pseudo"
    assert sum("ValueError: im" in line for line in lines) == 20 and "im19.png" in "\n".join(lines)
    assert lines[-1].startswith("  ... and 5 more")


def test_missing_checkpoint_exits_1_and_rerun_with_the_right_one_works(tiny_run: tuple, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture) -> None:
    argv = _argv(tiny_run, tmp_path / "work")
    assert _cli(argv + [f"classifier.timm.checkpoint={tmp_path / 'nope.pth'}"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nope.pth" in err.splitlines()[0]
    assert _cli(argv) == 0  # a folder without labels accepts the corrected classifier config


def test_config_errors_exit_2(tiny_run: tuple, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = _argv(tiny_run, tmp_path / "work")
    assert _cli(argv + ["masks.grabcut_cam.no_such_key=1"]) == 2
    assert "config error" in capsys.readouterr().err
    assert _cli(argv) == 0
    assert _cli(argv + ["masks.grabcut_cam.t=0.55"]) == 2
    assert "different masks config" in capsys.readouterr().err


# --- the output-folder lock ----------------------------------------------------------------------------------
def test_second_run_on_a_held_folder_stops_before_any_work(tiny_run: tuple, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    cfg = _cfg(tiny_run)
    out = tmp_path / "work" / cfg.pseudo.out
    with FolderLock(out):  # what a live run holds
        with pytest.raises(LockHeld, match=f"PID {os.getpid()} on {socket.gethostname()}"):
            gen_pseudo(cfg, tmp_path / "work")
        assert not (out / "labels").exists() and not (out / "manifest.jsonl").exists()
        assert _cli(_argv(tiny_run, tmp_path / "work")) == 1
        assert f"in use by another run: PID {os.getpid()}" in capsys.readouterr().err
    assert not (out / ".lock").exists()
    _, records = gen_pseudo(cfg, tmp_path / "work")  # free again
    assert all(r["status"] == "ok" for r in records.values())


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_lock(folder: Path, **fields: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".lock"
    path.write_text(json.dumps(this_holder() | fields))
    return path


def test_lock_is_exclusive_and_removed_at_exit(tmp_path: Path) -> None:
    with FolderLock(tmp_path) as lock:
        holder = json.loads(lock.path.read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(LockHeld) as err:
            FolderLock(tmp_path).acquire()
        assert err.value.holder["pid"] == os.getpid()
    assert not (tmp_path / ".lock").exists()


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    _write_lock(tmp_path, pid=_dead_pid(), start=None)
    with FolderLock(tmp_path) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()


def test_reused_pid_or_reboot_makes_a_lock_stale(tmp_path: Path) -> None:
    me = this_holder()
    if me["start"] is None:
        pytest.skip("no /proc: process start times unknown")
    _write_lock(tmp_path, start=me["start"] + 1)  # our PID, but another process's start time
    FolderLock(tmp_path).acquire()
    _write_lock(tmp_path / "b", boot="another-boot")
    FolderLock(tmp_path / "b").acquire()


def test_lock_of_another_host_or_being_written_is_respected(tmp_path: Path) -> None:
    _write_lock(tmp_path / "a", pid=_dead_pid(), host="elsewhere")
    with pytest.raises(LockHeld, match="on elsewhere"):
        FolderLock(tmp_path / "a").acquire()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / ".lock").write_text("")  # a holder between O_EXCL create and its write
    with pytest.raises(LockHeld, match="still being written"):
        FolderLock(tmp_path / "b").acquire()
    old = time.time() - 3600  # ... or one that died right then
    os.utime(tmp_path / "b" / ".lock", (old, old))
    FolderLock(tmp_path / "b").acquire()


def test_release_never_removes_another_runs_lock(tmp_path: Path) -> None:
    lock = FolderLock(tmp_path)
    lock.acquire()
    other = _write_lock(tmp_path, pid=12345678)  # e.g. taken over after ours was judged stale
    lock.release()
    assert other.is_file()


def test_racing_takers_of_a_stale_lock_let_exactly_one_in(tmp_path: Path) -> None:
    _write_lock(tmp_path, pid=_dead_pid(), start=None)
    results: list[str] = []
    start = threading.Barrier(8)

    def take() -> None:
        start.wait()
        try:
            FolderLock(tmp_path).acquire()
            results.append("won")
        except LockHeld:
            results.append("held")

    threads = [threading.Thread(target=take) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["held"] * 7 + ["won"]
    assert not list(tmp_path.glob(".lock.*"))  # the takeover guard is gone
