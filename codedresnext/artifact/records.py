"""Strict JSON <-> dataclass conversion for the artifact records (manifest, preprocessing).

A record is a dataclass whose fields may carry `slot(...)` metadata: the JSON key (when it is not
a Python name, e.g. "class"), the record type of a nested object, list or mapping of objects, and
whether a None value is left out of the JSON, and whether +inf is written as JSON null (`inf_as_null`:
thresholds that mean "never", since strict JSON has no Infinity; also the values of a {key: threshold}
mapping). `from_dict` rejects unknown keys and missing
required ones with a GraphError that names the path of the bad key (as ModelConfig.from_dict
does for configs), so a hand-edited or foreign manifest fails where it is read, not three calls
later with a KeyError.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
import types
import typing
from typing import Any, TypeVar, Union

from ..errors import GraphError

R = TypeVar("R", bound="Record")


def slot(
    default: Any = dataclasses.MISSING,
    *,
    default_factory: Any = dataclasses.MISSING,
    key: str | None = None,
    record: type | None = None,
    many: bool = False,
    mapping: bool = False,
    keep_none: bool = False,
    inf_as_null: bool = False,
) -> Any:
    """A record field. record: nested Record type; many: a list of them; mapping: {str: record};
    inf_as_null: +inf is stored as null and null reads back as +inf (the key absent stays None)."""
    meta = {
        "key": key,
        "record": record,
        "many": many,
        "mapping": mapping,
        "keep_none": keep_none,
        "inf_as_null": inf_as_null,
    }
    return dataclasses.field(default=default, default_factory=default_factory, metadata=meta)


def _key(f: dataclasses.Field) -> str:
    return f.metadata.get("key") or f.name


class Record:
    """Mixin for dataclass records: strict `from_dict(d)` and `to_dict()` (JSON-ready)."""

    @classmethod
    def from_dict(cls: type[R], d: Any, where: str | None = None) -> R:
        where = where or cls.__name__
        if not isinstance(d, dict):
            raise GraphError(f"{where}: expected a JSON object, got {type(d).__name__}")
        fields = {_key(f): f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise GraphError(
                f"{where}: unknown key(s) {unknown} (known: {sorted(fields)}); the file was written by "
                "another codedresnext version or edited by hand: re-export it with this version"
            )
        kwargs = {}
        for key, f in fields.items():
            if key not in d:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise GraphError(f"{where}: missing required key {key!r}")
                continue
            kwargs[f.name] = _decode(f, d[key], f"{where}.{key}")
        hints = _hints(cls)
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name in kwargs and not _conforms(kwargs[f.name], hints[f.name]):
                raise GraphError(
                    f"{where}.{_key(f)}: expected {_type_name(hints[f.name])}, got {kwargs[f.name]!r}; "
                    "the file was edited by hand or is damaged: re-export it"
                )
        try:
            return cls(**kwargs)
        except GraphError:
            raise
        except (TypeError, ValueError) as e:
            raise GraphError(f"{where}: {e}") from e

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if f.metadata.get("inf_as_null") and isinstance(v, float) and v == math.inf:
                out[_key(f)] = None
                continue
            if f.metadata.get("inf_as_null") and isinstance(v, dict):  # {key: threshold}
                out[_key(f)] = {k: None if x == math.inf else _encode(x) for k, x in v.items()}
                continue
            if v is None and not f.metadata.get("keep_none"):
                continue
            out[_key(f)] = _encode(v)
        return out


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _conforms(v: Any, hint: Any) -> bool:
    """Whether a decoded JSON value fits a field annotation (int counts as float, bool as neither;
    an Enum field takes its string value, which __post_init__ parses)."""
    if hint is Any:
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return any(_conforms(v, a) for a in args)
    if hint is type(None):
        return v is None
    if origin in (list, tuple):  # JSON has lists only; tuple[X, ...] fields take them too
        return isinstance(v, (list, tuple)) and (not args or all(_conforms(x, args[0]) for x in v))
    if origin is dict:
        if not isinstance(v, dict):
            return False
        return not args or all(isinstance(k, str) and _conforms(x, args[1]) for k, x in v.items())
    if hint is float:
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if hint is int:
        return isinstance(v, int) and not isinstance(v, bool)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return isinstance(v, (hint, str))
    if isinstance(hint, type):
        return isinstance(v, hint)
    return True


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _decode(f: dataclasses.Field, v: Any, where: str) -> Any:
    if v is None and f.metadata.get("inf_as_null"):
        return math.inf
    if isinstance(v, dict) and f.metadata.get("inf_as_null") and f.metadata.get("record") is None:
        return {k: math.inf if x is None else x for k, x in v.items()}
    rec = f.metadata.get("record")
    if rec is None or v is None:
        return v
    if f.metadata.get("many"):
        if not isinstance(v, list):
            raise GraphError(f"{where}: expected a list, got {type(v).__name__}")
        return [rec.from_dict(x, f"{where}[{i}]") for i, x in enumerate(v)]
    if f.metadata.get("mapping"):
        if not isinstance(v, dict):
            raise GraphError(f"{where}: expected a JSON object, got {type(v).__name__}")
        return {str(k): rec.from_dict(x, f"{where}.{k}") for k, x in v.items()}
    return rec.from_dict(v, where)


def _encode(v: Any) -> Any:
    if isinstance(v, Record):
        return v.to_dict()
    if isinstance(v, enum.Enum):
        return v.value
    if isinstance(v, (list, tuple)):
        return [_encode(x) for x in v]
    if isinstance(v, dict):
        return {k: _encode(x) for k, x in v.items()}
    return v


def json_ready(v: Any) -> Any:
    """`v` with every non-finite float (inf, nan) replaced by None, so it dumps as strict JSON
    (Python's json writes Infinity/NaN, which other JSON readers reject). For free-form reports
    (calibrate's), where null then means "never" (a threshold) or "undefined" (a ratio)."""
    if isinstance(v, dict):
        return {k: json_ready(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_ready(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def require_type(where: str, value: Any, types: type | tuple[type, ...]) -> None:
    """GraphError unless `value` is an instance of `types` (bool is not accepted as a number)."""
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in _as_tuple(types))
    if not ok:
        names = "/".join(t.__name__ for t in _as_tuple(types))
        raise GraphError(f"{where}: expected {names}, got {value!r}")


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)
