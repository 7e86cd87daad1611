"""Strict JSON <-> frozen dataclass decoding shared by every message registry.

A message class is a frozen, slotted dataclass with a class-level ``type`` tag. Decoding checks
every field's type exactly (no coercion: ``"3"`` is not an int, ``true`` is not an int), rejects
unknown and missing fields, and raises ``ProtocolError`` for anything else. Limits on sizes live
in the message classes' ``validate`` methods.
"""

from __future__ import annotations

import dataclasses
import json
import json.encoder
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar, Union, get_args, get_origin

from .errors import ProtocolError

MAX_JSON_BYTES = 256 * 1024

M = TypeVar("M", bound="Message")


class Message:
    """Base of every JSON message. Subclasses are ``@dataclass(frozen=True, slots=True)``."""

    type: ClassVar[str]
    # Field name -> name on the wire, for a wire name that cannot be a Python identifier.
    wire_names: ClassVar[dict[str, str]] = {}
    # Fields left off the wire while they hold their default (debug fields, off by default): a
    # peer that predates them still decodes the message.
    omitted_at_default: ClassVar[frozenset[str]] = frozenset()

    def validate(self) -> None:
        """Extra checks beyond types; raise ProtocolError."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        for name, wire_name, omitted, default in _fields_out(type(self)):
            value = getattr(self, name)
            if omitted and value == default:
                continue
            out[wire_name] = list(value) if isinstance(value, tuple) else value
        return out

    def to_json(self) -> str:
        if _C_ENCODE is None:
            return _ENCODER.encode(self.to_dict())
        return "".join(_C_ENCODE(self.to_dict(), 0))

    def to_bytes(self) -> bytes:
        return self.to_json().encode()


# One encoder for every message: ``json.dumps`` with non-default arguments builds one per call,
# over half of encoding a job (issue 20).
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
# And its C encoder, made once: ``encode`` makes one per call (a quarter of encoding a job after an
# idle spell). No check for cycles: a message's dict is made of fields, never of itself. The
# arguments are the ones ``JSONEncoder.iterencode`` passes for ``_ENCODER``; None without the C
# module (``_ENCODER`` then).
_make_c_encoder = getattr(json.encoder, "c_make_encoder", None)  # not in typeshed
_C_ENCODE: Callable[[dict[str, Any], int], tuple[str, ...]] | None = _make_c_encoder and _make_c_encoder(
    None, _ENCODER.default, json.encoder.encode_basestring, None, ":", ",", False, False, True
)

# Per message class: (field, wire name, left off at its default, the default). Read once: asking
# ``dataclasses.fields`` on every encode was half of encoding a job (issue 20).
_FIELDS_OUT: dict[type[Message], tuple[tuple[str, str, bool, Any], ...]] = {}


def _fields_out(cls: type[Message]) -> tuple[tuple[str, str, bool, Any], ...]:
    plan = _FIELDS_OUT.get(cls)
    if plan is None:
        plan = _FIELDS_OUT[cls] = tuple(
            (f.name, cls.wire_names.get(f.name, f.name), f.name in cls.omitted_at_default, f.default)
            for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        )
    return plan


# The C scanner ``json.loads`` ends in, called straight for a message that is one object with no
# whitespace around it (every peer of ours sends that): ``loads`` spent two regex matches and two
# Python calls around it, ~20 us of a client's ``speak`` after an idle spell (issue 20). Anything
# else, and any error, goes to ``json.loads``, which decides it.
_SCAN: Callable[[str, int], tuple[Any, int]] = getattr(json.JSONDecoder(), "scan_once")  # noqa: B009 - not in typeshed


def _loads(raw: str) -> Any:
    if raw[:1] == "{" and raw[-1:] == "}":
        try:
            data, end = _SCAN(raw, 0)
        except (StopIteration, json.JSONDecodeError):
            pass
        else:
            if end == len(raw):
                return data
    return json.loads(raw)


Check = Callable[[Any], Any]  # a field's value as decoded -> the value to keep; ProtocolError


def checker(hint: Any, name: str) -> Check:
    """The check of one field of type ``hint`` (wire name ``name``), built once per message class:
    asking ``typing`` about the hint on every decode was most of decoding a client's ``speak``
    (issue 20)."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        arms = tuple(checker(arm, name) for arm in get_args(hint))

        def union(value: Any) -> Any:
            for arm in arms:
                try:
                    return arm(value)
                except ProtocolError:
                    continue
            raise ProtocolError(f"field {name!r} has the wrong type", code="bad_field")

        return union
    if hint is type(None):

        def null(value: Any) -> None:
            if value is None:
                return None
            raise ProtocolError(f"field {name!r} must be null", code="bad_field")

        return null
    if hint is Any:
        return _any
    if origin is tuple:
        (item_hint,) = [a for a in get_args(hint) if a is not Ellipsis]
        item = checker(item_hint, name)

        def items(value: Any) -> tuple[Any, ...]:
            if not isinstance(value, list):
                raise ProtocolError(f"field {name!r} must be a list", code="bad_field")
            return tuple(item(v) for v in value)

        return items
    if origin is typing.Literal:
        allowed = get_args(hint)
        kind = type(allowed[0])

        def literal(value: Any) -> Any:
            if value in allowed and type(value) is kind:
                return value
            raise ProtocolError(f"field {name!r} must be one of {list(allowed)}", code="bad_field")

        return literal
    if hint is float:

        def number(value: Any) -> float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
            raise ProtocolError(f"field {name!r} must be a number", code="bad_field")

        return number
    if hint is int:

        def integer(value: Any) -> int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            raise ProtocolError(f"field {name!r} must be an integer", code="bad_field")

        return integer
    if hint in (str, bool):

        def exact(value: Any) -> Any:
            if type(value) is hint:
                return value
            raise ProtocolError(f"field {name!r} must be a {hint.__name__}", code="bad_field")

        return exact
    raise TypeError(f"unsupported field type {hint!r}")  # a programming error, not bad input


