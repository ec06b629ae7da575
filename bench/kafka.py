"""Throughput of the kafka:// backend beside confluent-kafka, kcat and FastStream.

All run on a real Apache Kafka broker. Every message is 100 bytes (printable, no
newline, so that kcat reads the same bytes as lines). Every producer, ours and the
peers', runs with the librdkafka producer settings polybus itself gives
confluent-kafka, captured from the backend rather than retyped: acks=all, idempotence
on, linger.ms 5, batch.size 1,000,000, compression none, partitioner murmur2_random,
message.timeout.ms 120000. Each producer run writes to a fresh 1-partition topic,
created before the clock starts, and must leave exactly N records in it (the high
watermark is checked) with no delivery failure. Producers are made, and have
delivered one message to a warm-up topic, before the clock starts.

The consumer runs read one 1-partition topic, written once at the start with M
messages: each run makes a fresh consumer that reads from the earliest offset, timed
from the first poll to the M-th message. Every run must read exactly M, the last at
offset M-1 with the value sent, and nothing after it.

Pairs (ours, then the baseline, in turns in one process):

* ``kafka sync enqueue``: ``Producer.enqueue`` loop + ``flush()`` vs the raw
  confluent-kafka loop: ``produce(on_delivery=...)`` + ``poll(0)``, then ``flush()``.
* ``kafka sync send_batch``: ``send_batch`` of prebuilt ``bus.Message`` chunks vs the
  same raw loop.
* ``kafka sync poll_batch`` / ``kafka sync iteration``: a ``poll_batch(500)`` loop /
  ``for m in consumer`` vs a raw ``consume(500, timeout)`` loop; no group on either side
  (every partition assigned from the beginning), the consumer settings polybus uses.
* ``kafka sync poll_batch vs raw poll`` / ``kafka sync iteration vs raw poll``: the same
  two loops vs the raw loop most users write, ``poll(timeout)``: one message per call.
* ``kafka sync enqueue vs kcat``: the enqueue loop again, vs one ``kcat -P -l FILE``
  process with the same ``-X`` settings, timed from start to exit (its start-up, about
  10 ms, is recorded as ``kcat_one_message_s``).
* ``kafka sync send vs faststream`` / ``kafka sync enqueue vs faststream``: FastStream's
  confluent ``KafkaBroker`` publisher, ``await publisher.publish(value)`` one at a time
  (waits for each acknowledgement) / ``publish(value, no_confirm=True)`` then awaiting
  all the futures.

Usage: ``python -m bench.kafka [--count N] [--quick] [--rounds R] [--bootstrap HOST:PORT]``
(``--help`` lists the rest). Without ``--bootstrap`` or ``$KAFKA_BOOTSTRAP_SERVERS`` it
starts its own single-node broker (``tools/kafka_harness``) and stops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from confluent_kafka import Consumer as RawConsumer
from confluent_kafka import Producer as RawProducer

import backends.kafka
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
    in_new_loop,
    kafka_broker,
    kafka_counts,
    kafka_parser,
    kafka_plan,
    log,
    message_chunks,
    printable,
    report,
    save,
    selected,
    settle_kafka,
    verify_read,
    with_other_cases,
)

PREFIX = "kafka "
SIZE = 100
PARTITIONS = 1
POLL = 500  # poll_batch(max_messages) and consume(num_messages)
POLL_TIMEOUT = 5.0  # a wait this long for the next batch means the data is not there
DRAIN_TIMEOUT = 0.3  # after the last message: nothing more may come
DEFAULT_CHUNK = 10_000  # messages per send_batch call
PACKAGES = ["polybus", "confluent-kafka", "faststream", "attrs"]
#: 100 printable bytes, no newline: the value of every message (kcat reads lines).
VALUE = bytes(33 + (i * 7 + 13) % 94 for i in range(SIZE))


# -- what every run shares --------------------------------------------------------------------


class Kafka(KafkaBench):
    """The broker on polybus' kafka:// bus, and the settings every contender uses."""

    def __init__(
        self,
        broker: Broker,
        producer_extra: dict[str, str] | None = None,
        consumer_extra: dict[str, str] | None = None,
    ):
        super().__init__("kafka", broker, PARTITIONS)
        self.producer_extra = producer_extra or {}
        self.consumer_extra = consumer_extra or {}
        self._tmp = Path(tempfile.mkdtemp(prefix="bench-kafka-"))
        self._lines: dict[int, Path] = {}
        self._checker = RawConsumer(
            {"bootstrap.servers": self.bootstrap, "group.id": "bench-watermarks"}
        )
        # The exact librdkafka configs polybus gives confluent-kafka for the bench's
        # producer and group-less "earliest" consumer: asked of the backend, not retyped.
        url = f"kafka://{self.bootstrap}"
        self.producer_conf = backends.kafka.producer_config(url, config=self.producer_extra)
        self.consumer_conf = backends.kafka.consumer_config(
            url, offset_reset="earliest", config=self.consumer_extra
        )
        self.warm_topic = self.topic("warm-up")

    def ready(self, producer: bus.Producer | Any) -> None:
        """Wait until a new producer can deliver: one acknowledged message to the warm-up
        topic. (An idempotent librdkafka 2.16 producer delivers nothing in its first
        ~0.5 s, while it gets its producer id; that start-up is not what we measure.)"""
        if isinstance(producer, bus.Producer):
            producer.send(self.warm_topic, VALUE)
            return
        errors: list[Any] = []
        producer.produce(self.warm_topic, VALUE, on_delivery=lambda err, msg: errors.append(err))
        left = producer.flush(30)
        check("warm-up", left == 0 and errors == [None], f"{left} unflushed, {errors}")

    def producer(self) -> bus.Producer:
        return self.bus.producer(config=self.producer_extra)

    def consumer(self, topic: str) -> bus.Consumer:
        return self.bus.consumer(topic, offset_reset="earliest", config=self.consumer_extra)

    def expect_log(self, what: str, topic: str, n: int) -> None:
        """Fail unless ``topic`` holds exactly ``n`` records (offsets 0..n-1)."""
        total = 0
        for p in range(PARTITIONS):
            low, high = self._checker.get_watermark_offsets(
                TopicPartition(topic, p), timeout=10, cached=False
            )
            check(what, low == 0, f"partition {p} starts at offset {low}")
            total += high
        check(what, total == n, f"{total} records in {topic}, expected exactly {n}")

    def lines(self, n: int) -> Path:
        """A file of ``n`` lines, each the 100-byte value: kcat's input."""
        path = self._lines.get(n)
        if path is None:
            path = self._tmp / f"values-{n}.txt"
            path.write_bytes((VALUE + b"\n") * n)
            self._lines[n] = path
        return path

    def close(self) -> None:
        self._checker.close()
        shutil.rmtree(self._tmp, ignore_errors=True)
        super().close()


