"""Round-trip throughput of the ``memory://`` backend against in-memory peers.

Each run moves N messages of 100 bytes through a fresh named broker
(``memory://bench-<uuid>``): produce all, then consume all with ``poll_batch(500)``;
msg/s = N / (time to produce and read them all). The topic (1 partition) and the
consumer (no group, ``offset_reset="earliest"``) exist before the clock starts, and
so do the ``bus.Message`` inputs of the send_batch cases. Every run must read
exactly N messages, the last one at offset N-1 with the value sent, or the benchmark
fails.

Peers, run in turns with our cases in the same process:

* kombu ``memory://``: ``Producer.publish`` of raw bytes one by one (queue declared
  before timing), then ``SimpleQueue.get_nowait()`` with ``no_ack=True`` until empty
  (the fastest honest drain we found; a ``Consumer`` + ``drain_events`` was slower, and
  ``no_ack`` matches our group-less consumer, which commits nothing). Paired with the
  sync cases.
* FastStream ``TestKafkaBroker``: ``await br.publish(payload, topic)`` N times; the
  in-memory test client hands every message to the subscriber (which counts it)
  inside ``publish``. Paired with the async cases.

The peers are far slower, so by default they move fewer messages (kombu 100,000,
FastStream 50,000; rates are per message, and a smaller run only flatters the peer).

Usage: ``python -m bench.memory [--count N] [--quick] [--rounds R] [--output PATH]``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from queue import Empty
from typing import Any

import bus
from bench._common import (
    BenchError,
    Contender,
    Run,
    Stopwatch,
    alternate,
    check,
    environment,
    environment_after,
    expect_count,
    in_new_loop,
    log,
    message_chunks,
    parser,
    payload,
    report,
    row,
    save,
    settle,
    verify_read,
)
from bus.testing.helpers import fresh_url

PREFIX = "memory "
OTEL_CASE = "memory sync enqueue, otel interceptor"
OTEL_CAP = 100_000
TOPIC = "bench"
SIZE = 100
POLL = 500  # poll_batch(max_messages)
POLL_TIMEOUT = 1.0  # never reached while messages are waiting; ends a short run
DEFAULT_CHUNK = 1000  # messages per send_batch call
KOMBU_CAP = 100_000
FASTSTREAM_CAP = 50_000
PACKAGES = ["polybus", "attrs", "kombu", "faststream"]
VALUE = payload(SIZE)


@contextlib.contextmanager
def _fresh(**options: Any) -> Iterator[bus.Bus]:
    """A bus on a new memory broker with ``TOPIC``; the broker is dropped afterwards,
    so the log of one run is not kept through the next."""
    with fresh_url("memory") as url, bus.connect(url, **options) as b:
        b.create_topic(TOPIC, partitions=1)
        yield b


def _verify(
    case: str, read: int, n: int, last: bus.Message | None, rest: list[bus.Message]
) -> None:
    offset, value = (None, None) if last is None else (last.offset, last.value)
    verify_read(case, read, n, offset, value, len(rest), VALUE)


# -- ours: blocking API -----------------------------------------------------------------------


def _sync(n: int, chunks: list[list[bus.Message]] | None, case: str, **options: Any) -> Run:
    with _fresh(**options) as b:
        producer = b.producer()
        consumer = b.consumer(TOPIC, offset_reset="earliest")
        enqueue, send_batch, poll_batch = producer.enqueue, producer.send_batch, consumer.poll_batch
        value = VALUE
        sent = 0
        read = 0
        batch: list[bus.Message] = []
        last = None
        with Stopwatch() as clock:
            if chunks is None:
                for _ in range(n):
                    enqueue(TOPIC, value)
                producer.flush()
                sent = n
            else:
                for messages in chunks:
                    sent += len(send_batch(messages))
            while read < n:
                batch = poll_batch(POLL, timeout=POLL_TIMEOUT)
                if not batch:
                    break
                read += len(batch)
                last = batch[-1]
        check(case, sent == n, f"{sent} deliveries for {n} messages")
        _verify(case, read, n, last, poll_batch(POLL, timeout=0))
        producer.close()
        consumer.close()
        return Run(read, clock.wall, clock.cpu)


def sync_enqueue(n: int) -> Run:
    return _sync(n, None, "memory sync enqueue")


def sync_enqueue_otel(n: int) -> Run:
    """As ``sync_enqueue``, every client with the otel interceptor on an SDK tracer and
    meter provider that record (and export nowhere): the cost of tracing."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    from bus.otel import OpenTelemetryInterceptor

    tracing = OpenTelemetryInterceptor(
        {"backend": "memory"}, tracer_provider=TracerProvider(), meter_provider=MeterProvider()
    )
    return _sync(n, None, OTEL_CASE, interceptors=[tracing])


