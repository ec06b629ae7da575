"""The asyncio producer on ``AIOKafkaProducer``, started on first use."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

import bus
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


class AioKafkaProducer(AsyncProducerDriver):
    """aiokafka batches in its accumulator and sends from a background task of the
    event loop the producer first ran on; delivery futures are reported through
    ``add_done_callback``, so nothing waits per message unless asked to."""

    def __init__(self, kwargs: Mapping[str, Any], settings: Mapping[str, Any]):
        self._kwargs = dict(kwargs)
        self._raw: AIOKafkaProducer | None = None
        self._starting: asyncio.Lock | None = None
        self._timeout: float = settings["delivery_timeout"]
        self._choose = make_partitioner(settings["partitioner"])
        self._own_partitioning = settings["partitioner"] != "murmur2"
        self._failures = UnclaimedFailures()
        self._pending: set[asyncio.Future[Any]] = set()
        self._settlers: dict[str, Callable[[asyncio.Future[Any]], None]] = {}

    async def _producer(self) -> AIOKafkaProducer:
        if self._raw is not None:
            return self._raw
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._raw is None:
                raw = AIOKafkaProducer(**self._kwargs)
                try:
                    await asyncio.wait_for(raw.start(), self._timeout)
                except (KafkaError, asyncio.TimeoutError, OSError) as exc:
                    await raw.stop()
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
        if value is None and key is None:
            return await self._submit_null(raw, topic, headers, partition, timestamp)
        try:
            future: asyncio.Future[Any] = await raw.send(
                topic, value, key, partition, timestamp, list(headers) if headers else None
            )
            return future
        except KafkaError as exc:
            raise _failure(exc, topic) from exc
        except AssertionError as exc:  # aiokafka asserts a known partition
            raise bus.UnknownTopicError(f"topic {topic!r} has no partition {partition}") from exc

    async def _submit_null(
        self,
        raw: AIOKafkaProducer,
        topic: str,
        headers: Headers,
        partition: int | None,
        timestamp: int | None,
    ) -> asyncio.Future[Any]:
        """A record with neither key nor value, which Kafka stores and aiokafka's
        ``send()`` refuses (it asserts one of them): a batch of that one record."""
        try:
            if partition is None:
                partition = self._choose(None, len(await raw.partitions_for(topic)))
            builder = raw.create_batch()
            stamp = timestamp if timestamp is not None else int(time.time() * 1000)
            builder.append(timestamp=stamp, key=None, value=None, headers=list(headers))
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
                future.set_exception(sent.exception())  # type: ignore[arg-type]
            else:
                meta = sent.result()
                stamped = meta.timestamp if meta.timestamp not in (None, -1) else stamp
                future.set_result(_Meta(meta.topic, meta.partition, meta.offset, stamped))

        batch.add_done_callback(done)
        return future

    def _settle(self, topic: str, future: asyncio.Future[Any]) -> None:
        """Done-callback of a message enqueued without ``on_delivery``."""
        self._pending.discard(future)
        if future.cancelled():
            self._failures.add(bus.DeliveryError(f"message to {topic} was cancelled"))
        elif future.exception() is not None:
            self._failures.add(_failure(future.exception(), topic))  # type: ignore[arg-type]

    def _report(
        self, on_delivery: DeliveryCallback, topic: str, future: asyncio.Future[Any]
    ) -> None:
        """Done-callback of a message enqueued with ``on_delivery``."""
        self._pending.discard(future)
        if future.cancelled():
            on_delivery(None, bus.DeliveryError(f"message to {topic} was cancelled"))
        elif future.exception() is not None:
            on_delivery(None, _failure(future.exception(), topic))  # type: ignore[arg-type]
        else:
            on_delivery(_delivery(future.result()), None)

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
            error = _failure(exc, topic)
            if on_delivery is None:
                self._failures.add(error)
            else:
                on_delivery(None, error)
            return
        self._pending.add(future)
        if on_delivery is None:
            settle = self._settlers.get(topic)
            if settle is None:
                settle = self._settlers[topic] = functools.partial(self._settle, topic)
            future.add_done_callback(settle)
        else:
            future.add_done_callback(functools.partial(self._report, on_delivery, topic))

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
        by_partition: dict[tuple[str, int], list[int]] = {}
        for i, m in enumerate(messages):
            partition = m.partition
            if partition is None:
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
                if m.key is not None and not self._own_partitioning:
                    partition = murmur2_partition(m.key, count)
                else:
                    partition = self._choose(m.key, count)
            by_partition.setdefault((m.topic, partition), []).append(i)
        sent: list[tuple[asyncio.Future[Any], list[int], list[int], str]] = []
        now = int(time.time() * 1000)
        for (topic, partition), indexes in by_partition.items():
            builder = raw.create_batch()
            members: list[int] = []
            stamps: list[int] = []
            for i in indexes:
                m = messages[i]
                stamp = m.timestamp if m.timestamp is not None else now
                headers = list(m.headers) if m.headers else []
                meta = builder.append(timestamp=stamp, key=m.key, value=m.value, headers=headers)
                if meta is None:  # full: send it, start another
                    sent.append(
                        (
                            await raw.send_batch(builder, topic, partition=partition),
                            members,
                            stamps,
                            topic,
                        )
                    )
                    builder, members, stamps = raw.create_batch(), [], []
                    meta = builder.append(
                        timestamp=stamp, key=m.key, value=m.value, headers=headers
                    )
                    if meta is None:
                        outcomes[i] = bus.MessageTooLarge(
                            f"message to {topic} is larger than a whole batch", retriable=False
                        )
                        continue
                members.append(i)
                stamps.append(stamp)
            if members:
                sent.append(
                    (
                        await raw.send_batch(builder, topic, partition=partition),
                        members,
                        stamps,
                        topic,
                    )
                )
        for future, members, stamps, topic in sent:
            try:
                meta = await asyncio.wait_for(
                    asyncio.shield(future), max(0.0, deadline - time.monotonic())
                )
            except (KafkaError, asyncio.TimeoutError) as exc:
                for i in members:
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

    async def flush(self, timeout: float | None) -> None:
        limit = self._timeout if timeout is None else timeout
        if self._pending:
            _, pending = await asyncio.wait(set(self._pending), timeout=limit)
            if pending:
                raise bus.TimeoutError(
                    f"{len(pending)} message(s) still waiting for acknowledgement after {limit:g}s"
                )
        self._failures.raise_first()

    async def close(self, timeout: float | None) -> None:
        try:
            await self.flush(timeout)
        finally:
            if self._raw is not None:
                await self._raw.stop()
