"""Marshmallow schemas whose load and dump of plain, valid data follow a plan made once.

Telemetry is on the path of every AI block request, and marshmallow's general
machinery (error store, per-field closures, generic type checks) costs more
than the check it performs on a few string fields. A ``CompiledSchema``
derives, when it is built, a plan from its declared fields that reproduces
marshmallow's result exactly for the data it recognises, and hands everything
else to marshmallow itself: a wrong type, a failing validator, a ``str``
subclass, an unknown key under ``RAISE``. Accept/reject decisions, results and
error messages are therefore marshmallow's; tests compare the two paths.
"""

import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, missing
from marshmallow.types import StrSequenceOrSet, UnknownOption

# A plan: the result marshmallow would give, or _UNSURE.
_Plan = Callable[[Any], Any]

# The plan cannot vouch for this value; marshmallow decides.
_UNSURE = object()


class CompiledSchema(Schema):
    """A Schema with a fast path, compiled from its fields, for data it can vouch for."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._load_plan = _load_plan(self)
        self._dump_plan = _dump_plan(self)

    def load(
        self,
        data: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        *,
        many: bool | None = None,
        partial: bool | StrSequenceOrSet | None = None,
        unknown: UnknownOption | None = None,
    ) -> Any:
        """``Schema.load``; plain valid data takes the compiled plan."""
        if self._load_plan is not None and many is None and partial is None and unknown is None:
            result = self._load_plan(data)
            if result is not _UNSURE:
                return result
        return super().load(data, many=many, partial=partial, unknown=unknown)

    def dump(self, obj: Any, *, many: bool | None = None) -> Any:
        """``Schema.dump``; a dict holding every field as a plain value takes the compiled plan."""
        if self._dump_plan is not None and many is None:
            result = self._dump_plan(obj)
            if result is not _UNSURE:
                return result
        return super().dump(obj, many=many)


def _has_hooks(schema: Schema) -> bool:
    return any(schema._hooks.values())


def _load_plan(schema: Schema) -> _Plan | None:
    """A function mirroring ``schema.load`` on data it recognises, or None if the schema is not plain."""
    if schema.many or schema.partial or _has_hooks(schema):
        return None
    steps = []
    for attr_name, field in schema.load_fields.items():
        check = _value_check(field)
        key = field.attribute or attr_name
        default = field.load_default
        if check is None or "." in key or callable(default):
            return None
        data_key = field.data_key if field.data_key is not None else attr_name
        steps.append((data_key, key, field.required, default, check))
    # The same set marshmallow computes, so unknown keys come out in the same order.
    known = {data_key for data_key, *_ in steps}
    unknown = schema.unknown

    def load(data: Any) -> Any:
        if type(data) is not dict:
            return _UNSURE
        result = {}
        found = 0
        for data_key, key, required, default, check in steps:
            value = data.get(data_key, missing)
            if value is missing:
                if required:
                    return _UNSURE
                if default is not missing:
                    result[key] = default
                continue
            found += 1
            value = check(value)
            if value is _UNSURE:
                return _UNSURE
            result[key] = value
        # Every key was a field's: no unknown key to find (the usual case, and no set to build).
        if unknown != EXCLUDE and len(data) > found:
            extra = set(data) - known
            if extra and unknown == RAISE:
                return _UNSURE
            # Copied in C: a loop over a payload of a few thousand keys costs a third of a millisecond.
            result.update(zip(extra, map(data.__getitem__, extra), strict=True))
        return result

    return load


def _value_check(field: fields.Field[Any]) -> _Plan | None:
    """A function returning the loaded value, or _UNSURE; None for a field the plan cannot mirror."""
    if field.pre_load or field.post_load:
        return None
    if type(field) is fields.String:
        plain = _is_str
    elif type(field) is fields.UUID:
        plain = _uuid_from_str
    elif type(field) is fields.Dict and field.value_field is None and _plain_key_field(field.key_field):
        plain = _is_str_keyed_dict
    elif type(field) is fields.List and _plain_raw_field(field.inner):
        # A null item is marshmallow's error unless the items may be null.
        plain = _list_copy if field.inner.allow_none else _list_without_nulls
    else:
        return None
    validators = tuple(field.validators)
    allow_none = field.allow_none
    if not validators and not allow_none:
        # A null is then marshmallow's to refuse: the plain check is unsure of it.
        return plain

    def check(value: Any) -> Any:
        if value is None:
            return None if allow_none else _UNSURE
        value = plain(value)
        if value is _UNSURE:
            return _UNSURE
        try:
            for validate in validators:
                validate(value)
        except ValidationError:
            return _UNSURE
        return value

    return check


def _plain_key_field(key_field: fields.Field[Any] | None) -> bool:
    return key_field is None or (
        type(key_field) is fields.String
        and not key_field.validators
        and not key_field.pre_load
        and not key_field.post_load
    )


def _plain_raw_field(field: fields.Field[Any]) -> bool:
    return type(field) is fields.Raw and not field.validators and not (field.pre_load or field.post_load)


def _is_str(value: Any) -> Any:
    # Exactly str: marshmallow turns bytes and str subclasses into new str objects.
    return value if type(value) is str else _UNSURE


def _uuid_from_str(value: Any) -> Any:
    # What fields.UUID does with a str; anything else, or a malformed one, is marshmallow's to judge.
    if type(value) is not str:
        return _UNSURE
    try:
        return uuid.UUID(value)
    except ValueError:
        return _UNSURE


def _is_str_keyed_dict(value: Any) -> Any:
    # The types of the keys, gathered in C: a generator over them costs several times more.
    if type(value) is not dict or value and set(map(type, value)) != _STR_ONLY:
        return _UNSURE
    # A copy, as marshmallow returns; dict.copy clones the table rather than inserting key by key.
    return value.copy()


_STR_ONLY = {str}


def _list_without_nulls(value: Any) -> Any:
    # What fields.List(fields.Raw()) loads from a list: a copy; a null item is marshmallow's error.
    if type(value) is not list or None in value:
        return _UNSURE
    return list(value)


def _list_copy(value: Any) -> Any:
    # What fields.List(fields.Raw(allow_none=True)) loads from a list: a copy, nulls included.
    return list(value) if type(value) is list else _UNSURE


def _dump_plan(schema: Schema) -> _Plan | None:
    """A function mirroring ``schema.dump`` of a dict of plain values, or None if the schema is not plain."""
    if schema.many or _has_hooks(schema):
        return None
    steps = []
    for attr_name, field in schema.dump_fields.items():
        kind = {fields.String: str, fields.Boolean: bool}.get(type(field))
        # As Field.serialize looks it up: a dotted name is a path, which the plan leaves to marshmallow.
        source = attr_name if field.attribute is None else field.attribute
        if kind is None or "." in source:
            return None
        steps.append((source, field.data_key if field.data_key is not None else attr_name, kind))

    def dump(obj: Any) -> Any:
        if type(obj) is not dict:
            return _UNSURE
        result = {}
        for source, key, kind in steps:
            value = obj.get(source, _UNSURE)
            if type(value) is not kind:
                return _UNSURE
            result[key] = value
        return result

    return dump
