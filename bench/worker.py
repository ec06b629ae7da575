"""Throughput of the worker (``Bus.worker`` / ``Bus.async_worker``) beside the loops it
replaces, its own concurrency, and FastStream's subscriber.

Every message is 100 bytes; every topic has 8 partitions, its messages spread evenly
over them (message i in partition i % 8), and is written once, before any run. Each
run reads it with a **fresh consumer group** from the earliest offset, so every run
reads everything; the clock covers the whole life of the consumer: from ``run()``
(or the consumer's construction, or the FastStream broker's start) to its return
(or ``close()``, or the broker's stop), so **the group join, the first fetch, the
final commit and leaving the group are inside the time** of every contender. A worker
handler counts and calls ``worker.stop()`` on the last expected message. Every run
must see exactly the messages expected; a worker that read the whole topic must then
have committed every partition to its end (checked after the clock).

Pairs (ours, then the baseline, in turns in one process):

* ``worker memory sync no-op vs for loop``: ``b.worker(no_op, topic, group=g,
  concurrency=1, offset_reset="earliest").run()`` vs the loop it replaces, ``for
  message in consumer`` (a consumer in group ``g``, ``offset_reset="earliest"``,
  ``auto_commit`` default), then ``close()``.
* ``worker memory sync 1 ms handler, concurrency 4 vs 1`` (and ``kafka sync``): a
  handler that sleeps 1 ms (``time.sleep(0.001)``, I/O-bound), ``concurrency=4`` vs
  ``concurrency=1``, fewer messages (6,000 by default, ``--sleep-count``).
* ``worker aiokafka async 1 ms handler, concurrency 4 vs 1``: the same with
  ``b.async_worker`` and ``await asyncio.sleep(0.001)``.
* ``worker kafka sync no-op vs for loop`` / ``worker aiokafka async no-op vs async for
  loop``: as the memory pair, on a real broker (``async for`` on aiokafka).
* ``worker kafka sync no-op vs faststream confluent`` / ``worker aiokafka async no-op
  vs faststream kafka``: our worker vs FastStream's subscriber on the same backend
  client (``faststream.confluent.KafkaBroker``: confluent-kafka;
  ``faststream.kafka.KafkaBroker``: aiokafka), ``@broker.subscriber(topic,
  group_id=g, auto_offset_reset="earliest")`` on ``async def handle(body: bytes)``,
  timed from ``async with broker: await broker.start()`` until the handler saw the
  last message and the broker stopped. FastStream's per-message access log is off
  (``logger=None``); its default ack policy (``ACK_FIRST``: auto commit) is kept.

Besides the rate (messages / the whole time), each row records when each run saw its
first message (``*_first_message_s``: the join and first fetch) and the rate from the
first message to the last (``*_steady``: without the fixed costs).

Usage: ``python -m bench.worker [--count N] [--sleep-count N] [--quick] [--rounds R]
[--bootstrap HOST:PORT] [--only TEXT]``. The memory cases need no broker; the others
start a single-node Kafka broker (``tools/kafka_harness``) unless ``--bootstrap`` or
``$KAFKA_BOOTSTRAP_SERVERS`` names one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer as RawConsumer
from confluent_kafka import Producer as RawProducer
from confluent_kafka import TopicPartition as RawTopicPartition

import backends.kafka
import bus
from bench._common import (
    BenchError,
    Broker,
    Clock,
    Contender,
    KafkaBench,
    Run,
    Sample,
    Stopwatch,
    alternate,
    check,
    environment,
    environment_after,
    expect_count,
    in_case_order,
    kafka_broker,
    log,
    parser,
    payload,
    report,
    row,
    save,
    selected,
    settle,
    with_other_cases,
)
from bus.testing.helpers import fresh_url

PREFIX = "worker "
SIZE = 100
PARTITIONS = 8
SLEEP = 0.001  # the I/O-bound handler's wait
DEFAULT_SLEEP_COUNT = 6_000
QUICK_SLEEP_COUNT = 400
CONCURRENCY = 4
PACKAGES = ["polybus", "confluent-kafka", "aiokafka", "faststream", "attrs", "tenacity"]
VALUE = payload(SIZE)

MEMORY_LOOP = "worker memory sync no-op vs for loop"
MEMORY_CONCURRENCY = "worker memory sync 1 ms handler, concurrency 4 vs 1"
KAFKA_CONCURRENCY = "worker kafka sync 1 ms handler, concurrency 4 vs 1"
AIOKAFKA_CONCURRENCY = "worker aiokafka async 1 ms handler, concurrency 4 vs 1"
KAFKA_LOOP = "worker kafka sync no-op vs for loop"
AIOKAFKA_LOOP = "worker aiokafka async no-op vs async for loop"
KAFKA_FASTSTREAM = "worker kafka sync no-op vs faststream confluent"
AIOKAFKA_FASTSTREAM = "worker aiokafka async no-op vs faststream kafka"
CASES = (
    MEMORY_LOOP,
    MEMORY_CONCURRENCY,
    KAFKA_CONCURRENCY,
    AIOKAFKA_CONCURRENCY,
    KAFKA_LOOP,
    AIOKAFKA_LOOP,
    KAFKA_FASTSTREAM,
    AIOKAFKA_FASTSTREAM,
)
ON_MEMORY = (MEMORY_LOOP, MEMORY_CONCURRENCY)
MEMORY_FOR = "memory for m in consumer (group)"


def _group() -> str:
    return f"bench-worker-{uuid.uuid4().hex[:12]}"


def _limit(n: int, handler_s: float = 0.0) -> float:
    """Seconds a run may take before its watchdog ends it (and its count check fails)."""
    return 60 + n * (1e-4 + handler_s)


class Marks:
    """When each run of each contender saw its first and its last message, seconds after
    its clock started: the fixed costs (join, first fetch) and the steady rate."""

    def __init__(self) -> None:
        self.runs: dict[str, list[tuple[int, float, float]]] = {}

    def add(self, label: str, n: int, started: float, first: float, last: float) -> None:
        self.runs.setdefault(label, []).append((n, first - started, last - started))

    def fields(self, side: str, label: str, rounds: int) -> dict[str, Any]:
        timed = self.runs.get(label, [])[-rounds:]  # the warm-up run is marked too
        if not timed:
            return {}
        steady = [(n - 1) / (last - first) for n, first, last in timed if last > first]
        return {
            f"{side}_first_message_s": round(min(first for _, first, _ in timed), 4),
            f"{side}_steady": round(max(steady)) if steady else None,
            f"{side}_steady_runs": [round(s) for s in steady],
        }


MARKS = Marks()


def _row_fields(mine: Sample, theirs: Sample, rounds: int) -> dict[str, Any]:
    fields = {
        **MARKS.fields("ours", mine.contender.name, rounds),
        **MARKS.fields("baseline", theirs.contender.name, rounds),
    }
    if fields.get("ours_steady") and fields.get("baseline_steady"):
        fields["steady_ratio"] = round(fields["ours_steady"] / fields["baseline_steady"], 2)
    return fields


# -- handlers ----------------------------------------------------------------------------------


class Seen:
    """What a run's handler saw: how many messages, when the first and the n-th came.
    ``next(counter)`` is atomic in CPython, so handlers on several threads share it."""

    def __init__(self, n: int, done: Callable[[], None] = lambda: None):
        self.n = n
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self._counter = itertools.count(1)
        self.done = done

    def one(self) -> None:
        """One message seen (from any thread)."""
        k = next(self._counter)
        if k == 1:
            self.first = time.perf_counter()
        elif k == self.n:
            self.last = time.perf_counter()
            self.done()

    def total(self) -> int:
        return next(self._counter) - 1


# -- memory ------------------------------------------------------------------------------------


@contextlib.contextmanager
def memory_topic(n: int) -> Iterator[tuple[bus.Bus, str]]:
    """A bus on a fresh memory broker with an 8-partition topic of ``n`` messages."""
    with fresh_url("memory") as url, bus.connect(url) as b:
        topic = "bench-worker"
        b.create_topic(topic, partitions=PARTITIONS)
        with b.producer() as producer:
            for start in range(0, n, 10_000):
                producer.send_batch(
                    [
                        bus.Message(topic, VALUE, partition=i % PARTITIONS)
                        for i in range(start, min(n, start + 10_000))
                    ]
                )
        yield b, topic


def _all_committed(b: bus.Bus, topic: str, group: str, what: str) -> None:
    """Fail unless group ``group`` has nothing left to read in ``topic`` (memory)."""
    with b.consumer(topic, group=group, offset_reset="earliest") as consumer:
        left = consumer.poll_batch(500, timeout=0.2)
    check(what, not left, f"{len(left)} messages left uncommitted in group {group}")


def sync_worker(
    b: bus.Bus,
    topic: str,
    total: int,
    label: str,
    concurrency: int = 1,
    sleep: float = 0.0,
    clock: Callable[[], Stopwatch] = Stopwatch,
    verify: Callable[[str], None] | None = None,
) -> Callable[[int], Run]:
    """``b.worker(handler, topic, group=<fresh>, concurrency=...).run()``, the handler
    counting (and sleeping ``sleep`` s) and stopping the worker on the n-th message."""

    def work(n: int) -> Run:
        group = _group()
        seen = Seen(n)
        one = seen.one
        if sleep:

            def handle(message: bus.Message) -> None:
                time.sleep(sleep)
                one()

        else:

            def handle(message: bus.Message) -> None:
                one()

        worker = b.worker(
            handle, topic, group=group, concurrency=concurrency, offset_reset="earliest"
        )
        seen.done = worker.stop
        watchdog = threading.Timer(_limit(n, sleep), worker.stop)
        watchdog.start()
        try:
            with clock() as timer:
                started = timer._wall0
                worker.run()
        finally:
            watchdog.cancel()
        got = seen.total()
        # With concurrency > 1 the other runners finish the message they hold after the
        # n-th: a few more than n may be handled (never counted in the rate).
        check(label, n <= got <= n + concurrency - 1, f"handled {got}, expected {n}")
        if n == total and concurrency == 1 and verify is not None:
            verify(group)
        MARKS.add(label, n, started, seen.first, seen.last)
        return timer.run(n)

    return work


def sync_loop(
    b: bus.Bus,
    topic: str,
    label: str,
    clock: Callable[[], Stopwatch] = Stopwatch,
) -> Callable[[int], Run]:
    """The loop a worker replaces: a group consumer (fresh group, earliest, auto commit
    by default) made inside the clock, ``for message in consumer`` until the n-th, then
    ``close()``."""

    def work(n: int) -> Run:
        group = _group()
        count = 0
        first = last = 0.0
        with clock() as timer:
            started = timer._wall0
            consumer = b.consumer(topic, group=group, offset_reset="earliest")
            # Iteration blocks while nothing comes: a watchdog closes the consumer,
            # which ends the loop, and the count check fails.
            watchdog = threading.Timer(_limit(n), consumer.close)
            watchdog.start()
            for _message in consumer:
                count += 1
                if count == 1:
                    first = time.perf_counter()
                if count == n:
                    last = time.perf_counter()
                    break
            consumer.close()
        watchdog.cancel()
        expect_count(label, count, n)
        MARKS.add(label, n, started, first, last)
        return timer.run(n)

    return work


def memory_pairs(
    args: argparse.Namespace, cases: list[str], stack: contextlib.ExitStack
) -> list[Pair]:
    pairs: list[Pair] = []
    if MEMORY_LOOP in cases:
        n = args.count
        b, topic = stack.enter_context(memory_topic(n))

        def verify(group: str, b: bus.Bus = b, topic: str = topic) -> None:
            _all_committed(b, topic, group, MEMORY_LOOP)

        pairs.append(
            (
                Contender(MEMORY_LOOP, n, sync_worker(b, topic, n, MEMORY_LOOP, verify=verify)),
                Contender(MEMORY_FOR, n, sync_loop(b, topic, MEMORY_FOR)),
                {"path": "b.worker(no-op, concurrency=1).run()", "handler": "no-op"},
                1000,
            )
        )
    if MEMORY_CONCURRENCY in cases:
        n = args.sleep_count
        b, topic = stack.enter_context(memory_topic(n))
        pairs.append(
            (
                Contender(
                    MEMORY_CONCURRENCY,
                    n,
                    sync_worker(b, topic, n, MEMORY_CONCURRENCY, CONCURRENCY, SLEEP),
                ),
                Contender(
                    "memory worker concurrency=1",
                    n,
                    sync_worker(b, topic, n, "memory worker concurrency=1", 1, SLEEP),
                ),
                {
                    "path": "b.worker(sleep 1 ms, concurrency=4).run()",
                    "handler": "time.sleep(0.001)",
                },
                200,
            )
        )
    return pairs


# -- Kafka: shared -----------------------------------------------------------------------------


class Kafka:
    """The broker of a run, our two buses on it, and its topics."""

    def __init__(self, broker: Broker):
        self.broker = broker
        self.bootstrap = broker.bootstrap
        self.sync = KafkaBench("kafka", broker, PARTITIONS)
        self.aio = KafkaBench("aiokafka", broker, PARTITIONS)
        self._checker = RawConsumer(
            {"bootstrap.servers": self.bootstrap, "group.id": "bench-worker-watermarks"}
        )
        self.producer_conf = backends.kafka.producer_config(f"kafka://{self.bootstrap}")

    def topic(self, what: str, n: int) -> str:
        """A fresh 8-partition topic holding ``n`` messages, message i in partition
        i % 8, written with the raw producer (our producer's settings)."""
        topic = self.sync.topic(what)
        started = time.perf_counter()
        producer = RawProducer(dict(self.producer_conf))
        errors: list[Any] = []

        def report(err: Any, msg: Any) -> None:
            if err is not None:
                errors.append(err)

        for i in range(n):
            while True:
                try:
                    producer.produce(topic, VALUE, partition=i % PARTITIONS, on_delivery=report)
                    break
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)
        left = producer.flush(120)
        check("pre-produce", left == 0 and not errors, f"{left} unflushed, errors {errors[:3]}")
        ends = self.ends(topic)
        check("pre-produce", sum(ends) == n, f"{sum(ends)} records in {topic}, expected {n}")
        seconds = time.perf_counter() - started
        log(f"pre-produced {n:,} messages to {topic} ({seconds:.1f} s, {n / seconds:,.0f} msg/s)")
        return topic

    def ends(self, topic: str) -> list[int]:
        out = []
        for p in range(PARTITIONS):
            low, high = self._checker.get_watermark_offsets(
                RawTopicPartition(topic, p), timeout=10, cached=False
            )
            check(topic, low == 0, f"partition {p} starts at offset {low}")
            out.append(high)
        return out

    def verifier(self, topic: str, what: str) -> Callable[[str], None]:
        """A check that group ``group`` committed every partition of ``topic`` to its
        end (an offset fetch: no join)."""
        ends = self.ends(topic)

        def verify(group: str) -> None:
            c = RawConsumer({"bootstrap.servers": self.bootstrap, "group.id": group})
            try:
                done = c.committed([RawTopicPartition(topic, p) for p in range(PARTITIONS)], 30)
            finally:
                c.close()
            got = [tp.offset for tp in sorted(done, key=lambda tp: tp.partition)]
            check(what, got == ends, f"group {group} committed {got}, the ends are {ends}")

        return verify

    def close(self) -> None:
        self._checker.close()
        self.aio.close()
        self.sync.close()


