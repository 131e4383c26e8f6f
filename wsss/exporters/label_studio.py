"""Label Studio predictions: a JSON list of tasks, each with brush (RLE) masks to import and correct.

Each task is ``{"data": {"image": <url_prefix + file_name>}, "predictions": [{"model_version", "score",
"result": [...]}]}`` with one ``brushlabels`` result per class (or per component with ``per_component``).
``score`` is the manifest's quality estimate (≈ expected IoU, so Label Studio can sort the worst first),
else the mean classifier score. ``label_config.xml`` beside the JSON is a labelling config whose names
match (``from_name`` / ``to_name``): paste it into the project's Labeling Interface.

Brush RLE, as Label Studio's frontend and ``label-studio-converter`` decode it: the mask as RGBA bytes
(4 per pixel, row-major, here 255 in every channel on the mask), run-length coded into a bit stream,
most significant bit first: a 32-bit value count, 5 bits word size - 1 (8), four 4-bit "run-length field
widths" - 1 (3, 4, 8, 16); then blocks of 1 flag bit (1 = one value repeated), 2 bits choosing a width,
that many bits of run length - 1, and the 8-bit value; zero-padded to whole bytes, sent as a list of ints.
This encoder writes only repeat blocks (a binary mask has long runs); the decoder also reads literal ones.
Task data also carry ``wsss_id``, ``width`` and ``height``, which Label Studio keeps in its JSON export, so
:func:`wsss.exporters.import_label_studio.import_label_studio` maps corrected tasks back to image ids.
"""
from __future__ import annotations

import dataclasses
import json
import xml.sax.saxutils
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wsss.exporters.base import ExportItem, present_classes
from wsss.utils.io import voc_palette, write_text_atomic

_WORD_BITS = 8
_RUN_WIDTHS = (3, 4, 8, 16)  # bits of a run length - 1; the header carries them, any decoder reads them


def brush_rle(mask: np.ndarray) -> list[int]:
    """Label Studio's brush RLE of a binary HxW mask (RGBA, 255 on the mask, 0 elsewhere)."""
    values = np.repeat(np.where(np.asarray(mask, bool), 255, 0).astype(np.uint8).ravel(), 4)
    n = int(values.size)
    if n >= 2**32:
        raise ValueError(f"mask of {mask.shape} is too large for Label Studio's RLE (32-bit value count)")
    starts = np.flatnonzero(np.diff(values)) + 1
    starts = np.concatenate([[0], starts]) if n else starts
    lengths = np.diff(np.concatenate([starts, [n]]))
    bits = [f"{n:032b}", f"{_WORD_BITS - 1:05b}", "".join(f"{w - 1:04b}" for w in _RUN_WIDTHS)]
    longest = 1 << _RUN_WIDTHS[-1]
    for start, length in zip(starts.tolist(), lengths.tolist()):
        value = f"{int(values[start]):08b}"
        while length > 0:
            run = min(length, longest)
            width = next(i for i, w in enumerate(_RUN_WIDTHS) if run - 1 < 1 << w)
            bits.append(f"1{width:02b}{run - 1:0{_RUN_WIDTHS[width]}b}{value}")
            length -= run
    stream = "".join(bits)
    stream += "0" * (-len(stream) % 8)
    return np.packbits(np.frombuffer(stream.encode("ascii"), np.uint8) - ord("0")).tolist()


def decode_brush_rle(rle: Sequence[int]) -> np.ndarray:
    """The flat uint8 values (RGBA bytes, row-major) of a Label Studio brush RLE; repeat and literal blocks."""
    bits = np.unpackbits(np.asarray(rle, dtype=np.uint8)).astype(np.int64)
    pos = 0

    def read(n: int) -> int:
        nonlocal pos
        if pos + n > bits.size:
            raise ValueError("brush RLE ends early: the mask is truncated")
        value = int(bits[pos:pos + n] @ (1 << np.arange(n - 1, -1, -1, dtype=np.int64)))
        pos += n
        return value

    num, word = read(32), read(5) + 1
    widths = [read(4) + 1 for _ in range(4)]
    out = np.zeros(num, np.uint8)
    i = 0
    while i < num:
        repeat = read(1)
        j = min(i + 1 + read(widths[read(2)]), num)
        if repeat:
            out[i:j] = read(word)
        else:
            for k in range(i, j):
                out[k] = read(word)
        i = j
    return out


