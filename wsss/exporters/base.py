"""The exporter interface, its registry, the reader of a pseudo-label folder and the one ``export`` entry point.

A pseudo dir (stage one's output) is ``manifest.jsonl`` plus ``labels/<id>.png`` class-index maps
(0 = background, 255 = uncertain / ignore). Every writer takes the same stream of :class:`ExportItem`
and turns it into one annotation tool's format, so a new format is one small module and one
``EXPORTERS.register`` line in ``wsss/exporters/__init__.py``.
"""
from __future__ import annotations

import dataclasses
import difflib
import statistics
import typing
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import yaml

from wsss.registry import Registry

EXPORTERS = Registry("export")


@dataclasses.dataclass
class ExportItem:
    """One labelled image as every writer sees it."""

    image_id: str
    label_map: np.ndarray  # HxW uint8 class indices, 0 = background, 255 = uncertain (exported as nothing)
    file_name: str  # the image path as the annotation tool should see it (relative to what you upload)
    width: int
    height: int
    score: float | None = None  # quality.estimate of the manifest, else the mean classifier score, else None
    image_file: Path | None = None  # the image on disk, when known (YOLO links or copies it)


@runtime_checkable
class Exporter(Protocol):
    """A label format: ``write`` consumes the items and returns counts (at least ``images``)."""

    name: str
    default_out: str  # file or folder name under the pseudo dir when no ``out`` is given

    def write(self, items: Iterable[ExportItem], class_names: Sequence[str], out: Path) -> dict[str, Any]:
        """Write ``out`` (a file or a folder, per format); class index i is ``class_names[i]``, 0 = background."""
        ...


def item_score(record: Mapping[str, Any]) -> float | None:
    """The manifest's confidence in an image: quality.estimate (≈ expected IoU), else mean classifier score."""
    quality = record.get("quality")
    if isinstance(quality, Mapping) and isinstance(quality.get("estimate"), (int, float)):
        return float(quality["estimate"])
    scores = record.get("scores")
    if isinstance(scores, Mapping) and scores:
        values = [float(v) for v in scores.values() if isinstance(v, (int, float))]
        if values:
            return statistics.fmean(values)
    return None


class PseudoItems:
    """The labelled images of a pseudo dir, read one at a time (label maps are never all in memory).

    Only manifest records that are labelled (status ``ok`` / ``low_confidence``) and whose label PNG
    exists are yielded; the ids of the others land in ``skipped`` as iteration passes them.
    """

    def __init__(self, pseudo_dir: str | Path, image_paths: Mapping[str, str] | None = None,
                 image_files: Mapping[str, str | Path] | None = None) -> None:
        from wsss.pseudo.manifest import read_manifest  # lazy: wsss.pseudo imports the whole pipeline

        self.pseudo_dir = Path(pseudo_dir)
        manifest = self.pseudo_dir / "manifest.jsonl"
        if not manifest.is_file():
            raise FileNotFoundError(f"{manifest} is missing: run `python tools/gen_pseudo.py CONFIG` first "
                                    "(or point at a folder written by tools/import_labels.py)")
        self.records = read_manifest(manifest)
        self.image_paths = dict(image_paths or {})
        self.image_files = {k: Path(v) for k, v in (image_files or {}).items()}
        self.skipped: list[str] = []

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[ExportItem]:
        from wsss.pseudo.manifest import is_labelled
        from wsss.utils.io import read_label_png

        self.skipped = []
        for image_id, rec in self.records.items():
            label_path = self.pseudo_dir / rec.get("label", f"labels/{image_id}.png")
            if not is_labelled(rec) or not label_path.is_file():
                self.skipped.append(image_id)
                continue
            label = read_label_png(label_path)
            image_file = self.image_files.get(image_id)
            default_name = image_file.name if image_file is not None else f"{image_id}.jpg"
            yield ExportItem(image_id=image_id, label_map=label, file_name=self.image_paths.get(image_id, default_name),
                             width=int(label.shape[1]), height=int(label.shape[0]), score=item_score(rec),
                             image_file=image_file)


def read_items(pseudo_dir: str | Path, image_paths: Mapping[str, str] | None = None,
               image_files: Mapping[str, str | Path] | None = None) -> PseudoItems:
    """The exportable images of ``pseudo_dir`` (see :class:`PseudoItems`)."""
    return PseudoItems(pseudo_dir, image_paths, image_files)


