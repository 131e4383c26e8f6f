"""Stage one for a data set: labels -> cam -> boxes -> masks per image, written to disk.

Outputs under ``out_dir``: ``labels/<id>.png`` (VOC palette, 255 = ignore), ``manifest.jsonl``
and ``overlays/<id>.jpg`` for the first few images. Finished images are skipped on a rerun, so an
interrupted run resumes where it stopped. ``.lock`` keeps a second run out while one works there;
``stage_config.yaml`` (written with the first label) keeps labels of two configs apart.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import tempfile
import traceback
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from tqdm import tqdm

from wsss.boxes import BOX_SOURCES
from wsss.cam import CAM_METHODS
from wsss.data import SegDataset
from wsss.labels import LABEL_SOURCES
from wsss.masks import REFINERS
from wsss.pseudo.lock import FolderLock
from wsss.pseudo.manifest import ManifestWriter, compact, is_labelled, read_manifest
from wsss.pseudo.quality import manifest_quality
from wsss.pseudo.working_size import process_at_working_size
from wsss.record import Record, Resources
from wsss.utils.io import write_image, write_label_png, write_text_atomic
from wsss.utils.runtime import seed_everything, timed
from wsss.viz import as_picture, draw_boxes, heatmap, overlay, panel

STAGE_KEYS = ("classifier", "labels", "cam", "boxes", "masks")  # with pseudo.max_side: what shapes a label


STAGES = ("labels", "cam", "boxes", "masks")  # in pipeline order
REGISTRIES = {"labels": LABEL_SOURCES, "cam": CAM_METHODS, "boxes": BOX_SOURCES, "masks": REFINERS}
StepCallback = Callable[[str, Record], None]


class PseudoLabeler:
    """Stage one for one image: labels -> cam -> boxes -> masks, each stage built once per process.

    ``gen_pseudo`` and the demo both run images through this class. A call may override any stage's
    config section (``overrides={"masks": section}``); a stage is rebuilt only when its section
    changes, and the models the stages share (classifier, SAM) live in ``resources`` and load once.
    """

    def __init__(self, cfg: Any, resources: Resources, preload: Sequence[str] = STAGES) -> None:
        self.cfg = cfg
        self.resources = resources
        self.builds: Counter[str] = Counter()  # stage builds, so callers (and tests) see what was rebuilt
        self._built: dict[str, tuple[str, Any]] = {}
        for kind in preload:  # models load here: a missing checkpoint fails before the first image
            self.stage(kind)

    def close(self) -> None:
        """Unhook the CAM method from the shared classifier and drop the built stages."""
        if "cam" in self._built:
            self._built["cam"][1].release()
        self._built.clear()

    def stage(self, kind: str, section: Any = None) -> Any:
        """The built stage ``kind`` for ``section`` (default: the config's), rebuilt only when it changed."""
        section = getattr(self.cfg, kind) if section is None else section
        key = json.dumps(dataclasses.asdict(section), sort_keys=True, default=str)
        cached = self._built.get(kind)
        if cached is not None and cached[0] == key:
            return cached[1]
        if cached is not None and kind == "cam":
            cached[1].release()  # a CAM method hooks the shared classifier; unhook before the next one
        stage = REGISTRIES[kind].build(section, resources=self.resources)
        self.builds[kind] += 1
        self._built[kind] = (key, stage)
        return stage

    @property
    def refiner(self) -> Any:
        """The refiner the last call used (the config's before any call)."""
        return self._built["masks"][1]

    def process(self, rec: Record, overrides: Mapping[str, Any] | None = None,
                steps: Sequence[str] = STAGES, on_step: StepCallback | None = None) -> Record:
        """Run ``steps`` (default: all four, in order) on ``rec``; ``on_step(kind, rec)`` after each one.

        ``steps`` lets a caller supply a stage's output itself: the demo sets ``rec.classes`` to the
        class the user picked and runs from ``cam`` on.
        """
        overrides = overrides or {}
        for kind in steps:
            stage = self.stage(kind, overrides.get(kind))
            with timed(rec.timings, kind):
                if kind == "labels":
                    rec.classes, rec.scores = stage(rec)
                elif kind == "cam":
                    rec.cams = stage(rec)
                elif kind == "boxes":
                    rec.boxes = stage(rec)
                else:
                    rec.label_map = stage(rec)
            if on_step is not None:
                on_step(kind, rec)
        return rec

    def stage_images(self, rec: Record, cls: int, class_name: str) -> list[tuple[np.ndarray, str]]:
        """(RGB picture, caption) of each stage for class ``cls``: CAM, boxes, the refiner's own steps, mask."""
        image = rec.image
        cam = rec.cams.get(cls, np.zeros(image.shape[:2], np.float32))
        boxes = [b for b in rec.boxes if b.cls == cls]
        views = [(heatmap(image, cam), f"CAM ({class_name})"), (draw_boxes(image, boxes), f"boxes ({len(boxes)})")]
        for title, value in self.refiner.stage_images(rec):
            pic = as_picture(image, value)
            if pic is not None:
                views.append((pic, str(title)))
        label = rec.label_map if rec.label_map is not None else np.zeros(image.shape[:2], np.uint8)
        views.append((overlay(image, np.where(label == cls, cls, 0).astype(np.uint8)), "final mask"))
        return views


def seed_image(seed: int, image_id: str) -> None:
    """Seed every RNG for one image: its label then depends neither on the order, a resume nor the rank's
    shard, and the demo (which seeds the same way) gives the CLI's label map."""
    seed_everything(seed + zlib.crc32(image_id.encode()) % 2**31)


def stage_config(cfg: Any) -> dict:
    """The settings a label depends on: the stage sections, and the working size the models see."""
    return {k: dataclasses.asdict(getattr(cfg, k)) for k in STAGE_KEYS} | {"max_side": cfg.pseudo.max_side}


class ConfigMismatch(RuntimeError):
    """The output folder holds labels made with other stage settings (a usage error: exit code 2)."""


# errno values that mean "this machine / folder cannot take our outputs", never "this image is bad"
ENV_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EROFS, errno.EDQUOT})
# ... of which these are environmental wherever they happen (a stage's cache, torch's temp files)
_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EDQUOT})
_ADVICE = {errno.EACCES: "check the permissions of the work dir (or choose another --work-dir)",
           errno.EPERM: "check the permissions of the work dir (or choose another --work-dir)",
           errno.ENOSPC: "free disk space on its file system (or choose another --work-dir)",
           errno.EDQUOT: "free space within your disk quota (or choose another --work-dir)",
           errno.EROFS: "the file system is read-only: choose another --work-dir"}