def _any(value: Any) -> Any:
    return value


@dataclasses.dataclass(frozen=True, slots=True)
class FieldIn:
    name: str  # the dataclass field
    wire: str  # its name on the wire
    check: Check
    required: bool  # no default


@dataclasses.dataclass(frozen=True, slots=True)
class DecodePlan:
    """How one message class is read from a JSON object: its fields in order, and the keys allowed."""

    fields: tuple[FieldIn, ...]
    allowed: frozenset[str]

    @classmethod
    def of(cls, message: type[Message]) -> DecodePlan:
        hints = typing.get_type_hints(message)
        fields = tuple(
            FieldIn(
                f.name,
                wire := message.wire_names.get(f.name, f.name),
                checker(hints[f.name], wire),
                f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
            )
            for f in dataclasses.fields(message)  # type: ignore[arg-type]
        )
        return cls(fields, frozenset(f.wire for f in fields) | {"type"})


class Registry:
    """One table from ``type`` tag to message class."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._classes: dict[str, type[Message]] = {}
        self._plans: dict[type[Message], DecodePlan] = {}

    def register(self, cls: type[M]) -> type[M]:
        if cls.type in self._classes:
            raise ValueError(f"duplicate message type {cls.type!r}")
        self._classes[cls.type] = cls
        self._plans[cls] = DecodePlan.of(cls)
        return cls

    @property
    def types(self) -> list[str]:
        return sorted(self._classes)

    def decode(self, raw: str | bytes | bytearray) -> Message:
        if isinstance(raw, (bytes, bytearray)):
            if len(raw) > MAX_JSON_BYTES:
                raise ProtocolError(f"message larger than {MAX_JSON_BYTES} bytes", code="too_large")
            try:
                raw = bytes(raw).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ProtocolError("message is not valid UTF-8", code="bad_encoding") from exc
        if len(raw) > MAX_JSON_BYTES:
            raise ProtocolError(f"message larger than {MAX_JSON_BYTES} bytes", code="too_large")
        try:
            data = _loads(raw)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise ProtocolError("message is not valid JSON", code="bad_json") from exc
        return self.from_dict(data)

    def from_dict(self, data: Any) -> Message:
        if type(data) is not dict and not isinstance(data, Mapping):  # the ABC's check is slow cold
            raise ProtocolError("message must be a JSON object", code="bad_message")
        tag = data.get("type")
        if not isinstance(tag, str):
            raise ProtocolError("message has no string 'type'", code="bad_message")
        cls = self._classes.get(tag)
        if cls is None:
            raise ProtocolError(f"unknown {self.name} message type {tag!r}", code="unknown_type")
        plan = self._plans[cls]
        if not plan.allowed.issuperset(data):
            unknown = set(data) - plan.allowed
            raise ProtocolError(f"unknown field(s) {sorted(unknown)} in {tag!r}", code="bad_field")
        kwargs: dict[str, Any] = {}
        for f in plan.fields:
            if f.wire in data:
                kwargs[f.name] = f.check(data[f.wire])
            elif f.required:
                raise ProtocolError(f"missing field {f.wire!r} in {tag!r}", code="bad_field")
        msg = cls(**kwargs)
        msg.validate()
        return msg