# -- producers ----------------------------------------------------------------------------------

RAW_PRODUCE = "confluent-kafka produce+poll"


def polybus_enqueue(k: Kafka, label: str) -> Callable[[int], Run]:
    def work(n: int) -> Run:
        topic = k.topic("enqueue")
        producer = k.producer()
        k.ready(producer)
        enqueue, value = producer.enqueue, VALUE
        with Clock(k, label) as clock:
            for _ in range(n):
                enqueue(topic, value)
            producer.flush()
        producer.close()
        k.expect_log(label, topic, n)
        return clock.run(n)

    return work


def polybus_send_batch(k: Kafka, label: str, chunk: int) -> Callable[[int], Run]:
    def work(n: int) -> Run:
        topic = k.topic("send-batch")
        producer = k.producer()
        k.ready(producer)
        chunks = message_chunks(topic, VALUE, n, chunk)
        send_batch = producer.send_batch
        sent = 0
        with Clock(k, label) as clock:
            for messages in chunks:
                sent += len(send_batch(messages))
        producer.close()
        check(label, sent == n, f"{sent} deliveries for {n} messages")
        k.expect_log(label, topic, n)
        return clock.run(n)

    return work


def polybus_send(k: Kafka, label: str) -> Callable[[int], Run]:
    def work(n: int) -> Run:
        topic = k.topic("send")
        producer = k.producer()
        k.ready(producer)
        send, value = producer.send, VALUE
        with Clock(k, label) as clock:
            for _ in range(n):
                send(topic, value)
        producer.close()
        k.expect_log(label, topic, n)
        return clock.run(n)

    return work


