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
import time
import traceback
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm import tqdm

from wsss.boxes import BOX_SOURCES
from wsss.cam import CAM_METHODS
from wsss.data import SegDataset
from wsss.labels import LABEL_SOURCES
from wsss.masks import REFINERS
from wsss.pseudo.batched import Decoded, RefinePool, chunks, decoded
from wsss.pseudo.lock import FolderLock
from wsss.pseudo.manifest import ManifestWriter, compact, is_labelled, read_manifest
from wsss.pseudo.quality import manifest_quality
from wsss.pseudo.tiling import process_tiled
from wsss.pseudo.working_size import process_at_working_size, shrink_sample, working_scale
from wsss.record import Record, Resources
from wsss.utils.io import write_image, write_label_png, write_text_atomic
from wsss.utils.runtime import seed_everything, timed
from wsss.viz import as_picture, draw_boxes, heatmap, overlay, panel

STAGE_KEYS = ("classifier", "labels", "cam", "boxes", "masks")  # with pseudo.max_side: what shapes a label


STAGES = ("labels", "cam", "boxes", "masks")  # in pipeline order
BATCHED = ("labels", "cam")  # the stages whose ``batch`` takes several images in one model call
REGISTRIES = {"labels": LABEL_SOURCES, "cam": CAM_METHODS, "boxes": BOX_SOURCES, "masks": REFINERS}
StepCallback = Callable[[str, Record], None]
Failures = dict[int, tuple[BaseException, str]]  # index of a record in its batch -> (exception, traceback)


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

    @refiner.setter
    def refiner(self, refiner: Any) -> None:
        """Use ``refiner`` (a test's spy, say) for the current masks section, until that section changes."""
        self.stage("masks")
        self._built["masks"] = (self._built["masks"][0], refiner)

    def steps_needed(self) -> tuple[str, ...]:
        """The config's stages less the CAM stage when nothing reads its maps: the refiner declares it
        does not (:meth:`Refiner.uses_cam_stage`) and there is no boxes stage (``cam_components`` boxes are
        CAM components; the other box sources declare nothing yet, so only ``none`` counts). Such a CAM
        stage (Grad-CAM under the ``rcam`` refiner) changes no label, only costs time; the run then records
        no CAMs (the overlays show none, the quality estimate does without)."""
        if self.cfg.boxes.name != "none" or self.stage("masks").uses_cam_stage(self.stage("cam")):
            return STAGES
        return tuple(k for k in STAGES if k != "cam")

    def _autocast(self, stage: Any) -> contextlib.AbstractContextManager:
        """bf16 autocast for a stage that declares it safe, on CUDA with ``pseudo.autocast`` (else nothing)."""
        if self.cfg.pseudo.autocast and stage.autocast_safe and torch.device(self.resources.device).type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def compile_models(self) -> None:
        """``pseudo.compile``, on any device: what the labels stage and the refiner declare (the classifier of
        the batched path; SAM's image encoder and mask decoder; by default nothing). On CPU it pays off for
        SAM's decoder (docs/sam.md, "Speed on CPU")."""
        if self.cfg.pseudo.compile:
            self.stage("labels").compile()
            self.stage("masks").compile()

    def process_batch(self, recs: Sequence[Record], steps: Sequence[str] = STAGES) -> Failures:
        """:meth:`process` for several records with the config's stages: ``labels`` and ``cam`` through
        their ``batch`` (one model call on an accelerator), ``boxes`` and ``masks`` per image (the refiner's
        ``prepare_batch`` first). Each image is seeded (:func:`seed_image`) before its boxes and again
        before its refiner, so its outputs do not depend on the batch it shares.

        Returns the records that failed, ``{index in recs: (exception, traceback)}``; the others carry
        their outputs. ``timings`` of a batched stage are the batch's time shared equally.
        """
        failed: Failures = {}
        for kind in steps:
            live = [i for i in range(len(recs)) if i not in failed]
            if not live:
                break
            stage = self.stage(kind)
            if kind in BATCHED:
                self._batch_step(kind, stage, recs, live, failed)
                continue
            if kind == "masks":
                _guarded(failed, live, lambda live=live: self.prepare_masks([recs[i] for i in live]))
            for i in live:
                if i not in failed:
                    _guarded(failed, [i], lambda rec=recs[i], stage=stage, kind=kind: self._single_step(kind, stage, rec))
        return failed

    def prepare_masks(self, recs: Sequence[Record]) -> None:
        """The refiner's ``prepare_batch`` (batched image encoders: the seam for SAM) on ``recs``."""
        refiner = self.stage("masks")
        with self._autocast(refiner):
            refiner.prepare_batch(recs)

    def _single_step(self, kind: str, stage: Any, rec: Record) -> None:
        seed_image(self.cfg.seed, rec.sample.id)
        with timed(rec.timings, kind), self._autocast(stage) if kind == "masks" else contextlib.nullcontext():
            if kind == "boxes":
                rec.boxes = stage(rec)
            else:
                rec.label_map = stage(rec)

    def _batch_step(self, kind: str, stage: Any, recs: Sequence[Record], live: list[int], failed: Failures) -> None:
        """``stage.batch`` on the live records; if it raises, one call per record finds the bad image(s)."""
        group = [recs[i] for i in live]
        start = time.perf_counter()
        try:
            with self._autocast(stage):
                outs = stage.batch(group)
        except (KeyboardInterrupt, SystemExit, EnvironmentFault):
            raise
        except Exception:
            outs = []
            for i, rec in zip(live, group):
                before = len(failed)
                _guarded(failed, [i], lambda rec=rec: outs.append(stage(rec)))
                if len(failed) > before:
                    outs.append(None)
        share = round((time.perf_counter() - start) / len(group), 4)
        for i, rec, out in zip(live, group, outs):
            if i in failed:
                continue
            if kind == "labels":
                rec.classes, rec.scores = out
            else:
                rec.cams = out
            rec.timings[kind] = share

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


