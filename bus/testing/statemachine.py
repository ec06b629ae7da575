"""A Hypothesis state machine that checks a backend's log and consumer groups against a
small reference model.

The machine produces keyed and unkeyed messages to a fresh 2-3 partition topic, and a
group of up to ``max_members`` consumers polls, commits, joins and leaves, in orders
Hypothesis picks. After every step it compares the backend with the model:

* offsets are contiguous per partition, and keyed messages sit on their murmur2
  partition;
* every message a member receives is the one the model holds at that offset, and a
  member reads each partition it holds in order, without gaps;
* no two members read one partition at once, and (``strict_assignments``) live
  members' assignments never overlap; after ``settle`` they cover every partition;
* ``on_assign``/``on_revoke`` replay to the member's ``assignment()``;
* a member that gains a partition starts at the committed position, which commits,
  close and rebalances set to processed positions only: nothing processed is read
  again, nothing unprocessed is skipped (at-least-once, docs/concepts.md). When the holder
  polled in the same call that revoked the partition, the backend may or may not
  have counted its last batch as processed first; the model allows both;
* at the end every member closes and a fresh member reads from the committed
  positions: with what was processed, that covers every message produced.

Use ``run_state_machine(url)`` in a test, or ``make_test_case(url)`` for a
``unittest.TestCase``; ``url=None`` gives each example a fresh memory broker.
``api="async"`` drives the asyncio clients instead (on an event loop of the machine's
own, one step at a time). The backend needs that API (``sync`` or ``async``),
``admin``, ``partitions`` and ``consumer_groups`` (else the test is skipped).
Against a real broker give a ``poll_timeout`` (default 0.2 s there)
and few examples: every example creates a topic and a group.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import sys
import time
import unittest
import uuid
from collections.abc import Callable
from typing import Any, ClassVar

import attrs
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    precondition,
    rule,
    run_state_machine_as_test,
)

import bus
from bus.testing.helpers import fresh_url, topic_partitions

__all__ = ["BusStateMachine", "make_test_case", "run_state_machine", "state_machine_for"]

REQUIRED = ("admin", "partitions", "consumer_groups")


class _Blocking:
    """An asyncio client driven from the machine's thread: every coroutine method runs
    to completion on the machine's private event loop."""

    def __init__(self, client: Any, loop: asyncio.AbstractEventLoop):
        self._client = client
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute
        return lambda *args, **kwargs: self._loop.run_until_complete(attribute(*args, **kwargs))


def _missing(capabilities: frozenset[str], api: str) -> list[str]:
    return [w for w in (api, *REQUIRED) if w not in capabilities]


KEYS = tuple(f"key-{i}".encode() for i in range(8))


@attrs.define(eq=False)
class _Holding:
    """One member's hold on one partition, from gaining it to losing it."""

    next: int | None = None  # offset the member must receive next (None: not read yet)
    processed: int | None = None  # everything below was processed (None: not read yet)


@attrs.define(eq=False)
class _Member:
    name: str
    consumer: Any  # a bus.Consumer, or an AsyncConsumer behind _Blocking
    events: list[tuple[str, frozenset[int]]] = attrs.Factory(list)
    told: set[int] = attrs.Factory(set)  # the assignment on_assign/on_revoke describe
    held: dict[int, _Holding] = attrs.Factory(dict)
    pending: list[tuple[bus.Message, _Holding]] = attrs.Factory(list)  # last poll's messages