def raw_produce(k: Kafka, label: str = RAW_PRODUCE) -> Callable[[int], Run]:
    """What a careful raw user writes: a delivery callback that keeps failures, waiting
    (serving reports) while librdkafka's queue is full, ``poll(0)`` after each."""

    def work(n: int) -> Run:
        topic = k.topic("raw")
        producer = RawProducer(dict(k.producer_conf))
        k.ready(producer)
        errors: list[Any] = []

        def report(err: Any, msg: Any) -> None:
            if err is not None:
                errors.append(err)

        produce, poll, value = producer.produce, producer.poll, VALUE
        with Clock(k, label) as clock:
            for _ in range(n):
                while True:
                    try:
                        produce(topic, value, on_delivery=report)
                        break
                    except BufferError:
                        poll(0.1)
                poll(0)
            left = producer.flush(120)
        check(label, left == 0 and not errors, f"{left} unflushed, errors {errors[:3]}")
        k.expect_log(label, topic, n)
        return clock.run(n)

    return work


# -- the C limit: kcat ------------------------------------------------------------------------

KCAT = "kcat -P -l (librdkafka, C)"


def kcat_command(k: Kafka, topic: str, path: Path) -> list[str]:
    """``kcat -P`` with every setting of our producer as ``-X key=value``."""
    settings = [
        f"{key}={str(v).lower() if isinstance(v, bool) else v}"
        for key, v in k.producer_conf.items()
        if key not in ("bootstrap.servers", "logger")
    ]
    return [
        "kcat", "-b", k.bootstrap, "-t", topic, "-P", "-q",
        *(arg for s in settings for arg in ("-X", s)),
        "-l", str(path),
    ]  # fmt: skip


def kcat_version() -> str:
    done = subprocess.run(["kcat", "-V"], capture_output=True, text=True, check=False)
    lines = [line.strip() for line in done.stdout.splitlines() if line.startswith("Version")]
    return lines[0] if lines else "?"


def kcat_fixed_cost(k: Kafka, runs: int = 5) -> float:
    """Seconds a kcat process takes to start, send one message and exit (best of
    ``runs``): what every kcat run pays besides moving the messages."""
    best = float("inf")
    for _ in range(runs):
        cmd = kcat_command(k, k.warm_topic, k.lines(1))
        started = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, check=False, timeout=60)
        best = min(best, time.perf_counter() - started)
        check(KCAT, done.returncode == 0, f"exit {done.returncode}: {done.stderr[-500:]!r}")
    return round(best, 4)


def kcat_produce(k: Kafka, label: str = KCAT) -> Callable[[int], Run]:
    """One kcat process per run, start to exit; the CPU time is the child's."""

    def work(n: int) -> Run:
        topic = k.topic("kcat")
        cmd = kcat_command(k, topic, k.lines(n))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        with Clock(k, label) as clock:
            done = subprocess.run(cmd, capture_output=True, check=False, timeout=600)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        check(label, done.returncode == 0, f"exit {done.returncode}: {done.stderr[-500:]!r}")
        k.expect_log(label, topic, n)
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        return Run(n, clock.wall, cpu)

    return work


# -- a peer: FastStream's confluent publisher -------------------------------------------------

FASTSTREAM_SEND = "faststream confluent publish (confirmed)"
FASTSTREAM_ENQUEUE = "faststream confluent publish(no_confirm)"