def _guarded(failed: Failures, indices: list[int], work: Callable[[], Any]) -> None:
    """Run ``work``; a failure (not an interrupt, nor an environment fault) marks ``indices`` failed."""
    try:
        work()
    except (KeyboardInterrupt, SystemExit, EnvironmentFault):
        raise
    except Exception as e:
        trace = traceback.format_exc(limit=3)
        for i in indices:
            failed.setdefault(i, (e, trace))


def seed_image(seed: int, image_id: str) -> None:
    """Seed every RNG for one image: its label then depends neither on the order, a resume nor the rank's
    shard, and the demo (which seeds the same way) gives the CLI's label map."""
    seed_everything(seed + zlib.crc32(image_id.encode()) % 2**31)


def stage_config(cfg: Any) -> dict:
    """The settings a label depends on: the stage sections, and the working size the models see."""
    tiles = {"tile": cfg.pseudo.tile, "tile_overlap": cfg.pseudo.tile_overlap} if cfg.pseudo.tile > 0 else {}
    return {k: dataclasses.asdict(getattr(cfg, k)) for k in STAGE_KEYS} | {"max_side": cfg.pseudo.max_side} | tiles


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
        changed = [k for k in (*STAGE_KEYS, "max_side", "tile", "tile_overlap") if previous.get(k) != current.get(k)]
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


@dataclasses.dataclass(frozen=True)
class _Target:
    """Where and how a run writes each image's outputs (plain data: a process pool's tail gets a copy)."""

    out_dir: Path
    class_names: list[str]
    overlay_ids: frozenset[str]
    cam_name: str
    boxes: bool


def _write_outputs(rec: Record, image_id: str, target: _Target) -> dict[str, Any]:
    """Write a processed image's label PNG (and overlay); returns its manifest fields."""
    label_path = target.out_dir / "labels" / f"{image_id}.png"
    with _writing(label_path):
        write_label_png(label_path, rec.label_map)
    if image_id in target.overlay_ids:
        overlay_path = target.out_dir / "overlays" / f"{image_id}.jpg"
        with _writing(overlay_path):
            write_overlay(overlay_path, rec, target.class_names, target.cam_name, target.boxes)
    status = "low_confidence" if "low_confidence" in rec.extras else "ok"
    record: dict[str, Any] = {"status": status, "label": f"labels/{image_id}.png", "classes": rec.classes,
                              "scores": {str(c): round(s, 4) for c, s in rec.scores.items()},
                              "boxes": [[b.cls, *b.as_list(), round(b.score, 4)] for b in rec.boxes],
                              "timings": rec.timings, "error": None}
    if rec.extras:  # stage outputs such as the ROAD score of each CAM
        record["extras"] = rec.extras
    record["quality"] = manifest_quality(rec)  # the review queue ranks by quality.estimate
    return record


def _failure_fields(e: BaseException, trace: str, out_dir: Path) -> dict[str, Any]:
    """The manifest fields of a bad image; a full or read-only disk is no image's fault and stops the run."""
    if is_environment_error(e, writing=False):
        raise EnvironmentFault(getattr(e, "filename", None) or out_dir, e) from e  # type: ignore[arg-type]
    return {"status": "error", "error": f"{type(e).__name__}: {e}", "trace": trace}


