"""``bus demo``: the classic Go/sarama Kafka client programs, re-told with polybus.

Five steps on one URL, each printed under a header that says what it shows:

1. a blocking send with ``acks="all"`` (sarama's ``SyncProducer``);
2. fire-and-forget sends whose delivery reports are drained (``AsyncProducer`` and
   its ``Successes``/``Errors`` channels);
3. a consumer without a group reading every partition from the newest offset
   (``ConsumePartition`` with ``OffsetNewest``);
4. a two-member consumer group committing every second, printing its rebalances
   (sarama-cluster with ``CommitInterval`` 1s and ``Notifications``);
5. a group member cancelled mid-stream, and a new member that continues from exactly
   the first unprocessed message: nothing lost, nothing read twice.

The demo makes no timing assumption: every wait polls towards a deadline (a Kafka
rebalance takes seconds, the memory backend's none). Each check prints ``Verified:``
or ``NOT VERIFIED:``; ``run_demo`` returns whether every check held.
"""

from __future__ import annotations

import contextlib
import functools
import operator
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TextIO

import bus
from bus._errors import BusError, ClosedError, UnsupportedError
from bus._format import format_delivery, format_message
from bus._message import Delivery, Message, TopicPartition
from bus.spi import CAPABILITIES

#: Longest single poll while waiting for a condition; keeps alternating members fair.
_TICK = 0.1

#: Values of the Go/sarama asynchronous producer's output ("async: 7272", ...).
_ASYNC_VALUES = ("async: 7272", "async: 7616", "async: 998")

#: Messages the newest-offset consumer (step 3) and the group (step 4) wait for.
_WANTED = 6


class _GaveUp(Exception):
    """A wait reached its deadline; the step cannot go on."""


def run_demo(url: str | None = None, out: TextIO | None = None, *, timeout: float = 30.0) -> bool:
    """Run the walk-through on ``url`` (default ``$BUS_URL``, else ``memory://``),
    writing it to ``out`` (default stdout). ``timeout`` bounds every single wait.
    Returns True when every check held. Creates ``demo-*`` topics and deletes them
    at the end when the backend has the ``admin`` capability.

    Raises ``bus.UnsupportedError`` for a backend without the blocking API (the demo
    is written against it) and ``bus.BusError`` for what the broker refuses.
    """
    with bus.connect(url) as connection:
        if "sync" not in connection.capabilities:
            raise UnsupportedError(
                f"bus demo uses the blocking API, which backend {connection.backend!r} "
                "does not have; try kafka:// or memory://"
            )
        return _Demo(connection, out or sys.stdout, timeout).run()


