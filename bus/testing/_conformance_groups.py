"""Conformance: consumer groups, through either API (``bus_api``), as docs/concepts.md
states them:
``commit``, at-least-once delivery across close and rebalance, members sharing
partitions, ``on_assign``/``on_revoke``.

Group tests never assume timing or an assignment strategy: they poll every member
until the group settles (disjoint assignments covering every partition)."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

import bus
from bus.testing._conformance_common import (
    NEVER,
    PARTITIONS,
    QUIET,
    callback_recorder,
    needs,
    positions,
    replay,
    send_all,
    values,
)
from bus.testing.apis import BusAPI
from bus.testing.helpers import (
    DEADLINE,
    assert_disjoint_cover,
    consume,
    topic_partitions,
    wait_for_assignment,
    wait_for_group,
)

__all__ = ["TestAtLeastOnce", "TestCommit", "TestGroups"]

GROUPS = ("consumer_groups",)


@needs(*GROUPS)
class TestCommit:
    """``commit()`` and ``commit(message)``: what each commits, nothing without a call
    when ``auto_commit`` is off, ``bus.CommitError`` without a group."""

    def _member(self, bus_api: BusAPI, topic: str, **options: Any) -> bus.Consumer:
        options.setdefault("auto_commit", False)
        return bus_api.consumer(topic, group=f"{topic}-g", offset_reset="earliest", **options)

    def test_commit_none_commits_every_message_returned_so_far(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        with bus_api.producer() as producer:
            send_all(producer, bus_topic, values("c", 5))
        with self._member(bus_api, bus_topic) as first:
            assert [m.offset for m in consume(first, 3)] == [0, 1, 2]
            first.commit()
        with self._member(bus_api, bus_topic) as second:
            assert positions(consume(second, 2)) == [(0, 3), (0, 4)]

    def test_commit_of_a_message_commits_its_partition_through_it(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        with bus_api.producer() as producer:
            send_all(producer, bus_topic, values("c", 5))
        with self._member(bus_api, bus_topic) as first:
            received = consume(first, 4)
            first.commit(received[1])
        with self._member(bus_api, bus_topic) as second:
            assert positions(consume(second, 3)) == [(0, 2), (0, 3), (0, 4)]

    def test_without_commit_nothing_is_committed(self, bus_api: BusAPI, bus_topic: str) -> None:
        with bus_api.producer() as producer:
            send_all(producer, bus_topic, values("c", 3))
        with self._member(bus_api, bus_topic) as first:
            consume(first, 3)
            assert first.poll(timeout=QUIET) is None  # all three processed, none committed
        with self._member(bus_api, bus_topic) as second:
            assert positions(consume(second, 3)) == [(0, 0), (0, 1), (0, 2)]

    def test_commit_takes_a_consumed_message_or_none(self, bus_api: BusAPI, bus_topic: str) -> None:
        with self._member(bus_api, bus_topic) as consumer:
            with pytest.raises(TypeError):
                consumer.commit("0")  # type: ignore[arg-type]
            with pytest.raises(ValueError):
                consumer.commit(bus.Message(bus_topic, b"never consumed"))

    def test_commit_without_a_group_raises_commit_error(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        with bus_api.producer() as producer:
            producer.send(bus_topic, b"v", partition=0)
        with bus_api.consumer(bus_topic, offset_reset="earliest") as consumer:
            [message] = consume(consumer, 1)
            with pytest.raises(bus.CommitError):
                consumer.commit()
            with pytest.raises(bus.CommitError):
                consumer.commit(message)


@needs(*GROUPS)
class TestAtLeastOnce:
    """At-least-once: what counts as processed, what the next member starts from,
    and what is delivered again after a member stops, a ``break`` or a rebalance."""

    def _member(self, bus_api: BusAPI, topic: str) -> bus.Consumer:
        return bus_api.consumer(
            topic, group=f"{topic}-g", offset_reset="earliest", auto_commit_interval=NEVER
        )

    def test_next_member_starts_right_after_the_processed_messages(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        with bus_api.producer() as producer:
            send_all(producer, bus_topic, values("p", 3))
            with self._member(bus_api, bus_topic) as first:
                assert [m.offset for m in consume(first, 3)] == [0, 1, 2]
                assert first.poll(timeout=QUIET) is None  # asks for the next: all processed
            producer.send(bus_topic, b"after", partition=0)
        with self._member(bus_api, bus_topic) as second:
            [message] = consume(second, 1)
            assert (message.partition, message.offset, message.value) == (0, 3, b"after")
            assert second.poll(timeout=QUIET) is None

    def test_received_but_unprocessed_message_is_redelivered(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        with bus_api.producer() as producer:
            send_all(producer, bus_topic, values("u", 5))
        with self._member(bus_api, bus_topic) as first:
            for expected in range(3):  # 0 and 1 processed, 2 received only
                message = first.poll(timeout=DEADLINE)
                assert message is not None
                assert message.offset == expected
        with self._member(bus_api, bus_topic) as second:
            received = consume(second, 3)
        assert [(m.offset, m.value) for m in received] == [(2, b"u-2"), (3, b"u-3"), (4, b"u-4")]

    def test_breaking_out_of_iteration_leaves_the_last_message_unprocessed(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        with bus_api.producer() as producer:
            send_all(producer, bus_topic, values("i", 4))
        with self._member(bus_api, bus_topic) as first:
            for message in first:
                if message.offset == 1:
                    break
        with self._member(bus_api, bus_topic) as second:
            assert [m.offset for m in consume(second, 3)] == [1, 2, 3]

    def test_commit_inside_iteration_commits_what_was_handed_out(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        with bus_api.producer() as producer:
            send_all(producer, bus_topic, values("c", 8))
        first = bus_api.consumer(
            bus_topic, group=f"{bus_topic}-g", offset_reset="earliest", auto_commit=False
        )
        for message in first:
            if message.offset == 2:
                first.commit()  # 0, 1 and the message in hand, 2: not the rest of a batch
                break
        first.close()
        with self._member(bus_api, bus_topic) as second:
            assert [m.offset for m in consume(second, 5)] == [3, 4, 5, 6, 7]

    def test_polling_inside_iteration_neither_skips_nor_repeats(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        with bus_api.producer() as producer:
            send_all(producer, bus_topic, values("m", 6))
        offsets = []
        with self._member(bus_api, bus_topic) as first:
            for message in first:
                offsets.append(message.offset)
                if message.offset == 1:
                    polled = first.poll(timeout=DEADLINE)  # 1 is processed: 2 comes next
                    assert polled is not None
                    offsets.append(polled.offset)
                if len(offsets) == 6:
                    break
        assert offsets == [0, 1, 2, 3, 4, 5]

    def test_unprocessed_batch_is_redelivered(self, bus_api: BusAPI, bus_topic: str) -> None:
        with bus_api.producer() as producer:
            send_all(producer, bus_topic, values("b", 4))
        with self._member(bus_api, bus_topic) as first:
            assert first.poll_batch(3, timeout=DEADLINE)[0].offset == 0
        with self._member(bus_api, bus_topic) as second:
            assert [m.offset for m in consume(second, 4)] == [0, 1, 2, 3]

    def test_next_poll_batch_processes_the_previous_batch(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        with bus_api.producer() as producer:
            send_all(producer, bus_topic, values("b", 4))
        with self._member(bus_api, bus_topic) as first:
            batch = first.poll_batch(2, timeout=DEADLINE)
            assert batch
            second_batch = first.poll_batch(2, timeout=DEADLINE)
            assert second_batch
            assert second_batch[0].offset == len(batch)
        with self._member(bus_api, bus_topic) as second:
            received = consume(second, 4 - len(batch))
        assert received[0].offset == len(batch)

    def test_commit_counts_the_message_as_processed(self, bus_api: BusAPI, bus_topic: str) -> None:
        with bus_api.producer() as producer:
            send_all(producer, bus_topic, values("m", 4))
        with self._member(bus_api, bus_topic) as first:
            for _ in range(4):  # 0, 1 and 2 processed by asking for the next
                last = first.poll(timeout=DEADLINE)
            assert last is not None
            assert last.offset == 3
            first.commit(last)  # processed by committing, though never asked past
        # close must not commit an older processed position over the commit
        with self._member(bus_api, bus_topic) as second:
            assert second.poll(timeout=QUIET) is None

    @needs("partitions", "admin")
    def test_rebalance_commits_processed_positions(self, bus_api: BusAPI, bus_topic: str) -> None:
        everything = topic_partitions(bus_topic, PARTITIONS)
        with bus_api.producer() as producer:
            for p in range(PARTITIONS):
                send_all(producer, bus_topic, values(f"old{p}", 2), partition=p)
            first = self._member(bus_api, bus_topic)
            consume(first, 2 * PARTITIONS)
            assert first.poll(timeout=QUIET) is None  # all processed, none committed yet
            second = self._member(bus_api, bus_topic)
            redelivered: list[list[bus.Message]] = [[], []]
            wait_for_group([first, second], everything, into=redelivered)
            redelivered[0] += first.poll_batch(100, timeout=QUIET)
            redelivered[1] += second.poll_batch(100, timeout=QUIET)
            assert redelivered == [[], []], "processed messages were delivered again"
            for p in range(PARTITIONS):
                producer.send(bus_topic, b"new%d" % p, partition=p)
            fresh: list[list[bus.Message]] = [[], []]
            deadline = time.monotonic() + DEADLINE
            while sum(map(len, fresh)) < PARTITIONS and time.monotonic() < deadline:
                fresh[0] += first.poll_batch(100, timeout=0.05)
                fresh[1] += second.poll_batch(100, timeout=0.05)
            first.close()
            second.close()
        got = sorted((m.partition, m.offset, m.value) for m in fresh[0] + fresh[1])
        assert got == [(p, 2, b"new%d" % p) for p in range(PARTITIONS)]


@needs(*GROUPS, "partitions", "admin")
class TestGroups:
    """Consumer groups: members share the partitions, each message reaches one member
    of a group and every group, ``on_assign``/``on_revoke`` follow rebalances, leaving
    hands partitions over."""

    def _member(self, bus_api: BusAPI, topic: str, **options: Any) -> bus.Consumer:
        return bus_api.consumer(topic, group=f"{topic}-g", offset_reset="earliest", **options)

    def test_two_members_share_the_partitions(self, bus_api: BusAPI, bus_topic: str) -> None:
        everything = topic_partitions(bus_topic, PARTITIONS)
        with self._member(bus_api, bus_topic) as first:
            assert wait_for_assignment(first, partitions=everything) == everything
            with self._member(bus_api, bus_topic) as second:
                shares = wait_for_group([first, second], everything)
                assert_disjoint_cover(shares, everything)
                assert all(shares)

    def test_members_receive_each_message_once_from_their_own_partitions(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        everything = topic_partitions(bus_topic, PARTITIONS)
        with (
            self._member(bus_api, bus_topic) as first,
            self._member(bus_api, bus_topic) as second,
        ):
            shares = wait_for_group([first, second], everything)
            with bus_api.producer() as producer:
                for i in range(30):
                    producer.send(bus_topic, b"%d" % i, key=b"k%d" % i)
            got: list[list[bus.Message]] = [[], []]
            deadline = time.monotonic() + DEADLINE
            while sum(map(len, got)) < 30 and time.monotonic() < deadline:
                got[0] += first.poll_batch(100, timeout=0.05)
                got[1] += second.poll_batch(100, timeout=0.05)
            got[0] += first.poll_batch(100, timeout=QUIET)
            got[1] += second.poll_batch(100, timeout=QUIET)
        for share, messages in zip(shares, got, strict=True):
            assert {(m.topic, m.partition) for m in messages} <= {
                (tp.topic, tp.partition) for tp in share
            }
        everyone = got[0] + got[1]
        assert sorted(int(m.value) for m in everyone) == list(range(30))
        assert len(set(positions(everyone))) == 30

    def test_groups_each_receive_every_message(self, bus_api: BusAPI, bus_topic: str) -> None:
        with bus_api.producer() as producer:
            for p in range(PARTITIONS):
                send_all(producer, bus_topic, values(f"v{p}", 2), partition=p)
        for group in ("one", "two"):
            with bus_api.consumer(
                bus_topic, group=f"{bus_topic}-{group}", offset_reset="earliest"
            ) as consumer:
                received = consume(consumer, 2 * PARTITIONS)
                assert consumer.poll(timeout=QUIET) is None
            assert sorted(positions(received)) == [
                (p, o) for p in range(PARTITIONS) for o in (0, 1)
            ]

    def test_on_assign_and_on_revoke_follow_rebalances(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        everything = topic_partitions(bus_topic, PARTITIONS)
        first_events, first_callbacks = callback_recorder()
        second_events, second_callbacks = callback_recorder()
        first = self._member(bus_api, bus_topic, **first_callbacks)
        wait_for_assignment(first, partitions=everything)
        first.poll(timeout=0.05)  # callbacks run inside poll
        assert first_events[0][0] == "assign"
        assert replay(first_events) == everything
        for _, partitions in first_events:
            assert all(isinstance(tp, bus.TopicPartition) for tp in partitions)

        second = self._member(bus_api, bus_topic, **second_callbacks)
        wait_for_group([first, second], everything)
        first.poll(timeout=0.05)
        second.poll(timeout=0.05)
        assert any(kind == "revoke" for kind, _ in first_events), first_events
        assert replay(first_events) == first.assignment()
        assert replay(second_events) == second.assignment()

        assigned_before = sum(kind == "assign" for kind, _ in first_events)
        second.close()
        wait_for_assignment(first, partitions=everything)
        first.poll(timeout=0.05)
        assert sum(kind == "assign" for kind, _ in first_events) > assigned_before
        assert replay(first_events) == everything
        first.close()

    def test_a_member_closed_while_joining_does_not_hold_the_group_up(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        everything = topic_partitions(bus_topic, PARTITIONS)
        # A long session timeout: a group that had to wait it out would show.
        first = self._member(bus_api, bus_topic, session_timeout=45.0)
        first.poll(timeout=0.05)  # the join is under way, not finished
        first.close()
        started = time.monotonic()
        with self._member(bus_api, bus_topic) as second:
            wait_for_assignment(second, partitions=everything, timeout=60)
        waited = time.monotonic() - started
        assert waited < 20, f"the next member waited {waited:.1f} s for the closed one"

    def test_raising_rebalance_callbacks_are_logged_and_the_member_goes_on(
        self, bus_api: BusAPI, bus_topic: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        def explode(partitions: set[bus.TopicPartition]) -> None:
            raise RuntimeError("the application's bug")

        with bus_api.producer() as producer:
            producer.send(bus_topic, b"v", partition=0)
        with (
            caplog.at_level(logging.ERROR, logger="bus"),
            self._member(bus_api, bus_topic, on_assign=explode, on_revoke=explode) as member,
        ):
            assert [m.value for m in consume(member, 1)] == [b"v"]
        assert any(
            r.exc_info and isinstance(r.exc_info[1], RuntimeError) for r in caplog.records
        ), "the on_assign exception was not logged on the 'bus' logger"

    def test_leaving_member_hands_its_partitions_to_the_others(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        everything = topic_partitions(bus_topic, PARTITIONS)
        with self._member(bus_api, bus_topic) as first:
            second = self._member(bus_api, bus_topic)
            third = self._member(bus_api, bus_topic)
            shares = wait_for_group([first, second, third], everything)
            assert all(len(share) == 1 for share in shares)
            second.close()
            assert_disjoint_cover(wait_for_group([first, third], everything), everything)
            third.close()
            assert wait_for_assignment(first, partitions=everything) == everything

    def test_member_reads_what_its_partitions_hold(self, bus_api: BusAPI, bus_topic: str) -> None:
        everything = topic_partitions(bus_topic, PARTITIONS)
        with bus_api.producer() as producer:
            for p in range(PARTITIONS):
                producer.send(bus_topic, b"v%d" % p, partition=p)
        with (
            self._member(bus_api, bus_topic) as first,
            self._member(bus_api, bus_topic) as second,
        ):
            got: list[list[bus.Message]] = [[], []]
            shares = wait_for_group([first, second], everything, into=got)
            deadline = time.monotonic() + DEADLINE
            while sum(map(len, got)) < PARTITIONS and time.monotonic() < deadline:
                got[0] += first.poll_batch(100, timeout=0.05)
                got[1] += second.poll_batch(100, timeout=0.05)
        # before the group settled a partition may have been read by its earlier owner
        everyone = {(m.partition, m.value) for m in got[0] + got[1]}
        assert everyone == {(p, b"v%d" % p) for p in range(PARTITIONS)}
        assert all(shares)