class BusStateMachine(RuleBasedStateMachine):
    """Drives one backend (``url``) and a reference model of its log in lockstep.

    Configure it by subclassing (``state_machine_for`` does), never by mutating it.
    """

    url: ClassVar[str | None] = None  # None: a fresh memory:// broker per example
    partitions: ClassVar[int] = 3
    max_members: ClassVar[int] = 3
    poll_timeout: ClassVar[float] = 0.0  # seconds per poll step
    deadline: ClassVar[float] = 30.0  # seconds to settle a group or read the log back
    strict_assignments: ClassVar[bool] = True
    commit_only_when_settled: ClassVar[bool] = False
    api: ClassVar[str] = "sync"  # or "async"

    def __init__(self) -> None:
        super().__init__()
        self._scratch = contextlib.ExitStack()
        url = self.url or self._scratch.enter_context(fresh_url())
        self.bus = bus.connect(url)
        missing = _missing(self.bus.capabilities, self.api)
        if missing:
            self.bus.close()
            raise unittest.SkipTest(
                f"backend {self.bus.backend!r} lacks {', '.join(map(repr, missing))}"
            )
        self.topic = f"statemachine-{uuid.uuid4().hex[:12]}"
        self.group = f"{self.topic}-group"
        self.bus.create_topic(self.topic, self.partitions)
        self._loop = asyncio.new_event_loop() if self.api == "async" else None
        self.producer: Any = (
            self.bus.producer()
            if self._loop is None
            else _Blocking(self.bus.async_producer(), self._loop)
        )
        n = self.partitions
        self.log: list[list[tuple[bytes | None, bytes]]] = [[] for _ in range(n)]
        self.committed: list[tuple[int, int]] = [(0, 0)] * n  # bounds of the position
        self.processed: list[set[int]] = [set() for _ in range(n)]
        self.maybe_processed: list[set[int]] = [set() for _ in range(n)]
        self.members: list[_Member] = []
        self.settled = False
        self._counter = itertools.count()

    def _consumer(self, topic: str, **options: Any) -> Any:
        if self._loop is None:
            return self.bus.consumer(topic, **options)
        return _Blocking(self.bus.async_consumer(topic, **options), self._loop)

    # -- the model's bookkeeping ----------------------------------------------------------

    def _assigned(self, member: _Member) -> set[int]:
        found = member.consumer.assignment()
        assert all(tp.topic == self.topic for tp in found), found
        return {tp.partition for tp in found}

    def _tentative(self, member: _Member) -> dict[int, tuple[_Holding, int, int]]:
        """Per partition: the pending messages a poll is about to mark processed, as
        (holding, processed position before, after)."""
        out: dict[int, tuple[_Holding, int, int]] = {}
        for message, holding in member.pending:
            p = message.partition
            assert p is not None and message.offset is not None
            if member.held.get(p) is not holding or holding.processed is None:
                continue  # lost since: never processed
            after = message.offset + 1
            if after > holding.processed:
                out[p] = (holding, holding.processed, max(after, out.get(p, (0, 0, 0))[2]))
        return out

    def _process(self, p: int, holding: _Holding, after: int) -> None:
        assert holding.processed is not None
        self.processed[p].update(range(holding.processed, after))
        holding.processed = max(holding.processed, after)

    def _lose(self, member: _Member, p: int, tentative: tuple[_Holding, int, int] | None) -> None:
        """``member`` lost ``p``: the backend committed its processed position (and,
        with ``tentative``, perhaps also its last batch)."""
        holding = member.held.pop(p)
        if tentative is not None and tentative[0] is holding:
            _, before, after = tentative
            self.maybe_processed[p].update(range(before, after))
            self.committed[p] = (before, after)
        elif holding.processed is not None:
            self.committed[p] = (holding.processed, holding.processed)

    def _gain_and_lose(self, member: _Member, actual: set[int]) -> None:
        for p in [p for p in member.held if p not in actual]:
            self._lose(member, p, None)
        for p in actual - member.held.keys():
            member.held[p] = _Holding()

    def _sync(self) -> None:
        """Follow assignment changes that happened outside a member's own poll."""
        actual = {m.name: self._assigned(m) for m in self.members}
        for m in self.members:
            self._gain_and_lose(m, actual[m.name])
        if self.strict_assignments:
            owners: dict[int, str] = {}
            for name, partitions in actual.items():
                for p in partitions:
                    assert p not in owners, (
                        f"partition {p} is assigned to both {owners[p]} and {name}: {actual}"
                    )
                    owners[p] = name

    def _receive(self, member: _Member, message: bus.Message) -> None:
        p, o = message.partition, message.offset
        assert message.topic == self.topic
        assert p is not None and o is not None
        where = f"{member.name} received {p}@{o}"
        assert p in member.held, f"{where} from a partition it is not assigned"
        assert 0 <= o < len(self.log[p]), f"{where}, but partition {p} has {len(self.log[p])}"
        assert (message.key, message.value) == self.log[p][o], f"{where}: wrong content"
        for other in self.members:
            if other is not member and p in other.held and other.held[p].next is not None:
                raise AssertionError(f"{where} while {other.name} also reads partition {p}")
        holding = member.held[p]
        if holding.next is None:
            lo, hi = self.committed[p]
            assert lo <= o <= hi, (
                f"{where} as its first message of partition {p}, but the committed "
                f"position is {lo if lo == hi else (lo, hi)}: "
                + ("processed messages read again" if o < lo else "messages skipped")
            )
            self.committed[p] = (o, o)
            holding.processed = o
        else:
            assert o == holding.next, f"{where}, expected offset {holding.next} next"
        holding.next = o + 1
        member.pending.append((message, holding))

    def _poll(self, member: _Member, max_messages: int, timeout: float) -> None:
        tentative = self._tentative(member)
        if max_messages == 1:
            one = member.consumer.poll(timeout=timeout)
            batch = [] if one is None else [one]
        else:
            batch = member.consumer.poll_batch(max_messages, timeout=timeout)
            assert len(batch) <= max_messages
        # Every callback since this member's last poll: an asyncio backend may run them
        # while another member's step runs the shared event loop.
        revoked: set[int] = set()
        for kind, partitions in member.events:
            if kind == "assign":
                member.told |= partitions
            else:
                member.told -= partitions
                revoked |= partitions
        member.events.clear()
        actual = self._assigned(member)
        for p, holding in list(member.held.items()):
            found = tentative.get(p)
            if p not in actual or p in revoked:
                self._lose(member, p, found)
            elif found is not None and found[0] is holding:
                self._process(p, holding, found[2])
        for p in actual - member.held.keys():
            member.held[p] = _Holding()
        assert member.told == actual, (
            f"{member.name}: on_assign/on_revoke describe {sorted(member.told)}, "
            f"assignment() is {sorted(actual)}"
        )
        member.pending = []
        for message in batch:
            self._receive(member, message)

    def _close(self, member: _Member) -> None:
        member.consumer.close()
        for p in list(member.held):
            self._lose(member, p, None)  # close commits processed positions only
        self.members.remove(member)

    def _member(self, which: int) -> _Member:
        return self.members[which % len(self.members)]

    # -- rules ---------------------------------------------------------------------------------

    def _record(
        self, delivery: bus.Delivery, key: bytes | None, value: bytes, partition: int | None
    ) -> None:
        p = delivery.partition
        if partition is not None:
            assert p == partition, f"sent to partition {partition}, written to {p}"
        elif key is not None:
            assert p == bus.murmur2_partition(key, self.partitions), f"key {key!r} on {p}"
        assert 0 <= p < self.partitions
        assert delivery.offset == len(self.log[p]), (
            f"offset {delivery.offset} on partition {p}, expected {len(self.log[p])}"
        )
        self.log[p].append((key, value))

    def _where(self, key: bytes | None, partition: int | None) -> int | None:
        # Unkeyed messages name their partition: the default partitioner places them at
        # random, which would make examples irreproducible.
        if partition is None and key is None:
            return 0
        return None if partition is None else partition % self.partitions

    @rule(key=st.none() | st.sampled_from(KEYS), partition=st.none() | st.integers(0, 99))
    def produce(self, key: bytes | None, partition: int | None) -> None:
        partition = self._where(key, partition)
        value = b"m%d" % next(self._counter)
        delivery = self.producer.send(self.topic, value, key=key, partition=partition)
        self._record(delivery, key, value, partition)

    @rule(
        sends=st.lists(
            st.tuples(st.none() | st.sampled_from(KEYS), st.none() | st.integers(0, 99)),
            min_size=1,
            max_size=6,
        )
    )
    def produce_batch(self, sends: list[tuple[bytes | None, int | None]]) -> None:
        batch = [
            bus.Message(
                self.topic, b"m%d" % next(self._counter), key=k, partition=self._where(k, p)
            )
            for k, p in sends
        ]
        for delivery, message in zip(self.producer.send_batch(batch), batch, strict=True):
            self._record(delivery, message.key, message.value, message.partition)

    @precondition(lambda self: len(self.members) < self.max_members)
    @rule()
    def join(self) -> None:
        name = f"member-{next(self._counter)}"
        events: list[tuple[str, frozenset[int]]] = []

        def note(kind: str) -> Callable[[Any], None]:
            return lambda tps: events.append((kind, frozenset(tp.partition for tp in tps)))

        consumer = self._consumer(
            self.topic,
            group=self.group,
            offset_reset="earliest",
            auto_commit_interval=3600.0,  # commits come from close, rebalance and commit()
            on_assign=note("assign"),
            on_revoke=note("revoke"),
        )
        self.members.append(_Member(name, consumer, events))
        self.settled = False
        self._sync()

    @precondition(lambda self: self.members)
    @rule(which=st.integers(0, 9), max_messages=st.integers(1, 4))
    def poll(self, which: int, max_messages: int) -> None:
        self._poll(self._member(which), max_messages, self.poll_timeout)
        self._sync()

    @precondition(lambda self: self.members and (self.settled or not self.commit_only_when_settled))
    @rule(which=st.integers(0, 9))
    def commit(self, which: int) -> None:
        member = self._member(which)
        member.consumer.commit()
        for p, (holding, _, after) in self._tentative(member).items():
            self._process(p, holding, after)
        for p, holding in member.held.items():
            if holding.processed is not None:
                self.committed[p] = (holding.processed, holding.processed)
        member.pending = []
        self._sync()

    @precondition(lambda self: self.members and (self.settled or not self.commit_only_when_settled))
    @rule(which=st.integers(0, 9), pick=st.integers(0, 9))
    def commit_message(self, which: int, pick: int) -> None:
        """Commit one of the messages the member's last poll returned (if any)."""
        member = self._member(which)
        current = [(m, h) for m, h in member.pending if member.held.get(m.partition) is h]  # type: ignore[arg-type]
        if not current:
            return
        message, holding = current[pick % len(current)]
        assert message.partition is not None and message.offset is not None
        member.consumer.commit(message)
        self._process(message.partition, holding, message.offset + 1)
        self.committed[message.partition] = (message.offset + 1, message.offset + 1)
        self._sync()

    @precondition(lambda self: self.members)
    @rule(which=st.integers(0, 9))
    def close_member(self, which: int) -> None:
        self._close(self._member(which))
        self.settled = False
        self._sync()

    @precondition(lambda self: self.members)
    @rule()
    def settle(self) -> None:
        """Poll every member in turn until their assignments are disjoint, cover every
        partition and give each member one (when there are enough partitions)."""
        everyone = set(range(self.partitions))
        deadline = time.monotonic() + self.deadline
        while True:
            shares = [self._assigned(m) for m in self.members]
            union = set().union(*shares)
            disjoint = sum(map(len, shares)) == len(union)
            fair = len(self.members) > self.partitions or all(shares)
            if disjoint and union == everyone and fair:
                break
            assert time.monotonic() < deadline, f"the group did not settle: {shares}"
            for member in list(self.members):
                self._poll(member, 100, max(self.poll_timeout, 0.01) / len(self.members))
            self._sync()
        self.settled = True

    # -- the end -------------------------------------------------------------------------------

    def _check_nothing_lost(self) -> None:
        for member in list(self.members):
            self._close(member)
        received: list[bus.Message] = []
        reader = self._consumer(
            self.topic, group=self.group, offset_reset="earliest", auto_commit=False
        )
        try:
            everything = topic_partitions(self.topic, self.partitions)
            deadline = time.monotonic() + self.deadline
            while reader.assignment() != everything:
                assert time.monotonic() < deadline, "the final reader got no assignment"
                received += reader.poll_batch(500, timeout=max(self.poll_timeout, 0.01))
            while True:
                batch = reader.poll_batch(500, timeout=self.poll_timeout * 5)
                received += batch
                if not batch and self._read_to_the_end(received):
                    break
                assert time.monotonic() < deadline, "the final reader did not read to the end"
        finally:
            reader.close()
        for p in range(self.partitions):
            offsets = [m.offset for m in received if m.partition == p]
            start = offsets[0] if offsets else len(self.log[p])
            assert start is not None
            lo, hi = self.committed[p]
            assert lo <= start <= hi, f"partition {p}: committed {start}, model says {(lo, hi)}"
            assert offsets == list(range(start, len(self.log[p]))), f"partition {p}: {offsets}"
            lost = [
                o
                for o in range(start)
                if o not in self.processed[p] and o not in self.maybe_processed[p]
            ]
            assert not lost, f"partition {p}: offsets {lost} were committed but never processed"
        for m in received:
            assert m.partition is not None and m.offset is not None
            assert (m.key, m.value) == self.log[m.partition][m.offset]

    def _read_to_the_end(self, received: list[bus.Message]) -> bool:
        for p in range(self.partitions):
            offsets = [m.offset for m in received if m.partition == p]
            if offsets and offsets[-1] != len(self.log[p]) - 1:
                return False
            if not offsets and self.committed[p][1] < len(self.log[p]):
                return False
        return True

    def teardown(self) -> None:
        try:
            # Only when the steps passed: a failing check here would hide the first failure.
            if sys.exc_info()[1] is None:
                self._check_nothing_lost()
        finally:
            for member in self.members:
                member.consumer.close()
            self.producer.close()
            try:
                self.bus.delete_topic(self.topic)
            finally:
                self.bus.close()
                if self._loop is not None:
                    self._loop.close()
                self._scratch.close()


