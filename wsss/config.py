"""YAML configs with ``_base_`` inheritance, dotted ``--set`` overrides and typed validation.

A config file is merged over its bases, then every key is checked against the schema
(dataclasses, see :mod:`wsss.schema`). Unknown keys fail with their full path and the closest
valid key; wrong types name the expected type; out-of-range values name the valid range
(:mod:`wsss.ranges`).
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from wsss import ranges
from wsss.paths import find_preset, resolve_config, resolve_config_paths, resolve_paths_at


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the key and what to do."""


# ----------------------------------------------------------------------------- loading
def load_yaml_with_bases(path: str | os.PathLike, _seen: tuple[str, ...] = ()) -> dict:
    """Read ``path`` and merge it over the files named in its ``_base_`` key (str or list).

    Each file's own path values are made absolute against that file's folder before the merge, so a
    value means the same wherever the chain is loaded from (rule: :mod:`wsss.paths`). A ``_base_`` entry
    is a path relative to the file; where no such file exists, the shipped config of that name (so a copy
    made by ``wsss configs copy`` keeps working outside the package).
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    if str(path) in _seen:
        raise ConfigError(f"{path}: _base_ cycle through {' -> '.join(_seen)}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    bases = data.pop("_base_", [])
    if isinstance(bases, str):
        bases = [bases]
    try:
        data = resolve_config_paths(data, path.parent)
    except ValueError as e:
        raise ConfigError(f"{path}: {e}") from None
    merged: dict = {}
    for base in bases:
        base_path = path.parent / str(base)
        if not base_path.is_file():
            base_path = find_preset(base) or base_path
        merged = deep_merge(merged, load_yaml_with_bases(base_path, _seen + (str(path),)))
    return deep_merge(merged, data)


def deep_merge(base: dict, override: dict) -> dict:
    """Mappings merge key by key; any other value in ``override`` replaces the base value."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_overrides(data: dict, overrides: list[str] | None) -> dict:
    """Apply ``key.sub=value`` strings; values are parsed as YAML (``0.5``, ``[1,2]``, ``null``)."""
    data = copy.deepcopy(data)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key.sub=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
    return data


# ----------------------------------------------------------------------------- validation
def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(tp) if a is not Ellipsis)
        return f"{origin.__name__}[{args}]"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, path: str) -> Any:
    """``value`` checked against schema type ``tp`` (ints widen to float, tuples become lists)."""
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return _convert_dataclass(value, tp, path)
    origin = typing.get_origin(tp)
    converter = _BY_ORIGIN.get(origin) if origin is not None else _BY_TYPE.get(tp)
    if converter is None:
        raise TypeError(f"{path}: schema type {tp!r} is not supported by the validator")
    return converter(value, tp, path)


def _mismatch(value: Any, expected: str, path: str) -> ConfigError:
    return ConfigError(f"{path}: expected {expected}, got {type(value).__name__} {value!r}")


def _convert_dataclass(value: Any, tp: Any, path: str) -> Any:
    if isinstance(value, tp):
        return value
    if not isinstance(value, dict):
        raise _mismatch(value, "a mapping", path)
    return from_dict(tp, value, path)


def _convert_union(value: Any, tp: Any, path: str) -> Any:
    """The first member type that accepts ``value`` (``None`` only through an explicit ``None`` member)."""
    args = typing.get_args(tp)
    if value is None and type(None) in args:
        return None
    for arg in args:
        if arg is type(None):
            continue
        try:
            return _convert(value, arg, path)
        except ConfigError:
            continue
    raise _mismatch(value, _type_name(tp), path)


def _convert_literal(value: Any, tp: Any, path: str) -> Any:
    choices = typing.get_args(tp)
    if value not in choices:
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{path}: {value!r} is not {_type_name(tp)}.{hint}")
    return value


def _convert_sequence(value: Any, tp: Any, path: str) -> list:
    if not isinstance(value, (list, tuple)):
        raise _mismatch(value, _type_name(tp), path)
    (item_tp, *_) = typing.get_args(tp) or (Any,)
    return [_convert(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value)]


def _convert_mapping(value: Any, tp: Any, path: str) -> dict:
    if not isinstance(value, dict):
        raise _mismatch(value, "a mapping", path)
    _, val_tp = typing.get_args(tp) or (Any, Any)
    return {k: _convert(v, val_tp, f"{path}.{k}") for k, v in value.items()}


def _convert_float(value: Any, tp: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):  # bool is an int; YAML true is no number
        raise _mismatch(value, "float", path)
    return float(value)


def _convert_int(value: Any, tp: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _mismatch(value, "int", path)
    return value


def _convert_exact(value: Any, tp: Any, path: str) -> Any:
    if not isinstance(value, tp):
        raise _mismatch(value, tp.__name__, path)
    return value


# generic types dispatch on their origin (list[int] -> list), plain ones on themselves
_BY_ORIGIN: dict[Any, Callable[[Any, Any, str], Any]] = {
    Union: _convert_union, types.UnionType: _convert_union, Literal: _convert_literal,
    list: _convert_sequence, tuple: _convert_sequence, dict: _convert_mapping}
_BY_TYPE: dict[Any, Callable[[Any, Any, str], Any]] = {
    float: _convert_float, int: _convert_int, bool: _convert_exact, str: _convert_exact}


def from_dict(cls: type, data: dict, path: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``, checking every key and type (recursively)."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        full = f"{path}.{key}" if path else str(key)
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.5)
            prefix = f"{path}." if path else ""
            hint = f" Did you mean '{prefix}{close[0]}'?" if close else f" Valid keys: {', '.join(fields)}"
            raise ConfigError(f"unknown config key '{full}'.{hint}")
        kwargs[key] = _convert(value, hints[key], full)
        # range check here, before cls() runs __post_init__, so the message names this key
        issue = None if dataclasses.is_dataclass(kwargs[key]) else ranges.problem(full, kwargs[key])
        if issue is not None:
            raise ConfigError(issue)
        choices = fields[key].metadata.get("choices")
        if choices is not None and kwargs[key] not in choices():
            close = difflib.get_close_matches(str(value), choices(), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"{full}: unknown implementation {value!r}.{hint} Available: {', '.join(choices())}")
    try:
        return cls(**kwargs)
    except ValueError as e:  # raised by __post_init__ checks
        raise ConfigError(f"{path or 'config'}: {e}") from None


def to_dict(obj: Any) -> Any:
    """The validated config as plain data (for saving next to results)."""
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> Any:
    """Load, merge bases, apply overrides and validate; returns a :class:`wsss.schema.Config`.

    ``path`` is a file or the name of a shipped config (``photos``, ``train/voc_deeplabv3plus``). Path values
    of ``--set`` overrides are relative to the current directory, those in files to the file's folder.
    """
    from wsss.schema import Config

    try:
        path = resolve_config(path)
    except FileNotFoundError as e:
        raise ConfigError(str(e)) from None
    data = apply_overrides(load_yaml_with_bases(path), overrides)
    try:
        for item in overrides or []:
            resolve_paths_at(data, item.split("=", 1)[0].strip().split("."), Path.cwd())
    except ValueError as e:
        raise ConfigError(f"--set: {e}") from None
    try:
        cfg = from_dict(Config, data)
        # the whole tree, defaults included (from_dict only sees the keys that were given)
        issue = next(ranges.check_tree(cfg), None)
        if issue is not None:
            raise ConfigError(issue)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    if cfg.name is None:
        cfg.name = Path(path).stem
    return cfg
