"""Where things live: the shipped configs, the cache dir, and what a path written in a config means.

The configs ship inside the package (``wsss/configs``), so ``pip install wsss`` users can name them
(``photos``, ``quickstart``, ``train/voc_deeplabv3plus``) wherever a CONFIG is taken.

A path value in a config file is relative to **that file's folder** (with ``_base_`` chains: the file
the value was written in), not to the current directory, so a config means the same thing from
wherever it is run. ``--set`` values are relative to the current directory, like any command-line
argument. Which keys hold paths (see docs/cli.md, "Paths"):

- always a path: ``root``, ``work_dir``, ``cache_dir``, ``labels_dir``, ``checkpoint``;
- a path only when it looks local (starts with ``./``, ``../``, ``/``, ``~`` or ``${``, or ends in
  ``.pth``, ``.pt``, ``.bin``, ``.safetensors``, ``.ckpt``): ``pretrained``, ``encoder_weights``,
  ``backbone_weights``, ``model``; otherwise it is a name (an open_clip tag, ``imagenet``, a hub id);
- never rewritten: ``scheme:`` specs (``hf:``, ``https://``, ``bundled:``), and every other key
  (``data.voc.mask_dir``, ``data.folder.images``, ``pseudo.out``, ...: those are relative to the data
  set root or the work dir, as before).

Values may start with ``~`` or hold ``${WSSS_HOME}`` (the cache dir, below), ``${CWD}`` (the current
directory: the shipped presets use it for data sets and other runs' work dirs, the mmseg habit) or
``${NAME}`` for any environment variable.

``WSSS_HOME`` (default ``~/.cache/wsss``; ``WSSS_CACHE`` is the older name and still read) holds
what wsss generates or downloads for itself: the synthetic data set, the COCO mask cache, downloaded
checkpoints.
"""
from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path
from typing import Any

HOME_ENV = "WSSS_HOME"
HOME_ALIASES = ("WSSS_CACHE",)  # what wsss/models/weights.py read before WSSS_HOME existed

PATH_KEYS = frozenset({"root", "work_dir", "cache_dir", "labels_dir", "checkpoint"})
WEIGHTS_KEYS = frozenset({"pretrained", "encoder_weights", "backbone_weights", "model"})
WEIGHTS_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt")
LOCAL_PREFIXES = ("./", "../", "/", "~", "${")

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+:")  # hf:, https://, bundled: (two letters or more: not C:)
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def wsss_home() -> Path:
    """The cache dir for generated and downloaded things: ``$WSSS_HOME``, else ``$WSSS_CACHE``, else ``~/.cache/wsss``."""
    for name in (HOME_ENV, *HOME_ALIASES):
        value = os.environ.get(name, "").strip()
        if value:
            return Path(os.path.abspath(os.path.expanduser(value)))
    return Path.home() / ".cache" / "wsss"


# ----------------------------------------------------------------------------- the shipped configs
def configs_root() -> Path:
    """The folder of the shipped configs (package data, so it exists in a wheel install too)."""
    root = resources.files("wsss") / "configs"
    if not isinstance(root, Path):  # a zipped install: the YAML files are not files on disk
        raise RuntimeError(f"wsss is installed in a way that hides its configs ({root}); install it as files")
    return root


def shipped_configs(include_bases: bool = False) -> list[str]:
    """Preset names (``photos``, ``train/voc_deeplabv3plus``), top-level ones first; ``_base_/`` parts on request."""
    root = configs_root()
    names = [p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.yaml")]
    if not include_bases:
        names = [n for n in names if not n.startswith("_base_/")]
    return sorted(names, key=lambda n: (n.count("/"), n))


def describe_config(path: str | os.PathLike) -> str:
    """A config's one-line description: its first comment line."""
    for line in Path(path).read_text().splitlines():
        text = line.strip()
        if text.startswith("#"):
            return text.lstrip("#").strip()
    return ""


def find_preset(name: str | os.PathLike) -> Path | None:
    """The shipped config called ``name`` (``photos``, ``photos.yaml``, ``configs/photos.yaml``,
    ``_base_/synthetic``), or None."""
    text = str(name).replace(os.sep, "/")
    if not text or Path(text).is_absolute() or ".." in text.split("/"):
        return None
    root = configs_root()
    for candidate in dict.fromkeys((text, text.removeprefix("configs/"))):
        for option in (candidate, candidate + ".yaml"):
            path = root / option
            if option.endswith(".yaml") and path.is_file():
                return path
    return None


def resolve_config(name_or_path: str | os.PathLike) -> Path:
    """A config file to load: ``name_or_path`` if that file exists, else the shipped preset of that name.

    Raises FileNotFoundError with one line naming the presets when it is neither.
    """
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    preset = find_preset(name_or_path)
    if preset is not None:
        return preset
    raise FileNotFoundError(f"config file not found: {name_or_path} (no such file, and no shipped config of that name; "
                            f"shipped: {', '.join(shipped_configs())}; `wsss configs` describes them)")


# ----------------------------------------------------------------------------- paths inside a config
def expand(value: str) -> str:
    """``${WSSS_HOME}``, ``${CWD}``, ``${ENV_VAR}`` and a leading ``~``, substituted."""
    def substitute(match: re.Match) -> str:
        name = match.group(1)
        if name == HOME_ENV:
            return str(wsss_home())
        if name == "CWD":
            return os.getcwd()
        if name in os.environ:
            return os.environ[name]
        raise ValueError(f"${{{name}}} is not set: it is neither an environment variable nor ${{WSSS_HOME}} / ${{CWD}}")

    return os.path.expanduser(_VARIABLE.sub(substitute, value))


def is_path(key: str, value: Any) -> bool:
    """Whether config key ``key`` holding ``value`` names a local file or folder (the rule in the module doc)."""
    if not isinstance(value, str) or not value or _SCHEME.match(value):
        return False
    if key in PATH_KEYS:
        return True
    return key in WEIGHTS_KEYS and (value.startswith(LOCAL_PREFIXES) or value.lower().endswith(WEIGHTS_SUFFIXES))


def resolve_value(key: str, value: Any, base: str | os.PathLike, where: str = "") -> Any:
    """``value`` of config key ``key`` with its paths made absolute against folder ``base`` (mappings: recursively)."""
    where = where or key
    if isinstance(value, dict):
        return {k: resolve_value(str(k), v, base, f"{where}.{k}") for k, v in value.items()}
    if not is_path(key, value):
        return value
    try:
        expanded = expand(value)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    return os.path.normpath(os.path.join(os.fspath(base), expanded))  # join keeps an absolute value as it is


def resolve_config_paths(data: dict, base: str | os.PathLike) -> dict:
    """A copy of ``data`` (the keys one config file wrote) with every path value resolved against ``base``
    (that file's folder). Raises ValueError naming the key for an unset ``${VAR}``."""
    return {k: resolve_value(str(k), v, base) for k, v in data.items()}


def resolve_paths_at(data: dict, keys: list[str], base: str | os.PathLike) -> None:
    """Resolve, in place, the value at the dotted key ``keys`` (a ``--set`` override) against ``base``."""
    node = data
    for part in keys[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            return
    if isinstance(node, dict) and keys and keys[-1] in node:
        node[keys[-1]] = resolve_value(keys[-1], node[keys[-1]], base, ".".join(keys))
