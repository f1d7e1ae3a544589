"""Pydantic models rebuilt from their own JSON dump, without validating it again.

The ADK adapter reads back events it stored as `Event.model_dump_json()`: data
that was a valid event when it was written and never changes. Validating it
again costs most of a read (Google's types run a Python validator on every
nested object), so `rebuild` constructs the models directly (`model_construct`),
field by field, following each field's annotation. Anything it is not sure of
(bytes, which the dump writes as base64; a union of several types; a key the
model does not know; a value of another type than its field's; a model with
validators that change values after parsing) is handed to Pydantic's own JSON
validation, for that value alone, so the result is what `model_validate_json`
would give.

A model read again and again (the last events of a conversation, on every
turn) is rebuilt once and then copied: `copies_of` makes copies as deep as
`model_copy(deep=True)`'s in less than half of `rebuild`'s time.
"""

from __future__ import annotations

import copy
import enum
import functools
import json
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any, Final, TypeVar

import orjson
from pydantic import BaseModel, TypeAdapter
from pydantic_core import PydanticUndefined

__all__ = ["construct", "copies_of", "rebuild"]

M = TypeVar("M", bound=BaseModel)

Convert = Callable[[Any], Any]


class _Slow(Exception):
    """This value needs Pydantic's validation."""


def rebuild(cls: type[M], data: Any) -> M:
    """`cls.model_validate_json(orjson.dumps(data))`, for `data` a dump of a `cls`,
    mostly without validating (see the module docstring)."""
    try:
        return typing.cast(M, _model(cls)(data))
    except _Slow:
        return cls.model_validate_json(_json(data))


def construct(cls: type[M], values: dict[str, Any], **private: Any) -> M:
    """`cls.model_construct(**values)` with private attributes set after, for values
    already of their fields' types (nothing is checked): the defaults worked out once."""
    layout = _layout_of(cls)
    if layout is None:
        model = cls.model_construct(**values)
        for name, value in private.items():
            setattr(model, name, value)
        return model
    template, factories, required = layout
    state = template.copy()
    state.update(values)
    for name, factory in factories:
        if state[name] is _FACTORY:
            state[name] = factory()
    for name in required:
        if state[name] is _REQUIRED:
            raise ValueError(f"{cls.__name__}: a required field is missing: {name}")
    model = _maker(cls)(state, set(values))
    for name, value in private.items():
        if name not in cls.__private_attributes__:
            raise AttributeError(f"{cls.__name__} has no private attribute {name!r}")
        model.__pydantic_private__[name] = value
    return typing.cast(M, model)


Make = Callable[[dict[str, Any], set[str]], Any]
"""Makes a model from its state (every field) and the names of the fields set."""

# What `model_construct` sets on a new model, set through `BaseModel`'s own slots (their
# descriptors: `object.__setattr__` looks each one up on every call).
_SET_DICT: Final = BaseModel.__dict__["__dict__"].__set__
_SET_FIELDS_SET: Final = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_SET_EXTRA: Final = BaseModel.__dict__["__pydantic_extra__"].__set__
_SET_PRIVATE: Final = BaseModel.__dict__["__pydantic_private__"].__set__
_MAKERS: Final[dict[type[BaseModel], Make]] = {}


def _maker(cls: type[BaseModel]) -> Make:
    """How `model_construct` makes a model of `cls` from its state, worked out once per
    class: no extra fields, then `model_post_init` when the class has one. Pydantic's
    own (a class with private attributes and no `model_post_init` of its own) gives
    them their defaults: when those are immutable values, they are set directly."""
    found = _MAKERS.get(cls)
    if found is not None:
        return found
    post_init = bool(cls.__pydantic_post_init__)
    defaults = _private_defaults(cls)
    new = object.__new__

    def make(state: dict[str, Any], fields_set: set[str]) -> Any:
        model = new(cls)
        _SET_DICT(model, state)
        _SET_FIELDS_SET(model, fields_set)
        _SET_EXTRA(model, None)
        if defaults is not None:
            _SET_PRIVATE(model, defaults.copy())
        else:
            _SET_PRIVATE(model, None)
            if post_init:
                model.model_post_init(None)
        return model

    _MAKERS[cls] = make
    return make


def _private_defaults(cls: type[BaseModel]) -> dict[str, Any] | None:
    """The private attributes Pydantic's own `model_post_init` would give a new model
    of `cls`, when they are immutable defaults; else `None` (`model_post_init` runs)."""
    if cls.model_post_init is not _PYDANTIC_POST_INIT:
        return None
    defaults: dict[str, Any] = {}
    for name, attribute in cls.__private_attributes__.items():
        default: Any = attribute.default
        if attribute.default_factory is not None:
            return None
        if default is PydanticUndefined:
            continue  # no default: Pydantic leaves it unset
        if not isinstance(default, _ATOMIC):
            return None  # Pydantic gives each model a copy of its own
        defaults[name] = default
    return defaults