class EnvironmentFault(OSError):
    """The run cannot write its outputs (permissions, disk full, read-only file system).

    Not a fault of one image: the run stops at once instead of recording every image as failed.
    ``str()`` is one line naming the path and what to do; ``errno`` and ``path`` are kept.
    """

    def __init__(self, path: str | Path, cause: OSError) -> None:
        reason = cause.strerror or str(cause)
        advice = _ADVICE.get(cause.errno or 0, "check the work dir's permissions and free space")
        super().__init__(f"cannot write {path}: {reason}; {advice}")
        self.errno = cause.errno
        self.path = Path(path)


def is_environment_error(e: BaseException, writing: bool = True) -> bool:
    """True for an OSError that no other image would escape: while ``writing`` outputs any of
    ``ENV_ERRNOS`` (and PermissionError); elsewhere only a full or read-only disk."""
    if isinstance(e, EnvironmentFault):
        return True
    if not isinstance(e, OSError):
        return False
    if writing:
        return isinstance(e, PermissionError) or e.errno in ENV_ERRNOS
    return e.errno in _DISK_ERRNOS


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """Turn an environmental OSError raised while writing ``path`` into an :class:`EnvironmentFault`."""
    try:
        yield
    except OSError as e:
        if isinstance(e, EnvironmentFault) or not is_environment_error(e):
            raise
        raise EnvironmentFault(path, e) from e


def _probe_writable(folder: Path) -> None:
    """Fail before any model loads when ``folder`` cannot take a file (rather than after the first image)."""
    with _writing(folder):
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".write-test-")
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)
            os.unlink(tmp)