def state_machine_for(
    url: str | None = None,
    *,
    partitions: int = 3,
    max_members: int = 3,
    poll_timeout: float | None = None,
    deadline: float | None = None,
    strict_assignments: bool = True,
    commit_only_when_settled: bool | None = None,
    api: str = "sync",
) -> type[BusStateMachine]:
    """A ``BusStateMachine`` subclass for ``url`` (``None``: a fresh memory broker per
    example). ``poll_timeout`` defaults to 0 on memory and 0.2 s elsewhere, ``deadline``
    (to settle a group, or read the log back) to 30 s on memory and 90 s elsewhere (a
    real group may wait out a session timeout);
    ``commit_only_when_settled`` (default: off on memory) keeps commits out of a
    rebalance in progress, where a real broker refuses them with ``CommitError``."""
    if not 2 <= partitions <= 8:
        raise ValueError("partitions must be between 2 and 8")
    if api not in ("sync", "async"):
        raise ValueError(f"api must be 'sync' or 'async', not {api!r}")
    memory = url is None or url.startswith("memory:")
    return type(
        "BusStateMachine",
        (BusStateMachine,),
        {
            "url": url,
            "partitions": partitions,
            "max_members": max_members,
            "poll_timeout": (0.0 if memory else 0.2) if poll_timeout is None else poll_timeout,
            "deadline": (30.0 if memory else 90.0) if deadline is None else deadline,
            "strict_assignments": strict_assignments,
            "api": api,
            "commit_only_when_settled": (
                not memory if commit_only_when_settled is None else commit_only_when_settled
            ),
        },
    )


