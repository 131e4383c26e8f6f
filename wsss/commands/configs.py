"""List the shipped configs, or copy one out to edit.

    {prog}                     # every shipped config with its one-line description
    {prog} copy NAME [DEST]    # copy one to DEST (default ./<name>.yaml); never overwrites a file

Any command that takes a CONFIG takes a shipped config's name as well as a file: `wsss gen-pseudo photos
--set data.folder.root=DIR`. A copy keeps working outside the package: its `_base_` entries name shipped
configs, which resolve from anywhere unless a file of that name sits beside the copy. Path values in a
config are relative to the config file's folder (see docs/cli.md, "Paths").
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.add_parser("list", help="list the shipped configs (the default)")
    copy = actions.add_parser("copy", help="copy a shipped config out to edit; refuses to overwrite")
    copy.add_argument("name", metavar="NAME", help="a shipped config, e.g. photos or train/voc_deeplabv3plus")
    copy.add_argument("dest", metavar="DEST", nargs="?", help="file or existing folder (default: ./<name>.yaml)")


def run(args: argparse.Namespace) -> int:
    if args.action == "copy":
        dest = copy_config(args.name, args.dest)
        print(f"{args.name} -> {dest}")
        return 0
    print(format_listing())
    return 0


def format_listing() -> str:
    """One line per shipped config: its name and the first comment line of its YAML."""
    from wsss.paths import configs_root, describe_config, shipped_configs

    root = configs_root()
    names = shipped_configs()
    width = max(map(len, names), default=0)
    lines = [f"{n:<{width}}  {describe_config(root / (n + '.yaml'))}" for n in names]
    lines += ["", "use one by name (wsss gen-pseudo photos ...) or copy it to edit: wsss configs copy NAME [DEST]"]
    return "\n".join(lines)


def copy_config(name: str, dest: str | os.PathLike | None = None) -> Path:
    """Copy shipped config ``name`` to ``dest`` (a file, or an existing folder); FileExistsError if it exists.

    ``_base_`` entries are rewritten as shipped-config names (``../voc_grabcut_cam.yaml`` from ``train/``
    becomes ``voc_grabcut_cam.yaml``), so the copy loads from anywhere; the rest of the text, comments
    included, is copied as it is.
    """
    from wsss.paths import find_preset, shipped_configs

    src = find_preset(name)
    if src is None:
        raise FileNotFoundError(f"no shipped config named {name!r}; shipped: {', '.join(shipped_configs())}")
    target = Path(dest) if dest is not None else Path.cwd() / src.name
    if target.is_dir():
        target = target / src.name
    text = _portable_bases(src)
    try:
        with open(target, "x") as f:  # exclusive create: an existing file is never replaced
            f.write(text)
    except FileExistsError:
        raise FileExistsError(f"{target} already exists: not overwritten; give another DEST or remove it") from None
    return target


def _portable_bases(src: Path) -> str:
    """The text of ``src`` with its ``_base_`` line naming shipped configs relative to the configs root."""
    import yaml

    from wsss.paths import configs_root

    text = src.read_text()
    bases = (yaml.safe_load(text) or {}).get("_base_") or []
    bases = [bases] if isinstance(bases, str) else list(bases)
    root = configs_root().resolve()
    portable = []
    for base in bases:
        full = (src.parent / str(base)).resolve()
        portable.append(full.relative_to(root).as_posix() if full.is_relative_to(root) else str(base))
    if portable == [str(b) for b in bases]:
        return text
    lines = text.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith("_base_:"))
    end = start + 1
    while end < len(lines) and lines[end].lstrip().startswith("- "):  # a block list under `_base_:`
        end += 1
    lines[start:end] = [f"_base_: [{', '.join(portable)}]   # shipped configs (wsss configs)\n"]
    return "".join(lines)
