"""Configs as data: YAML files validated into dataclasses, with ``key=value`` overrides.

* :func:`from_dict` builds a (nested) dataclass from a mapping and checks every key and
  type; an unknown key names the nearest valid one.
* :func:`load_config` reads YAML (with an optional ``base:`` file to extend), applies
  dotted ``key=value`` overrides and validates.
* :func:`to_dict` turns a config back into plain data (saved as JSON next to checkpoints).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence, TypeVar, Union, get_args, get_origin

import yaml

from .errors import ConfigError

T = TypeVar("T")

_MISSING = dataclasses.MISSING
_FLOAT_RE = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)")


def _suggest(key: str, valid: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{hint} Valid keys: {', '.join(sorted(valid))}"


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin is not None:
        return str(tp).replace("typing.", "")
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Check/convert ``value`` to type ``tp``; raise :class:`ConfigError` naming ``where``."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{where}: expected {_type_name(tp)}, found {value!r} ({type(value).__name__})")
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{where}: expected {_type_name(tp)}, found {value!r}")
        return value
    if origin in (list, Sequence, typing.Sequence) or tp is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, found {value!r} ({type(value).__name__})")
        (item_tp,) = get_args(tp) or (Any,)
        return [_convert(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, found {value!r}")
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} items, found {len(value)}")
        return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin in (dict, Mapping, typing.Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, found {value!r} ({type(value).__name__})")
        kt, vt = get_args(tp) or (Any, Any)
        return {_convert(k, kt, f"{where} key"): _convert(v, vt, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, found {value!r}")
        return from_dict(tp, value, where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected a bool (true/false), found {value!r} ({type(value).__name__})")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected an int, found {value!r} ({type(value).__name__})")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # YAML reads "1e-3" as a string
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, found {value!r} ({type(value).__name__})")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, found {value!r} ({type(value).__name__})")
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{where}: expected {_type_name(tp)}, found {value!r}")


def from_dict(cls: type[T], data: Mapping[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, validating keys and types.

    Raises :class:`ConfigError` for an unknown key (with the nearest valid key), a
    wrong type or a missing required field. A dataclass may define ``validate(self)``
    for cross-field checks; it runs after construction.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, found {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in fields:
            raise ConfigError(f"unknown config key {path!r}{_suggest(str(key), list(fields))}")
        kwargs[key] = _convert(value, hints[key], path)
    for name, f in fields.items():
        if name not in kwargs and f.default is _MISSING and f.default_factory is _MISSING:
            path = f"{where}.{name}" if where else name
            raise ConfigError(f"missing required config key {path!r} ({_type_name(hints[name])})")
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()
    return obj


def to_dict(obj: Any) -> Any:
    """Dataclass (nested) → plain dicts/lists (JSON/YAML-able)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"a.b=3"`` → ``(["a", "b"], 3)``; the value is parsed as YAML (``1e-3``, ``true``, ``[1,2]``)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form key=value (e.g. train.max_steps=100)")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {item!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"override {item!r}: the value is not valid YAML ({problem}); quote it for a string, "
                          "e.g. key='a: b'") from None
    if isinstance(value, str) and _FLOAT_RE.fullmatch(value.strip()):
        value = float(value)  # YAML 1.1 reads "1e-3" as a string
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str], cls: type | None = None) -> dict[str, Any]:
    """Raw config data with dotted ``key=value`` overrides applied (a copy: ``data`` is left as it is).
    With ``cls`` given, a key that does not exist in the dataclass schema is refused (naming the nearest one)."""
    data = copy.deepcopy(data)
    for item in overrides:
        keys, value = parse_override(item)
        node: dict[str, Any] = data
        schema = cls
        for i, k in enumerate(keys):
            if schema is not None and dataclasses.is_dataclass(schema):
                names = [f.name for f in dataclasses.fields(schema)]
                if k not in names:
                    prefix = ".".join(keys[:i])
                    raise ConfigError(
                        f"override {item!r}: unknown key {k!r}" + (f" under {prefix!r}" if prefix else "") + _suggest(k, names)
                    )
                hint = typing.get_type_hints(schema)[k]
                schema = _dataclass_in(hint)
            else:
                schema = None
            if i == len(keys) - 1:
                node[k] = value
            else:
                nxt = node.get(k)
                if not isinstance(nxt, dict):
                    nxt = {}
                    node[k] = nxt
                node = nxt
    return data


def _dataclass_in(tp: Any) -> type | None:
    if dataclasses.is_dataclass(tp):
        return tp
    for a in get_args(tp):
        if dataclasses.is_dataclass(a):
            return a
    return None


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge (a new dict; the inputs are not changed): ``top`` wins; where both hold a
    mapping under a key, the two merge key by key. The one merge of ``base:`` files, saved configs and
    config sections (both heads)."""
    out = dict(base)
    for k, v in top.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def _load_yaml_file(path: Path) -> Any:
    """Parse a YAML file; a syntax error becomes one :class:`ConfigError` ``file:line:column: problem`` with the
    offending line and a caret under the column."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a text (UTF-8) file ({e.reason} at byte {e.start}); give a YAML config") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e)
        context = getattr(e, "context", None)
        if mark is None:
            raise ConfigError(f"{path}: invalid YAML: {problem}") from None
        lines = text.splitlines()
        line = lines[mark.line] if mark.line < len(lines) else ""
        cm = getattr(e, "context_mark", None)
        if context and cm is not None and cm.line != mark.line and cm.line < len(lines):
            context += f" that starts at line {cm.line + 1}: {lines[cm.line].strip()!r}"
        where = f"{path}:{mark.line + 1}:{mark.column + 1}"
        raise ConfigError(f"{where}: invalid YAML: {problem}" + (f" ({context})" if context else "")
                          + f"\n    {line}\n    {' ' * mark.column}^") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a top-level ``base: other.yaml`` (relative to the file) is merged under it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path} (give a path to a YAML file, e.g. configs/...)")
    data = _load_yaml_file(path)
    if data is None:
        raise ConfigError(f"{path}: the config file is empty (expected a YAML mapping such as 'train: {{max_steps: 10}}'; "
                          "an empty file would silently run every default)")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level of a config must be a mapping (key: value lines), "
                          f"found a {type(data).__name__}")
    base = data.pop("base", None)
    if base:
        data = deep_merge(read_yaml(path.parent / base), data)
    return data


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = (), data: Mapping[str, Any] | None = None) -> T:
    """Load a YAML file (or ``data``) into dataclass ``cls`` with overrides applied."""
    raw: dict[str, Any] = dict(data or {})
    if path is not None:
        raw = deep_merge(raw, read_yaml(path))
    raw = apply_overrides(raw, overrides, cls)
    return from_dict_in(cls, raw, path)


def from_dict_in(cls: type[T], raw: Mapping[str, Any], path: str | Path | None = None) -> T:
    """:func:`from_dict`, its errors prefixed with the config file they come from (when there is one)."""
    try:
        return from_dict(cls, raw)
    except ConfigError as e:
        if path is not None:
            raise ConfigError(f"{path}: {e}") from None
        raise
