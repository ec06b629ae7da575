"""Conformance: the group admin API (``Bus.groups``, ``Bus.describe_group``), as
docs/concepts.md states it: a group's members with their assignments, its committed
positions, the log end offsets and the lag between them, and what is left once its
members are gone. The consumers go through either API (``bus_api``); the admin calls
through ``message_bus``.

A real broker shows a member's assignment and its departure a moment after the
consumer saw them, so every check of the group's state waits for it, bounded."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

import bus
from bus.testing._conformance_common import needs, send_all, values
from bus.testing.apis import BusAPI
from bus.testing.helpers import DEADLINE, consume, topic_partitions, wait_for_assignment

__all__ = ["TestGroupAdmin"]

#: Messages written to each partition; the group commits the first half of them.
PER_PARTITION = 4
HALF = PER_PARTITION // 2
CLIENT_ID = "group-admin-conformance"


def _described(
    message_bus: bus.Bus,
    group: str,
    condition: Callable[[bus.GroupDescription], bool],
    what: str,
) -> bus.GroupDescription:
    """``describe_group(group)`` once ``condition`` holds of it; fails the test naming
    ``what`` (and the last description) after ``DEADLINE`` seconds."""
    deadline = time.monotonic() + DEADLINE
    delay = 0.01
    while True:
        described = message_bus.describe_group(group, timeout=DEADLINE)
        if condition(described):
            return described
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still not so after {DEADLINE:g} s: {described}")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


@needs("consumer_groups", "admin")
class TestGroupAdmin:
    """``Bus.groups`` and ``Bus.describe_group``: a member's assignment and each
    partition's lag, an empty group keeping its positions, ``bus.UnknownGroupError``,
    bad arguments and a closed bus."""

    def _member(
        self, bus_api: BusAPI, topic: str, message_bus: bus.Bus
    ) -> tuple[bus.Consumer, list[bus.Message]]:
        """A member of ``<topic>-g`` holding every partition of ``topic``, and what it
        read: the ``PER_PARTITION`` messages of each partition; nothing is committed."""
        consumer = bus_api.consumer(
            topic,
            group=f"{topic}-g",
            offset_reset="earliest",
            auto_commit=False,
            client_id=CLIENT_ID,
        )
        every = topic_partitions(topic, message_bus.partitions(topic))
        wait_for_assignment(consumer, partitions=every)
        with bus_api.producer() as producer:
            for partition in sorted(tp.partition for tp in every):
                send_all(producer, topic, values(f"p{partition}", PER_PARTITION), partition)
        return consumer, consume(consumer, PER_PARTITION * len(every))

    def test_a_member_shows_its_assignment_and_the_lag_of_each_partition(
        self, bus_api: BusAPI, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        group = f"{bus_topic}-g"
        consumer, received = self._member(bus_api, bus_topic, message_bus)
        numbers = message_bus.partitions(bus_topic)
        every = topic_partitions(bus_topic, numbers)

        before = _described(
            message_bus, group, lambda d: d.state == "stable", "the group is stable"
        )
        assert before.group == group
        [member] = before.members
        assert member.assignment == every == consumer.assignment()
        assert member.client_id == CLIENT_ID
        assert isinstance(member.member_id, str) and member.member_id
        assert before.partitions == tuple(
            bus.GroupPartition(bus_topic, p, None, PER_PARTITION, None) for p in numbers
        )  # nothing committed yet: no lag known
        assert before.total_lag == 0

        for message in received:
            if message.offset == HALF - 1:  # the first half of each partition
                consumer.commit(message)
        after = message_bus.describe_group(group)
        assert after.partitions == tuple(
            bus.GroupPartition(bus_topic, p, HALF, PER_PARTITION, PER_PARTITION - HALF)
            for p in numbers
        )
        assert after.total_lag == (PER_PARTITION - HALF) * len(numbers)
        assert [m.assignment for m in after.members] == [every]
        listed = message_bus.groups()
        assert group in listed and listed == sorted(listed)
        consumer.close()

    def test_once_its_member_closed_the_group_is_empty_and_keeps_its_positions(
        self, bus_api: BusAPI, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        group = f"{bus_topic}-g"
        consumer, received = self._member(bus_api, bus_topic, message_bus)
        [message] = [m for m in received if (m.partition, m.offset) == (0, HALF - 1)]
        consumer.commit(message)  # the first half of partition 0 alone
        consumer.close()

        after = _described(
            message_bus,
            group,
            lambda d: d.state == "empty" and not d.members,
            "the group is empty once its member closed",
        )
        assert after.members == ()
        assert after.partitions == (
            bus.GroupPartition(bus_topic, 0, HALF, PER_PARTITION, PER_PARTITION - HALF),
        )  # only what is committed: no member is assigned anything
        assert after.total_lag == PER_PARTITION - HALF
        assert group in message_bus.groups(timeout=DEADLINE)

    def test_an_unknown_group_raises_unknown_group_error(
        self, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        never = f"{bus_topic}-never-used"
        with pytest.raises(bus.UnknownGroupError, match=never):
            message_bus.describe_group(never)
        assert never not in message_bus.groups()
        assert issubclass(bus.UnknownGroupError, bus.BusError)

    @pytest.mark.parametrize(
        ("call", "error"),
        [
            (lambda b: b.describe_group(None), TypeError),
            (lambda b: b.describe_group(""), TypeError),
            (lambda b: b.describe_group(42), TypeError),
            (lambda b: b.describe_group(b"group"), TypeError),
            (lambda b: b.describe_group("g", timeout="soon"), TypeError),
            (lambda b: b.groups(timeout="soon"), TypeError),
            (lambda b: b.describe_group("g", timeout=-1), ValueError),
            (lambda b: b.groups(timeout=-1), ValueError),
        ],
        ids=[
            "group None",
            "empty group",
            "int group",
            "bytes group",
            "str timeout",
            "groups str timeout",
            "negative timeout",
            "groups negative timeout",
        ],
    )
    def test_bad_arguments_raise(
        self, message_bus: bus.Bus, call: Callable[[Any], Any], error: type[Exception]
    ) -> None:
        with pytest.raises(error):
            call(message_bus)

    def test_a_closed_bus_raises_closed_error(self, bus_url: str) -> None:
        connection = bus.connect(bus_url)
        connection.close()
        with pytest.raises(bus.ClosedError):
            connection.groups()
        with pytest.raises(bus.ClosedError):
            connection.describe_group("g")