def _clock(k: KafkaBench, label: str) -> Callable[[], Stopwatch]:
    return lambda: Clock(k, label)


# -- asyncio contenders --------------------------------------------------------------------------


async def _within(n: int, handler_s: float, wait: Coroutine[Any, Any, Any]) -> None:
    """``wait``, given ``_limit`` seconds (then the count check fails)."""
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(wait, _limit(n, handler_s))


def async_worker(
    k: KafkaBench,
    topic: str,
    total: int,
    label: str,
    concurrency: int = 1,
    sleep: float = 0.0,
    verify: Callable[[str], None] | None = None,
) -> Callable[[int], Run]:
    """``await b.async_worker(handler, topic, group=<fresh>, ...).run()`` on a fresh
    loop; the handler counts (after ``await asyncio.sleep(sleep)``) and stops the worker
    on the n-th message."""

    async def work(n: int) -> Run:
        group = _group()
        seen = Seen(n)
        one = seen.one
        if sleep:

            async def handle(message: bus.Message) -> None:
                await asyncio.sleep(sleep)
                one()

        else:

            async def handle(message: bus.Message) -> None:
                one()

        worker = k.bus.async_worker(
            handle, topic, group=group, concurrency=concurrency, offset_reset="earliest"
        )
        seen.done = worker.stop
        watchdog = asyncio.get_running_loop().call_later(_limit(n, sleep), worker.stop)
        try:
            with Clock(k, label) as timer:
                started = timer._wall0
                await worker.run()
        finally:
            watchdog.cancel()
        got = seen.total()
        check(label, n <= got <= n + concurrency - 1, f"handled {got}, expected {n}")
        if n == total and concurrency == 1 and verify is not None:
            verify(group)
        MARKS.add(label, n, started, seen.first, seen.last)
        return timer.run(n)

    return lambda n: asyncio.run(work(n))