def sync_send_batch(chunk: int) -> Callable[[int], Run]:
    def work(n: int) -> Run:
        return _sync(n, message_chunks(TOPIC, VALUE, n, chunk), "memory sync send_batch")

    return work


# -- ours: asyncio API ------------------------------------------------------------------------


async def _async(n: int, chunks: list[list[bus.Message]] | None, case: str) -> Run:
    with _fresh() as b:
        producer = b.async_producer()
        consumer = b.async_consumer(TOPIC, offset_reset="earliest")
        enqueue, send_batch, poll_batch = producer.enqueue, producer.send_batch, consumer.poll_batch
        value = VALUE
        sent = 0
        read = 0
        batch: list[bus.Message] = []
        last = None
        with Stopwatch() as clock:
            if chunks is None:
                for _ in range(n):
                    await enqueue(TOPIC, value)
                await producer.flush()
                sent = n
            else:
                for messages in chunks:
                    sent += len(await send_batch(messages))
            while read < n:
                batch = await poll_batch(POLL, timeout=POLL_TIMEOUT)
                if not batch:
                    break
                read += len(batch)
                last = batch[-1]
        check(case, sent == n, f"{sent} deliveries for {n} messages")
        _verify(case, read, n, last, await poll_batch(POLL, timeout=0))
        await producer.close()
        await consumer.close()
        return Run(read, clock.wall, clock.cpu)


async def _async_enqueue(n: int) -> Run:
    return await _async(n, None, "memory async enqueue")


async_enqueue = in_new_loop(_async_enqueue)


def async_send_batch(chunk: int) -> Callable[[int], Run]:
    async def work(n: int) -> Run:
        return await _async(n, message_chunks(TOPIC, VALUE, n, chunk), "memory async send_batch")

    return in_new_loop(work)


# -- peers ------------------------------------------------------------------------------------

KOMBU = "kombu memory:// publish + SimpleQueue.get_nowait"
FASTSTREAM = "faststream TestKafkaBroker publish"


def kombu_round_trip(n: int) -> Run:
    from kombu import Connection, Exchange, Producer, Queue

    name = f"bench-{uuid.uuid4().hex}"
    with Connection("memory://") as conn:
        exchange = Exchange(name, type="direct")
        queue = Queue(name, exchange, routing_key=name)
        channel = conn.channel()
        queue(channel).declare()  # exchange, queue and binding: before timing, like our topic
        producer = Producer(channel, exchange=exchange, routing_key=name, auto_declare=False)
        simple = conn.SimpleQueue(queue, no_ack=True)
        publish, get_nowait = producer.publish, simple.get_nowait
        value = VALUE
        read = 0
        last: Any = None
        with Stopwatch() as clock:
            for _ in range(n):
                publish(value, routing_key=name, serializer=None)
            while True:
                try:
                    last = get_nowait()
                except Empty:
                    break
                read += 1
        expect_count(KOMBU, read, n)
        check(KOMBU, last is not None and last.body == VALUE, "the last body is not what was sent")
        simple.close()
        queue(channel).delete()
        channel.close()
    return Run(read, clock.wall, clock.cpu)


async def _faststream_round_trip(n: int) -> Run:
    from faststream.kafka import KafkaBroker, TestKafkaBroker

    topic = f"bench-{uuid.uuid4().hex}"
    broker = KafkaBroker()
    seen: dict[str, Any] = {"count": 0, "last": None}

    @broker.subscriber(topic)
    async def handle(body: bytes) -> None:
        seen["count"] += 1
        seen["last"] = body

    value = VALUE
    async with TestKafkaBroker(broker) as br:
        publish = br.publish
        with Stopwatch() as clock:
            for _ in range(n):
                await publish(value, topic)
    expect_count(FASTSTREAM, seen["count"], n)
    check(FASTSTREAM, seen["last"] == VALUE, "the last body is not what was sent")
    return Run(seen["count"], clock.wall, clock.cpu)