def faststream_config(k: Kafka) -> dict[str, Any]:
    """Our producer settings as FastStream's ``config=`` (merged over its own settings);
    FastStream passes its own logger."""
    return {
        key: v for key, v in k.producer_conf.items() if key not in ("bootstrap.servers", "logger")
    }


def faststream_publish(k: Kafka, label: str, confirm: bool) -> Callable[[int], Run]:
    """A ``KafkaBroker`` connected before the clock starts; ``publish`` N times through
    ``broker.publisher(topic)``, awaiting each acknowledgement (``confirm``) or, with
    ``no_confirm=True``, gathering the futures at the end."""
    from faststream.confluent import KafkaBroker

    async def work(n: int) -> Run:
        topic = k.topic("faststream")
        broker = KafkaBroker(k.bootstrap, config=faststream_config(k))  # type: ignore[arg-type]
        publisher = broker.publisher(topic)
        value = VALUE
        async with broker:
            await broker.start()
            await broker.publish(value, k.warm_topic)  # ready: see Kafka.ready
            publish = publisher.publish
            with Clock(k, label) as clock:
                if confirm:
                    for _ in range(n):
                        await publish(value)
                    acked = n
                else:
                    futures = []
                    for _ in range(n):
                        while True:
                            try:
                                futures.append(await publish(value, no_confirm=True))
                                break
                            except BufferError:  # librdkafka's queue is full: let
                                await asyncio.sleep(0.001)  # FastStream's poll task run
                    acked = len(await asyncio.gather(*futures))
        check(label, acked == n, f"{acked} acknowledgements for {n} messages")
        k.expect_log(label, topic, n)
        return clock.run(n)

    return in_new_loop(work)


# -- consumers ----------------------------------------------------------------------------------

RAW_CONSUME = f"confluent-kafka consume({POLL})"
RAW_POLL = "confluent-kafka poll() loop"


def raw_consume(
    k: Kafka, topic: str, total: int, label: str = RAW_CONSUME, one: bool = False
) -> Callable[[int], Run]:
    """Our consumer's settings; like our group-less consumer's constructor, fetch the
    topic's metadata and ``assign`` its partitions from the beginning before timing.
    Then a ``consume(500, timeout)`` loop, or with ``one`` the loop most users write,
    ``poll(timeout)``: one message per call. Each message's ``error()`` is checked."""

    def work(n: int) -> Run:
        consumer = RawConsumer(dict(k.consumer_conf))
        consumer.list_topics(topic, timeout=10)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        consume, poll = consumer.consume, consumer.poll
        read = 0
        last: Any = None
        with Clock(k, label) as clock:
            if one:
                while read < n:
                    m = poll(POLL_TIMEOUT)
                    if m is None:
                        break
                    if m.error() is not None:
                        raise BenchError(f"{label}: {m.error()}")
                    read += 1
                    last = m
            else:
                while read < n:
                    batch = consume(POLL, POLL_TIMEOUT)
                    if not batch:
                        break
                    for m in batch:
                        if m.error() is not None:
                            raise BenchError(f"{label}: {m.error()}")
                    read += len(batch)
                    last = batch[-1]
        more = len(consumer.consume(POLL, DRAIN_TIMEOUT)) if n == total else 0
        consumer.close()
        verify_read(label, read, n, last and last.offset(), last and last.value(), more, VALUE)
        return clock.run(read)

    return work


def polybus_poll_batch(k: Kafka, topic: str, total: int, label: str) -> Callable[[int], Run]:
    def work(n: int) -> Run:
        consumer = k.consumer(topic)
        poll_batch = consumer.poll_batch
        read = 0
        last: bus.Message | None = None
        with Clock(k, label) as clock:
            while read < n:
                batch = poll_batch(POLL, timeout=POLL_TIMEOUT)
                if not batch:
                    break
                read += len(batch)
                last = batch[-1]
        more = len(consumer.poll_batch(POLL, timeout=DRAIN_TIMEOUT)) if n == total else 0
        consumer.close()
        verify_read(label, read, n, last and last.offset, last and last.value, more, VALUE)
        return clock.run(read)

    return work