def _holds_labels(out_dir: Path) -> bool:
    labels = out_dir / "labels"
    return labels.is_dir() and any(not p.name.startswith(".") for p in labels.glob("*.png"))


def _check_same_config(out_dir: Path, cfg: Any, overwrite: bool) -> None:
    """Refuse to mix labels of two configs in one output folder.

    Only checks: the config is recorded by :func:`_record_config` once the first label is written, and
    a folder without labels accepts any config, so a run that failed before labelling anything (a wrong
    checkpoint path, say) does not block its corrected rerun.
    """
    path = out_dir / "stage_config.yaml"
    if overwrite or not path.is_file() or not _holds_labels(out_dir):
        return
    previous = yaml.safe_load(path.read_text()) or {}
    previous.pop("class_names", None)  # recorded for the exporters, not compared: the stages decide a label
    current = stage_config(cfg)
    if previous != current:
        changed = [k for k in (*STAGE_KEYS, "max_side") if previous.get(k) != current.get(k)]
        raise ConfigMismatch(f"{out_dir} holds pseudo-labels made with a different {', '.join(changed)} config; "
                             "use another --work-dir, or --set pseudo.overwrite=true to redo them")


def _record_config(out_dir: Path, cfg: Any, class_names: list[str]) -> None:
    """The stage settings, and the class names the exporters need (``wsss.exporters`` reads them)."""
    path = out_dir / "stage_config.yaml"
    text = yaml.safe_dump(stage_config(cfg) | {"class_names": list(class_names)}, sort_keys=False)
    if not path.is_file() or path.read_text() != text:
        with _writing(path):
            write_text_atomic(path, text)


def _remove_stale_temps(out_dir: Path) -> None:
    """Temp files of atomic writes cut short by a hard kill (``.<name>.<random>.tmp.<ext>``).

    Only safe while holding the folder lock: no other process is writing then.
    """
    for folder in (out_dir, out_dir / "labels", out_dir / "overlays"):
        if folder.is_dir():
            for p in folder.glob(".*.tmp.*"):
                with contextlib.suppress(OSError):
                    p.unlink()


def open_output_dir(out_dir: Path, cfg: Any, lock: bool = True) -> FolderLock | None:
    """Everything checked before any model loads: the folder lock (returned, to release), that the
    folder is writable, that it holds no labels of another config; then leftovers of a killed run go."""
    folder_lock = FolderLock(out_dir) if lock else None
    if folder_lock is not None:
        with _writing(folder_lock.path):
            folder_lock.acquire()
    try:
        _probe_writable(out_dir / "labels")
        if cfg.pseudo.overlays:
            _probe_writable(out_dir / "overlays")
        _check_same_config(out_dir, cfg, cfg.pseudo.overwrite)
        if folder_lock is not None:
            _remove_stale_temps(out_dir)
    except BaseException:
        if folder_lock is not None:
            folder_lock.release()
        raise
    return folder_lock


def write_overlay(path: Path, rec: Record, class_names: list[str], cam_name: str = "CAM", boxes: bool = True) -> None:
    """image | the CAM the refiner saw | its boxes (when the pipeline has a boxes stage) | pseudo-label | truth."""
    image = rec.image
    cam = np.max(np.stack(list(rec.cams.values())), 0) if rec.cams else np.zeros(image.shape[:2], np.float32)
    tiles, titles = [image], ["image"]
    if rec.cams:
        tiles.append(heatmap(image, cam))
        titles.append(cam_name)
    if boxes:
        tiles.append(draw_boxes(image, rec.boxes))
        titles.append("boxes")
    tiles.append(overlay(image, rec.label_map))
    titles.append("pseudo-label")
    if rec.sample.mask is not None:
        tiles.append(overlay(image, rec.sample.mask))
        titles.append("ground truth")
    names = ",".join(class_names[c] for c in rec.classes)
    write_image(path, panel(tiles, [f"{titles[0]}: {names}"] + titles[1:]))


