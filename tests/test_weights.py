"""Checkpoint specs by every form a user can write: a local path, ``hf:<repo>/<file>`` and an http(s) URL.

Offline: the hub form reads a Hugging Face cache laid out as the library lays it out (``HF_HUB_OFFLINE``),
and the URL form downloads from a server on 127.0.0.1, through the same code an online user runs.
"""
from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import pytest
import torch

from wsss.models.tiny import build_tiny_sam
from wsss.models.weights import checkpoint_available, resolve_checkpoint


@pytest.fixture
def tiny_sam_file(tmp_path: Path) -> Path:
    path = tmp_path / "served" / "tiny_sam.pth"
    path.parent.mkdir()
    torch.save(build_tiny_sam().state_dict(), path)
    return path


def _hf_cache(home: Path, repo: str, filename: str, payload: bytes) -> None:
    """The layout huggingface_hub writes: models--owner--name/{blobs, snapshots/<rev>/<file>, refs/main}."""
    folder = home / "hub" / f"models--{repo.replace('/', '--')}"
    rev = "0" * 40
    (folder / "snapshots" / rev).mkdir(parents=True)
    (folder / "snapshots" / rev / filename).write_bytes(payload)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(rev)


def test_hf_spec_resolves_through_the_hub_cache(tmp_path: Path, tiny_sam_file: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "hf"
    _hf_cache(home, "someone/tiny-sam", "tiny_sam.pth", tiny_sam_file.read_bytes())
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    path = resolve_checkpoint("hf:someone/tiny-sam/tiny_sam.pth", "sam", "masks.sam_box.model.checkpoint")
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert set(state) == set(build_tiny_sam().state_dict())
    with pytest.raises(ValueError, match="hf:<owner>/<repo>/<file>"):
        resolve_checkpoint("hf:only-repo", "sam", "masks.sam_box.model.checkpoint")


def test_url_spec_downloads_once_into_wsss_home(tmp_path: Path, tiny_sam_file: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(Handler, directory=str(tiny_sam_file.parent)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("WSSS_HOME", str(tmp_path / "home"))
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/tiny_sam.pth"
        first = resolve_checkpoint(url, "sam", "k")
        second = resolve_checkpoint(url, "sam", "k")
    finally:
        server.shutdown()
    assert first == second == tmp_path / "home" / "checkpoints" / "tiny_sam.pth"
    assert first.read_bytes() == tiny_sam_file.read_bytes()
    assert requests == ["/tiny_sam.pth"]  # one download; the second call reads the cache
    assert not list(first.parent.glob("*.part"))


def test_local_and_missing_specs(tmp_path: Path, tiny_sam_file: Path) -> None:
    assert resolve_checkpoint(str(tiny_sam_file), "sam", "k") == tiny_sam_file
    with pytest.raises(FileNotFoundError, match="masks.sam_box.model.checkpoint: no sam checkpoint"):
        resolve_checkpoint(str(tmp_path / "nope.pth"), "sam", "masks.sam_box.model.checkpoint")
    assert checkpoint_available(str(tiny_sam_file)) and checkpoint_available("hf:a/b/c.pt")
    assert not checkpoint_available(str(tmp_path / "nope.pth")) and not checkpoint_available("")
