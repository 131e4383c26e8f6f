"""A plain dict registry: one per pipeline stage, implementations chosen by name from config.

Each entry is a builder (usually a class) plus the dataclass of its parameters, so the
config validator knows every implementation's keys and types.
"""
from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable
from typing import Any


@dataclasses.dataclass
class Entry:
    name: str
    builder: Callable[..., Any]
    params: type | None  # a dataclass type, or None when the implementation takes no parameters


class Registry:
    """Maps implementation names to builders for one stage (e.g. ``masks``)."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, params: type | None = None) -> Callable[[Callable], Callable]:
        def deco(builder: Callable) -> Callable:
            if name in self._entries:
                raise KeyError(f"{self.stage}: '{name}' is registered twice")
            self._entries[name] = Entry(name, builder, params)
            return builder

        return deco

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def get(self, name: str) -> Entry:
        if name not in self._entries:
            close = difflib.get_close_matches(name, self.names(), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise KeyError(f"{self.stage}.name: unknown implementation '{name}'.{hint} Available: {', '.join(self.names())}")
        return self._entries[name]

    def build(self, section: Any, **context: Any) -> Any:
        """Build the implementation named by ``section.name`` with its own parameter block.

        One constructor convention for every registry: ``builder(params, **context)``, where params is
        None for an implementation without parameters and the context is the stage's (``resources``
        for the stage-one stages, ``split`` for data sets, ``num_classes`` for stage-two models).
        """
        entry = self.get(section.name)
        params = getattr(section, section.name, None) if entry.params is not None else None
        return entry.builder(params, **context)
