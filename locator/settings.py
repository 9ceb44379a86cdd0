"""Typed settings dataclasses that serve as CLI arguments, bundle JSON and request bodies alike.

A field declared with `option(default, "help", choices=REGISTRY)` becomes `--field-name` with that help (and its
default shown) in every CLI that adds the dataclass, is checked by `from_mapping` for JSON and query parameters,
and round-trips through `to_json`. Only entry points read environment variables; settings never do.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from locator.errors import SettingsError
from locator.registry import Registry

T = TypeVar("T")
REQUIRED = dataclasses.MISSING


def option(default: Any, help: str, *, choices: Registry | tuple[str, ...] | None = None, minimum: float | None = None,
           maximum: float | None = None, cli: bool = True) -> Any:
    """A settings field with its help text, allowed values and range."""
    metadata = {"help": help, "choices": choices, "minimum": minimum, "maximum": maximum, "cli": cli}
    if default is REQUIRED:
        return dataclasses.field(metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _base_type(annotation: Any) -> tuple[type, bool]:
    """(int | float | str | bool, optional?) of a field annotation such as `int | None`."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        concrete = [a for a in args if a is not type(None)]
        return concrete[0], len(concrete) < len(args)
    return annotation, False


def _choices(meta: Mapping[str, Any]) -> tuple[str, ...] | None:
    choices = meta.get("choices")
    return choices.names() if isinstance(choices, Registry) else choices


@functools.cache
def _fields(cls: type) -> list[tuple[dataclasses.Field, type, bool]]:
    hints = typing.get_type_hints(cls)
    return [(f, *_base_type(hints[f.name])) for f in dataclasses.fields(cls) if f.metadata.get("help")]


def add_arguments(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """Add `--name` for every documented field of the settings class `cls`."""
    for f, base, optional in _fields(cls):
        if f.name in skip or not f.metadata.get("cli", True):
            continue
        flag = "--" + f.name.replace("_", "-")
        required = f.default is dataclasses.MISSING
        shown = "none" if f.default is None else f.default
        mentioned = required or "default" in f.metadata["help"]
        help_text = f.metadata["help"] + ("" if mentioned else f" (default: {shown})")
        if base is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            parser.add_argument(flag, type=base, default=None, choices=_choices(f.metadata), help=help_text,
                                required=required, metavar=None if _choices(f.metadata) else f.name.upper())


def from_args(cls: type[T], namespace: argparse.Namespace, **overrides: Any) -> T:
    """Settings from parsed arguments: what was given on the command line, else the dataclass default."""
    given = {f.name: getattr(namespace, f.name) for f, _, _ in _fields(cls)
             if getattr(namespace, f.name, None) is not None}
    return from_mapping(cls, {**given, **overrides}, "command line")


def _convert(value: Any, base: type, optional: bool, name: str, where: str) -> Any:
    if value is None or (optional and value == ""):
        if optional:
            return None
        raise SettingsError(f"{where}: {name} must not be empty")
    try:
        if base is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        if base is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return base(value)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"{where}: {name} must be {base.__name__}, got {value!r}") from exc


def _check_value(value: Any, f: dataclasses.Field, where: str) -> None:
    meta = f.metadata
    choices = _choices(meta)
    if value is None:
        return
    if choices is not None and value not in choices:
        raise SettingsError(f"{where}: unknown {f.name} {value!r}; choose one of {', '.join(choices)}")
    if meta.get("minimum") is not None and value < meta["minimum"]:
        raise SettingsError(f"{where}: {f.name} must be at least {meta['minimum']}, got {value}")
    if meta.get("maximum") is not None and value > meta["maximum"]:
        raise SettingsError(f"{where}: {f.name} must be at most {meta['maximum']}, got {value}")


def from_mapping(cls: type[T], values: Mapping[str, Any], where: str = "settings") -> T:
    """Settings from JSON or query parameters: unknown keys, wrong types and out-of-range values are errors."""
    known = {f.name: (f, base, optional) for f, base, optional in _fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise SettingsError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(known)}")
    converted = {}
    for name, value in values.items():
        f, base, optional = known[name]
        converted[name] = _convert(value, base, optional, name, where)
        _check_value(converted[name], f, where)
    return cls(**converted)


def to_json(settings: Any) -> dict[str, Any]:
    return dataclasses.asdict(settings)