def async_loop(k: KafkaBench, topic: str, label: str) -> Callable[[int], Run]:
    """The loop an async worker replaces: a group consumer (fresh group, earliest, auto
    commit by default) made inside the clock, ``async for message in consumer`` until
    the n-th, then ``await close()``."""

    async def work(n: int) -> Run:
        group = _group()
        marks = {"count": 0, "first": 0.0, "last": 0.0}

        async def loop(consumer: bus.AsyncConsumer) -> None:
            count = 0
            async for _message in consumer:
                count += 1
                if count == 1:
                    marks["first"] = time.perf_counter()
                if count == n:
                    marks["last"] = time.perf_counter()
                    break
            marks["count"] = count

        with Clock(k, label) as timer:
            started = timer._wall0
            consumer = k.bus.async_consumer(topic, group=group, offset_reset="earliest")
            await _within(n, 0.0, loop(consumer))
            await consumer.close()
        expect_count(label, int(marks["count"]), n)
        MARKS.add(label, n, started, marks["first"], marks["last"])
        return timer.run(n)

    return lambda n: asyncio.run(work(n))


def faststream_subscriber(
    k: KafkaBench, topic: str, label: str, flavour: str
) -> Callable[[int], Run]:
    """FastStream's no-op subscriber (``flavour``: ``confluent`` or ``kafka``, i.e.
    aiokafka) in a fresh group from the earliest offset, timed from connecting and
    starting the broker until the handler saw the n-th message and the broker stopped."""

    async def work(n: int) -> Run:
        if flavour == "confluent":
            from faststream.confluent import KafkaBroker as ConfluentBroker

            broker: Any = ConfluentBroker(k.bootstrap, logger=None)
        else:
            from faststream.kafka import KafkaBroker as AioBroker

            broker = AioBroker(k.bootstrap, logger=None)
        done = asyncio.Event()
        seen = Seen(n, done.set)
        one = seen.one

        @broker.subscriber(topic, group_id=_group(), auto_offset_reset="earliest")  # type: ignore[untyped-decorator]
        async def handle(body: bytes) -> None:
            one()

        with Clock(k, label) as timer:
            started = timer._wall0
            async with broker:
                await broker.start()
                await _within(n, 0.0, done.wait())
        got = seen.total()
        # FastStream goes on handling what it fetched until its subscriber stops.
        check(label, got >= n, f"handled {got}, expected at least {n}")
        MARKS.add(label, n, started, seen.first, seen.last)
        return timer.run(n)

    return lambda n: asyncio.run(work(n))


