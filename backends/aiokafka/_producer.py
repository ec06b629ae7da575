"""The asyncio producer on ``AIOKafkaProducer``, started on first use."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

import bus
from backends.aiokafka import _accumulator, _auth, _limits
from backends.aiokafka._errors import DELIVERY, mapped
from bus import murmur2_partition
from bus.spi import (
    AsyncProducerDriver,
    DeliveryCallback,
    Headers,
    UnclaimedFailures,
    acknowledged,
    make_partitioner,
)


class _Meta(NamedTuple):
    """The fields of aiokafka's ``RecordMetadata`` that ``_delivery`` reads."""

    topic: str
    partition: int
    offset: int
    timestamp: int


def _delivery(meta: Any) -> bus.Delivery:
    stamp = meta.timestamp
    return acknowledged(meta.topic, meta.partition, meta.offset, stamp if stamp >= 0 else None)


def _failure(exc: BaseException, topic: str) -> bus.BusError:
    if isinstance(exc, bus.BusError):
        return exc
    if isinstance(exc, asyncio.TimeoutError):
        return bus.TimeoutError(f"message to {topic} not acknowledged in time")
    return mapped(exc, DELIVERY, f"message to {topic} not delivered")


#: Seconds ``close`` gives the purged messages' reports and the stop of a producer that
#: ran out of time, on top of its ``timeout`` (as the kafka:// backend does).
_PURGE_REPORTS = 5.0

_Pending = tuple[float, "DeliveryCallback | None", str]  # deadline, on_delivery, topic


def _timed_out(limit: float) -> Callable[[str, bool], BaseException]:
    def error(topic: str, sent: bool) -> BaseException:
        if sent:
            return bus.TimeoutError(
                f"message to {topic} not acknowledged within {limit:g}s (delivery_timeout); "
                "it was sent and may have been written",
                maybe_written=True,
            )
        return bus.TimeoutError(
            f"message to {topic} not acknowledged within {limit:g}s (delivery_timeout); "
            "it was never sent"
        )

    return error


def _purged(topic: str, sent: bool) -> BaseException:
    return bus.DeliveryError(
        f"message to {topic}: the producer was closed before the broker acknowledged it",
        retriable=True,
        maybe_written=sent,
    )


