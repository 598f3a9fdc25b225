"""The one cattrs converter for every wire shape: camelCase on the wire, strict JSON types (no
"3" for 3, no true for 1), the constraints of constraints.py, and errors that name the field."""

from __future__ import annotations

import json
import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal, Union

import attrs
import cattrs
from cattrs.errors import ForbiddenExtraKeysError
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from glm_lsp.wire.constraints import Number, Text, WireValueError

converter = cattrs.Converter(detailed_validation=True)


def camel(name: str) -> str:
    """failure_reason -> failureReason; names already camelCase stay as they are."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def wire(*, omit_defaults: bool = False, forbid_extra: bool = False) -> Callable[[type], type]:
    """Marks a model: `omit_defaults` leaves fields at their default (None, False) off the wire;
    `forbid_extra` rejects unknown keys (settings), where commands ignore them."""

    def mark(cls: type) -> type:
        cls.__wire_omit_defaults__ = omit_defaults  # type: ignore[attr-defined]
        cls.__wire_forbid_extra__ = forbid_extra  # type: ignore[attr-defined]
        return cls

    return mark


# -- what a type accepts, in words (messages) ------------------------------------------------------
def show(value: Any, limit: int = 80) -> str:
    """A value as JSON, clipped: enough to recognise, never the whole megabyte."""
    try:
        text = json.dumps(value, ensure_ascii=False)
        text.encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError):
        text = json.dumps(value, default=repr) if _dumpable(value) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _dumpable(value: Any) -> bool:
    try:
        json.dumps(value, default=repr)
    except (TypeError, ValueError):
        return False
    return True


def is_optional(tp: Any) -> bool:
    return _is_union(tp) and type(None) in typing.get_args(tp)


def without_none(tp: Any) -> Any:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if len(args) == 1 else Union[tuple(args)]  # noqa: UP007


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def describe(tp: Any) -> str:
    """What a value of this type may be, as the error messages and the schema say it."""
    if typing.get_origin(tp) is Annotated:
        for meta in tp.__metadata__:
            if isinstance(meta, (Number, Text)):
                return meta.describe()
        return describe(tp.__origin__)
    if is_optional(tp):
        inner = without_none(tp)
        if typing.get_origin(inner) is Literal:
            return ", ".join(show(c) for c in (None, *typing.get_args(inner)))
        return f"{describe(inner)} or null"
    if _is_union(tp):
        return " or ".join(describe(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is Literal:
        return ", ".join(show(c) for c in typing.get_args(tp))
    if typing.get_origin(tp) in (list, tuple):
        return f"a list of {_plural(describe(typing.get_args(tp)[0]))}"
    if attrs.has(tp):
        required = [camel(a.name) for a in attrs.fields(tp) if a.default is attrs.NOTHING]
        return f"an object {{{', '.join(required)}}}" if required else "an object"
    return {
        bool: "true, false",
        int: "a whole number",
        float: "a number",
        str: "a string",
    }.get(tp, "an object")


def _plural(text: str) -> str:
    return text.removeprefix("a ").removeprefix("an ") + "s" if text.startswith("a") else text


# -- strict structuring ----------------------------------------------------------------------------
def _string(value: Any, text: Text | None = None) -> str:
    accepts = (text or Text(describes="a string")).describe()
    if not isinstance(value, str):
        raise WireValueError(value, accepts)
    try:
        value.encode("utf-8")  # JSON carries lone surrogates; the tokenizer and the log cannot
    except UnicodeEncodeError as exc:
        raise WireValueError(
            value, accepts, f"has an unpaired surrogate at index {exc.start}"
        ) from None
    if text is None:
        return value
    if text.max_len is not None and len(value) > text.max_len:
        raise WireValueError(
            value, accepts, f"is {len(value)} characters long, more than accepted ({text.max_len})"
        )
    if not text.blank and not value.strip():
        raise WireValueError(value, accepts)
    return value.strip() if text.strip else value


def _number(value: Any, number: Number) -> int | float:
    accepts = number.describe()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise WireValueError(value, accepts)
    if number.whole and not isinstance(value, int):
        raise WireValueError(value, accepts)
    if isinstance(value, float) and not math.isfinite(value):
        raise WireValueError(value, accepts)
    if (number.low is not None and value < number.low) or (
        number.high is not None and value > number.high
    ):
        raise WireValueError(value, accepts)
    return value if number.whole else float(value)


def _bool(value: Any, _tp: Any) -> bool:
    if not isinstance(value, bool):
        raise WireValueError(value, describe(bool))
    return value


def _annotated_hook(tp: Any) -> Callable[[Any, Any], Any]:
    base = tp.__origin__
    meta = next((m for m in tp.__metadata__ if isinstance(m, (Number, Text))), None)
    if isinstance(meta, Text):
        return lambda value, _tp: _string(value, meta)
    if isinstance(meta, Number):
        return lambda value, _tp: _number(value, meta)
    return lambda value, _tp: converter.structure(value, base)


def _literal_hook(tp: Any) -> Callable[[Any, Any], Any]:
    choices = typing.get_args(tp)

    def structure(value: Any, _tp: Any) -> Any:
        # 1 == True == 1.0 in Python; on the wire they are different values.
        if not any(value == c and type(value) is type(c) for c in choices):
            raise WireValueError(value, describe(tp))
        return value

    return structure


def _sequence_hook(tp: Any) -> Callable[[Any, Any], Any]:
    item = typing.get_args(tp)[0] if typing.get_args(tp) else Any
    make = tuple if typing.get_origin(tp) is tuple else list
    inner = converter.get_structure_hook(item)

    def structure(value: Any, _tp: Any) -> Any:
        if not isinstance(value, (list, tuple)):
            raise WireValueError(value, describe(tp))
        out, errors = [], []
        for i, v in enumerate(value):
            try:
                out.append(inner(v, item))
            except Exception as exc:
                exc.__notes__ = [
                    *getattr(exc, "__notes__", []),
                    cattrs.IterableValidationNote(f"Structuring {tp} @ index {i}", i, item),
                ]
                errors.append(exc)
        if errors:
            raise cattrs.IterableValidationError(f"While structuring {tp!r}", errors, tp)
        return make(out)

    return structure


def _class_hooks(cls: type) -> tuple[Callable[..., Any], Callable[..., Any]]:
    names = {a.name: override(rename=camel(a.name)) for a in attrs.fields(cls)}
    omit = getattr(cls, "__wire_omit_defaults__", False)
    forbid = getattr(cls, "__wire_forbid_extra__", False)
    fn = make_dict_structure_fn(cls, converter, _cattrs_forbid_extra_keys=forbid, **names)

    def structure(value: Any, tp: Any) -> Any:
        if not isinstance(value, Mapping):
            raise WireValueError(value, describe(cls))
        return fn(value, tp)

    unstructure = make_dict_unstructure_fn(cls, converter, _cattrs_omit_if_default=omit, **names)
    return structure, unstructure


converter.register_structure_hook(str, lambda value, _tp: _string(value))
converter.register_structure_hook(bool, _bool)
converter.register_structure_hook(int, lambda value, _tp: _number(value, Number()))
converter.register_structure_hook(float, lambda value, _tp: _number(value, Number(whole=False)))
converter.register_structure_hook_factory(
    lambda tp: typing.get_origin(tp) is Annotated, _annotated_hook
)
converter.register_structure_hook_factory(
    lambda tp: typing.get_origin(tp) is Literal, _literal_hook
)
converter.register_structure_hook_factory(
    lambda tp: typing.get_origin(tp) in (list, tuple), _sequence_hook
)
converter.register_structure_hook_factory(attrs.has, lambda cls: _class_hooks(cls)[0])
converter.register_unstructure_hook_factory(attrs.has, lambda cls: _class_hooks(cls)[1])


# -- errors ----------------------------------------------------------------------------------------
@attrs.frozen
class Problem:
    """One bad value: where (`range.end.line`, `diagnostics[0]`; "" for the whole object), the
    sentence after the field name, and the unknown keys when that is the problem."""

    path: str
    text: str
    value: Any = None
    extra: tuple[str, ...] = ()


def problems(exc: Exception, tp: Any = None) -> list[Problem]:
    """The leaves of a cattrs error, each with its path (cattrs' own notes give the path)."""
    out: list[Problem] = []
    _walk(exc, "", tp, out)
    return out


def _walk(exc: BaseException, path: str, tp: Any, out: list[Problem]) -> None:
    if isinstance(exc, cattrs.ClassValidationError | cattrs.IterableValidationError):
        with_notes, without = exc.group_exceptions()
        for inner, note in with_notes:
            if isinstance(note, cattrs.AttributeValidationNote):
                child = f"{path}.{note.name}" if path else note.name
                _walk(inner, _camel_path(child), note.type, out)
            elif isinstance(note, cattrs.IterableValidationNote):
                _walk(inner, f"{path}[{note.index}]", note.type, out)
        for inner in without:
            _walk(inner, path, tp, out)
        return
    if isinstance(exc, ForbiddenExtraKeysError):
        extra = tuple(sorted(exc.extra_fields))
        out.append(Problem(path, f"has unknown keys: {', '.join(extra)}", extra=extra))
    elif isinstance(exc, KeyError):
        out.append(Problem(path, f"is missing; accepted values: {describe(tp)}"))
    elif isinstance(exc, WireValueError):
        text = exc.problem or f"is {show(exc.value)}; accepted values: {exc.accepts}"
        out.append(Problem(path, text, exc.value))
    else:  # a hook we did not write: say what was expected, not the traceback
        out.append(Problem(path, f"is not accepted; accepted values: {describe(tp)}"))


def _camel_path(path: str) -> str:
    head, _, last = path.rpartition(".")
    return f"{head}.{camel(last)}" if head else camel(last)