def _settings(max_examples: int, stateful_step_count: int, **options: Any) -> settings:
    return settings(
        max_examples=max_examples,
        stateful_step_count=stateful_step_count,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        **options,
    )


def run_state_machine(
    url: str | None = None,
    *,
    max_examples: int = 50,
    stateful_step_count: int = 30,
    settings_options: dict[str, Any] | None = None,
    **config: Any,
) -> None:
    """Run the state machine on ``url`` as a test: returns, or raises with the shortest
    failing sequence of steps. ``config`` goes to ``state_machine_for``;
    ``settings_options`` to Hypothesis' ``settings`` (``database=None``, ...)."""
    machine = state_machine_for(url, **config)
    if url is not None:  # skip at once, not from inside Hypothesis
        with bus.connect(url) as connection:
            missing = _missing(connection.capabilities, config.get("api", "sync"))
        if missing:
            raise unittest.SkipTest(
                f"backend {connection.backend!r} lacks {', '.join(map(repr, missing))}"
            )
    run_state_machine_as_test(
        machine,
        settings=_settings(max_examples, stateful_step_count, **(settings_options or {})),
    )


def make_test_case(
    url: str | None = None,
    *,
    max_examples: int = 50,
    stateful_step_count: int = 30,
    **config: Any,
) -> type[unittest.TestCase]:
    """A ``unittest.TestCase`` class running the state machine on ``url``; assign it to
    a ``Test...`` name in a test module to collect it."""
    case: type[unittest.TestCase] = state_machine_for(url, **config).TestCase
    case.settings = _settings(max_examples, stateful_step_count)  # type: ignore[attr-defined]
    return case
