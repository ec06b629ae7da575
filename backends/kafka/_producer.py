"""The blocking producer on confluent-kafka's ``Producer``."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import Producer as RawProducer

import bus
from backends.kafka._errors import DELIVERY, Standing, mapped, with_cause
from bus.spi import (
    DeliveryCallback,
    Headers,
    ProducerDriver,
    UnclaimedFailures,
    acknowledged,
    make_partitioner,
)

LOGGER = logging.getLogger("bus.kafka")

#: How long one wait for delivery reports lasts before checking deadlines again.
_SLICE = 0.1
#: Most messages in one ``produce_batch`` call of ``send_batch`` (and so in a row to the
#: partition chosen for messages without key or partition; librdkafka's own sticky
#: partitioner keeps one for 10 ms, more at these rates).
_RUN = 1000
#: Seconds before ``send_batch`` asks again for the partitions of a topic it could not
#: learn them of (meanwhile its messages go one by one).
_COUNT_RETRY = 10.0
#: Seconds close() serves the reports of the messages it purged.
_PURGE_REPORTS = 5.0
#: enqueue() serves delivery reports on every 64th call.
_POLL_EVERY_MASK = 63


def _delivery(msg: Any) -> bus.Delivery:
    kind, stamp = msg.timestamp()
    return acknowledged(msg.topic(), msg.partition(), msg.offset(), stamp if kind else None)


def _failure(err: Any, msg: Any) -> bus.BusError:
    where = f"message to {msg.topic()}" if msg is not None else "message"
    return with_cause(mapped(err, DELIVERY, f"{where} not delivered"), err)


#: A record batch's fixed part, and the most a record adds besides its bytes (Kafka's
#: message format v2: a 61-byte batch header, varint lengths and deltas per record).
_BATCH_HEADER = 61
_RECORD_OVERHEAD = 21


def _fits(limit: int, key: bytes | None, value: bytes | None, headers: Headers) -> bool:
    """Whether a batch of this one record fits ``limit`` bytes."""
    size = _BATCH_HEADER + _RECORD_OVERHEAD + len(key or b"") + len(value or b"")
    if size <= limit and not headers:
        return True
    for name, data in headers:
        size += len(name.encode()) + len(data or b"") + 10
    return size <= limit


def _check_timestamp(timestamp: int | None) -> None:
    if timestamp == 0:
        raise bus.UnsupportedError(
            "kafka:// cannot send timestamp=0: librdkafka takes 0 to mean 'now' "
            "(send timestamp=1 for the epoch's first millisecond)"
        )


class _Outcomes:
    """The outcome of each message of one ``send_batch``, in input order, as their
    reports come. Reports come from ``poll`` in the calling thread."""

    __slots__ = ("outcomes", "pending", "waiting")

    def __init__(self, count: int):
        self.outcomes: list[bus.Delivery | bus.BusError | None] = [None] * count
        self.pending = count
        # Per partition, the indexes of the messages produced in runs, in produce order.
        self.waiting: dict[tuple[str, int], deque[int]] = {}

    def report(self, index: int, err: Any, msg: Any) -> None:
        self.outcomes[index] = _delivery(msg) if err is None else _failure(err, msg)
        self.pending -= 1

    def report_run(self, err: Any, msg: Any) -> None:
        """One callback for every message of the runs: librdkafka reports a partition's
        messages in the order they were produced. Never raises (librdkafka calls it)."""
        waiting = self.waiting.get((msg.topic(), msg.partition()))
        if not waiting:  # not one of ours: its own outcome stays a timeout, told here
            LOGGER.error("kafka send_batch: a report for no message: %s", msg)
            return
        self.report(waiting.popleft(), err, msg)

    def refused(self, index: int, error: bus.BusError) -> None:
        self.outcomes[index] = error
        self.pending -= 1

    def expect(self, topic: str, partition: int, run_at: list[int]) -> None:
        queue = self.waiting.get((topic, partition))
        if queue is None:
            queue = self.waiting[(topic, partition)] = deque()
        queue.extend(run_at)

    def unexpect(self, topic: str, partition: int, index: int) -> None:
        self.waiting[(topic, partition)].remove(index)


class KafkaProducer(ProducerDriver):
    """librdkafka batches and retries in its own threads; delivery reports are served
    by ``poll()``, which every call here makes, so reports never pile up."""

    def __init__(
        self,
        conf: Mapping[str, Any],
        settings: Mapping[str, Any],
        topic_limit: Callable[[str, float], int | None] | None = None,
    ):
        # A wrong password or a denied operation: librdkafka retries it for ever and
        # tells only error_cb; send, send_batch and flush raise it instead of waiting.
        self._standing = Standing()
        try:
            self._raw = RawProducer({**conf, "error_cb": self._standing.note})
        except KafkaException as exc:
            raise mapped(exc, "config", "kafka:// producer") from exc
        self._timeout: float = settings["delivery_timeout"]
        self._failures = UnclaimedFailures()
        self._round_robin = (
            make_partitioner("round_robin") if settings["partitioner"] == "round_robin" else None
        )
        self._counts: dict[str, int] = {}
        self._count_retry: dict[str, float] = {}
        self._queue_max = int(conf.get("queue.buffering.max.messages", 100_000))
        self._produce = self._raw.produce
        self._poll = self._raw.poll
        self._plain = self._round_robin is None
        self._calls = 0
        # The largest record batch each topic takes, learnt on first use: librdkafka
        # puts a message the topic refuses in a batch with others, and the broker then
        # refuses them all. With compression the broker checks the compressed size,
        # not known here, so only librdkafka's own message.max.bytes applies.
        self._topic_limit = None if settings["compression"] != "none" else topic_limit
        self._max_message: int = int(conf.get("message.max.bytes", 1_000_000))
        self._limits: dict[str, int] = {}
        # Topics enqueue and send_batch may hand straight to librdkafka (_put adds them):
        # a producer without our own partitioner, librdkafka's size limit no larger than
        # the topic's.
        self._trusted: set[str] = set()

    # -- reports -----------------------------------------------------------------------------

    def _unclaimed(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._failures.add(_failure(err, msg))

    @staticmethod
    def _reporter(on_delivery: DeliveryCallback) -> Callable[[Any, Any], None]:
        def report(err: Any, msg: Any) -> None:
            if err is None:
                on_delivery(_delivery(msg), None)
            else:
                on_delivery(None, _failure(err, msg))

        return report

    # -- producing ---------------------------------------------------------------------------

    def _check_size(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers,
        deadline: float,
    ) -> None:
        """Raise ``MessageTooLarge`` for a message the topic would refuse. The topic's
        limit is asked for once, within the call's deadline (at most 2 s): a cluster
        that does not answer leaves librdkafka's own limit for this producer."""
        limit = self._limits.get(topic)
        if limit is None:
            assert self._topic_limit is not None
            found = self._topic_limit(topic, max(0.0, min(deadline - time.monotonic(), 2.0)))
            limit = self._limits[topic] = self._max_message if found is None else found
        if not _fits(limit, key, value, headers):
            raise bus.MessageTooLarge(
                f"message to {topic} is larger than the {limit} bytes a record batch "
                "of the topic may take (its max.message.bytes)",
                retriable=False,
            )

    def _partition_for(self, topic: str) -> int:
        count = self._counts.get(topic)
        if count is None:
            meta = self._raw.list_topics(topic, timeout=self._timeout).topics.get(topic)
            if meta is None or meta.error is not None or not meta.partitions:
                raise bus.UnknownTopicError(f"no partitions known for topic {topic!r}")
            count = self._counts[topic] = len(meta.partitions)
        assert self._round_robin is not None
        return self._round_robin(None, count)

    def _put(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: Headers,
        partition: int | None,
        timestamp: int | None,
        report: Callable[[Any, Any], None],
        deadline: float,
    ) -> None:
        """Hand one message to librdkafka, serving reports while its queue is full."""
        if self._topic_limit is not None:
            self._check_size(topic, key, value, headers, deadline)
        if self._plain and self._librdkafka_checks(topic):  # the limit is known now
            self._trusted.add(topic)
        if partition is None and self._round_robin is not None:
            partition = self._partition_for(topic)
        kwargs: dict[str, Any] = {"on_delivery": report}
        if partition is not None:
            kwargs["partition"] = partition
        if timestamp is not None:
            kwargs["timestamp"] = timestamp
        if headers:
            kwargs["headers"] = list(headers)
        while True:
            try:
                self._produce(topic, value, key, **kwargs)
                return
            except BufferError:
                if time.monotonic() >= deadline:
                    raise bus.TimeoutError(
                        f"the local queue stayed full for {self._timeout:g}s "
                        "(delivery_timeout); the broker is not keeping up or unreachable"
                    ) from None
                self._poll(_SLICE)

    def enqueue(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: Headers,
        partition: int | None,
        timestamp: int | None,
        on_delivery: DeliveryCallback | None,
    ) -> None:
        report = self._unclaimed if on_delivery is None else self._reporter(on_delivery)
        try:
            if partition is None and timestamp is None and not headers and topic in self._trusted:
                try:  # the hot path: no check, no keyword dict, no deadline unless queue full
                    self._produce(topic, value, key, on_delivery=report)
                except BufferError:
                    deadline = time.monotonic() + self._timeout
                    self._put(topic, value, key, headers, partition, timestamp, report, deadline)
            else:
                _check_timestamp(timestamp)
                deadline = time.monotonic() + self._timeout
                self._put(topic, value, key, headers, partition, timestamp, report, deadline)
        except KafkaException as exc:  # refused before it left (too large, ...)
            report(exc.args[0], None)
        except bus.MessageTooLarge as error:
            if on_delivery is None:
                self._failures.add(error)
            else:
                on_delivery(None, error)
        # Serve delivery reports now and then, not on every call: poll(0) costs about as
        # much as produce(). flush(), close() and a full queue serve them too.
        self._calls += 1
        if self._calls & _POLL_EVERY_MASK == 0:
            self._poll(0)

    def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: Headers,
        partition: int | None,
        timestamp: int | None,
        timeout: float | None,
    ) -> bus.Delivery:
        _check_timestamp(timestamp)
        limit = self._timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        done = threading.Event()
        outcome: list[Any] = []

        def report(err: Any, msg: Any) -> None:
            outcome.append(_delivery(msg) if err is None else _failure(err, msg))
            done.set()

        try:
            self._put(topic, value, key, headers, partition, timestamp, report, deadline)
        except KafkaException as exc:
            raise mapped(exc, DELIVERY, f"message to {topic} refused") from exc
        while not done.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                raise bus.TimeoutError(
                    f"no acknowledgement for the message to {topic} within "
                    f"{limit:g}s (it may still be delivered)"
                )
            self._poll(min(left, _SLICE))
            if not done.is_set():
                self._standing.check()
        result = outcome[0]
        if isinstance(result, bus.BusError):
            raise result
        self._standing.clear()
        return result  # type: ignore[no-any-return]

    def send_batch(
        self, messages: Sequence[bus.Message], timeout: float | None
    ) -> list[bus.Delivery | bus.BusError]:
        """Runs of messages to one topic without headers or timestamps go to librdkafka
        through ``produce_batch``, each with its partition chosen here, so that one
        callback for the whole batch maps every report back to its message: librdkafka
        reports the messages of a partition in the order they were produced. The
        others (headers, timestamps, keys the partitioner must place, a topic whose
        size limit is ours to check) are produced one by one, in order with the runs."""
        for m in messages:  # before any of them is sent
            _check_timestamp(m.timestamp)
        limit = self._timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        batch = _Outcomes(len(messages))
        run: list[dict[str, Any]] = []
        run_at: list[int] = []
        run_topic, run_partition = "", -1
        sticky: dict[str, int] = {}  # per topic, the partition of messages without one
        for i, m in enumerate(messages):
            topic = m.topic
            if self._batchable(m, deadline):
                partition = m.partition
                if partition is None:
                    partition = sticky.get(topic, -1)
                    if partition < 0 or len(run) >= _RUN:  # (_batchable learnt the count)
                        partition = sticky[topic] = random.randrange(self._counts[topic])
                if topic != run_topic or partition != run_partition or len(run) >= _RUN:
                    self._produce_run(batch, run_topic, run_partition, run, run_at, deadline)
                    run, run_at, run_topic, run_partition = [], [], topic, partition
                run.append(
                    {"value": m.value} if m.key is None else {"value": m.value, "key": m.key}
                )
                run_at.append(i)
                continue
            self._produce_run(batch, run_topic, run_partition, run, run_at, deadline)
            run, run_at, run_topic, run_partition = [], [], "", -1
            self._produce_one(
                batch, i, (m.topic, m.value, m.key, m.headers, m.partition, m.timestamp), deadline
            )
        self._produce_run(batch, run_topic, run_partition, run, run_at, deadline)
        outcomes = batch.outcomes
        while batch.pending > 0 and time.monotonic() < deadline:
            self._poll(min(deadline - time.monotonic(), _SLICE))
            standing = self._standing.current()
            if standing is not None and batch.pending > 0:
                for i, o in enumerate(outcomes):
                    if o is None:
                        outcomes[i] = standing
                break
        if any(isinstance(o, bus.Delivery) for o in outcomes):
            self._standing.clear()
        if batch.pending <= 0:
            return outcomes  # type: ignore[return-value]  # every one is set
        return [
            o if o is not None else bus.TimeoutError(f"no acknowledgement within {limit:g}s")
            for o in outcomes
        ]

    def _batchable(self, m: bus.Message, deadline: float) -> bool:
        """Whether ``m`` may go in a ``produce_batch`` run: no headers and no timestamp
        (it takes neither), a partition known here (given, or none needed: no key), a
        size librdkafka checks itself, and a topic whose partitions are known."""
        if m.headers or m.timestamp is not None or (m.key is not None and m.partition is None):
            return False
        if m.topic not in self._trusted:  # the first message to a topic learns its limit
            return False
        return m.partition is not None or self._partition_count(m.topic, deadline) is not None

    def _produce_run(
        self,
        batch: _Outcomes,
        topic: str,
        partition: int,
        run: list[dict[str, Any]],
        run_at: list[int],
        deadline: float,
    ) -> None:
        """``run``'s messages, to one partition, with one ``produce_batch``."""
        if not run:
            return
        # Make room first: a run refused half way for a full queue would be retried
        # out of order.
        while len(self._raw) + len(run) > self._queue_max and time.monotonic() < deadline:
            self._poll(_SLICE)
        batch.expect(topic, partition, run_at)
        try:
            queued = self._raw.produce_batch(
                topic, run, partition=partition, on_delivery=batch.report_run
            )
        except KafkaException as exc:
            queued = 0
            for fields in run:
                fields.setdefault("_error", exc.args[0])
        except BufferError:
            queued = 0
            for fields in run:
                fields.setdefault("_error", KafkaError(KafkaError._QUEUE_FULL))
        if queued == len(run):
            return
        for fields, index in zip(run, run_at, strict=True):
            err = fields.get("_error")
            if err is None:
                continue
            batch.unexpect(topic, partition, index)  # no report will come
            if err.code() == KafkaError._QUEUE_FULL:  # the bytes limit filled it: wait
                one = (topic, fields["value"], fields.get("key"), (), partition, None)
                self._produce_one(batch, index, one, deadline)
            else:
                batch.report(index, err, None)

    def _produce_one(
        self,
        batch: _Outcomes,
        index: int,
        fields: tuple[str, bytes | None, bytes | None, Headers, int | None, int | None],
        deadline: float,
    ) -> None:
        """One message of ``send_batch``, through the per-message path."""
        on_delivery = partial(batch.report, index)
        try:
            self._put(*fields, on_delivery, deadline)
        except KafkaException as exc:
            on_delivery(exc.args[0], None)
        except bus.BusError as exc:
            batch.refused(index, exc)

    def _partition_count(self, topic: str, deadline: float) -> int | None:
        """The topic's partition count, learnt once (within the deadline, at most 2 s);
        ``None`` while it is not known (a missing topic, no answer), asked again after
        ``_COUNT_RETRY`` seconds."""
        count = self._counts.get(topic)
        if count is not None:
            return count
        if time.monotonic() < self._count_retry.get(topic, 0.0):
            return None
        try:
            meta = self._raw.list_topics(
                topic, timeout=max(0.01, min(deadline - time.monotonic(), 2.0))
            ).topics.get(topic)
        except KafkaException:
            meta = None
        if meta is None or meta.error is not None or not meta.partitions:
            self._count_retry[topic] = time.monotonic() + _COUNT_RETRY
            return None
        count = self._counts[topic] = len(meta.partitions)
        return count

    def _librdkafka_checks(self, topic: str) -> bool:
        """Whether librdkafka's own size limit is the topic's (known to be no larger), so
        a message needs no check of ours."""
        if self._topic_limit is None:
            return True
        limit = self._limits.get(topic)
        return limit is not None and limit >= self._max_message

    def flush(self, timeout: float | None) -> None:
        limit = self._timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        while True:
            left = self._raw.flush(max(0.0, min(deadline - time.monotonic(), _SLICE)))
            if not left:
                break
            self._standing.check()  # a wrong password: no use waiting
            if time.monotonic() >= deadline:
                raise bus.TimeoutError(
                    f"{left} message(s) still waiting for acknowledgement after {limit:g}s"
                )
        self._standing.clear()
        self._failures.raise_first()

    def close(self, timeout: float | None) -> None:
        """Flush within ``timeout``; what is still undelivered then is purged, so this
        producer writes nothing after close, and each purged message is reported
        (``on_delivery(None, DeliveryError)``, ``maybe_written`` for one already in
        flight) before ``bus.TimeoutError`` says how many there were."""
        limit = self._timeout if timeout is None else timeout
        left = self._raw.flush(limit)
        if not left:
            self._failures.raise_first()
            return
        self._raw.purge(in_queue=True, in_flight=True)
        deadline = time.monotonic() + _PURGE_REPORTS
        while len(self._raw) and time.monotonic() < deadline:
            self._poll(_SLICE)  # serves the purged messages' reports
        unclaimed = self._failures.take()  # the purged ones are in the count below
        error = bus.TimeoutError(
            f"{left} message(s) not acknowledged within {limit:g}s were purged and "
            "reported undelivered (those already in flight may have been written)"
        )
        raise error from (unclaimed[0] if unclaimed else None)