# -- Kafka pairs -------------------------------------------------------------------------------

#: (ours, baseline, extra row fields, warm-up messages)
Pair = tuple[Contender, Contender, dict[str, Any], int]


def kafka_pairs(k: Kafka, args: argparse.Namespace, cases: list[str]) -> list[Pair]:
    pairs: list[Pair] = []
    s, n = args.sleep_count, args.count
    sleep_extra = {"handler": "sleep 1 ms", "concurrency": [CONCURRENCY, 1]}
    if KAFKA_CONCURRENCY in cases or AIOKAFKA_CONCURRENCY in cases:
        topic = k.topic("sleep", s)
        if KAFKA_CONCURRENCY in cases:
            one = "kafka worker concurrency=1"
            pairs.append(
                (
                    Contender(
                        KAFKA_CONCURRENCY,
                        s,
                        sync_worker(
                            k.sync.bus,
                            topic,
                            s,
                            KAFKA_CONCURRENCY,
                            CONCURRENCY,
                            SLEEP,
                            _clock(k.sync, KAFKA_CONCURRENCY),
                        ),
                    ),
                    Contender(
                        one,
                        s,
                        sync_worker(k.sync.bus, topic, s, one, 1, SLEEP, _clock(k.sync, one)),
                    ),
                    {"path": "b.worker(time.sleep(0.001), concurrency=4).run()", **sleep_extra},
                    200,
                )
            )
        if AIOKAFKA_CONCURRENCY in cases:
            one = "aiokafka async_worker concurrency=1"
            pairs.append(
                (
                    Contender(
                        AIOKAFKA_CONCURRENCY,
                        s,
                        async_worker(k.aio, topic, s, AIOKAFKA_CONCURRENCY, CONCURRENCY, SLEEP),
                    ),
                    Contender(one, s, async_worker(k.aio, topic, s, one, 1, SLEEP)),
                    {
                        "path": "await b.async_worker(asyncio.sleep(0.001), concurrency=4).run()",
                        **sleep_extra,
                    },
                    200,
                )
            )
    no_op = [
        c for c in (KAFKA_LOOP, AIOKAFKA_LOOP, KAFKA_FASTSTREAM, AIOKAFKA_FASTSTREAM) if c in cases
    ]
    if not no_op:
        return pairs
    topic = k.topic("no-op", n)
    note = {"handler": "no-op", "concurrency": 1}
    if KAFKA_LOOP in cases:
        peer = "kafka for m in consumer (group)"
        pairs.append(
            (
                Contender(
                    KAFKA_LOOP,
                    n,
                    sync_worker(
                        k.sync.bus,
                        topic,
                        n,
                        KAFKA_LOOP,
                        clock=_clock(k.sync, KAFKA_LOOP),
                        verify=k.verifier(topic, KAFKA_LOOP),
                    ),
                ),
                Contender(peer, n, sync_loop(k.sync.bus, topic, peer, _clock(k.sync, peer))),
                {"path": "b.worker(no-op, concurrency=1).run()", **note},
                1000,
            )
        )
    if AIOKAFKA_LOOP in cases:
        peer = "aiokafka async for m in consumer (group)"
        pairs.append(
            (
                Contender(
                    AIOKAFKA_LOOP,
                    n,
                    async_worker(k.aio, topic, n, AIOKAFKA_LOOP, verify=k.verifier(topic, "aio")),
                ),
                Contender(peer, n, async_loop(k.aio, topic, peer)),
                {"path": "await b.async_worker(no-op, concurrency=1).run()", **note},
                1000,
            )
        )
    fs = {"baseline_logger": None, "baseline_ack_policy": "default (ACK_FIRST: auto commit)"}
    if KAFKA_FASTSTREAM in cases:
        peer = "faststream.confluent subscriber"
        ours = "kafka worker (vs faststream)"
        pairs.append(
            (
                Contender(
                    KAFKA_FASTSTREAM,
                    n,
                    sync_worker(
                        k.sync.bus,
                        topic,
                        n,
                        KAFKA_FASTSTREAM,
                        clock=_clock(k.sync, KAFKA_FASTSTREAM),
                        verify=k.verifier(topic, ours),
                    ),
                ),
                Contender(peer, n, faststream_subscriber(k.sync, topic, peer, "confluent")),
                {
                    "path": "b.worker(no-op, concurrency=1).run()",
                    "baseline_path": "@broker.subscriber(topic, group_id=..., "
                    "auto_offset_reset='earliest') async def handle(body: bytes)",
                    "peer_api": "asyncio",
                    **note,
                    **fs,
                },
                1000,
            )
        )
    if AIOKAFKA_FASTSTREAM in cases:
        peer = "faststream.kafka subscriber (aiokafka)"
        pairs.append(
            (
                Contender(
                    AIOKAFKA_FASTSTREAM,
                    n,
                    async_worker(
                        k.aio,
                        topic,
                        n,
                        AIOKAFKA_FASTSTREAM,
                        verify=k.verifier(topic, AIOKAFKA_FASTSTREAM),
                    ),
                ),
                Contender(peer, n, faststream_subscriber(k.aio, topic, peer, "kafka")),
                {
                    "path": "await b.async_worker(no-op, concurrency=1).run()",
                    "baseline_path": "@broker.subscriber(topic, group_id=..., "
                    "auto_offset_reset='earliest') async def handle(body: bytes)",
                    **note,
                    **fs,
                },
                1000,
            )
        )
    return pairs