faststream_round_trip = in_new_loop(_faststream_round_trip)


# -- main -------------------------------------------------------------------------------------


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = parser(
        "python -m bench.memory",
        (__doc__ or "").splitlines()[0],
        default_count=1_000_000,
        quick_count=20_000,
    )
    p.add_argument(
        "--chunk",
        type=int,
        default=DEFAULT_CHUNK,
        help=f"messages per send_batch call (default {DEFAULT_CHUNK})",
    )
    p.add_argument(
        "--kombu-count",
        type=int,
        default=None,
        help=f"messages per kombu run (default min(count, {KOMBU_CAP:,}))",
    )
    p.add_argument(
        "--faststream-count",
        type=int,
        default=None,
        help=f"messages per FastStream run (default min(count, {FASTSTREAM_CAP:,}); "
        "--quick: 5,000)",
    )
    p.add_argument(
        "--otel-count",
        type=int,
        default=OTEL_CAP,
        help=f"messages per run with and without the otel interceptor (default {OTEL_CAP:,})",
    )
    args = settle(p.parse_args(argv))
    if args.kombu_count is None:
        args.kombu_count = min(args.count, KOMBU_CAP)
    if args.faststream_count is None:
        args.faststream_count = min(args.count, 5_000 if args.quick else FASTSTREAM_CAP)
    if min(args.chunk, args.kombu_count, args.faststream_count) < 1:
        raise SystemExit("--chunk, --kombu-count and --faststream-count must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    n, rounds, chunk = args.count, args.rounds, args.chunk
    kombu = Contender(KOMBU, args.kombu_count, kombu_round_trip)
    faststream = Contender(FASTSTREAM, args.faststream_count, faststream_round_trip)
    traced = min(n, args.otel_count)
    pairs = [
        (Contender("memory sync enqueue", n, sync_enqueue), kombu, "enqueue one by one"),
        (
            Contender(OTEL_CASE, traced, sync_enqueue_otel),
            Contender("memory sync enqueue, no interceptors", traced, sync_enqueue),
            "enqueue one by one; spans and metrics recorded by the OpenTelemetry SDK",
        ),
        (
            Contender("memory sync send_batch", n, sync_send_batch(chunk)),
            kombu,
            f"send_batch of {chunk} prebuilt Messages",
        ),
        (Contender("memory async enqueue", n, async_enqueue), faststream, "enqueue one by one"),
        (
            Contender("memory async send_batch", n, async_send_batch(chunk)),
            faststream,
            f"send_batch of {chunk} prebuilt Messages",
        ),
    ]
    start = environment(PACKAGES)
    log(
        f"bench.memory: {n:,} messages of {SIZE} bytes per run, {rounds} round(s); "
        f"kombu {kombu.n:,}, FastStream {faststream.n:,}; "
        f"{start['cpu_count']} CPUs, load {start['loadavg_1_5_15']}"
    )
    rows = []
    try:
        for ours, peer, path in pairs:
            mine, theirs = alternate(ours, peer, rounds)
            extra: dict[str, Any] = {}
            if ours.name == OTEL_CASE:  # what tracing adds to each message, produced and read
                extra["cost_ns_per_message"] = round((1 / mine.best - 1 / theirs.best) * 1e9)
                log(f"  the otel interceptor costs {extra['cost_ns_per_message']:,} ns a message")
            rows.append(
                row(
                    ours.name,
                    mine,
                    theirs,
                    path=path,
                    size=SIZE,
                    rounds=rounds,
                    consume=f"poll_batch({POLL})",
                    **extra,
                )
            )
    except BenchError as error:
        log(f"bench.memory FAILED: {error}")
        return 1
    env = environment_after(PACKAGES, start, count=n, rounds=rounds, chunk=chunk)
    output: Path = args.output
    save(output, "memory", PREFIX, rows, env)
    report(rows, rounds, env, output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