def _label_all(cfg: Any, dataset: SegDataset, resources: Resources, out_dir: Path, ids: list[str] | None,
               desc: str, manifest_name: str) -> dict[str, dict]:
    manifest_path = out_dir / manifest_name
    ids = list(dataset.ids if ids is None else ids)
    done = read_manifest(manifest_path)
    todo = [i for i in ids if cfg.pseudo.overwrite or not (is_labelled(done.get(i, {}))
                                                            and (out_dir / "labels" / f"{i}.png").is_file())]
    if not todo:  # a resume over a finished set: nothing to label, so no model loads
        if manifest_path.is_file():
            with _writing(manifest_path):
                return compact(manifest_path, ids)
        return {}
    labeler = PseudoLabeler(cfg, resources)  # models load here: a missing checkpoint stops the run before the loop
    target = _Target(out_dir, list(dataset.class_names), frozenset(ids[: cfg.pseudo.overlays]),
                     "rCAM" if cfg.cam.name == "rcam" else f"CAM ({cfg.cam.gradcam.method})", cfg.boxes.name != "none")
    with _writing(manifest_path):
        writer = ManifestWriter(manifest_path)
    bar = tqdm(desc=desc, unit="img", initial=len(ids) - len(todo), total=len(ids))
    recorded = False

    def write(record: dict[str, Any]) -> None:
        nonlocal recorded
        if record["status"] != "error" and not recorded:  # the first label makes the folder this config's
            _record_config(out_dir, cfg, dataset.class_names)
            recorded = True
        if record["status"] == "error":
            tqdm.write(f"skipped {record['image']}: {record['error']}")
        with _writing(manifest_path):
            writer.append(record)
        bar.update()

    try:
        labeler.compile_models()
        if (cfg.pseudo.batch_size > 1 or cfg.pseudo.workers > 0) and cfg.pseudo.tile <= 0:  # tiles: per image
            _label_batched(cfg, dataset, labeler, todo, target, write)
        else:
            _label_each(cfg, dataset, labeler, todo, target, write)
    finally:
        bar.close()
        writer.close()
    with _writing(manifest_path):
        return compact(manifest_path, ids)


def run_stages(labeler: PseudoLabeler, rec: Record, p: Any, steps: Sequence[str] = STAGES) -> Record:
    """One image through ``steps``: big photos as a downscaled copy with the label map painted back at
    native size, or, with ``pseudo.tile``, boxes and masks on native tiles (:mod:`wsss.pseudo.tiling`)."""
    if p.tile > 0:
        def process(r: Record, steps: Sequence[str] = STAGES, _needed: Sequence[str] = steps) -> Record:
            return labeler.process(r, steps=[s for s in steps if s in _needed])
        return process_tiled(process, rec, p.tile, p.tile_overlap, p.max_side)
    return process_at_working_size(lambda r: labeler.process(r, steps=steps), rec, p.max_side)


def _label_each(cfg: Any, dataset: SegDataset, labeler: PseudoLabeler, todo: list[str], target: _Target,
                write: Callable[[dict[str, Any]], None]) -> None:
    """Stage one image by image (``pseudo.batch_size: 1``, ``pseudo.workers: 0``)."""
    steps = labeler.steps_needed()
    for image_id in todo:
        record: dict[str, Any] = {"image": image_id}
        try:
            seed_image(cfg.seed, image_id)
            rec = Record(dataset.load(image_id))
            rec = run_stages(labeler, rec, cfg.pseudo, steps)
            record |= _write_outputs(rec, image_id, target)
        except (KeyboardInterrupt, SystemExit, EnvironmentFault):
            raise
        except Exception as e:  # a bad image is recorded and the run goes on
            record |= _failure_fields(e, traceback.format_exc(limit=3), target.out_dir)
        write(record)