def polybus_iteration(k: Kafka, topic: str, total: int, label: str) -> Callable[[int], Run]:
    def work(n: int) -> Run:
        consumer = k.consumer(topic)
        # Iteration blocks while nothing comes: if the messages are not all there, a
        # watchdog closes the consumer, which ends the loop, and the count check fails.
        watchdog = threading.Timer(60 + n / 10_000, consumer.close)
        watchdog.start()
        read = 0
        last: bus.Message | None = None
        try:
            with Clock(k, label) as clock:
                for m in consumer:
                    read += 1
                    if read == n:
                        last = m
                        break
        finally:
            watchdog.cancel()
        more = 0
        if read == n == total:
            more = len(consumer.poll_batch(POLL, timeout=DRAIN_TIMEOUT))
        consumer.close()
        verify_read(label, read, n, last and last.offset, last and last.value, more, VALUE)
        return clock.run(read)

    return work


def pre_produce(k: Kafka, n: int) -> str:
    """The consumers' topic: ``n`` messages, written once with the raw producer (this
    also warms the broker up before any timed run)."""
    started = time.perf_counter()
    run = raw_produce(k, "pre-produce")(n)
    topic = k.topics[-1]
    log(
        f"pre-produced {n:,} messages to {topic} "
        f"({time.perf_counter() - started:.1f} s, {run.rate:,.0f} msg/s)"
    )
    return topic


# -- main -------------------------------------------------------------------------------------


def _settings(pairs: list[str], what: str) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--{what}-config takes KEY=VALUE, not {pair!r}")
        out[key] = value
    return out


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = kafka_parser(
        "python -m bench.kafka",
        (__doc__ or "").splitlines()[0],
        default_count=200_000,
        quick_count=20_000,
        sizes=[
            ("--chunk", DEFAULT_CHUNK, f"messages per send_batch call (default {DEFAULT_CHUNK:,})")
        ],
    )
    p.add_argument(
        "--producer-config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an extra librdkafka producer setting, for ours and every peer (repeatable)",
    )
    p.add_argument(
        "--consumer-config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an extra librdkafka consumer setting, for ours and the raw consumer (repeatable)",
    )
    args = settle_kafka(p.parse_args(argv))
    args.producer_extra = _settings(args.producer_config, "producer")
    args.consumer_extra = _settings(args.consumer_config, "consumer")
    return args


Pair = tuple[Contender, Contender, dict[str, Any], int]

ENQUEUE = "kafka sync enqueue"
SEND_BATCH = "kafka sync send_batch"
POLL_BATCH = "kafka sync poll_batch"
ITERATION = "kafka sync iteration"
POLL_BATCH_VS_POLL = "kafka sync poll_batch vs raw poll"
ITERATION_VS_POLL = "kafka sync iteration vs raw poll"
VS_KCAT = "kafka sync enqueue vs kcat"
SEND_VS_FASTSTREAM = "kafka sync send vs faststream"
ENQUEUE_VS_FASTSTREAM = "kafka sync enqueue vs faststream"
CASES = (
    ENQUEUE,
    SEND_BATCH,
    POLL_BATCH,
    POLL_BATCH_VS_POLL,
    ITERATION,
    ITERATION_VS_POLL,
    VS_KCAT,
    SEND_VS_FASTSTREAM,
    ENQUEUE_VS_FASTSTREAM,
)


