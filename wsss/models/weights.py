"""Where SAM / SAM 2 / CLIP / Grounding-DINO weights come from: a local path, a hub file or a URL.

Offline use needs a local path. Online users may write ``hf:<repo_id>/<file>`` (downloaded once
into the Hugging Face cache) or an ``https://`` URL (downloaded once into ``$WSSS_HOME/checkpoints``, default ``~/.cache/wsss``).
A missing file is an error naming the expected path and where such checkpoints are published,
never a silently random model.
"""
from __future__ import annotations

from pathlib import Path

from wsss.paths import wsss_home

PUBLISHED = {
    "sam": "https://github.com/facebookresearch/segment-anything#model-checkpoints "
           "(sam_vit_b_01ec64.pth, sam_vit_l_0b3195.pth, sam_vit_h_4b8939.pth)",
    "sam2": "https://github.com/facebookresearch/sam2#download-checkpoints (sam2.1_hiera_tiny.pt, "
            "sam2.1_hiera_small.pt, sam2.1_hiera_base_plus.pt, sam2.1_hiera_large.pt; or hf:facebook/sam2.1-hiera-tiny/"
            "sam2.1_hiera_tiny.pt)",
    "clip": "open_clip's pretrained tags (open_clip.list_pretrained()), e.g. the Hugging Face repo "
            "laion/CLIP-ViT-B-32-laion2B-s34B-b79K (open_clip_pytorch_model.bin)",
    "grounding_dino": "the Hugging Face repos IDEA-Research/grounding-dino-tiny or IDEA-Research/grounding-dino-base "
                      "(a folder with config.json, model.safetensors and the processor files)",
}


def cache_dir() -> Path:
    """Downloads go to ``$WSSS_HOME/checkpoints`` (``WSSS_CACHE`` still works): see :func:`wsss.paths.wsss_home`."""
    return wsss_home()


def is_remote(spec: str) -> bool:
    return spec.startswith(("hf:", "http://", "https://"))


def resolve_checkpoint(spec: str, kind: str, key: str) -> Path:
    """A local file for ``spec``; downloads (once, cached) only for a hub id or URL.

    ``key`` is the config key that holds ``spec``, named in the error so the user knows what to edit.
    """
    if not spec:
        raise FileNotFoundError(f"{key} is empty: set it to a local {kind} checkpoint; they are published at "
                                f"{PUBLISHED[kind]}")
    if spec.startswith("hf:"):
        from huggingface_hub import hf_hub_download

        repo_file = spec[3:].lstrip("/")
        parts = repo_file.split("/")
        if len(parts) < 3:
            raise ValueError(f"{key}: '{spec}' is not hf:<owner>/<repo>/<file>")
        return Path(hf_hub_download("/".join(parts[:2]), "/".join(parts[2:])))
    if spec.startswith(("http://", "https://")):
        import torch.hub

        target = cache_dir() / "checkpoints" / Path(spec.split("?")[0]).name
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(target.suffix + ".part")
            torch.hub.download_url_to_file(spec, str(tmp), progress=True)
            tmp.replace(target)  # atomic: a broken download never looks finished
        return target
    path = Path(spec).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{key}: no {kind} checkpoint at '{path.resolve()}'. Download one to that path "
                                f"(published at {PUBLISHED[kind]}) or point {key} at yours.")
    return path


def checkpoint_available(spec: str | None) -> bool:
    """Whether :func:`resolve_checkpoint` can give ``spec`` without failing here: a local file that exists,
    or a hub id / URL (downloaded on first use). The demo offers a model only when this holds."""
    return bool(spec) and (is_remote(spec) or Path(spec).expanduser().exists())