def _label_batched(cfg: Any, dataset: SegDataset, labeler: PseudoLabeler, todo: list[str], target: _Target,
                   write: Callable[[dict[str, Any]], None]) -> None:
    """Stage one in batches: images decode in ``pseudo.workers`` loader processes ahead of the models;
    ``labels`` and ``cam`` take ``pseudo.batch_size`` images per call; a pool-safe refiner (GrabCut, CAM
    threshold) and the PNG writing run in a pool of ``pseudo.workers`` threads or processes
    (``pseudo.pool``), others one image at a time in this thread. Same labels and manifest as
    :func:`_label_each`: every image is seeded the same way, and records are written in the same order."""
    p = cfg.pseudo
    steps = labeler.steps_needed()
    refiner = labeler.stage("masks")
    pooled = p.workers if refiner.pool_safe else 0  # a refiner with a model keeps to the main thread
    with RefinePool(pooled, p.pool, max_pending=2 * pooled + p.batch_size) as pool:
        for batch in chunks(decoded(dataset, todo, p.workers, p.batch_size), p.batch_size):
            _submit_batch(cfg, labeler, batch, [k for k in steps if k != "masks"], pool, target)
            for image_id, result in pool.results():
                write(_manifest_line(image_id, result))
        for image_id, result in pool.results(drain=True):
            write(_manifest_line(image_id, result))


def _submit_batch(cfg: Any, labeler: PseudoLabeler, batch: list[Decoded], steps: list[str], pool: RefinePool,
                  target: _Target) -> None:
    """The model stages of one batch here, then each image's refiner and outputs into ``pool``."""
    natives: list[Record] = []
    works: list[Record] = []  # what the stages see: the native record, or a downscaled copy (pseudo.max_side)
    for item in batch:
        if item.error is None:
            native = Record(item.sample)
            scale = working_scale(*item.sample.image.shape[:2], cfg.pseudo.max_side)
            natives.append(native)
            works.append(native if scale >= 1.0 else Record(shrink_sample(item.sample, scale)))
    failed = labeler.process_batch(works, steps)
    live = [i for i in range(len(works)) if i not in failed]
    _guarded(failed, live, lambda: labeler.prepare_masks([works[i] for i in live]))
    refiner = labeler.stage("masks")
    process_pool = isinstance(pool.executor, ProcessPoolExecutor)
    i = 0
    for item in batch:  # in the loader's order, bad files included: the manifest keeps the data-set order
        if item.error is not None:
            pool.done(item.image_id, ("error", _decode_failure(item, target.out_dir)))
            continue
        native, work = natives[i], works[i]
        if i in failed:
            e, trace = failed[i]
            pool.done(item.image_id, ("error", _failure_fields(e, trace, target.out_dir)))
        else:
            if process_pool:  # tensors cached by the model stages stay here (the refiner in the pool needs none)
                work.cache = {k: v for k, v in work.cache.items() if not torch.is_tensor(v)}
            with labeler._autocast(refiner) if pool.executor is None else contextlib.nullcontext():
                pool.submit(item.image_id, _tail, refiner, native, work, cfg.seed, cfg.pseudo.max_side, target)
        i += 1


def _tail(refiner: Any, native: Record, work: Record, seed: int, max_side: int, target: _Target) -> tuple[str, Any]:
    """An image's refiner, its outputs back at native size and written: ``("ok", fields)``, ``("error",
    fields)`` or ``("env", (path, errno, reason))``. Never raises (it may run in another process)."""
    image_id = native.sample.id

    def refine(_: Record) -> Record:  # the stages ran on `work` (native, or the same downscaled copy)
        seed_image(seed, image_id)  # in this thread: OpenCV's RNG (GrabCut's) is per thread
        with timed(work.timings, "masks"):
            work.label_map = refiner(work)
        return work

    try:
        return "ok", _write_outputs(process_at_working_size(refine, native, max_side), image_id, target)
    except EnvironmentFault as e:
        return "env", _env_payload(e)
    except Exception as e:
        try:
            return "error", _failure_fields(e, traceback.format_exc(limit=3), target.out_dir)
        except EnvironmentFault as fault:
            return "env", _env_payload(fault)


def _env_payload(e: EnvironmentFault) -> tuple[str, int | None, str]:
    cause = e.__cause__
    reason = (cause.strerror or str(cause)) if isinstance(cause, OSError) else str(e)
    return str(e.path), e.errno, reason


def _decode_failure(item: Decoded, out_dir: Path) -> dict[str, Any]:
    """:func:`_failure_fields` for an image the loader could not read (its exception came as data)."""
    err = item.error or {}
    if err.get("errno") in _DISK_ERRNOS:
        raise EnvironmentFault(err.get("filename") or out_dir, OSError(err["errno"], err.get("strerror") or err["message"]))
    return {"status": "error", "error": f"{err.get('type')}: {err.get('message')}", "trace": err.get("trace")}


def _manifest_line(image_id: str, result: tuple[str, Any]) -> dict[str, Any]:
    kind, payload = result
    if kind == "env":
        path, code, reason = payload
        raise EnvironmentFault(path, OSError(code, reason))
    return {"image": image_id} | payload