def _pydantic_post_init() -> object:
    """What Pydantic installs as `model_post_init` on a class with private attributes
    and none of its own (an object no class has, should a Pydantic lack it)."""
    try:
        from pydantic._internal import _model_construction
    except ImportError:  # pragma: no cover - another layout: model_post_init always runs
        return object()
    return getattr(_model_construction, "init_private_attributes", object())


_PYDANTIC_POST_INIT: Final = _pydantic_post_init()


def copies_of(model: M) -> Callable[[], M]:
    """A function that makes a new copy of `model` at each call, as deep as
    `model.model_copy(deep=True)` (no mutable value is shared with `model` or another
    copy), in a fraction of its time: what to copy is worked out once, from `model` as
    it is then. `model` must never change after: keep it where no caller reaches it."""
    plan = _plan(model)
    assert plan is not None  # a model is never shared as it is
    return functools.partial(plan[0], plan[1])


# What to copy of a value, worked out once (`_plan`): a function and what to call it
# with. A dict, list or set of values copies share is copied by its type's own `copy`,
# called as it is (no Python call in between). Plans hold little of their own (a
# model's fields come from one dict of its class's defaults, `_layout`): copies kept
# between reads are many, and a read right after other work finds little of them in
# the processor's caches.
_Plan = tuple[Callable[[Any], Any], Any]

_SHARED: Final = frozenset({type(None), bool, int, float, str, bytes})
"""The types of the values every copy shares (immutable); enum members too."""


def _plan(value: Any) -> _Plan | None:
    """How to copy `value`, or `None` when copies share it (immutable)."""
    kind = type(value)
    if kind in _SHARED or isinstance(value, enum.Enum):
        return None
    if kind is dict:
        inner = _inner(value.items())
        return (_copy_dict, (value, inner)) if inner else (dict.copy, value)
    if kind is list:
        plans = tuple(map(_plan, value))
        if not any(plans):
            return (list.copy, value)
        if len(plans) == 1:  # most lists of models (an event's parts) hold one
            (only,) = typing.cast(tuple[_Plan], plans)
            return (_copy_one, only)
        return (_copy_list, tuple(zip(value, plans, strict=True)))
    if kind is set:
        return (set.copy, value)  # its items are hashable: shared
    if (kind is tuple or kind is frozenset) and not any(map(_plan, value)):
        return None
    if isinstance(value, BaseModel):
        return (_copy_model, _model_plan(value))
    return (copy.deepcopy, value)  # nothing this module knows


def _inner(items: Iterable[tuple[Any, Any]]) -> tuple[tuple[Any, Callable[[Any], Any], Any], ...]:
    """The plans of the values among `items` that copies do not share, by key."""
    return tuple(
        (key, plan[0], plan[1])
        for key, item in items
        if type(item) not in _SHARED and (plan := _plan(item)) is not None
    )


def _model_plan(model: BaseModel) -> tuple[Any, ...]:
    """A model's plan: its class's defaults (`_layout`; else its own state), the fields
    that differ from them, the plans of those holding mutable values; its fields set,
    extra and private values."""
    state = model.__dict__
    layout = _layout_of(type(model))
    base = layout[0] if layout is not None and layout[0].keys() == state.keys() else state
    fixed: dict[str, Any] = {}
    inner: list[tuple[str, Callable[[Any], Any], Any]] = []
    for name, value in state.items():
        plan = None if type(value) in _SHARED else _plan(value)
        if plan is not None:
            inner.append((name, plan[0], plan[1]))
        elif base[name] is not value:
            fixed[name] = value
    fields_set = frozenset(model.__pydantic_fields_set__)
    if len(_FIELDS_SETS) < _FIELDS_SETS_KEPT:
        fields_set = _FIELDS_SETS.setdefault(fields_set, fields_set)
    return (
        type(model),
        base,
        fixed or None,
        tuple(inner),
        fields_set,
        _plan(model.__pydantic_extra__),
        _plan(model.__pydantic_private__),
    )


_FIELDS_SETS: Final[dict[frozenset[str], frozenset[str]]] = {}
"""One of each fields set plans hold (most models of a class have the same)."""
_FIELDS_SETS_KEPT: Final = 1024


# The copiers. These run for every value of every event read: no calls they can skip.

_NEW: Final = object.__new__