class _Demo:
    """One run of the walk-through: its topics, what it wrote, which checks failed."""

    def __init__(self, connection: bus.Bus, out: TextIO, timeout: float) -> None:
        self.bus = connection
        self.out = out
        self.timeout = timeout
        self.topic = f"demo-{secrets.token_hex(4)}"
        self.written: list[Delivery] = []  # every message in self.topic
        self.failed: list[str] = []
        self.created: list[str] = []
        self.partitions = 0  # of self.topic; 0 when the backend cannot say

    # -- output and checks ------------------------------------------------------------------

    def say(self, *lines: str) -> None:
        for line in lines:
            print(line, file=self.out, flush=True)

    def section(self, number: int, title: str, *explanation: str) -> None:
        self.say("", f"== {number}. {title} ==", *explanation)

    def check(self, ok: bool, verified: str, problem: str) -> None:
        if ok:
            self.say(f"Verified: {verified}")
        else:
            self.failed.append(problem)
            self.say(f"NOT VERIFIED: {problem}")

    # -- the walk-through -------------------------------------------------------------------

    def run(self) -> bool:
        caps = [c for c in CAPABILITIES if c in self.bus.capabilities]
        self.say(
            f"polybus demo on {self.bus.url.redacted()}: backend {self.bus.backend!r} "
            f"({', '.join(caps)})",
        )
        try:
            self.partitions = self.make_topic(self.topic)
            steps: list[Callable[[], None]] = [
                self.blocking_send,
                self.fire_and_forget,
                self.newest_offset,
            ]
            if "consumer_groups" in self.bus.capabilities:
                steps += [self.consumer_group, self.cancelled_member]
            else:
                self.say("(steps 4 and 5 need the consumer_groups capability: skipped)")
            for step in steps:
                try:
                    step()
                except _GaveUp as exc:
                    self.check(False, "", str(exc))
        finally:
            self.clean_up()
        if self.failed:
            self.say("", f"Demo finished: {len(self.failed)} check(s) NOT verified.")
            return False
        self.say("", "Demo finished: every check verified.")
        return True

    def make_topic(self, name: str) -> int:
        if "admin" not in self.bus.capabilities:
            self.say(f"Topic {name}: no admin API here, the broker creates it on first use.")
            return 0
        self.bus.create_topic(name, partitions=3 if "partitions" in self.bus.capabilities else 1)
        self.created.append(name)
        count = len(self.bus.partitions(name))
        self.say(f"Created topic {name} with {count} partition{'s' if count > 1 else ''}.")
        return count

    def clean_up(self) -> None:
        for name in self.created:
            try:
                self.bus.delete_topic(name)
            except BusError as exc:
                self.say(f"(could not delete topic {name}: {exc})")
        if self.created:
            self.say("", f"Deleted the demo topics: {', '.join(self.created)}.")

    def blocking_send(self) -> None:
        self.section(
            1,
            "A blocking send with acks=all (sarama SyncProducer)",
            "send() returns once the broker has acknowledged the message under acks=all",
            "(every in-sync replica has it); the Delivery says where it was written, like",
            "SendMessage's (partition, offset).",
        )
        with self.bus.producer(acks="all") as producer:
            delivery = producer.send(self.topic, b"Hello World!", timeout=self.timeout)
        self.written.append(delivery)
        self.say(format_delivery(delivery))

    def fire_and_forget(self) -> None:
        self.section(
            2,
            "Fire-and-forget sends with delivery reports (sarama AsyncProducer)",
            "enqueue() returns at once; on_delivery(delivery, error) reports each message's",
            "fate, as the Successes and Errors channels do (and which must be drained);",
            "flush() waits until every report is in.",
        )
        lock = threading.Lock()
        reports: list[tuple[str, Delivery | None, BusError | None]] = []

        def reporter(value: str) -> Callable[[Delivery | None, BusError | None], None]:
            def on_delivery(delivery: Delivery | None, error: BusError | None) -> None:
                with lock:
                    reports.append((value, delivery, error))

            return on_delivery

        with self.bus.producer() as producer:
            for value in _ASYNC_VALUES:
                self.say(value)
                producer.enqueue(self.topic, value.encode(), on_delivery=reporter(value))
            producer.flush(self.timeout)
        self.say("Delivery reports, drained by flush():")
        for value, delivery, error in reports:
            if delivery is not None:
                self.written.append(delivery)
                self.say(f"  success: {value!r} -> {format_delivery(delivery)}")
            else:
                self.say(f"  error: {value!r}: {error}")
        good = sum(1 for _, delivery, _ in reports if delivery is not None)
        self.check(
            len(reports) == len(_ASYNC_VALUES) and good == len(reports),
            f"{len(reports)} reports, {good} successes, 0 errors",
            f"expected {len(_ASYNC_VALUES)} successful reports, got {len(reports)} "
            f"reports, {good} successful",
        )

    def newest_offset(self) -> None:
        self.section(
            3,
            "Every partition from the newest offset (ConsumePartition + OffsetNewest)",
            "A consumer without a group reads every partition of the topic and commits",
            "nothing. offset_reset='latest' starts each partition at its end, so the",
            f"{len(self.written)} messages written so far are skipped: only messages written "
            "from now on arrive.",
        )
        ends = _ends(self.written)
        received: list[Message] = []
        seen: set[tuple[int, int]] = set()

        def show(_: int, message: Message) -> None:
            received.append(message)
            seen.add(_at(message))
            self.say(format_message(message))

        with self.bus.consumer(self.topic, offset_reset="latest") as consumer:
            self.wait([consumer], lambda: bool(consumer.assignment()), "an assignment", show)
            self.say(
                f"Reading partitions {_numbers(consumer.assignment())}; "
                "now producing keyed messages key-0, key-1, ...:"
            )
            wanted = min(3, self.partitions) or 1
            sent = 0
            with self.bus.producer() as producer:
                while len(received) < _WANTED or len(_parts(received)) < wanted:
                    if sent == 4 * _WANTED:
                        raise _GaveUp(f"{sent} messages sent, {len(received)} arrived")
                    delivery = producer.send(
                        self.topic,
                        f"newest-{sent}".encode(),
                        key=f"key-{sent}".encode(),
                        timeout=self.timeout,
                    )
                    self.written.append(delivery)
                    sent += 1
                    where = (delivery.partition, delivery.offset)
                    arrived = functools.partial(operator.contains, seen, where)
                    # A message sent before the backend fixed the 'latest' position is
                    # never read; give up waiting for it after a while, not forever.
                    self.wait([consumer], arrived, "", show, seconds=min(5.0, self.timeout))
        old = [m for m in received if _at(m)[1] < ends.get(_at(m)[0], 0)]
        self.say(
            f"{len(received)} of the {sent} messages sent after the consumer started arrived, "
            f"from partitions {_numbers(_parts(received))}."
        )
        self.check(
            not old and len(_parts(received)) >= wanted,
            f"only new messages, from {len(_parts(received))} partitions; "
            f"none of the {sum(ends.values())} older ones",
            f"{len(old)} older message(s) arrived, or too few partitions",
        )

    def consumer_group(self) -> None:
        self.section(
            4,
            "A consumer group: CommitInterval 1s and Notifications (sarama-cluster)",
            "Members of a group share the partitions of a topic. on_assign and on_revoke",
            "report every rebalance, as sarama-cluster's Notifications channel does;",
            "auto_commit_interval=1.0 commits processed positions every second (and at",
            "every rebalance and close). The group starts on a fresh, empty topic, so",
            "offset_reset='earliest' cannot miss a message sent while it is joining.",
        )
        topic = f"{self.topic}-group"
        partitions = self.make_topic(topic)
        group = f"{self.topic}-cluster"
        names = ("A", "B")
        read: dict[str, list[Message]] = {name: [] for name in names}

        def member(name: str) -> bus.Consumer:
            def notify(what: str) -> Callable[[set[TopicPartition]], None]:
                return lambda tps: self.say(f"  member {name}: {what} {_numbers(tps)}")

            return self.bus.consumer(
                topic,
                group=group,
                offset_reset="earliest",
                auto_commit_interval=1.0,
                on_assign=notify("assigned partitions"),
                on_revoke=notify("revoked partitions"),
            )

        def take(index: int, message: Message) -> None:
            read[names[index]].append(message)

        everything = set(range(partitions))
        a = member("A")
        try:
            self.say(f"Member A joins group {group}:")
            self.wait([a], lambda: bool(a.assignment()), "member A's assignment", take)
            self.say("Member B joins; the group rebalances:")
            b = member("B")
            try:

                def settled() -> bool:
                    mine, theirs = _parts_of(a), _parts_of(b)
                    if len(everything) == 1:  # one partition: B joins but stays idle
                        return mine | theirs == everything
                    split = bool(mine and theirs and not mine & theirs)
                    return split and (mine | theirs == everything or not everything)

                self.wait([a, b], settled, "the rebalance", take)
                self.say(
                    f"Now A reads partitions {_numbers(a.assignment())} and B reads "
                    f"partitions {_numbers(b.assignment())}."
                )
                with self.bus.producer() as producer:
                    batch = [
                        bus.Message(topic, f"member-{i}".encode(), key=f"key-{i}".encode())
                        for i in range(_WANTED)
                    ]
                    producer.send_batch(batch, timeout=self.timeout)
                self.say(f"{_WANTED} keyed messages sent.")

                def total() -> int:
                    return sum(map(len, read.values()))

                self.wait([a, b], lambda: total() >= _WANTED, f"{_WANTED} messages", take)
                for name in names:
                    self.say(f"Member {name} read:")
                    self.say(*([format_message(m) for m in read[name]] or ["  (nothing)"]))
                own = all(
                    m.partition in _parts_of(consumer)
                    for consumer, name in ((a, "A"), (b, "B"))
                    for m in read[name]
                )
                seen = {_at(m) for ms in read.values() for m in ms}
                self.check(
                    own and len(seen) == total() == _WANTED,
                    f"the members split the {_WANTED} messages by partition: "
                    f"A read {len(read['A'])}, B read {len(read['B'])}",
                    f"the group read {total()} messages ({len(seen)} distinct), or a member "
                    "read a partition that is not its own",
                )
                self.say("Member B leaves (close); its partitions go back to A:")
            finally:
                b.close()
            self.wait(
                [a],
                lambda: _parts_of(a) == everything if everything else bool(a.assignment()),
                "member A to take every partition back",
                take,
            )
            self.say(f"Member A reads partitions {_numbers(a.assignment())}.")
        finally:
            a.close()

    def cancelled_member(self) -> None:
        written = {(d.partition, d.offset) for d in self.written}
        cut = min(4, len(written) - 1)
        self.section(
            5,
            "A member cancelled mid-stream; the group loses nothing",
            f"A new group reads {self.topic} from the earliest offset ({len(written)} messages).",
            f"Its first member handles {cut} of them and is cancelled with the next one in",
            "hand, unprocessed (like a crash before sarama's MarkOffset). Its close()",
            "commits only processed positions, so a new member of the same group goes on",
            "from exactly the first unprocessed message of each partition.",
        )
        group = f"{self.topic}-resume"
        first: list[Message] = []
        in_hand: Message | None = None
        with self.bus.consumer(self.topic, group=group, offset_reset="earliest") as one:
            self.say("Member 1:")
            with _Watchdog(one, self.timeout), contextlib.suppress(ClosedError):
                for message in one:
                    if len(first) == cut:
                        in_hand = message  # cancelled before handling it
                        break
                    self.say(format_message(message))
                    first.append(message)
        if in_hand is None:
            raise _GaveUp(f"member 1 read {len(first)} messages in {self.timeout} s")
        self.say(
            f"Cancelled with Partition:{in_hand.partition}, Offset:{in_hand.offset} in hand "
            "(not processed); member 1 closed."
        )
        second: list[Message] = []
        rest = len(written) - len(first)
        with self.bus.consumer(self.topic, group=group, offset_reset="earliest") as two:
            self.say("Member 2, same group:")
            with _Watchdog(two, self.timeout), contextlib.suppress(ClosedError):
                for message in two:
                    self.say(format_message(message))
                    second.append(message)
                    if len(second) == rest:
                        break
        one_read = {_at(m) for m in first}
        two_read = {_at(m) for m in second}
        lost = written - one_read - two_read
        twice = one_read & two_read
        resumed = True
        for partition in sorted({p for p, _ in written}):
            done = sorted(o for p, o in one_read if p == partition)
            left = [o for p, o in written - one_read if p == partition]
            went_on = min((o for p, o in two_read if p == partition), default=None)
            resumed &= went_on == min(left, default=None)
            self.say(
                f"  partition {partition}: member 1 processed {_span(done)}, "
                + (f"member 2 went on at offset {went_on}" if left else "nothing was left")
            )
        self.say(
            f"Member 1 processed {len(first)}, member 2 read {len(second)}: "
            f"{len(first)} + {len(second)} = {len(first) + len(second)} of the "
            f"{len(written)} messages written."
        )
        self.check(
            not lost and not twice,
            f"nothing lost: all {len(written)} messages were read, none twice",
            f"{len(lost)} message(s) lost and {len(twice)} read twice",
        )
        self.check(
            resumed and _at(in_hand) in two_read,
            "member 2 went on from exactly the first unprocessed message of every partition, "
            f"Partition:{in_hand.partition}, Offset:{in_hand.offset} included",
            "member 2 did not continue from the first unprocessed messages",
        )

    # -- waiting ----------------------------------------------------------------------------

    def wait(
        self,
        members: Sequence[bus.Consumer],
        done: Callable[[], bool],
        what: str,
        take: Callable[[int, Message], None],
        *,
        seconds: float | None = None,
    ) -> bool:
        """Poll ``members`` in turn (each message to ``take``) until ``done()``.

        Gives up after ``seconds`` (returning False) or, without ``seconds``, after the
        demo's timeout, raising ``_GaveUp`` naming ``what``.
        """
        end = time.monotonic() + (self.timeout if seconds is None else seconds)
        while not done():
            if time.monotonic() >= end:
                if seconds is None:
                    raise _GaveUp(f"gave up after {self.timeout} s waiting for {what}")
                return False
            for index, consumer in enumerate(members):
                for message in consumer.poll_batch(timeout=_TICK):
                    take(index, message)
        return True