def brush_mask(rle: Sequence[int], height: int, width: int) -> np.ndarray:
    """HxW bool mask of a brush RLE (alpha channel > 0, as Label Studio draws it)."""
    flat = decode_brush_rle(rle)
    if flat.size != height * width * 4:
        raise ValueError(f"brush RLE holds {flat.size} values, not 4 x {width} x {height}")
    return flat.reshape(height, width, 4)[..., 3] > 0


@dataclasses.dataclass
class LabelStudioParams:
    per_component: bool = False  # one brush result per 8-connected component instead of one per class
    from_name: str = "tag"  # the <BrushLabels name=...> of the labelling config
    to_name: str = "image"  # the <Image name=...>
    url_prefix: str = ""  # prepended to file_name, e.g. "/data/local-files/?d=" for local-files storage
    model_version: str = "wsss"


def brush_results(item: ExportItem, class_names: Sequence[str], params: LabelStudioParams) -> list[dict]:
    """The ``result`` list of one task's prediction."""
    import cv2

    results = []
    for c in present_classes(item, len(class_names)):
        binary = (item.label_map == c).astype(np.uint8)
        parts = [binary]
        if params.per_component:
            n, comp = cv2.connectedComponents(binary, connectivity=8)
            parts = [(comp == i).astype(np.uint8) for i in range(1, n)]
        for part in parts:
            results.append({"id": f"wsss{len(results)}", "type": "brushlabels", "from_name": params.from_name,
                            "to_name": params.to_name, "original_width": item.width,
                            "original_height": item.height, "image_rotation": 0,
                            "value": {"format": "rle", "rle": brush_rle(part), "brushlabels": [class_names[c]]}})
    return results


def label_config(class_names: Sequence[str], params: LabelStudioParams) -> str:
    """A Label Studio labelling config whose tag names match the predictions (VOC colours per class)."""
    palette = voc_palette()
    quote = xml.sax.saxutils.quoteattr
    labels = "".join(f'    <Label value={quote(name)} background="#{palette[3 * c]:02x}{palette[3 * c + 1]:02x}'
                     f'{palette[3 * c + 2]:02x}"/>\n' for c, name in enumerate(class_names) if c > 0)
    return (f"<View>\n  <Image name={quote(params.to_name)} value=\"$image\" zoom=\"true\"/>\n"
            f"  <BrushLabels name={quote(params.from_name)} toName={quote(params.to_name)}>\n{labels}"
            "  </BrushLabels>\n</View>\n")


class LabelStudioExporter:
    """Label Studio tasks with brush-mask predictions (``<out>.json``) and ``label_config.xml`` beside it."""

    name = "label_studio"
    default_out = "label_studio/tasks.json"

    def __init__(self, params: LabelStudioParams | None = None) -> None:
        self.params = params or LabelStudioParams()

    def write(self, items: Iterable[ExportItem], class_names: Sequence[str], out: Path) -> dict[str, Any]:
        out = Path(out)
        p = self.params
        tasks, annotations = [], 0
        for item in items:
            result = brush_results(item, class_names, p)
            prediction: dict[str, Any] = {"model_version": p.model_version, "result": result}
            if item.score is not None:
                prediction["score"] = round(float(item.score), 4)
            tasks.append({"data": {"image": p.url_prefix + item.file_name, "wsss_id": item.image_id,
                                   "width": item.width, "height": item.height},
                          "predictions": [prediction]})
            annotations += len(result)
        write_text_atomic(out, json.dumps(tasks, separators=(",", ":")))  # compact: RLE lists are long
        write_text_atomic(out.parent / "label_config.xml", label_config(class_names, p))
        return {"images": len(tasks), "annotations": annotations}
