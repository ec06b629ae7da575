"""The message model: frozen values shared by every backend and both APIs."""

from __future__ import annotations

from typing import Any

import attrs

Headers = tuple[tuple[str, bytes | None], ...]


@attrs.frozen
class Message:
    """One record of a topic.

    On the way in (``send_batch``) only ``topic``, ``value`` and optionally ``key``,
    ``headers``, ``partition`` and ``timestamp`` matter. On the way out every field is
    set by the backend: ``partition`` and ``offset`` say where the record sits in the
    log, ``timestamp`` is its create time in milliseconds since the epoch.

    ``value`` and ``key`` are ``bytes`` unless the consumer has a deserializer, in
    which case they are the decoded objects. ``headers`` keep their order and may
    repeat a name.
    """

    topic: str
    value: Any
    key: Any = None
    headers: Headers = ()
    partition: int | None = None
    offset: int | None = None
    timestamp: int | None = None


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


_new = object.__new__
_set_topic, _set_value, _set_key, _set_headers, _set_partition, _set_offset, _set_stamp = (
    _slot_setters(Message)
)


def consumed_message(
    topic: str,
    value: Any,
    key: Any,
    headers: Headers,
    partition: int,
    offset: int,
    timestamp: int | None,
) -> Message:
    """``Message(topic, value, key, headers, partition, offset, timestamp)``, built
    through the slots (a third cheaper than the frozen ``__init__``) for backends that
    turn every consumed record into a ``Message``. The fields must already be of the
    right types: nothing is checked here, as nothing is in ``__init__``."""
    m = _new(Message)
    _set_topic(m, topic)
    _set_value(m, value)
    _set_key(m, key)
    _set_headers(m, headers)
    _set_partition(m, partition)
    _set_offset(m, offset)
    _set_stamp(m, timestamp)
    return m


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