class AioKafkaProducer(AsyncProducerDriver):
    """aiokafka batches in its accumulator and sends from a background task of the
    event loop the producer first ran on; delivery futures are reported through
    ``add_done_callback``, so nothing waits per message unless asked to.

    Each enqueued message is reported once, within ``delivery_timeout`` whatever the
    broker does: aiokafka never expires the batches of an idempotent producer, so one
    timer (for the oldest pending message, not one per message) fails the batches not
    yet sent (nothing of them is written later) and reports a message that was sent
    but not acknowledged in time as ``TimeoutError(maybe_written=True)``, ignoring
    what aiokafka reports for it later. ``close(timeout)`` purges the same way.
    """

    def __init__(self, kwargs: Mapping[str, Any], settings: Mapping[str, Any]):
        self._kwargs = dict(kwargs)
        self._raw: AIOKafkaProducer | None = None
        self._starting: asyncio.Lock | None = None
        self._timeout: float = settings["delivery_timeout"]
        self._choose = make_partitioner(settings["partitioner"])
        self._own_partitioning = settings["partitioner"] != "murmur2"
        self._failures = UnclaimedFailures()
        # Every enqueued message not reported yet, oldest first (one delivery_timeout
        # for all, so insertion order is deadline order).
        self._pending: dict[asyncio.Future[Any], _Pending] = {}
        self._reaper: asyncio.TimerHandle | None = None
        self._idle: list[asyncio.Future[None]] = []  # flush()es waiting for no pending
        # The largest batch each topic takes (see _limits.py), learnt on first use.
        self._limits: dict[str, int] = {}
        self._max_request: int = self._kwargs.get("max_request_size", 1_048_576)
        self._max_batch: int = self._kwargs.get("max_batch_size", 16_384)
        self._compressed = self._kwargs.get("compression_type") is not None
        self._idempotent = bool(self._kwargs.get("enable_idempotence"))

    async def _producer(self) -> AIOKafkaProducer:
        if self._raw is not None:
            return self._raw
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._raw is None:
                raw = AIOKafkaProducer(**self._kwargs)
                try:
                    await _auth.start(raw.start(), self._kwargs, self._timeout)
                except (KafkaError, asyncio.TimeoutError, OSError) as exc:
                    await _accumulator.stop(raw, _PURGE_REPORTS)
                    raise _failure(exc, "the cluster") from exc
                self._raw = raw
        return self._raw

    async def _partition(
        self, raw: AIOKafkaProducer, topic: str, key: bytes | None, partition: int | None
    ) -> int | None:
        if partition is not None or not self._own_partitioning:
            return partition
        partitions = await raw.partitions_for(topic)
        return self._choose(key, len(partitions))

    async def _limit(self, raw: AIOKafkaProducer, topic: str) -> int:
        """The most bytes a batch to ``topic`` may take. With compression the broker
        checks the compressed size, which is not known here: the request limit only."""
        limit = self._limits.get(topic)
        if limit is None:
            found = None
            if not self._compressed:
                found = await _limits.topic_limit(raw.client, topic, min(self._timeout, 5.0))
            limit = self._max_request if found is None else min(found, self._max_request)
            self._limits[topic] = limit
        return limit

    def _too_large(self, topic: str, limit: int) -> bus.MessageTooLarge:
        return bus.MessageTooLarge(
            f"message to {topic} is larger than the {limit} bytes a record batch may "
            "take (the topic's max.message.bytes or max_request_size)",
            retriable=False,
        )

    async def _submit(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: Headers,
        partition: int | None,
        timestamp: int | None,
    ) -> asyncio.Future[Any]:
        raw = self._raw if self._raw is not None else await self._producer()
        if self._own_partitioning:
            partition = await self._partition(raw, topic, key, partition)
        limit = self._limits.get(topic)
        if limit is None:
            limit = await self._limit(raw, topic)
        if not _limits.fits(limit, key, value, headers):
            raise self._too_large(topic, limit)
        if (value is None and key is None) or limit < self._max_batch:
            # aiokafka's send() refuses a record with neither key nor value, and would
            # put records together in batches larger than this topic takes.
            return await self._submit_alone(raw, topic, value, key, headers, partition, timestamp)
        try:
            future: asyncio.Future[Any] = await raw.send(
                topic, value, key, partition, timestamp, list(headers) if headers else None
            )
            return future
        except KafkaError as exc:
            raise _failure(exc, topic) from exc
        except AssertionError as exc:  # aiokafka asserts a known partition
            raise bus.UnknownTopicError(f"topic {topic!r} has no partition {partition}") from exc

    async def _submit_alone(
        self,
        raw: AIOKafkaProducer,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: Headers,
        partition: int | None,
        timestamp: int | None,
    ) -> asyncio.Future[Any]:
        """One record as a batch of its own."""
        try:
            if partition is None:
                count = len(await raw.partitions_for(topic))
                if key is not None and not self._own_partitioning:
                    partition = murmur2_partition(key, count)
                else:
                    partition = self._choose(key, count)
            builder = raw.create_batch()
            stamp = timestamp if timestamp is not None else int(time.time() * 1000)
            builder.append(timestamp=stamp, key=key, value=value, headers=list(headers))
            batch: asyncio.Future[Any] = await raw.send_batch(builder, topic, partition=partition)
        except KafkaError as exc:
            raise _failure(exc, topic) from exc
        except AssertionError as exc:  # aiokafka asserts a known partition
            raise bus.UnknownTopicError(f"topic {topic!r} has no partition {partition}") from exc
        # The batch's metadata has no timestamp for a CreateTime record: report its own.
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def done(sent: asyncio.Future[Any]) -> None:
            if future.done():
                return
            if sent.cancelled():
                future.cancel()
            elif sent.exception() is not None:
                self._after_refusal(sent.exception())
                future.set_exception(sent.exception())  # type: ignore[arg-type]
            else:
                meta = sent.result()
                stamped = meta.timestamp if meta.timestamp not in (None, -1) else stamp
                future.set_result(_Meta(meta.topic, meta.partition, meta.offset, stamped))

        batch.add_done_callback(done)
        return future

    def _done(self, future: asyncio.Future[Any]) -> None:
        """Done-callback of every enqueued message: its one report, unless the reaper
        gave it already (``_pending`` no longer holds it)."""
        entry = self._pending.pop(future, None)
        if entry is None:
            return
        if not self._pending:
            self._wake()
        _, on_delivery, topic = entry
        if future.cancelled():
            error: bus.BusError = bus.DeliveryError(f"message to {topic} was cancelled")
        elif future.exception() is not None:
            self._after_refusal(future.exception())
            error = _failure(future.exception(), topic)  # type: ignore[arg-type]
        else:
            if on_delivery is not None:
                on_delivery(_delivery(future.result()), None)
            return
        self._tell(on_delivery, error)

    def _refused(self, future: asyncio.Future[Any]) -> None:
        """Done-callback of what ``send`` and ``send_batch`` wait for."""
        if not future.cancelled() and future.exception() is not None:
            self._after_refusal(future.exception())

    def _after_refusal(self, exc: BaseException | None) -> None:
        """A batch the broker refused for good (a timestamp out of range, a record too
        large, ...) had taken sequence numbers the broker never saw: every later batch
        to that partition would be out of sequence, fatal to an idempotent producer.
        Forget the producer id, so the next batch goes under a new one. Runs as the
        batch's own done-callback, before aiokafka's sender takes the next batch."""
        if (
            self._idempotent
            and self._raw is not None
            and isinstance(exc, KafkaError)
            and not exc.retriable
        ):
            _accumulator.forget_producer_id(self._raw)

    def _tell(self, on_delivery: DeliveryCallback | None, error: bus.BusError) -> None:
        if on_delivery is None:
            self._failures.add(error)
        else:
            on_delivery(None, error)

    def _wake(self) -> None:
        waiters, self._idle = self._idle, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _reap(self) -> None:
        """At the oldest pending message's deadline: fail what is overdue (see the
        class docstring), then wait for the next oldest."""
        self._reaper = None
        now = time.monotonic()
        overdue = []
        for future, (deadline, _, _) in self._pending.items():
            if deadline > now:
                break
            overdue.append(future)
        if overdue:
            error = _timed_out(self._timeout)
            if self._raw is not None:
                # Their futures fail now; _done reports them on the next loop turn.
                _accumulator.fail_unsent(self._raw, now - self._timeout, error)
            for future in overdue:
                if future.done():
                    continue
                _, on_delivery, topic = self._pending.pop(future)
                self._tell(on_delivery, error(topic, True))  # type: ignore[arg-type]
            if not self._pending:
                self._wake()
        self._schedule_reaper()

    def _schedule_reaper(self) -> None:
        if self._reaper is None and self._pending:
            deadline = next(iter(self._pending.values()))[0]
            self._reaper = asyncio.get_running_loop().call_later(
                max(0.0, deadline - time.monotonic()), self._reap
            )

    async def enqueue(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: Headers,
        partition: int | None,
        timestamp: int | None,
        on_delivery: DeliveryCallback | None,
    ) -> None:
        try:
            if self._raw is not None and not self._own_partitioning:
                # The hot path. aiokafka's send() already bounds its own waits (for
                # metadata and for buffer space) by request_timeout_ms, which is
                # delivery_timeout; a wait_for here would cost a task per message.
                future = await self._submit(topic, value, key, headers, partition, timestamp)
            else:
                future = await asyncio.wait_for(
                    self._submit(topic, value, key, headers, partition, timestamp),
                    self._timeout,
                )
        except (bus.BusError, asyncio.TimeoutError) as exc:
            self._tell(on_delivery, _failure(exc, topic))
            return
        self._pending[future] = (time.monotonic() + self._timeout, on_delivery, topic)
        future.add_done_callback(self._done)
        if self._reaper is None:
            self._schedule_reaper()

    async def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: Headers,
        partition: int | None,
        timestamp: int | None,
        timeout: float | None,
    ) -> bus.Delivery:
        limit = self._timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        try:
            future = await asyncio.wait_for(
                self._submit(topic, value, key, headers, partition, timestamp), limit
            )
            future.add_done_callback(self._refused)
            meta = await asyncio.wait_for(
                asyncio.shield(future), max(0.0, deadline - time.monotonic())
            )
        except asyncio.TimeoutError:
            raise bus.TimeoutError(
                f"no acknowledgement for the message to {topic} within "
                f"{limit:g}s (it may still be delivered)"
            ) from None
        except KafkaError as exc:
            raise _failure(exc, topic) from exc
        return _delivery(meta)

    async def send_batch(
        self, messages: Sequence[bus.Message], timeout: float | None
    ) -> list[bus.Delivery | bus.BusError]:
        """One aiokafka batch per partition (more when one fills up): fewer futures and
        no per-message accumulator work, which is what makes it beat ``send()``."""
        limit = self._timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        outcomes: list[bus.Delivery | bus.BusError | None] = [None] * len(messages)
        try:
            raw = await asyncio.wait_for(self._producer(), limit)
        except (bus.BusError, asyncio.TimeoutError) as exc:
            error = _failure(exc, "the cluster")
            return [error] * len(messages)
        counts: dict[str, int] = {}
        caps: dict[str, int] = {}
        by_partition: dict[tuple[str, int], list[int]] = {}
        for i, m in enumerate(messages):
            cap = caps.get(m.topic)
            if cap is None:
                cap = caps[m.topic] = await self._limit(raw, m.topic)
            if not _limits.fits(cap, m.key, m.value, m.headers):
                outcomes[i] = self._too_large(m.topic, cap)  # alone: the rest go on
                continue
            partition = m.partition
            count = counts.get(m.topic)
            if count is None:
                try:
                    found = await asyncio.wait_for(
                        raw.partitions_for(m.topic), max(0.0, deadline - time.monotonic())
                    )
                except (KafkaError, asyncio.TimeoutError) as exc:
                    outcomes[i] = _failure(exc, m.topic)
                    continue
                count = counts[m.topic] = len(found)
            if partition is None:
                if m.key is not None and not self._own_partitioning:
                    partition = murmur2_partition(m.key, count)
                else:
                    partition = self._choose(m.key, count)
            elif partition >= count:  # aiokafka's send_batch would assert
                missing = f"topic {m.topic!r} has no partition {partition}"
                outcomes[i] = bus.UnknownTopicError(missing)
                continue
            by_partition.setdefault((m.topic, partition), []).append(i)
        sent: list[tuple[asyncio.Future[Any], list[int], list[int], str]] = []
        now = int(time.time() * 1000)
        for (topic, partition), indexes in by_partition.items():
            cap = caps[topic]
            small = cap < self._max_batch  # the topic takes smaller batches than aiokafka's
            builder = raw.create_batch()
            members: list[int] = []
            stamps: list[int] = []
            for i in indexes:
                m = messages[i]
                stamp = m.timestamp if m.timestamp is not None else now
                headers = list(m.headers) if m.headers else []
                appended = None
                if not (
                    members
                    and small
                    and builder.size() + _limits.batch_size_of(m.key, m.value, headers) > cap
                ):
                    appended = builder.append(
                        timestamp=stamp, key=m.key, value=m.value, headers=headers
                    )
                if appended is None:  # full: send it, start another
                    if members:
                        batch = await raw.send_batch(builder, topic, partition=partition)
                        batch.add_done_callback(self._refused)
                        sent.append((batch, members, stamps, topic))
                    builder, members, stamps = raw.create_batch(), [], []
                    appended = builder.append(
                        timestamp=stamp, key=m.key, value=m.value, headers=headers
                    )
                    if appended is None:
                        outcomes[i] = self._too_large(topic, cap)
                        continue
                members.append(i)
                stamps.append(stamp)
            if members:
                batch = await raw.send_batch(builder, topic, partition=partition)
                batch.add_done_callback(self._refused)
                sent.append((batch, members, stamps, topic))
        for future, members, stamps, topic in sent:
            try:
                meta = await asyncio.wait_for(
                    asyncio.shield(future), max(0.0, deadline - time.monotonic())
                )
            except (KafkaError, bus.BusError, asyncio.TimeoutError) as exc:
                for i in members:  # bus errors: failed by the reaper or by close
                    outcomes[i] = _failure(exc, topic)
                continue
            # A LogAppendTime topic stamps the whole batch; else each record keeps its own.
            append_time = meta.timestamp if getattr(meta, "timestamp_type", 0) == 1 else None
            for n, (i, stamp) in enumerate(zip(members, stamps, strict=True)):
                outcomes[i] = acknowledged(
                    meta.topic,
                    meta.partition,
                    meta.offset + n,
                    append_time if append_time is not None else stamp,
                )
        return [
            o if o is not None else bus.TimeoutError(f"no acknowledgement within {limit:g}s")
            for o in outcomes
        ]

    async def _wait_idle(self, limit: float) -> int:
        """Wait up to ``limit`` seconds for every enqueued message to be reported;
        how many are still pending then."""
        if self._pending:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._idle.append(waiter)
            await asyncio.wait({waiter}, timeout=limit)
            if not waiter.done():
                waiter.cancel()
        return len(self._pending)

    async def flush(self, timeout: float | None) -> None:
        limit = self._timeout if timeout is None else timeout
        left = await self._wait_idle(limit)
        if left:
            raise bus.TimeoutError(
                f"{left} message(s) still waiting for acknowledgement after {limit:g}s"
            )
        self._failures.raise_first()

    async def close(self, timeout: float | None) -> None:
        """Flush within ``timeout``; what is still undelivered then is purged: batches
        not yet sent are dropped, the sender is stopped, so this producer writes
        nothing after close (a request already on the wire may still land), and each
        purged message is reported (``on_delivery(None, DeliveryError)``,
        ``maybe_written`` for one already sent) before ``bus.TimeoutError`` says how
        many there were."""
        limit = self._timeout if timeout is None else timeout
        left = await self._wait_idle(limit)
        raw = self._raw
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        if not left:
            if raw is not None:
                await _accumulator.stop(raw, _PURGE_REPORTS)
            self._failures.raise_first()
            return
        assert raw is not None  # a pending message was enqueued on it
        await _accumulator.abandon(raw, _purged, _PURGE_REPORTS)
        await asyncio.sleep(0)  # the failed futures' callbacks report them
        for future in list(self._pending):  # any aiokafka did not hold any more
            _, on_delivery, topic = self._pending.pop(future)
            self._tell(on_delivery, _purged(topic, True))  # type: ignore[arg-type]
        self._wake()
        unclaimed = self._failures.take()  # the purged ones are in the count below
        error = bus.TimeoutError(
            f"{left} message(s) not acknowledged within {limit:g}s were purged and "
            "reported undelivered (those already sent may have been written)"
        )
        raise error from (unclaimed[0] if unclaimed else None)
