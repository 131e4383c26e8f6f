"""The machinery of the batched stage one (``pseudo.batch_size > 1`` or ``pseudo.workers > 0``).

* :func:`decoded`: images decode in a ``torch.utils.data.DataLoader`` whose workers run ahead of the
  models; a file that fails to decode arrives as a :class:`Decoded` with ``error`` set (the run records
  it), never as an exception that would stop the loader.
* :func:`chunks`: the decoded stream cut into batches of ``batch_size``.
* :class:`RefinePool`: the CPU-bound tail of each image (GrabCut, PNG writing) in a pool of threads or
  processes, results taken back in submission order so the manifest keeps the data-set order.

Nothing here knows the stages; :mod:`wsss.pseudo.pipeline` drives it.
"""
from __future__ import annotations

import dataclasses
import multiprocessing as mp
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, Literal

import torch
from torch.utils.data import DataLoader, Dataset

from wsss.data import Sample, SegDataset


@dataclasses.dataclass
class Decoded:
    """One image as the loader delivers it: the sample, or why it could not be read."""

    image_id: str
    sample: Sample | None = None
    error: dict[str, Any] | None = None  # type, message, errno, strerror, filename, trace (all picklable)


def error_fields(e: BaseException) -> dict[str, Any]:
    """What the main process needs of an exception raised in a worker, as plain data (custom exception
    classes do not always survive pickling)."""
    return {"type": type(e).__name__, "message": str(e), "errno": getattr(e, "errno", None),
            "strerror": getattr(e, "strerror", None), "filename": getattr(e, "filename", None),
            "trace": traceback.format_exc(limit=3)}


class DecodeSet(Dataset):
    """``dataset.load`` for each of ``ids``, with failures returned as data."""

    def __init__(self, dataset: SegDataset, ids: Sequence[str]) -> None:
        self.dataset = dataset
        self.ids = list(ids)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> Decoded:
        image_id = self.ids[i]
        try:
            return Decoded(image_id, self.dataset.load(image_id))
        except Exception as e:  # a bad file is the image's fault: recorded by the caller, the run goes on
            return Decoded(image_id, error=error_fields(e))


def _as_is(item: Decoded) -> Decoded:
    return item  # no collation: a Sample holds numpy arrays the default would turn into tensors


def decoded(dataset: SegDataset, ids: Sequence[str], workers: int, batch_size: int) -> Iterator[Decoded]:
    """The images of ``ids`` in order, decoded by ``workers`` processes (0: in this process, on demand),
    about two batches ahead of the consumer."""
    ahead = max(2, -(-2 * batch_size // max(workers, 1)))  # items queued per worker
    loader = DataLoader(DecodeSet(dataset, ids), batch_size=None, shuffle=False, num_workers=workers,
                        collate_fn=_as_is, prefetch_factor=ahead if workers else None,
                        generator=torch.Generator())  # its own generator: the global RNGs stay untouched
    yield from loader


def chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """``items`` in lists of ``size`` (the last one shorter)."""
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


PoolKind = Literal["thread", "process"]


class RefinePool:
    """Runs the per-image tail in ``workers`` threads or processes (0: inline, in submission order).

    ``submit`` returns a future; ``results`` hands them back oldest first, waiting only when more than
    ``max_pending`` are in flight (which bounds the images held in memory). Processes are forked: the
    children inherit the imported modules (no re-import of torch) and never touch the GPU.
    """

    def __init__(self, workers: int, kind: PoolKind = "thread", max_pending: int | None = None) -> None:
        self.executor: Executor | None = None
        if workers > 0 and kind == "process":
            self.executor = ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"))
        elif workers > 0:
            self.executor = ThreadPoolExecutor(workers, thread_name_prefix="wsss-refine")
        self.max_pending = max_pending if max_pending is not None else 2 * max(workers, 1)
        self._pending: deque[tuple[Any, Future]] = deque()

    def submit(self, key: Any, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(*args)``; its result comes back from :meth:`results` tagged with ``key``."""
        if self.executor is None:
            future: Future = Future()
            future.set_result(fn(*args))  # fn reports its own failures as data (see pipeline._tail)
        else:
            future = self.executor.submit(fn, *args)
        self._pending.append((key, future))

    def done(self, key: Any, result: Any) -> None:
        """Queue a result that needs no work (a failed image), keeping its place in the order."""
        future: Future = Future()
        future.set_result(result)
        self._pending.append((key, future))

    def results(self, drain: bool = False) -> Iterator[tuple[Any, Any]]:
        """(key, result) of the oldest submissions: all of them with ``drain``, else down to ``max_pending``."""
        limit = 0 if drain else self.max_pending
        while len(self._pending) > limit or (self._pending and self._pending[0][1].done()):
            key, future = self._pending.popleft()
            yield key, future.result()

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> RefinePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