class _Watchdog:
    """Close ``consumer`` from another thread if the block takes longer than
    ``seconds``: a running iteration then ends (``close()`` may come from any thread)."""

    def __init__(self, consumer: bus.Consumer, seconds: float) -> None:
        self._timer = threading.Timer(seconds, consumer.close)
        self._timer.daemon = True

    def __enter__(self) -> None:
        self._timer.start()

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()
        self._timer.join()


def _ends(deliveries: Iterable[Delivery]) -> dict[int, int]:
    """The next offset of each partition, as far as ``deliveries`` tell."""
    ends: dict[int, int] = {}
    for d in deliveries:
        ends[d.partition] = max(ends.get(d.partition, 0), d.offset + 1)
    return ends


def _at(message: Message) -> tuple[int, int]:
    """Where a consumed message sits: ``(partition, offset)``."""
    if message.partition is None or message.offset is None:
        raise BusError(f"a consumed message has no partition or offset: {message!r}")
    return message.partition, message.offset


def _span(offsets: Sequence[int]) -> str:
    if not offsets:
        return "nothing"
    if len(offsets) == 1:
        return f"offset {offsets[0]}"
    return f"offsets {offsets[0]}-{offsets[-1]}"


def _parts(messages: Iterable[Message]) -> set[int]:
    return {m.partition for m in messages if m.partition is not None}


def _parts_of(consumer: bus.Consumer) -> set[int]:
    return {tp.partition for tp in consumer.assignment()}


def _numbers(items: Iterable[TopicPartition | int]) -> str:
    numbers = sorted({i.partition if isinstance(i, TopicPartition) else i for i in items})
    return ", ".join(map(str, numbers)) if numbers else "(none)"
