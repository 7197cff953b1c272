"""Dataclasses ↔ JSON: one normalisation for hashing and writing, one typed reader for configs."""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import numpy as np

T = TypeVar("T")


def to_jsonable(x: Any, float_digits: int | None = None) -> Any:
    """Plain JSON types from dataclasses, dicts, sequences, Paths and numpy scalars / arrays.

    Non-finite floats become None (JSON has no NaN); `float_digits` rounds floats, so a value that
    went through a text round trip hashes the same as before.
    """
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {f.name: to_jsonable(getattr(x, f.name), float_digits) for f in dataclasses.fields(x)}
    if isinstance(x, dict):
        return {str(k): to_jsonable(v, float_digits) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v, float_digits) for v in x]
    if isinstance(x, np.ndarray):
        return to_jsonable(x.tolist(), float_digits)
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, enum.Enum):
        return x.value
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        if not np.isfinite(x):
            return None
        return round(float(x), float_digits) if float_digits is not None else float(x)
    return x


def from_dict(cls: type[T], data: dict) -> T:
    """Rebuild a (nested) dataclass from its `to_jsonable` form, driven by the field types.

    Unknown keys are ignored (a config saved by an older version still loads); missing keys keep
    the field default. Lists become tuples where the field is a tuple; str becomes Path where the
    field is a Path; Optional / Union / Literal are honoured.
    """
    hints = typing.get_type_hints(cls)
    kwargs = {f.name: _coerce(hints[f.name], data[f.name]) for f in dataclasses.fields(cls)
              if f.init and f.name in data}
    return cls(**kwargs)


def _coerce(tp: Any, value: Any) -> Any:
    """`value` (plain JSON) as an instance of the annotation `tp`."""
    origin = typing.get_origin(tp)
    if value is None:
        return None
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value)
            except (TypeError, ValueError):
                continue
        return value
    if origin is Literal:
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise TypeError(f"expected an object for {tp.__name__}")
        return from_dict(tp, value)
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v) for v in value)
        return tuple(_coerce(a, v) for a, v in zip(args, value))
    if origin is list:
        (arg,) = typing.get_args(tp) or (Any,)
        return [_coerce(arg, v) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise TypeError("expected an object")
        _, val_tp = typing.get_args(tp) or (Any, Any)
        return {k: _coerce(val_tp, v) for k, v in value.items()}
    if tp is Path:
        if not isinstance(value, str):
            raise TypeError("expected a path string")
        return Path(value)
    if tp in (int, float) and isinstance(value, bool):
        raise TypeError("bool is not a number here")
    if tp is float and isinstance(value, int):
        return float(value)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(value)
    if tp is Any or not isinstance(tp, type):
        return value
    if not isinstance(value, tp):
        raise TypeError(f"expected {tp.__name__}, got {type(value).__name__}")
    return value


def read_json(path: str | Path, missing: str = "file not found", what: str = "JSON file") -> Any:
    """The parsed content of a JSON file; a missing or unreadable one is a one-line InputError."""
    import json

    from worldstereo.errors import InputError

    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(path, missing)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(path, f"not a readable {what} ({e.__class__.__name__})")