# -- main -------------------------------------------------------------------------------------


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = parser(
        "python -m bench.worker",
        (__doc__ or "").splitlines()[0],
        default_count=200_000,
        quick_count=20_000,
    )
    p.add_argument(
        "--sleep-count",
        type=int,
        default=None,
        help=f"messages per run of the 1 ms handler cases (default {DEFAULT_SLEEP_COUNT:,}; "
        f"--quick: {QUICK_SLEEP_COUNT})",
    )
    p.add_argument(
        "--bootstrap",
        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or None,
        help="use this broker (host:port) instead of starting one "
        "(default $KAFKA_BOOTSTRAP_SERVERS)",
    )
    p.add_argument(
        "--only",
        default=None,
        help="run only the cases whose name contains one of these comma-separated texts "
        "(e.g. 'memory,concurrency'); their rows replace only theirs in the output",
    )
    args = settle(p.parse_args(argv))
    if args.sleep_count is None:
        args.sleep_count = QUICK_SLEEP_COUNT if args.quick else DEFAULT_SLEEP_COUNT
    if args.sleep_count < 1:
        raise SystemExit("--sleep-count must be at least 1")
    return args


def _run_pairs(pairs: list[Pair], rounds: int, k: Kafka | None) -> list[dict[str, Any]]:
    rows = []
    for ours, peer, extra, warmup in pairs:
        mine, theirs = alternate(ours, peer, rounds, warmup=warmup)
        fields = {**_row_fields(mine, theirs, rounds), **extra}
        if ours.name in ON_MEMORY or k is None:
            rows.append(
                row(
                    ours.name,
                    mine,
                    theirs,
                    size=SIZE,
                    partitions=PARTITIONS,
                    rounds=rounds,
                    **fields,
                )
            )
        else:
            bench = k.aio if ours.name.startswith("worker aiokafka") else k.sync
            rows.append(bench.row(mine, theirs, rounds, SIZE, **fields))
    return rows


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    rounds = args.rounds
    cases = selected(CASES, args.only)
    begun = time.perf_counter()
    start = environment(PACKAGES)
    log(
        f"bench.worker: {args.count:,} messages per no-op run, {args.sleep_count:,} per "
        f"1 ms-handler run, {PARTITIONS} partitions, {rounds} round(s); "
        f"{start['cpu_count']} CPUs, load {start['loadavg_1_5_15']}"
    )
    rows: list[dict[str, Any]] = []
    source = None
    try:
        with contextlib.ExitStack() as stack:
            rows += _run_pairs(memory_pairs(args, cases, stack), rounds, None)
        if any(c not in ON_MEMORY for c in cases):
            with kafka_broker(args.bootstrap, "bench.worker") as broker:
                source = broker.source
                k = Kafka(broker)
                try:
                    rows += _run_pairs(kafka_pairs(k, args, cases), rounds, k)
                finally:
                    k.close()
    except BenchError as error:
        log(f"bench.worker FAILED: {error}")
        return 1
    env = environment_after(
        PACKAGES,
        start,
        broker=source,
        count=args.count,
        sleep_count=args.sleep_count,
        rounds=rounds,
        partitions=PARTITIONS,
        timed="from run() (or the consumer's construction, or the FastStream broker's "
        "start) to its return (close, stop): group join and leave included",
        seconds=round(time.perf_counter() - begun, 1),
    )
    output: Path = args.output
    save(output, "worker", PREFIX, with_other_cases(output, rows, PREFIX, CASES), env)
    report(in_case_order(rows, CASES), rounds, env, output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