def _copy_model(plan: tuple[Any, ...]) -> Any:
    cls, base, fixed, inner, fields_set, extra, private = plan
    made = _NEW(cls)
    values = base.copy()
    if fixed is not None:
        values.update(fixed)
    for name, make, arg in inner:
        values[name] = make(arg)
    _SET_DICT(made, values)
    _SET_FIELDS_SET(made, set(fields_set))
    _SET_EXTRA(made, None if extra is None else extra[0](extra[1]))
    _SET_PRIVATE(made, None if private is None else private[0](private[1]))
    return made


def _copy_dict(plan: tuple[dict[Any, Any], Any]) -> dict[Any, Any]:
    value, inner = plan
    made = value.copy()
    for key, make, arg in inner:
        made[key] = make(arg)
    return made


def _copy_list(pairs: tuple[tuple[Any, _Plan | None], ...]) -> list[Any]:
    return [item if each is None else each[0](each[1]) for item, each in pairs]


def _copy_one(plan: _Plan) -> list[Any]:
    return [plan[0](plan[1])]


_PLANS: Final[dict[type[BaseModel], Convert]] = {}
_LAYOUTS: Final[dict[type[BaseModel], _Layout | typing.Literal[False]]] = {}


def _layout_of(cls: type[BaseModel]) -> _Layout | None:
    """`_layout(cls)`, worked out once per class."""
    layout = _LAYOUTS.get(cls)
    if layout is None:
        layout = _LAYOUTS[cls] = _layout(cls) or False
    return layout or None


class _Never:
    """The type of no dumped value: a field whose values all need converting."""


_Field = tuple[type | None, Convert]
"""A field's plan: the type whose values its converter gives back as they are (`None`:
every value), so that they skip it, and the converter."""


def _model(cls: type[BaseModel]) -> Convert:
    """The converter of a model's dump (built once per class)."""
    found = _PLANS.get(cls)
    if found is not None:
        return found
    whole = _validated(cls)
    guarded = _guarded(cls)
    layout = _layout(cls)
    if guarded is None or layout is None:
        _PLANS[cls] = whole
        return whole
    template, factories, required = layout
    fields: dict[str, _Field] = {}
    checked = tuple(guarded)
    make = _maker(cls)

    # What `cls.model_construct(**values)` does, with the defaults worked out once
    # (`model_construct` looks at every field on every call: Google's `Part` has 17).
    # This runs for every object of every event read: loops, no calls it can skip.
    def construct(value: Any) -> Any:
        if type(value) is not dict:
            raise _Slow
        state = template.copy()  # keys set below keep their place: the fields' order
        try:
            for name, item in value.items():
                # A key the model does not know is a KeyError: validation decides.
                same, convert = fields[name]
                state[name] = item if same is None or type(item) is same else convert(item)
            for name in checked:
                if value.get(name):
                    raise _Slow
            for name, factory in factories:
                if state[name] is _FACTORY:
                    state[name] = factory()
            for name in required:
                if state[name] is _REQUIRED:
                    raise _Slow
        except (_Slow, KeyError):
            # This object alone, validated with its model's settings (bytes as base64).
            return whole(value)
        return make(state, set(value))

    # Registered before the fields are planned: models may refer to themselves.
    _PLANS[cls] = construct
    for name, info in cls.model_fields.items():
        fields[name] = _field(info.annotation)
    return construct


