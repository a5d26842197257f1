"""Typed configs: dataclasses are the source of truth; YAML files and dotted overrides fill them in.

    cfg = load_config(TrainConfig, "recipes/demo/tts.yaml", ["model.trunk.dim=512", "optim.lr=3e-4"])
    d = to_dict(cfg)             # plain dict (JSON/YAML-safe), saved inside every checkpoint
    cfg2 = from_dict(TrainConfig, d)

Rules:
- Unknown keys are errors (with the list of valid keys), in files and in overrides alike.
- Values are checked against the annotated type (int, float, bool, str, Optional, Literal, list, tuple,
  dict[str, X], nested dataclasses). An int is accepted where a float is expected, and so is a numeric string
  (YAML reads ``3e-4`` as a string); nothing else is coerced.
- Override values are parsed as YAML scalars/flow collections (``a.b=[1,2]``, ``x=null``, ``flag=true``).
- Nothing is ever imported by name from a config: there is no ``_target_`` mechanism.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config value or key is invalid. The message names the dotted path."""


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _check(value: Any, tp: Any, path: str) -> Any:
    """Validate ``value`` against annotation ``tp``; build nested dataclasses. Returns the converted value."""
    if tp is Any:
        return value
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check(value, a, path)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{path}: {value!r} does not match {tp}")
    if origin is typing.Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{path}: {value!r} is not one of {list(get_args(tp))}")
        return value
    if _is_dataclass_type(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping for {tp.__name__}, got {value!r}")
        return _build(tp, value, path)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{path}: expected {len(args)} items, got {len(value)}")
            return tuple(_check(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        items = [_check(v, inner, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        kt, vt = get_args(tp) or (Any, Any)
        return {_check(k, kt, path): _check(v, vt, f"{path}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                raise ConfigError(f"{path}: expected a float, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a float, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an int, got {value!r}")
        return value
    if tp in (bool, str):
        if not isinstance(value, tp):
            raise ConfigError(f"{path}: expected {tp.__name__}, got {value!r}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{path}: expected {tp.__name__}, got {value!r}")
    return value


def _build(cls: type[T], data: dict[str, Any], path: str = "") -> T:
    upgrade = getattr(cls, "upgrade", None)
    if upgrade is not None:  # a config class maps the keys older versions wrote to today's (see its docstring)
        data = upgrade(dict(data))
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = path or cls.__name__
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(fields)}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _check(value, hints[name], f"{path}.{name}" if path else name)
    try:
        return cls(**kwargs)
    except TypeError as e:  # missing required fields
        raise ConfigError(f"{path or cls.__name__}: {e}") from None


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build a config dataclass from a (nested) dict, validating keys and types."""
    return _build(cls, data)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain nested dict of a config dataclass (tuples become lists, so it round-trips through JSON)."""

    def conv(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v

    return conv(cfg)


def _set_dotted(data: dict[str, Any], dotted: str, value: Any, cls: type) -> None:
    keys = dotted.split(".")
    node, tp = data, cls
    for i, k in enumerate(keys):
        here = ".".join(keys[: i + 1])
        if _is_dataclass_type(tp):
            names = {f.name for f in dataclasses.fields(tp)}
            if k not in names:
                raise ConfigError(f"override {dotted!r}: unknown key {here!r}; valid keys: {sorted(names)}")
            tp = get_type_hints(tp)[k]
            while get_origin(tp) in (typing.Union, types.UnionType):  # Optional[Dataclass]
                tp = next(a for a in get_args(tp) if a is not type(None))
        elif get_origin(tp) is dict:
            tp = get_args(tp)[1] if get_args(tp) else Any
        else:
            raise ConfigError(f"override {dotted!r}: {'.'.join(keys[:i])!r} is not a section")
        if i == len(keys) - 1:
            node[k] = value
        else:
            child = node.get(k)
            if child is None:
                child = to_dict(tp()) if _is_dataclass_type(tp) and _has_defaults(tp) else {}
                node[k] = child
            elif dataclasses.is_dataclass(child):
                child = node[k] = to_dict(child)
            node = child


def _has_defaults(tp: type) -> bool:
    return all(
        f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        for f in dataclasses.fields(tp)
        if f.init
    )


def parse_overrides(overrides: Iterable[str]) -> list[tuple[str, Any]]:
    """``["a.b=3", "c=[1, 2]"]`` -> ``[("a.b", 3), ("c", [1, 2])]`` (values parsed as YAML)."""
    out = []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.path=value")
        key, raw = item.split("=", 1)
        out.append((key.strip(), yaml.safe_load(raw) if raw.strip() else ""))
    return out


def load_config(
    cls: type[T], path: str | Path | None = None, overrides: Iterable[str] = (), base: T | None = None
) -> T:
    """Defaults (or ``base``) <- YAML file <- dotted overrides, validated into ``cls``."""
    data: dict[str, Any] = (
        to_dict(base) if base is not None else (to_dict(cls()) if _has_defaults(cls) else {})
    )
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
        _merge(data, loaded)
    for key, value in parse_overrides(overrides):
        _set_dotted(data, key, value, cls)
    return from_dict(cls, data)


def _merge(dst: dict[str, Any], src: dict[str, Any]) -> None:
    """Recursive merge: mappings merge key by key, everything else replaces."""
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        else:
            dst[k] = v


def save_config(cfg: Any, path: str | Path) -> None:
    """Write the resolved config as JSON (``.json``) or YAML (anything else)."""
    path = Path(path)
    d = to_dict(cfg)
    if path.suffix == ".json":
        path.write_text(json.dumps(d, indent=2, sort_keys=False) + "\n")
    else:
        path.write_text(yaml.safe_dump(d, sort_keys=False))