def default_class_names(pseudo_dir: str | Path) -> list[str] | None:
    """Class names recorded in the pseudo dir, if any: ``class_names`` in stage_config.yaml or import.json.

    gen_pseudo's stage_config.yaml holds the stage settings but (today) not the data set's class names, so
    for its folders callers pass them (the CLI takes them from the config's data set); folders written by
    :func:`wsss.exporters.import_coco.import_coco` record theirs in import.json.
    """
    import json

    pseudo_dir = Path(pseudo_dir)
    for name, load in (("stage_config.yaml", yaml.safe_load), ("import.json", json.loads)):
        path = pseudo_dir / name
        if path.is_file():
            try:
                data = load(path.read_text())
            except (ValueError, yaml.YAMLError) as e:
                raise ValueError(f"{path}: cannot parse it ({e}); fix or remove the file") from None
            names = data.get("class_names") if isinstance(data, dict) else None
            if isinstance(names, list) and names and all(isinstance(n, str) for n in names):
                return names
    return None


def format_names() -> list[str]:
    """The registered formats (importing :mod:`wsss.exporters` registers them all)."""
    return EXPORTERS.names()


def _option_value(fmt: str, key: str, value: Any, tp: Any) -> Any:
    """``value`` checked against the field type ``tp`` (bool, int, float, str or a Literal of those)."""
    where = f"export.{fmt}.{key}"
    if typing.get_origin(tp) is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ValueError(f"{where} = {value!r}: choose one of {', '.join(map(repr, choices))}")
        return value
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp in (bool, int, str) and isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
        return value
    raise ValueError(f"{where} = {value!r}: expected {getattr(tp, '__name__', tp)}")


def build_exporter(fmt: str, per_component: bool = False, **options: Any) -> Exporter:
    """The writer of ``fmt`` with its options checked (unknown option or wrong type: one clear error)."""
    if fmt not in EXPORTERS:
        close = difflib.get_close_matches(fmt, EXPORTERS.names(), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"unknown export format '{fmt}'.{hint} Choose one of: {', '.join(EXPORTERS.names())}")
    entry = EXPORTERS.get(fmt)
    if entry.params is None:
        if options:
            raise ValueError(f"export format '{fmt}' takes no options, got: {', '.join(options)}")
        return entry.builder()
    hints = typing.get_type_hints(entry.params)
    fields = [f.name for f in dataclasses.fields(entry.params)]
    for key in options:
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1, cutoff=0.5)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ValueError(f"export format '{fmt}' has no option '{key}'.{hint} Its options: {', '.join(fields)}")
    values = {k: _option_value(fmt, k, v, hints[k]) for k, v in options.items()}
    if per_component and "per_component" in fields:
        values["per_component"] = True
    return entry.builder(entry.params(**values))


def export(pseudo_dir: str | Path, fmt: str, out: str | Path | None = None, class_names: Sequence[str] | None = None,
           image_paths: Mapping[str, str] | None = None, per_component: bool = False,
           image_files: Mapping[str, str | Path] | None = None, progress: bool = True, **options: Any) -> dict[str, Any]:
    """Export the pseudo-labels of ``pseudo_dir`` as ``fmt``; returns the writer's counts plus ``skipped`` ids.

    ``out``: the file or folder to write (default ``<pseudo_dir>/<format's default name>``). ``image_paths``:
    image id -> file name the tool should see (default ``<id>.jpg``, or the name of ``image_files[id]``);
    ``image_files``: image id -> the image on disk (YOLO links / copies it). ``per_component``: one annotation
    per 8-connected component instead of one per class (formats that have the choice). ``options``: the
    format's own parameters (e.g. ``val_fraction`` for yolo), checked by name and type.
    """
    from tqdm import tqdm

    exporter = build_exporter(fmt, per_component, **options)
    pseudo_dir = Path(pseudo_dir)
    names = list(class_names) if class_names is not None else default_class_names(pseudo_dir)
    if not names:
        raise ValueError(f"{pseudo_dir}: no class names recorded there; pass class_names (the CLI takes them from "
                         "the config's data set), index 0 = background")
    items = read_items(pseudo_dir, image_paths, image_files)
    out_path = Path(out) if out is not None else pseudo_dir / exporter.default_out
    stream = tqdm(items, total=len(items), desc=f"export {fmt}", unit="img", leave=False, disable=not progress)
    counts = exporter.write(stream, names, out_path)
    return {"format": fmt, "out": str(out_path), **counts, "skipped": list(items.skipped)}


def present_classes(item: ExportItem, num_classes: int) -> list[int]:
    """Foreground classes (1..K-1) in the item's label map; a class index without a name is an error.

    255 (uncertain) is never exported; an index >= K means the class names do not belong to these labels.
    """
    values = [int(v) for v in np.unique(item.label_map)]
    unnamed = [v for v in values if num_classes <= v < 255]
    if unnamed:
        raise ValueError(f"label map of {item.image_id} holds class {unnamed[0]} but only {num_classes} class names "
                         "were given; pass the class names of the data set the labels were made for")
    return [v for v in values if 0 < v < num_classes]