def generate_pseudo_labels(cfg: Any, dataset: SegDataset, resources: Resources, out_dir: str | Path,
                           ids: list[str] | None = None, desc: str = "pseudo-labels",
                           manifest_name: str = "manifest.jsonl", lock: bool = True) -> dict[str, dict]:
    """Run stage one over ``ids`` (default: the whole split); returns the manifest records.

    ``manifest_name`` lets each torchrun rank append to its own part (merged by rank 0 at the end);
    ``lock=False`` when the caller holds ``<out_dir>/.lock`` already (rank 0 does, for all ranks).

    A bad image (``ValueError`` naming the file, or any other per-image failure) is recorded with status
    ``error`` and the run goes on. An environment fault (:class:`EnvironmentFault`: the outputs cannot be
    written) stops the run at once, as do errors while building the stages (missing model or checkpoint);
    another run on ``out_dir`` raises :class:`~wsss.pseudo.lock.LockHeld` before any work.
    """
    out_dir = Path(out_dir)
    folder_lock = open_output_dir(out_dir, cfg, lock)
    try:
        return _label_all(cfg, dataset, resources, out_dir, ids, desc, manifest_name)
    finally:
        if folder_lock is not None:
            folder_lock.release()


def _label_all(cfg: Any, dataset: SegDataset, resources: Resources, out_dir: Path, ids: list[str] | None,
               desc: str, manifest_name: str) -> dict[str, dict]:
    manifest_path = out_dir / manifest_name
    ids = list(dataset.ids if ids is None else ids)
    done = read_manifest(manifest_path)
    todo = [i for i in ids if cfg.pseudo.overwrite or not (is_labelled(done.get(i, {}))
                                                            and (out_dir / "labels" / f"{i}.png").is_file())]
    labeler = PseudoLabeler(cfg, resources)  # models load here: a missing checkpoint stops the run before the loop
    overlay_ids = set(ids[: cfg.pseudo.overlays])
    config_recorded = False
    with _writing(manifest_path):
        writer = ManifestWriter(manifest_path)
    try:
        for image_id in tqdm(todo, desc=desc, unit="img", initial=len(ids) - len(todo), total=len(ids)):
            record: dict[str, Any] = {"image": image_id}
            label_path = out_dir / "labels" / f"{image_id}.png"
            try:
                seed_image(cfg.seed, image_id)
                rec = Record(dataset.load(image_id))
                # big photos run through the models as a downscaled copy; the label map comes back at native size
                rec = process_at_working_size(labeler.process, rec, cfg.pseudo.max_side)
                with _writing(label_path):
                    write_label_png(label_path, rec.label_map)
                if not config_recorded:  # the first label makes the folder this config's
                    _record_config(out_dir, cfg, dataset.class_names)
                    config_recorded = True
                if image_id in overlay_ids:
                    overlay_path = out_dir / "overlays" / f"{image_id}.jpg"
                    with _writing(overlay_path):
                        write_overlay(overlay_path, rec, dataset.class_names,
                                      "rCAM" if cfg.cam.name == "rcam" else f"CAM ({cfg.cam.gradcam.method})",
                                      cfg.boxes.name != "none")
                status = "low_confidence" if "low_confidence" in rec.extras else "ok"
                record |= {"status": status, "label": f"labels/{image_id}.png", "classes": rec.classes,
                           "scores": {str(c): round(s, 4) for c, s in rec.scores.items()},
                           "boxes": [[b.cls, *b.as_list(), round(b.score, 4)] for b in rec.boxes],
                           "timings": rec.timings, "error": None}
                if rec.extras:  # stage outputs such as the ROAD score of each CAM
                    record["extras"] = rec.extras
                record["quality"] = manifest_quality(rec)  # the review queue ranks by quality.estimate
            except (KeyboardInterrupt, SystemExit, EnvironmentFault):
                raise
            except Exception as e:
                if is_environment_error(e, writing=False):  # a full disk is no image's fault
                    raise EnvironmentFault(getattr(e, "filename", None) or out_dir, e) from e
                # a bad image is recorded and the run goes on
                record |= {"status": "error", "error": f"{type(e).__name__}: {e}",
                           "trace": traceback.format_exc(limit=3)}
                tqdm.write(f"skipped {image_id}: {record['error']}")
            with _writing(manifest_path):
                writer.append(record)
    finally:
        writer.close()
    with _writing(manifest_path):
        return compact(manifest_path, ids)
