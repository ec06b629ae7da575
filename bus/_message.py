"""The message model: frozen values shared by every backend and both APIs."""

from __future__ import annotations

from typing import Any

import attrs

Headers = tuple[tuple[str, bytes], ...]


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