def _pairs(k: Kafka, args: argparse.Namespace, cases: list[str]) -> list[Pair]:
    n, chunk, m, s = args.count, args.chunk, args.consume_count, args.send_count
    raw = Contender(RAW_PRODUCE, n, raw_produce(k))
    pairs: list[Pair] = []
    batched, each = f"poll_batch({POLL}) loop", "for m in consumer"
    consumers = [
        pair
        for pair in (
            (POLL_BATCH, polybus_poll_batch, batched, RAW_CONSUME, False),
            (POLL_BATCH_VS_POLL, polybus_poll_batch, batched, RAW_POLL, True),
            (ITERATION, polybus_iteration, each, RAW_CONSUME, False),
            (ITERATION_VS_POLL, polybus_iteration, each, RAW_POLL, True),
        )
        if pair[0] in cases
    ]
    if consumers:
        topic = pre_produce(k, m)
        note = {"group": None, "offset_reset": "earliest", "max_messages": POLL}
        for case, ours, path, peer, one in consumers:
            pairs.append(
                (
                    Contender(case, m, ours(k, topic, m, case)),
                    Contender(peer, m, raw_consume(k, topic, m, peer, one)),
                    {"path": path, **note},
                    1000,
                )
            )
    if ENQUEUE in cases:
        pairs.append(
            (
                Contender(ENQUEUE, n, polybus_enqueue(k, ENQUEUE)),
                raw,
                {"path": "enqueue one by one, then flush()"},
                1000,
            )
        )
    if SEND_BATCH in cases:
        pairs.append(
            (
                Contender(SEND_BATCH, n, polybus_send_batch(k, SEND_BATCH, chunk)),
                raw,
                {"path": f"send_batch of {chunk:,} prebuilt Messages", "chunk": chunk},
                1000,
            )
        )
    if VS_KCAT in cases:
        if shutil.which("kcat"):
            pairs.append(
                (
                    Contender(VS_KCAT, n, polybus_enqueue(k, VS_KCAT)),
                    Contender(KCAT, n, kcat_produce(k)),
                    {
                        "path": "enqueue one by one, then flush()",
                        "baseline_path": "one kcat -P -l process, start to exit",
                        "kcat": kcat_version(),
                        "kcat_one_message_s": kcat_fixed_cost(k),
                    },
                    1000,
                )
            )
        else:
            log(f"SKIPPED {VS_KCAT}: kcat is not on PATH (Debian/Ubuntu: apt-get install -y kcat)")
    if SEND_VS_FASTSTREAM in cases:
        pairs.append(
            (
                Contender(SEND_VS_FASTSTREAM, s, polybus_send(k, SEND_VS_FASTSTREAM)),
                Contender(FASTSTREAM_SEND, s, faststream_publish(k, FASTSTREAM_SEND, True)),
                {"path": "send() one by one (waits for each ack)", "peer_api": "asyncio"},
                10,
            )
        )
    if ENQUEUE_VS_FASTSTREAM in cases:
        pairs.append(
            (
                Contender(ENQUEUE_VS_FASTSTREAM, n, polybus_enqueue(k, ENQUEUE_VS_FASTSTREAM)),
                Contender(
                    FASTSTREAM_ENQUEUE,
                    args.faststream_count,
                    faststream_publish(k, FASTSTREAM_ENQUEUE, False),
                ),
                {
                    "path": "enqueue one by one, then flush()",
                    "baseline_path": "publish(no_confirm=True) one by one, then gather",
                    "peer_api": "asyncio",
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
    with kafka_broker(args.bootstrap, "bench.kafka") as broker:
        k = Kafka(broker, args.producer_extra, args.consumer_extra)
        try:
            log(kafka_plan("bench.kafka", args, SIZE, broker, start, "publish(no_confirm)"))
            for ours, peer, extra, warmup in _pairs(k, args, cases):
                mine, theirs = alternate(ours, peer, rounds, warmup=warmup)
                rows.append(k.row(mine, theirs, rounds, SIZE, **extra))
        except BenchError as error:
            log(f"bench.kafka FAILED: {error}")
            return 1
        finally:
            k.close()
        env = environment_after(
            PACKAGES,
            start,
            broker=broker.source,
            **kafka_counts(args),
            chunk=args.chunk,
            partitions=PARTITIONS,
            producer_config=printable(k.producer_conf),
            consumer_config=printable(k.consumer_conf),
            seconds=round(time.perf_counter() - begun, 1),
        )
    output: Path = args.output
    save(output, "kafka", PREFIX, with_other_cases(output, rows, PREFIX, CASES), env)
    report(rows, rounds, env, output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
