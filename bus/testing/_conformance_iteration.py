"""Conformance: iteration keeps every message's place, through either API (``bus_api``).

A backend (or the core) may hand iteration its messages a batch at a time and hold the
rest of the batch between loop turns. Whatever it does, what the application sees is
what a loop of ``poll()`` calls would give: each message once, in order per
partition, from partitions the consumer holds; a message counts as processed only
once the application asks for the next one or commits it. Each test here is one way
a held batch has lost or repeated messages before:

- a deserializer error in the middle of the batch;
- a second ``for`` over the consumer while the first iterator still lives;
- leaving a loop (``break``) and going on with ``poll``;
- ``commit(message)`` inside the loop, then leaving it;
- a rebalance while the loop runs (no message of a partition taken away);
- a loop slower than ``max_poll_interval`` over a whole batch (the group must not
  take the member for dead while it works through what it holds).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import bus
from bus.testing._conformance_common import NEVER, PARTITIONS, needs, send_all, values
from bus.testing.apis import BusAPI
from bus.testing.helpers import DEADLINE, consume, wait_for_assignment

__all__ = ["TestIterationKeepsPlaces"]


def _fail(value: bytes) -> bytes:
    if value == b"bad":
        raise ValueError("not a value this application reads")
    return value


class TestIterationKeepsPlaces:
    """A consumer's place holds across loops: a deserializer error, leaving a loop,
    a commit inside it, a rebalance and a slow loop neither lose nor repeat a message."""

    def test_a_deserializer_error_loses_none_of_the_messages_around_it(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        sent = [b"v0", b"v1", b"bad", b"v3", b"v4"]
        with bus_api.producer() as producer:
            send_all(producer, bus_topic, sent)
        read: list[bytes] = []
        errors: list[bus.SerializationError] = []
        with bus_api.consumer(bus_topic, offset_reset="earliest", deserializer=_fail) as consumer:
            deadline = time.monotonic() + DEADLINE
            while len(read) < 4 and time.monotonic() < deadline:
                try:
                    for message in consumer:
                        read.append(message.value)
                        if len(read) == 4:
                            break
                except bus.SerializationError as error:
                    errors.append(error)
        assert read == [b"v0", b"v1", b"v3", b"v4"]
        assert len(errors) == 1
        index = errors[0].index
        assert index is not None
        undecoded = errors[0].messages[index]
        assert (undecoded.value, undecoded.offset) == (b"bad", 2)

    def test_two_loops_over_one_consumer_share_its_place(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        sent = values("i", 8)
        with bus_api.producer() as producer:
            send_all(producer, bus_topic, sent)
        with bus_api.consumer(bus_topic, offset_reset="earliest") as consumer:
            first, second = iter(consumer), iter(consumer)
            read = [next(it).value for it in itertools.islice(itertools.cycle((first, second)), 8)]
        assert read == sent

    def test_poll_after_leaving_a_loop_goes_on_after_the_last_message_it_gave(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        sent = values("i", 6)
        with bus_api.producer() as producer:
            send_all(producer, bus_topic, sent)
        with bus_api.consumer(bus_topic, offset_reset="earliest") as consumer:
            for message in consumer:
                if message.offset == 1:
                    break
            rest = consume(consumer, 4)
            assert consumer.poll(timeout=0.2) is None
        assert [m.value for m in rest] == sent[2:]

    @needs("consumer_groups")
    def test_a_commit_inside_the_loop_holds_after_leaving_it(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        group = f"{bus_topic}-g"
        sent = values("i", 6)
        with bus_api.producer() as producer:
            send_all(producer, bus_topic, sent)
        options = {"offset_reset": "earliest", "auto_commit_interval": NEVER}
        with bus_api.consumer(bus_topic, group=group, **options) as consumer:
            for message in consumer:
                if message.offset == 3:
                    consumer.commit(message)
                    break
        with bus_api.consumer(bus_topic, group=group, **options) as consumer:
            rest = consume(consumer, 2)
        assert [m.offset for m in rest] == [4, 5]

    @needs("consumer_groups", "admin")
    def test_a_loop_never_gives_a_message_of_a_partition_taken_away(
        self, bus_api: BusAPI, bus_topic_factory: Callable[..., str]
    ) -> None:
        topic = bus_topic_factory(partitions=PARTITIONS)
        group = f"{topic}-g"
        # More than a held batch (500 here), so that the first member still has
        # messages to read after it gives partitions up, whichever it keeps.
        per_partition = 1000
        options = {"offset_reset": "earliest", "auto_commit_interval": 0.2}
        outside: list[tuple[int | None, int | None, frozenset[bus.TopicPartition]]] = []
        seen = 0
        shrunk_at = None
        with bus_api.consumer(topic, group=group, **options) as first:
            wait_for_assignment(first)  # every partition, before there is anything to read
            with bus_api.producer() as producer:
                for p in range(PARTITIONS):
                    send_all(producer, topic, values(f"p{p}-", per_partition), partition=p)
            second = None
            try:
                for message in first:
                    held = first.assignment()
                    if bus.TopicPartition(topic, message.partition or 0) not in held:
                        outside.append((message.partition, message.offset, held))
                    seen += 1
                    if seen == 5:  # in the middle of what the first member fetched
                        second = bus_api.consumer(topic, group=group, **options)
                    if second is not None:
                        second.poll(timeout=0.01)  # joins, then takes its share
                    if shrunk_at is None and len(first.assignment()) < PARTITIONS:
                        shrunk_at = seen
                    if shrunk_at is not None and seen >= shrunk_at + 10:
                        break
                    if seen >= PARTITIONS * per_partition:
                        break
            finally:
                if second is not None:
                    second.close()
        assert shrunk_at is not None, "the second member never took a partition"
        assert not outside, f"messages of partitions no longer held: {outside[:5]}"

    @needs("consumer_groups")
    def test_a_slow_loop_stays_in_its_group_past_max_poll_interval(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        # Each message takes 40% of max_poll_interval: the loop as a whole takes
        # 2.4 times as long, one message never does. A consumer that held the batch
        # until it was done would be dropped by the group half way.
        group = f"{bus_topic}-g"
        sent = values("i", 6)
        with bus_api.producer() as producer:
            send_all(producer, bus_topic, sent)
        max_poll = 2.0
        taken: list[set[bus.TopicPartition]] = []
        options = {
            "offset_reset": "earliest",
            "auto_commit_interval": NEVER,
            "session_timeout": 1.5,
            "heartbeat_interval": 0.3,
            "max_poll_interval": max_poll,
            "on_revoke": taken.append,
        }
        read: list[bus.Message] = []
        with bus_api.consumer(bus_topic, group=group, **options) as consumer:
            for message in consumer:
                read.append(message)
                time.sleep(0.4 * max_poll)  # the work the application does per message
                if len(read) == len(sent):
                    break
            consumer.commit()
            assert not taken, f"the group took {taken} away from a member that kept working"
        assert [m.value for m in read] == sent
        with bus_api.producer() as producer:
            send_all(producer, bus_topic, [b"after"])
        with bus_api.consumer(bus_topic, group=group, **options) as again:
            assert [m.value for m in consume(again, 1)] == [b"after"]  # the commit held
