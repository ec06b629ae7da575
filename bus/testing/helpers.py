"""Waiting helpers for tests that must run unchanged on any backend, real Kafka included.

A real broker assigns partitions, rebalances groups and fetches data in the background,
and a Kafka consumer only takes part in its group while it polls. So a portable test
never sleeps a fixed time: it polls until a condition holds, with a generous deadline
(``DEADLINE`` seconds), and returns as soon as the condition holds (at once on the
memory backend). The blocking helpers have ``async_`` twins for ``AsyncConsumer``.

Every helper that polls hands back the messages it received, or fails the test if the
caller said none may arrive (a message a helper swallowed would count as processed at
the next poll, which would hide it from an at-least-once test).

On a deadline the helpers raise ``AssertionError`` saying what they waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence

from bus import AsyncConsumer, Consumer, Message, TopicPartition, UnsupportedError
from bus._plugins import registry
from bus._url import DEFAULT_URL, parse_url

__all__ = [
    "DEADLINE",
    "POLL_INTERVAL",
    "assert_disjoint_cover",
    "async_consume",
    "async_poll_until",
    "async_wait_for_assignment",
    "async_wait_for_group",
    "consume",
    "fresh_url",
    "poll_until",
    "topic_partitions",
    "wait_for_assignment",
    "wait_for_group",
]

#: Seconds a helper waits before failing the test: generous, for a real broker.
DEADLINE = 30.0
#: Seconds of each poll while waiting: short, so several consumers take turns.
POLL_INTERVAL = 0.1


@contextlib.contextmanager
def fresh_url(scheme: str | None = None) -> Iterator[str]:
    """Enter a new, empty instance of the backend serving ``scheme`` (default: the
    scheme of the default URL, ``memory``) and yield its URL; leaving discards it.

    Raises ``bus.UnsupportedError`` for a backend that cannot make one (its
    descriptor has no ``fresh_url``), ``bus.BackendNotFound`` for an unknown scheme.
    """
    scheme = scheme or parse_url(DEFAULT_URL).scheme
    descriptor = registry().backend_for(scheme).descriptor
    if descriptor.fresh_url is None:
        raise UnsupportedError(f"backend {descriptor.name!r} cannot make a fresh instance")
    with descriptor.fresh_url() as url:
        yield url


def topic_partitions(topic: str, partitions: int | Iterable[int]) -> frozenset[TopicPartition]:
    """The ``TopicPartition``s of ``topic``: ``0..partitions-1``, or the numbers given."""
    numbers = range(partitions) if isinstance(partitions, int) else partitions
    return frozenset(TopicPartition(topic, p) for p in numbers)


def assert_disjoint_cover(
    assignments: Sequence[Collection[TopicPartition]], partitions: Collection[TopicPartition]
) -> None:
    """Assert that ``assignments`` (one per group member) share no partition and
    together are exactly ``partitions``."""
    seen: dict[TopicPartition, int] = {}
    for member, assigned in enumerate(assignments):
        for tp in assigned:
            assert tp not in seen, (
                f"{tp} is assigned to members {seen[tp]} and {member}: {list(assignments)}"
            )
            seen[tp] = member
    assert set(seen) == set(partitions), (
        f"the group's assignments {list(assignments)} do not cover exactly {sorted(partitions)}"
    )


def _group_settled(
    assignments: Sequence[frozenset[TopicPartition]], partitions: Collection[TopicPartition]
) -> bool:
    union: set[TopicPartition] = set()
    for assigned in assignments:
        if union & assigned:
            return False
        union |= assigned
    everyone = len(assignments) <= len(partitions)
    return union == set(partitions) and (not everyone or all(assignments))


def _unexpected(messages: list[Message], what: str) -> AssertionError:
    shown = ", ".join(f"{m.topic}[{m.partition}]@{m.offset}" for m in messages[:5])
    return AssertionError(
        f"{what} received {len(messages)} message(s) ({shown}); pass a list as `into` to "
        "keep messages that may arrive while waiting, or wait before producing"
    )


# -- blocking -------------------------------------------------------------------------------


def poll_until(
    consumer: Consumer,
    done: Callable[[list[Message]], bool],
    *,
    timeout: float = DEADLINE,
    max_messages: int = 500,
) -> list[Message]:
    """Poll ``consumer`` until ``done(received)`` holds; return every message received.

    ``done`` is checked before the first poll too. Each poll asks for at most
    ``max_messages``. Fails the test after ``timeout`` seconds.
    """
    received: list[Message] = []
    deadline = time.monotonic() + timeout
    while not done(received):
        if time.monotonic() > deadline:
            raise AssertionError(
                f"condition not met after {timeout:g} s; received {len(received)} message(s)"
            )
        received += consumer.poll_batch(max_messages, timeout=POLL_INTERVAL)
    return received


def consume(consumer: Consumer, count: int, *, timeout: float = DEADLINE) -> list[Message]:
    """Exactly ``count`` messages from ``consumer``, never asking for more.

    The messages of the last poll stay unprocessed (the application has not asked for
    the next one). Fails the test if they do not all arrive within ``timeout``.
    """
    received: list[Message] = []
    deadline = time.monotonic() + timeout
    while len(received) < count:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"expected {count} message(s) within {timeout:g} s, received {len(received)}: "
                f"{[(m.partition, m.offset, m.value) for m in received]}"
            )
        received += consumer.poll_batch(count - len(received), timeout=POLL_INTERVAL)
    return received


def wait_for_assignment(
    consumer: Consumer,
    *,
    partitions: Collection[TopicPartition] | None = None,
    timeout: float = DEADLINE,
    into: list[Message] | None = None,
) -> frozenset[TopicPartition]:
    """Poll until ``consumer`` has partitions assigned (exactly ``partitions`` if given);
    return its assignment.

    Call it before producing (for an ``offset_reset="latest"`` consumer it is the only
    way to know where the consumer starts). A message received while waiting fails the
    test, unless ``into`` is a list, which then receives it.
    """

    def ready() -> bool:
        assigned = consumer.assignment()
        return assigned == set(partitions) if partitions is not None else bool(assigned)

    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"no assignment{' of ' + str(sorted(partitions)) if partitions else ''} "
                f"after {timeout:g} s; assignment is {sorted(consumer.assignment())}"
            )
        batch = consumer.poll_batch(500, timeout=POLL_INTERVAL)
        if batch and into is None:
            raise _unexpected(batch, "wait_for_assignment")
        if into is not None:
            into += batch
    return consumer.assignment()


def wait_for_group(
    consumers: Sequence[Consumer],
    partitions: Collection[TopicPartition],
    *,
    timeout: float = DEADLINE,
    into: Sequence[list[Message]] | None = None,
) -> list[frozenset[TopicPartition]]:
    """Poll every consumer in turn until their assignments are disjoint, cover exactly
    ``partitions``, and (when there are no more members than partitions) each member
    has at least one; return the assignments in ``consumers`` order.

    A real broker rebalances only while every member polls, hence the turns. Messages
    received while waiting fail the test, unless ``into`` holds one list per consumer.
    """
    if into is not None and len(into) != len(consumers):
        raise ValueError("into needs one list per consumer")
    deadline = time.monotonic() + timeout
    while True:
        assignments = [c.assignment() for c in consumers]
        if _group_settled(assignments, partitions):
            return assignments
        if time.monotonic() > deadline:
            raise AssertionError(
                f"the group did not settle on {sorted(partitions)} within {timeout:g} s: "
                f"assignments {[sorted(a) for a in assignments]}"
            )
        for i, consumer in enumerate(consumers):
            batch = consumer.poll_batch(500, timeout=POLL_INTERVAL / len(consumers))
            if batch and into is None:
                raise _unexpected(batch, "wait_for_group")
            if into is not None:
                into[i].extend(batch)


# -- asyncio --------------------------------------------------------------------------------


async def async_poll_until(
    consumer: AsyncConsumer,
    done: Callable[[list[Message]], bool],
    *,
    timeout: float = DEADLINE,
    max_messages: int = 500,
) -> list[Message]:
    """``poll_until`` for an ``AsyncConsumer``."""
    received: list[Message] = []
    deadline = time.monotonic() + timeout
    while not done(received):
        if time.monotonic() > deadline:
            raise AssertionError(
                f"condition not met after {timeout:g} s; received {len(received)} message(s)"
            )
        received += await consumer.poll_batch(max_messages, timeout=POLL_INTERVAL)
    return received


async def async_consume(
    consumer: AsyncConsumer, count: int, *, timeout: float = DEADLINE
) -> list[Message]:
    """``consume`` for an ``AsyncConsumer``."""
    received: list[Message] = []
    deadline = time.monotonic() + timeout
    while len(received) < count:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"expected {count} message(s) within {timeout:g} s, received {len(received)}: "
                f"{[(m.partition, m.offset, m.value) for m in received]}"
            )
        received += await consumer.poll_batch(count - len(received), timeout=POLL_INTERVAL)
    return received


async def async_wait_for_assignment(
    consumer: AsyncConsumer,
    *,
    partitions: Collection[TopicPartition] | None = None,
    timeout: float = DEADLINE,
    into: list[Message] | None = None,
) -> frozenset[TopicPartition]:
    """``wait_for_assignment`` for an ``AsyncConsumer``."""

    def ready() -> bool:
        assigned = consumer.assignment()
        return assigned == set(partitions) if partitions is not None else bool(assigned)

    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"no assignment{' of ' + str(sorted(partitions)) if partitions else ''} "
                f"after {timeout:g} s; assignment is {sorted(consumer.assignment())}"
            )
        batch = await consumer.poll_batch(500, timeout=POLL_INTERVAL)
        if batch and into is None:
            raise _unexpected(batch, "async_wait_for_assignment")
        if into is not None:
            into += batch
    return consumer.assignment()


async def async_wait_for_group(
    consumers: Sequence[AsyncConsumer],
    partitions: Collection[TopicPartition],
    *,
    timeout: float = DEADLINE,
    into: Sequence[list[Message]] | None = None,
) -> list[frozenset[TopicPartition]]:
    """``wait_for_group`` for ``AsyncConsumer``s (polled in turn, not concurrently, so
    the helper works on backends whose members share one connection)."""
    if into is not None and len(into) != len(consumers):
        raise ValueError("into needs one list per consumer")
    deadline = time.monotonic() + timeout
    while True:
        assignments = [c.assignment() for c in consumers]
        if _group_settled(assignments, partitions):
            return assignments
        if time.monotonic() > deadline:
            raise AssertionError(
                f"the group did not settle on {sorted(partitions)} within {timeout:g} s: "
                f"assignments {[sorted(a) for a in assignments]}"
            )
        for i, consumer in enumerate(consumers):
            batch = await consumer.poll_batch(500, timeout=POLL_INTERVAL / len(consumers))
            if batch and into is None:
                raise _unexpected(batch, "async_wait_for_group")
            if into is not None:
                into[i].extend(batch)
        await asyncio.sleep(0)