def _field(tp: Any) -> _Field:
    """A field's plan. An optional model (or list, ...) lets `None` through as it is and
    gives the rest to the model's converter itself, without a wrapper to call."""
    same = _same_type(tp)
    origin = typing.get_origin(tp)
    if same is _Never and (origin is typing.Union or origin is types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(options) == 1 and len(typing.get_args(tp)) == 2:
            return type(None), _converter(options[0])
    return same, _converter(tp)


_ATOMIC: Final = (type(None), bool, int, float, str, bytes, enum.Enum)
_IMMUTABLE: Final = (*_ATOMIC, tuple, frozenset)
_REQUIRED: Final = object()
_FACTORY: Final = object()

_Layout = tuple[dict[str, Any], list[tuple[str, Callable[[], Any]]], list[str]]


def _layout(cls: type[BaseModel]) -> _Layout | None:
    """Every field of `cls` in its order (which its dump follows) with its default, or
    a mark for one a factory makes or one that is required; the factories; the
    required fields. `None` for a model this module does not build itself (one with a
    mutable default, a factory that takes the other fields, extra fields or a root)."""
    if cls.__pydantic_root_model__ or cls.model_config.get("extra") == "allow":
        return None
    template: dict[str, Any] = {}
    factories: list[tuple[str, Callable[[], Any]]] = []
    required: list[str] = []
    for name, info in cls.model_fields.items():
        factory = info.default_factory
        if info.is_required():
            template[name] = _REQUIRED
            required.append(name)
        elif factory is not None:
            if info.default_factory_takes_validated_data:
                return None
            template[name] = _FACTORY
            factories.append((name, typing.cast(Callable[[], Any], factory)))
        elif isinstance(info.default, _IMMUTABLE):
            template[name] = info.default
        else:
            return None
    return template, factories, required


def _guarded(cls: type[BaseModel]) -> frozenset[str] | None:
    """The fields of `cls` whose validators may change a dumped value (validated when
    they hold one), or `None` when a validator of the whole model runs after parsing.
    (Validators that run before parsing only accept other spellings of the input,
    which a dump never has.)"""
    decorators = cls.__pydantic_decorators__
    if decorators.root_validators:
        return None
    if any(v.info.mode != "before" for v in decorators.model_validators.values()):
        return None
    return frozenset(
        name for validator in decorators.field_validators.values() for name in validator.info.fields
    )


def _validated(tp: Any) -> Convert:
    adapter: TypeAdapter[Any] = TypeAdapter(tp)

    def validate(value: Any) -> Any:
        return adapter.validate_json(_json(value))

    return validate


def _json(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:  # an integer beyond 64 bits: the standard encoder takes it
        return json.dumps(value).encode()


def _same(value: Any) -> Any:
    return value


def _converter(tp: Any) -> Convert:
    """How a dumped value of type `tp` becomes the value validation would give."""
    if tp is Any or tp is object:
        return _same
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(options) == 1 and options[0] in (str, bool, int):
            return _exactly(options[0], nullable=True)
        inner = _converter(options[0]) if len(options) == 1 else _always_slow
        if inner is _same:
            return _same

        def optional(value: Any) -> Any:
            return None if value is None else inner(value)

        return optional
    if origin is typing.Annotated:
        return _validated(tp)
    if origin is list or origin is set:  # a dump writes a set as a list
        (item,) = typing.get_args(tp) or (Any,)
        each = _converter(item)
        listed = origin is list

        def as_collection(value: Any) -> Any:
            if type(value) is not list:
                raise _Slow
            if listed:
                return value if each is _same else [each(v) for v in value]
            return {each(v) for v in value}

        return as_collection
    if origin is dict:
        key, item = typing.get_args(tp) or (str, Any)
        if key is not str:
            return _validated(tp)
        each = _converter(item)

        def as_dict(value: Any) -> Any:
            if type(value) is not dict:
                raise _Slow
            if each is _same or not value:  # an empty one is a new dict of the dump's own
                return value
            return {k: each(v) for k, v in value.items()}

        return as_dict
    if origin is typing.Literal:
        allowed = typing.get_args(tp)

        def literal(value: Any) -> Any:
            if value not in allowed:
                raise _Slow
            return value

        return literal
    if isinstance(tp, type):
        if issubclass(tp, BaseModel):
            return _model(tp)  # registered before its fields are planned: cycles end
        if issubclass(tp, enum.Enum):
            return _enum(tp)
        if tp in _PRIMITIVE:
            return _PRIMITIVE[tp]
    return _always_slow


def _same_type(tp: Any) -> type | None:
    """The type of the values `_converter(tp)` gives back as they are: `None` for every
    value (`Any`), `_Never` for none. It follows `_converter` case by case."""
    if tp is Any or tp is object:
        return None
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        return _same_type(options[0]) if len(options) == 1 else _Never
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        return list if _same_type(item) is None else _Never
    if origin is dict:
        key, item = typing.get_args(tp) or (str, Any)
        return dict if key is str and _same_type(item) is None else _Never
    if isinstance(tp, type) and tp in _PRIMITIVE:
        return tp
    return _Never


def _enum(cls: type[enum.Enum]) -> Convert:
    def member(value: Any) -> Any:
        try:
            return cls(value)
        except ValueError:
            raise _Slow from None

    return member


def _always_slow(value: Any) -> Any:
    raise _Slow


def _exactly(kind: type, *, nullable: bool = False) -> Convert:
    if nullable:

        def check_nullable(value: Any) -> Any:
            if value is not None and type(value) is not kind:
                raise _Slow
            return value

        return check_nullable

    def check(value: Any) -> Any:
        if type(value) is not kind:
            raise _Slow
        return value

    return check


def _float(value: Any) -> Any:
    kind = type(value)
    if kind is float:
        return value
    if kind is int:
        return float(value)
    raise _Slow


_PRIMITIVE: Final[dict[type, Convert]] = {
    str: _exactly(str),
    bool: _exactly(bool),
    int: _exactly(int),
    float: _float,
}
