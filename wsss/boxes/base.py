"""The boxes-stage interface: where each present class is, as boxes in image pixels."""
from __future__ import annotations

from typing import Any, Protocol

from wsss.data.base import Box
from wsss.record import Record, Resources


class BoxSource(Protocol):
    """Built as ``Source(params, resources)``; called per image after the CAM stage."""

    def __init__(self, params: Any, resources: Resources) -> None: ...

    def __call__(self, rec: Record) -> list[Box]: ...
