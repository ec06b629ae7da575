"""Throughput of the aiokafka:// backend beside raw aiokafka and FastStream.

All run on a real Apache Kafka broker, in one asyncio process. Every message is 100
bytes. Every producer, ours and the peers', runs with the ``AIOKafkaProducer`` keyword
arguments polybus itself gives aiokafka, captured from the backend rather than retyped
(acks="all", enable_idempotence, linger_ms 5, max_batch_size 1,000,000, no
compression, request_timeout_ms 120,000); FastStream's ``KafkaBroker`` takes the same
ones. Each producer run writes to a fresh 1-partition topic, created before the clock
starts; the producer is started and has one acknowledged message in that topic before
the clock starts (connection, producer id and topic metadata are start-up, not
throughput), and the topic must then hold exactly N + 1 records, with no failure.

The consumer runs read one 1-partition topic, written once at the start with M
messages. Each run makes a fresh consumer (no group, every partition assigned, from
the earliest offset, the consumer arguments polybus uses) before the clock; the clock
covers its start (connection, metadata) and reading the M messages. Every run must
read exactly M, the last at offset M-1 with the value sent, and nothing after it.

Pairs (ours, then the baseline, in turns in one process; each run on a fresh event
loop):

* ``aiokafka async enqueue``: ``await producer.enqueue(topic, value)`` N times, then
  ``await flush()``, vs raw aiokafka: ``futs = [await p.send(topic, value) ...]`` then
  ``await asyncio.gather(*futs)``.
* ``aiokafka async send_batch``: ``await send_batch(chunk)`` of prebuilt ``bus.Message``
  chunks, vs the same raw loop.
* ``aiokafka async poll_batch`` / ``aiokafka async iteration``: a ``poll_batch(500)``
  loop / ``async for m in consumer`` vs a raw ``getmany(max_records=500)`` loop.
* ``aiokafka async poll_batch vs raw async for`` / ``aiokafka async iteration vs raw
  async for``: the same two loops vs the raw loop most users write, ``async for record
  in consumer`` (one ``getone()`` per record).
* ``aiokafka async send vs faststream``: ``await send()`` one by one (waits for each
  acknowledgement) vs FastStream's ``await broker.publish(value, topic)``.
* ``aiokafka async enqueue vs faststream``: the enqueue loop vs FastStream's
  ``publish(value, topic, no_confirm=True)`` one by one, then gathering the futures.
* ``aiokafka async send_batch vs faststream``: ``send_batch`` vs FastStream's
  ``publish_batch(*values, topic=topic)`` (one aiokafka batch per call, acknowledged),
  same chunk size on both sides.

The goals of these rows are in ``bench/goals.py``.

FastStream (0.7) adds headers: ``publish`` two per message (``content-type`` and
``correlation_id``, a fresh uuid4; 62 bytes of names and values), ``publish_batch`` one
(``correlation_id``, one per call; 50 bytes). Its records are that much longer than
ours; the payload is the same.

Usage: ``python -m bench.aiokafka [--count N] [--quick] [--rounds R] [--bootstrap
HOST:PORT] [--only TEXT]`` (``--help`` lists the rest). Without ``--bootstrap`` or
``$KAFKA_BOOTSTRAP_SERVERS`` it starts its own single-node broker
(``tools/kafka_harness``, 127.0.0.1) and stops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

import backends.aiokafka
import bus
from bench._common import (
    BenchError,
    Broker,
    Clock,
    Contender,
    KafkaBench,
    Run,
    alternate,
    check,
    environment,
    environment_after,
    in_case_order,
    kafka_broker,
    kafka_counts,
    kafka_parser,
    kafka_plan,
    log,
    message_chunks,
    payload,
    printable,
    report,
    save,
    selected,
    settle_kafka,
    verify_read,
    with_other_cases,
)

PREFIX = "aiokafka "
SIZE = 100
PARTITIONS = 1
POLL = 500  # poll_batch(max_messages) and getmany(max_records)
POLL_TIMEOUT = 5.0  # a wait this long for the next batch means the data is not there
DRAIN_TIMEOUT = 0.3  # after the last message: nothing more may come
DEFAULT_CHUNK = 10_000  # messages per send_batch call
#: FastStream's publish_batch must fit one aiokafka batch (max_batch_size 1,000,000
#: bytes); with its correlation_id header a record takes ~165 bytes: 10,000 overflow.
DEFAULT_FASTSTREAM_CHUNK = 5_000
PACKAGES = ["polybus", "aiokafka", "faststream", "attrs", "cramjam"]
VALUE = payload(SIZE)


# -- what every run shares --------------------------------------------------------------------


class Kafka(KafkaBench):
    """The broker (admin on polybus' own aiokafka bus), and the client settings every
    contender uses."""

    def __init__(self, broker: Broker):
        super().__init__("aiokafka", broker, PARTITIONS)
        # The exact keyword arguments polybus gives AIOKafkaProducer and, for the bench's
        # group-less "earliest" consumer, AIOKafkaConsumer: asked of the backend.
        url = f"aiokafka://{self.bootstrap}"
        self.producer_kwargs = backends.aiokafka.producer_kwargs(url)
        self.consumer_kwargs = backends.aiokafka.consumer_kwargs(url, offset_reset="earliest")

    def producer(self) -> bus.AsyncProducer:
        return self.bus.async_producer()

    def consumer(self, topic: str) -> bus.AsyncConsumer:
        return self.bus.async_consumer(topic, offset_reset="earliest")

    async def expect_log(self, what: str, topic: str, n: int) -> None:
        """Fail unless ``topic`` holds exactly ``n`` records (offsets 0..n-1)."""
        checker = AIOKafkaConsumer(
            bootstrap_servers=self.producer_kwargs["bootstrap_servers"], enable_auto_commit=False
        )
        await checker.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
            low = await checker.beginning_offsets(tps)
            high = await checker.end_offsets(tps)
        finally:
            await checker.stop()
        for tp in tps:
            check(what, low[tp] == 0, f"partition {tp.partition} starts at offset {low[tp]}")
        total = sum(high.values())
        check(what, total == n, f"{total} records in {topic}, expected exactly {n}")


def in_loop(
    prepare: Callable[[], Any], work: Callable[[Any, int], Coroutine[Any, Any, Run]]
) -> Callable[[int], Run]:
    """A run: ``prepare()`` outside any loop (blocking admin: a fresh topic), then
    ``work(prepared, n)`` on a fresh event loop."""

    def run(n: int) -> Run:
        return asyncio.run(work(prepare(), n))

    return run


# -- producers ----------------------------------------------------------------------------------

RAW_SEND = "aiokafka send() futures + gather"


def polybus_enqueue(k: Kafka, label: str) -> Callable[[int], Run]:
    async def work(topic: str, n: int) -> Run:
        producer = k.producer()
        await producer.send(topic, VALUE)  # ready: started, producer id, topic metadata
        enqueue, value = producer.enqueue, VALUE
        with Clock(k, label) as clock:
            for _ in range(n):
                await enqueue(topic, value)
            await producer.flush()
        await producer.close()
        await k.expect_log(label, topic, n + 1)
        return clock.run(n)

    return in_loop(lambda: k.topic("enqueue"), work)


def polybus_send_batch(k: Kafka, label: str, chunk: int) -> Callable[[int], Run]:
    async def work(topic: str, n: int) -> Run:
        producer = k.producer()
        await producer.send(topic, VALUE)
        chunks = message_chunks(topic, VALUE, n, chunk)
        send_batch = producer.send_batch
        sent = 0
        last: bus.Delivery | None = None
        with Clock(k, label) as clock:
            for messages in chunks:
                deliveries = await send_batch(messages)
                sent += len(deliveries)
                last = deliveries[-1]
        await producer.close()
        check(label, sent == n, f"{sent} deliveries for {n} messages")
        check(label, last is not None and last.offset == n, f"last delivery {last}")
        await k.expect_log(label, topic, n + 1)
        return clock.run(n)

    return in_loop(lambda: k.topic("send-batch"), work)


def polybus_send(k: Kafka, label: str) -> Callable[[int], Run]:
    async def work(topic: str, n: int) -> Run:
        producer = k.producer()
        await producer.send(topic, VALUE)
        send, value = producer.send, VALUE
        delivery: bus.Delivery | None = None
        with Clock(k, label) as clock:
            for _ in range(n):
                delivery = await send(topic, value)
        await producer.close()
        check(label, delivery is not None and delivery.offset == n, f"last delivery {delivery}")
        await k.expect_log(label, topic, n + 1)
        return clock.run(n)

    return in_loop(lambda: k.topic("send"), work)


def raw_send(k: Kafka, label: str = RAW_SEND) -> Callable[[int], Run]:
    """The naive raw loop: await each ``send()`` (it waits only while aiokafka's
    accumulator is full) for its future, then gather them all."""

    async def work(topic: str, n: int) -> Run:
        producer = AIOKafkaProducer(**k.producer_kwargs)
        await producer.start()
        await producer.send_and_wait(topic, VALUE)
        send, value = producer.send, VALUE
        with Clock(k, label) as clock:
            futures = [await send(topic, value) for _ in range(n)]
            metas = await asyncio.gather(*futures)
        await producer.stop()
        check(label, len(metas) == n, f"{len(metas)} acknowledgements for {n} messages")
        check(label, metas[-1].offset == n, f"last offset {metas[-1].offset}, expected {n}")
        await k.expect_log(label, topic, n + 1)
        return clock.run(n)

    return in_loop(lambda: k.topic("raw"), work)


# -- a peer: FastStream's aiokafka broker -------------------------------------------------------

FASTSTREAM_SEND = "faststream aiokafka publish (confirmed)"
FASTSTREAM_ENQUEUE = "faststream aiokafka publish(no_confirm) + gather"
FASTSTREAM_BATCH = "faststream aiokafka publish_batch"


def faststream_kwargs(k: Kafka) -> dict[str, Any]:
    """Our producer's aiokafka arguments as ``KafkaBroker`` arguments (it passes them to
    its ``AIOKafkaProducer``); fail if FastStream does not take one of them."""
    from faststream.kafka import KafkaBroker

    taken = inspect.signature(KafkaBroker.__init__).parameters
    kwargs = {key: v for key, v in k.producer_kwargs.items() if key != "bootstrap_servers"}
    missing = [key for key in kwargs if key not in taken]
    check("faststream", not missing, f"KafkaBroker takes no {missing}: settings would differ")
    return kwargs


def faststream_publish(k: Kafka, label: str, mode: str, chunk: int = 0) -> Callable[[int], Run]:
    """A ``KafkaBroker`` connected, with one message acknowledged in the fresh topic,
    before the clock starts; then ``mode``: ``confirm`` (``await broker.publish(value,
    topic)`` N times), ``no_confirm`` (the same with ``no_confirm=True``, then gather the
    futures) or ``batch`` (``publish_batch(*values, topic=topic)`` per ``chunk``)."""
    from faststream.kafka import KafkaBroker

    async def work(topic: str, n: int) -> Run:
        broker = KafkaBroker(k.bootstrap, **faststream_kwargs(k))
        await broker.connect()
        try:
            await broker.publish(VALUE, topic)  # ready: started, producer id, metadata
            publish, publish_batch, value = broker.publish, broker.publish_batch, VALUE
            chunks = [[value] * min(chunk, n - s) for s in range(0, n, chunk)] if chunk else []
            with Clock(k, label) as clock:
                if mode == "confirm":
                    for _ in range(n):
                        meta = await publish(value, topic)
                elif mode == "no_confirm":
                    futures = [await publish(value, topic, no_confirm=True) for _ in range(n)]
                    meta = (await asyncio.gather(*futures))[-1]
                else:
                    for values in chunks:
                        meta = await publish_batch(*values, topic=topic)
        finally:
            await broker.stop()
        check(label, meta.offset + (len(chunks[-1]) if chunks else 1) == n + 1, f"last {meta}")
        await k.expect_log(label, topic, n + 1)
        return clock.run(n)

    return in_loop(lambda: k.topic("faststream"), work)


# -- consumers ----------------------------------------------------------------------------------

RAW_GETMANY = f"aiokafka getmany(max_records={POLL})"
RAW_ASYNC_FOR = "aiokafka async for record in consumer"


def _verify_read(what: str, read: int, n: int, last: Any, more: int) -> None:
    """``verify_read`` of a run whose last message (a ``bus.Message`` or an aiokafka
    record; None when nothing was read) is ``last``."""
    offset, value = (None, None) if last is None else (last.offset, last.value)
    verify_read(what, read, n, offset, value, more, VALUE)


async def _iterate(consumer: Any, n: int) -> tuple[int, Any]:
    """``async for`` over ``consumer`` (ours or aiokafka's) until the ``n``-th message:
    how many were read and the last one. Iteration waits while nothing comes: if the
    messages are not all there, a ``wait_for`` watchdog (``_within``) ends the wait and
    the count check fails."""
    read = 0
    async for m in consumer:
        read += 1
        if read == n:
            return read, m
    return read, None


async def _within(n: int, loop: Coroutine[Any, Any, tuple[int, Any]]) -> tuple[int, Any]:
    """``loop`` (an ``_iterate``), given 60 s + 0.1 ms per message: (0, None) after that."""
    with contextlib.suppress(asyncio.TimeoutError):
        return await asyncio.wait_for(loop, 60 + n / 10_000)
    return 0, None


def raw_getmany(
    k: Kafka, topic: str, total: int, label: str = RAW_GETMANY, one: bool = False
) -> Callable[[int], Run]:
    """Our consumer's arguments; like our group-less consumer, start, then ``assign``
    every partition of the topic (no committed offsets: read from the earliest). The
    partitions are known here; ours asks the cluster for them, one more round trip.
    Then a ``getmany(max_records=500)`` loop, or with ``one`` the loop most users write,
    ``async for record in consumer`` (one ``getone()`` per record)."""

    async def work(_: None, n: int) -> Run:
        consumer = AIOKafkaConsumer(**k.consumer_kwargs)
        getmany = consumer.getmany
        read = 0
        last: Any = None
        more = 0
        try:
            with Clock(k, label) as clock:
                await consumer.start()
                consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
                if one:
                    read, last = await _within(n, _iterate(consumer, n))
                else:
                    while read < n:
                        batches = await getmany(
                            timeout_ms=int(POLL_TIMEOUT * 1000), max_records=min(POLL, n - read)
                        )
                        if not batches:
                            break
                        for records in batches.values():
                            read += len(records)
                            last = records[-1]
            if n == total:
                extra = await consumer.getmany(timeout_ms=int(DRAIN_TIMEOUT * 1000))
                more = sum(len(r) for r in extra.values())
        finally:
            await consumer.stop()
        _verify_read(label, read, n, last, more)
        return clock.run(read)

    return in_loop(lambda: None, work)


def polybus_poll_batch(k: Kafka, topic: str, total: int, label: str) -> Callable[[int], Run]:
    async def work(_: None, n: int) -> Run:
        consumer = k.consumer(topic)
        poll_batch = consumer.poll_batch
        read = 0
        last: bus.Message | None = None
        with Clock(k, label) as clock:
            while read < n:
                batch = await poll_batch(min(POLL, n - read), timeout=POLL_TIMEOUT)
                if not batch:
                    break
                read += len(batch)
                last = batch[-1]
        more = 0
        if n == total:
            more = len(await consumer.poll_batch(POLL, timeout=DRAIN_TIMEOUT))
        await consumer.close()
        _verify_read(label, read, n, last, more)
        return clock.run(read)

    return in_loop(lambda: None, work)


def polybus_iteration(k: Kafka, topic: str, total: int, label: str) -> Callable[[int], Run]:
    async def work(_: None, n: int) -> Run:
        consumer = k.consumer(topic)
        with Clock(k, label) as clock:
            read, last = await _within(n, _iterate(consumer, n))
        more = 0
        if read == n == total:
            more = len(await consumer.poll_batch(POLL, timeout=DRAIN_TIMEOUT))
        await consumer.close()
        _verify_read(label, read, n, last, more)
        return clock.run(read)

    return in_loop(lambda: None, work)


def pre_produce(k: Kafka, n: int) -> str:
    """The consumers' topic: ``n`` messages, written once with the raw producer (this
    also warms the broker up before any timed run)."""
    topic = k.topic("consume")

    async def work() -> float:
        producer = AIOKafkaProducer(**k.producer_kwargs)
        await producer.start()
        started = time.perf_counter()
        try:
            futures = [await producer.send(topic, VALUE) for _ in range(n)]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()
        seconds = time.perf_counter() - started
        await k.expect_log("pre-produce", topic, n)
        return seconds

    seconds = asyncio.run(work())
    log(f"pre-produced {n:,} messages to {topic} ({seconds:.1f} s, {n / seconds:,.0f} msg/s)")
    return topic


# -- main -------------------------------------------------------------------------------------


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = kafka_parser(
        "python -m bench.aiokafka",
        (__doc__ or "").splitlines()[0],
        default_count=100_000,
        quick_count=10_000,
        sizes=[
            (
                "--chunk",
                DEFAULT_CHUNK,
                f"messages per send_batch call against raw aiokafka (default {DEFAULT_CHUNK:,})",
            ),
            (
                "--faststream-chunk",
                DEFAULT_FASTSTREAM_CHUNK,
                "messages per send_batch / publish_batch call in the FastStream batch pair "
                f"(default {DEFAULT_FASTSTREAM_CHUNK:,})",
            ),
        ],
    )
    return settle_kafka(p.parse_args(argv))


#: (ours, baseline, extra row fields, warm-up messages)
Pair = tuple[Contender, Contender, dict[str, Any], int]

ENQUEUE = "aiokafka async enqueue"
SEND_BATCH = "aiokafka async send_batch"
POLL_BATCH = "aiokafka async poll_batch"
ITERATION = "aiokafka async iteration"
POLL_BATCH_VS_ASYNC_FOR = "aiokafka async poll_batch vs raw async for"
ITERATION_VS_ASYNC_FOR = "aiokafka async iteration vs raw async for"
SEND_VS_FASTSTREAM = "aiokafka async send vs faststream"
ENQUEUE_VS_FASTSTREAM = "aiokafka async enqueue vs faststream"
BATCH_VS_FASTSTREAM = "aiokafka async send_batch vs faststream"
CASES = (
    ENQUEUE,
    SEND_BATCH,
    POLL_BATCH,
    POLL_BATCH_VS_ASYNC_FOR,
    ITERATION,
    ITERATION_VS_ASYNC_FOR,
    SEND_VS_FASTSTREAM,
    ENQUEUE_VS_FASTSTREAM,
    BATCH_VS_FASTSTREAM,
)


def _pairs(k: Kafka, args: argparse.Namespace, cases: list[str]) -> list[Pair]:
    n, chunk, m, s = args.count, args.chunk, args.consume_count, args.send_count
    fn, fchunk = args.faststream_count, args.faststream_chunk
    raw = Contender(RAW_SEND, n, raw_send(k))
    pairs: list[Pair] = []
    batched, each = f"poll_batch({POLL}) loop", "async for m in consumer"
    consumers = [
        pair
        for pair in (
            (POLL_BATCH, polybus_poll_batch, batched, RAW_GETMANY, False),
            (POLL_BATCH_VS_ASYNC_FOR, polybus_poll_batch, batched, RAW_ASYNC_FOR, True),
            (ITERATION, polybus_iteration, each, RAW_GETMANY, False),
            (ITERATION_VS_ASYNC_FOR, polybus_iteration, each, RAW_ASYNC_FOR, True),
        )
        if pair[0] in cases
    ]
    if consumers:
        topic = pre_produce(k, m)
        note = {
            "group": None,
            "offset_reset": "earliest",
            "max_messages": POLL,
            "timed": "consumer start + reading M messages",
        }
        for case, ours, path, peer, one in consumers:
            pairs.append(
                (
                    Contender(case, m, ours(k, topic, m, case)),
                    Contender(peer, m, raw_getmany(k, topic, m, peer, one)),
                    {"path": path, **note},
                    1000,
                )
            )
    if ENQUEUE in cases:
        pairs.append(
            (
                Contender(ENQUEUE, n, polybus_enqueue(k, ENQUEUE)),
                raw,
                {
                    "path": "await enqueue() one by one, then flush()",
                    "baseline_path": "futs = [await send() ...]; gather(*futs)",
                },
                1000,
            )
        )
    if SEND_BATCH in cases:
        pairs.append(
            (
                Contender(SEND_BATCH, n, polybus_send_batch(k, SEND_BATCH, chunk)),
                raw,
                {
                    "path": f"send_batch of {chunk:,} prebuilt Messages",
                    "baseline_path": "futs = [await send() ...]; gather(*futs)",
                    "chunk": chunk,
                },
                1000,
            )
        )
    if SEND_VS_FASTSTREAM in cases:
        pairs.append(
            (
                Contender(SEND_VS_FASTSTREAM, s, polybus_send(k, SEND_VS_FASTSTREAM)),
                Contender(FASTSTREAM_SEND, s, faststream_publish(k, FASTSTREAM_SEND, "confirm")),
                {
                    "path": "await send() one by one (waits for each ack)",
                    "baseline_path": "await broker.publish(value, topic) one by one",
                },
                10,
            )
        )
    if ENQUEUE_VS_FASTSTREAM in cases:
        pairs.append(
            (
                Contender(ENQUEUE_VS_FASTSTREAM, n, polybus_enqueue(k, ENQUEUE_VS_FASTSTREAM)),
                Contender(
                    FASTSTREAM_ENQUEUE, fn, faststream_publish(k, FASTSTREAM_ENQUEUE, "no_confirm")
                ),
                {
                    "path": "await enqueue() one by one, then flush()",
                    "baseline_path": "publish(no_confirm=True) one by one, then gather",
                },
                1000,
            )
        )
    if BATCH_VS_FASTSTREAM in cases:
        pairs.append(
            (
                Contender(
                    BATCH_VS_FASTSTREAM, n, polybus_send_batch(k, BATCH_VS_FASTSTREAM, fchunk)
                ),
                Contender(
                    FASTSTREAM_BATCH, fn, faststream_publish(k, FASTSTREAM_BATCH, "batch", fchunk)
                ),
                {
                    "path": f"send_batch of {fchunk:,} prebuilt Messages",
                    "baseline_path": f"publish_batch(*values, topic=...) of {fchunk:,}",
                    "chunk": fchunk,
                },
                1000,
            )
        )
    return pairs


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    rounds = args.rounds
    cases = selected(CASES, args.only)
    begun = time.perf_counter()
    start = environment(PACKAGES)
    rows = []
    with kafka_broker(args.bootstrap, "bench.aiokafka") as broker:
        k = Kafka(broker)
        try:
            log(
                kafka_plan("bench.aiokafka", args, SIZE, broker, start, "publish(no_confirm)/batch")
            )
            for ours, peer, extra, warmup in _pairs(k, args, cases):
                mine, theirs = alternate(ours, peer, rounds, warmup=warmup)
                rows.append(k.row(mine, theirs, rounds, SIZE, **extra))
        except BenchError as error:
            log(f"bench.aiokafka FAILED: {error}")
            return 1
        finally:
            k.close()
        env = environment_after(
            PACKAGES,
            start,
            broker=broker.source,
            **kafka_counts(args),
            chunk=args.chunk,
            faststream_chunk=args.faststream_chunk,
            partitions=PARTITIONS,
            producer_kwargs=printable(k.producer_kwargs),
            consumer_kwargs=printable(k.consumer_kwargs),
            seconds=round(time.perf_counter() - begun, 1),
        )
    output: Path = args.output
    save(output, "aiokafka", PREFIX, with_other_cases(output, rows, PREFIX, CASES), env)
    report(in_case_order(rows, CASES), rounds, env, output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
