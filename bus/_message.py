"""The message model: frozen values shared by every backend and both APIs."""

from __future__ import annotations

from typing import Any

import attrs
from attrs.exceptions import FrozenInstanceError

#: A message's headers: ordered ``(name, value)`` pairs, names may repeat.
Headers = tuple[tuple[str, bytes | None], ...]


_FIELDS = ("topic", "value", "key", "headers", "partition", "offset", "timestamp")


class _Fields:
    """The seven slots of a ``Message``, settable: a ``Message`` is built as one of
    these, then becomes a ``Message`` (same layout, so ``__class__`` may change), which
    costs half of setting frozen slots one by one. Never seen outside this module."""

    __slots__ = ("headers", "key", "offset", "partition", "timestamp", "topic", "value")

    topic: str
    value: Any
    key: Any
    headers: Headers
    partition: int | None
    offset: int | None
    timestamp: int | None


class Message(_Fields):
    """One record of a topic.

    On the way in (``send_batch``) only ``topic``, ``value`` and optionally ``key``,
    ``headers``, ``partition`` and ``timestamp`` matter. On the way out every field is
    set by the backend: ``partition`` and ``offset`` say where the record sits in the
    log, ``timestamp`` is its create time in milliseconds since the epoch.

    ``value`` and ``key`` are ``bytes`` unless the consumer has a deserializer, in
    which case they are the decoded objects. ``headers`` keep their order and may
    repeat a name.

    A frozen value: setting or deleting a field raises ``attrs.exceptions.
    FrozenInstanceError`` (an ``AttributeError``); equal only to a ``Message`` with
    equal fields, hashable when its fields are; ``replace(**changes)`` makes a copy
    with some fields changed.
    """

    __slots__ = ()
    __match_args__ = ("topic", "value", "key", "headers", "partition", "offset", "timestamp")

    def __new__(
        cls,
        topic: str,
        value: Any,
        key: Any = None,
        headers: Headers = (),
        partition: int | None = None,
        offset: int | None = None,
        timestamp: int | None = None,
    ) -> Message:
        m = _Fields()
        m.topic = topic
        m.value = value
        m.key = key
        m.headers = headers
        m.partition = partition
        m.offset = offset
        m.timestamp = timestamp
        m.__class__ = cls
        return m  # type: ignore[return-value]

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError()

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError()

    def _values(self) -> tuple[Any, ...]:
        return (
            self.topic,
            self.value,
            self.key,
            self.headers,
            self.partition,
            self.offset,
            self.timestamp,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):  # a RecordMessage is a Message too
            return NotImplemented
        return self._values() == other._values()

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in _FIELDS)
        return f"Message({fields})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Message, self._values())

    def replace(self, **changes: Any) -> Message:
        """A copy with ``changes`` (field names as keywords) applied."""
        unknown = set(changes) - set(_FIELDS)
        if unknown:
            raise TypeError(f"Message has no field {sorted(unknown)[0]!r}")
        fields = dict(zip(_FIELDS, self._values(), strict=True))
        fields.update(changes)
        return Message(**fields)


class RecordMessage(Message):
    """A consumed ``Message`` that reads its fields from the backend's own record each
    time one is asked for, so that a batch costs one small object per record and a
    loop pays only for the fields it reads. A backend subclasses it (``__slots__ =
    ()``) and defines the seven fields as properties over ``self._record``; the
    record must not change afterwards. Everything else is ``Message``'s: frozen, equal
    to (and hashed as) the plain ``Message`` with the same fields, pickled and
    ``replace``d as a plain ``Message``. Build one with ``record_wrapper(cls)``."""

    __slots__ = ("_record",)
    _record: Any

    def __new__(cls, *args: Any, **kwargs: Any) -> RecordMessage:
        raise TypeError(f"{cls.__name__} is built by its backend; make a bus.Message instead")


_put_record = RecordMessage.__dict__["_record"].__set__


def record_wrapper(cls: type[RecordMessage]) -> Any:
    """``wrap(record) -> Message``: an instance of ``cls`` over ``record``. Returns the
    two parts (``object.__new__`` and the slot setter) for a hot loop that inlines
    them: ``m = new(cls); put(m, record)``."""
    if not issubclass(cls, RecordMessage) or cls.__dict__.get("__slots__") != ():
        raise TypeError("record_wrapper takes a RecordMessage subclass with __slots__ = ()")
    return object.__new__, _put_record


@attrs.frozen
class Delivery:
    """What the broker acknowledged for one message: where it was written."""

    topic: str
    partition: int
    offset: int
    timestamp: int | None


@attrs.frozen(order=True)
class TopicPartition:
    """A partition of a topic: a hashable, ordered, immutable value."""

    topic: str
    partition: int


def _slot_setters(cls: type) -> tuple[Any, ...]:
    return tuple(cls.__dict__[field.name].__set__ for field in attrs.fields(cls))


_new_message = Message.__new__  # the one way a Message is built


def consumed_message(
    topic: str,
    value: Any,
    key: Any,
    headers: Headers,
    partition: int,
    offset: int,
    timestamp: int | None,
) -> Message:
    """``Message(topic, value, key, headers, partition, offset, timestamp)``, positional,
    for backends that turn every consumed record into a ``Message``. The fields must
    already be of the right types: nothing is checked here, as nothing is in
    ``Message()``."""
    return _new_message(Message, topic, value, key, headers, partition, offset, timestamp)


_new = object.__new__
_set_d_topic, _set_d_partition, _set_d_offset, _set_d_stamp = _slot_setters(Delivery)


def acknowledged(topic: str, partition: int, offset: int, timestamp: int | None) -> Delivery:
    """``Delivery(topic, partition, offset, timestamp)`` built through its slots, for
    backends that report every message of a batch; as ``consumed_message``, unchecked."""
    d = _new(Delivery)
    _set_d_topic(d, topic)
    _set_d_partition(d, partition)
    _set_d_offset(d, offset)
    _set_d_stamp(d, timestamp)
    return d
