"""One reader for Anima's TOML files: ``config.toml``, ``policy.toml`` and training configs.

A file is read against a dataclass, its schema. Every key must name one of its fields; every value
must be of the field's type — ``int``, ``float`` (an integer is accepted), ``str``, ``bool``,
``Path``, ``tuple[X, ...]`` (a TOML list), ``X | Y``, ``X | None``, or a nested dataclass (a TOML
table) — and inside the range the field declares once, with :func:`setting`::

    @dataclass(frozen=True)
    class Rules:
        min_face_size: int = setting(64, at_least=32)
        share: float = setting(0.5, at_least=0.0, at_most=1.0)

    Rules(**load(Path("rules.toml"), Rules))

Faults are one-line :class:`BadInput` errors naming the file, the key and the bad value, e.g.
``rules.toml: `min_face_size` must be at least 32, got 10``. :func:`validate` checks a dataclass
built in Python against the same declarations.
"""

from __future__ import annotations

import difflib
import functools
import os
import tomllib
import types
import typing
from dataclasses import MISSING, Field, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from anima.errors import BadInput

_RANGE = "anima.range"


def setting(
    default: Any = MISSING,
    *,
    default_factory: Any = MISSING,
    at_least: float | None = None,
    at_most: float | None = None,
    above: float | None = None,
) -> Any:
    """A dataclass field with an inclusive (``at_least``, ``at_most``) or exclusive (``above``) range;
    for a ``tuple[...]`` field the range holds for each item."""
    bounds = {"at_least": at_least, "at_most": at_most, "above": above}
    return field(default=default, default_factory=default_factory, metadata={_RANGE: bounds})


def read(path: Path) -> dict[str, Any]:
    """The TOML file at ``path`` as a dict; a missing, unreadable or malformed file is a BadInput."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file") from None
    except OSError as exc:
        raise BadInput(f"{path}: cannot read it ({exc.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: not valid TOML ({exc})") from None


def load(path: Path, schema: type, *, base: Path | None = None) -> dict[str, Any]:
    """``path``'s settings checked against ``schema`` and converted to its field types, ready for
    ``schema(**values)``; keys the file leaves out are left out. Relative paths are taken from
    ``base`` when given (and resolved), else left relative; ``~`` is expanded."""
    return convert(read(path), schema, source=str(path), base=base)


def convert(
    values: dict[str, Any], schema: type, *, source: str, base: Path | None = None, prefix: str = ""
) -> dict[str, Any]:
    """``values`` (one TOML table) checked against ``schema``, as in :func:`load`."""
    known = {f.name: f for f in fields(schema)}
    unknown = [name for name in values if name not in known]
    if unknown:
        raise BadInput(f"{source}: {_unknown(unknown, list(known), prefix)}")
    for name, spec in known.items():
        if name not in values and spec.default is MISSING and spec.default_factory is MISSING:
            raise BadInput(f"{source}: `{prefix}{name}` is required")
    hints = _hints(schema)
    converted = {}
    for name, value in values.items():
        kind = hints[name]
        if is_dataclass(kind) and isinstance(value, dict):
            nested = convert(value, kind, source=source, base=base, prefix=f"{prefix}{name}.")
            converted[name] = kind(**nested)
        else:
            converted[name] = _checked(value, kind, known[name], f"{prefix}{name}", source, base)
    return converted


def validate(instance: Any, source: str | None = None, *, prefix: str = "") -> None:
    """Check a dataclass built in Python against its declared types and ranges (nested ones too)."""
    hints = _hints(type(instance))
    for spec in fields(instance):
        value, key = getattr(instance, spec.name), f"{prefix}{spec.name}"
        if is_dataclass(hints[spec.name]) and is_dataclass(value):
            validate(value, source, prefix=f"{key}.")
        else:
            _checked(value, hints[spec.name], spec, key, source, None)


class _Mismatch(Exception):
    """A value is not of the type asked for (turned into a BadInput that names the key)."""


@functools.cache
def _hints(schema: type) -> dict[str, Any]:
    return typing.get_type_hints(schema)


def _checked(value: Any, kind: Any, spec: Field, key: str, source: str | None, base: Path | None) -> Any:
    where = f"{source}: " if source else ""
    try:
        converted = _convert(value, kind, base)
    except _Mismatch:
        raise BadInput(f"{where}`{key}` must be {_describe(kind)}, got {value!r}") from None
    bounds = spec.metadata.get(_RANGE)
    items = converted if isinstance(converted, tuple) else (converted,)
    for item in items if bounds else ():
        problem = _out_of_range(item, **bounds)
        if problem:
            raise BadInput(f"{where}`{key}` must be {problem}, got {value!r}")
    return converted


def _out_of_range(
    item: Any, at_least: float | None, at_most: float | None, above: float | None
) -> str | None:
    if not isinstance(item, int | float) or isinstance(item, bool):
        return None
    if at_least is not None and item < at_least:
        return f"at least {at_least}"
    if at_most is not None and item > at_most:
        return f"at most {at_most}"
    if above is not None and item <= above:
        return f"above {above}"
    return None


def _convert(value: Any, kind: Any, base: Path | None) -> Any:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and (value is None or value == ""):
            return None  # an empty string leaves an optional setting unset, as if it were absent
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(value, option, base)
            except _Mismatch:
                continue
        raise _Mismatch
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise _Mismatch
        return tuple(_convert(item, args[0], base) for item in value)
    if kind is bool or kind is str:
        if not isinstance(value, kind):
            raise _Mismatch
        return value
    if kind is int or kind is float:
        accepted = int | float if kind is float else int  # TOML's `1` is a fine float
        if isinstance(value, bool) or not isinstance(value, accepted):
            raise _Mismatch
        return kind(value)
    if kind is Path:
        if not isinstance(value, str | os.PathLike) or not str(value):
            raise _Mismatch
        path = Path(value).expanduser()
        return (base / path).resolve() if base is not None else path
    if is_dataclass(kind) and isinstance(value, kind):
        return value
    raise _Mismatch


_NAMES = {bool: ("true or false", "booleans"), str: ("a string", "strings"), int: ("an integer", "integers"),
          float: ("a number", "numbers"), Path: ("a path", "paths")}  # fmt: skip


def _describe(kind: Any, plural: bool = False) -> str:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a, plural) for a in args if a is not type(None))
    if origin is tuple:
        return f"a list of {_describe(args[0], plural=True)}"
    return _NAMES.get(kind, ("a table", "tables"))[plural]


def _unknown(names: list[str], known: list[str], prefix: str) -> str:
    hints = []
    for name in names:
        close = difflib.get_close_matches(name, known, n=1)
        hints.append(f"{prefix}{name}" + (f" (did you mean {prefix}{close[0]}?)" if close else ""))
    return f"unknown setting{'s' if len(names) > 1 else ''} {', '.join(hints)}"
