"""``Producer`` and ``AsyncProducer``: the public producing API over a backend driver."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from bus._callbacks import guarded
from bus._checks import (
    batch_outcome,
    check_bytes,
    check_headers,
    check_optional_int,
    check_timeout,
    check_topic,
    serialize,
)
from bus._codecs import Encoder
from bus._errors import ClosedError, UnsupportedError
from bus._message import Delivery, Message
from bus.spi import CAPABILITIES, AsyncProducerDriver, DeliveryCallback, ProducerDriver

_T = TypeVar("_T")


def _fields(*fields: Any) -> tuple[Any, ...]:
    return fields


class _ProducerCore:
    """What both producers share: argument checks and serialization, no I/O."""

    def __init__(
        self,
        backend: str,
        encode_value: Encoder | None,
        encode_key: Encoder | None,
        capabilities: frozenset[str] | None,
    ):
        self._backend = backend
        self._encode_value = encode_value
        self._encode_key = encode_key
        self._topics: set[str] = set()  # names already checked
        self._closed = False
        caps = CAPABILITIES.keys() if capabilities is None else capabilities
        self._no_headers = "headers" not in caps
        self._no_timestamps = "timestamps" not in caps

    def _unsupported(self, what: str, capability: str) -> UnsupportedError:
        return UnsupportedError(
            f"backend {self._backend!r} cannot carry {what} (it lacks the {capability!r} "
            "capability)"
        )

    def _handoff(
        self,
        call: Callable[..., _T],
        topic: Any,
        value: Any,
        key: Any,
        headers: Any,
        partition: Any,
        timestamp: Any,
        last: Any,
    ) -> _T:
        """Check and serialize one message's fields, then ``call(*fields, last)``: the
        driver's ``send``/``enqueue`` (or, for the async twin, the coroutine to await).
        The hot path of every producer, so no intermediate tuple is built."""
        if self._closed:
            raise ClosedError(f"{type(self).__name__} is closed")
        if topic.__class__ is not str or topic not in self._topics:  # a list is unhashable
            self._topics.add(check_topic(topic))
        if self._encode_value is None:
            if value is not None and value.__class__ is not bytes:
                value = check_bytes(value, "value")
        else:
            value = serialize(self._encode_value, value, "value", topic)
        if key is not None:
            if self._encode_key is None:
                if key.__class__ is not bytes:
                    key = check_bytes(key, "key")
            else:
                key = serialize(self._encode_key, key, "key", topic)
        if headers is None:
            headers = ()
        else:
            headers = check_headers(headers)
            if headers and self._no_headers:
                raise self._unsupported("headers", "headers")
        if partition is not None:
            partition = check_optional_int(partition, "partition")
        if timestamp is not None:
            timestamp = check_optional_int(timestamp, "timestamp")
            if self._no_timestamps:
                raise self._unsupported("a producer timestamp", "timestamps")
        return call(topic, value, key, headers, partition, timestamp, last)

    def _prepare_batch(self, messages: Iterable[Message]) -> list[Message]:
        if self._closed:
            raise ClosedError(f"{type(self).__name__} is closed")
        try:
            batch = list(messages)
        except TypeError:
            raise TypeError(
                f"send_batch takes an iterable of bus.Message, not {type(messages).__name__}"
            ) from None
        plain = self._encode_value is None and self._encode_key is None
        if self._no_headers or self._no_timestamps:
            plain = False  # every message takes the checked path
        for i, m in enumerate(batch):
            if not isinstance(m, Message):
                raise TypeError(
                    f"send_batch takes bus.Message items; item {i} is {type(m).__name__}"
                )
            if (
                plain
                and (m.value is None or m.value.__class__ is bytes)
                and (m.key is None or m.key.__class__ is bytes)
                and m.topic.__class__ is str
                and m.topic in self._topics
                and not m.headers
                and m.partition is None
                and m.timestamp is None
            ):
                continue
            _, value, key, headers, partition, timestamp, _ = self._handoff(
                _fields, m.topic, m.value, m.key, m.headers, m.partition, m.timestamp, None
            )
            if (
                value is not m.value
                or key is not m.key
                or headers is not m.headers
                or partition is not m.partition
                or timestamp is not m.timestamp
            ):
                batch[i] = m.replace(
                    value=value,
                    key=key,
                    headers=headers,
                    partition=partition,
                    timestamp=timestamp,
                )
        return batch

    @staticmethod
    def _not_a_callback(on_delivery: Any) -> TypeError:
        """The error for an ``on_delivery`` that ``enqueue`` found not callable (the
        check stays inline there: it runs for every message)."""
        return TypeError(
            "on_delivery must be a callable(delivery, error) or None, not "
            f"{type(on_delivery).__name__}"
        )

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<{type(self).__name__} backend={self._backend!r} {state}>"


class Producer(_ProducerCore):
    """Writes messages to topics and waits for the broker's acknowledgements.

    Thread-safe: any number of threads may send through one producer. Order is kept
    per partition for messages sent from one thread. ``send`` returns once the broker
    acknowledged the message under the producer's ``acks``; ``enqueue`` returns at once
    and reports through ``on_delivery`` (a failure without a callback is raised by the
    next ``flush()`` or ``close()``, never dropped). ``close()`` flushes, then
    releases; it is idempotent, and any later call raises ``bus.ClosedError``.
    Use it as a context manager to close it.
    """

    def __init__(
        self,
        driver: ProducerDriver,
        backend: str,
        encode_value: Encoder | None = None,
        encode_key: Encoder | None = None,
        *,
        capabilities: frozenset[str] | None = None,
    ):
        super().__init__(backend, encode_value, encode_key, capabilities)
        self._driver = driver
        self._enqueue = driver.enqueue
        self._close_lock = threading.Lock()

    def send(
        self,
        topic: str,
        value: Any,
        *,
        key: Any = None,
        headers: Any = None,
        partition: int | None = None,
        timestamp: int | None = None,
        timeout: float | None = None,
    ) -> Delivery:
        """Write one message and return its ``Delivery`` once acknowledged.

        Raises ``bus.DeliveryError`` (``MessageTooLarge``, ...) if the broker refused
        it and ``bus.TimeoutError`` if no acknowledgement came within ``timeout``
        seconds (default: the producer's ``delivery_timeout``).
        """
        return self._handoff(
            self._driver.send,
            topic,
            value,
            key,
            headers,
            partition,
            timestamp,
            check_timeout(timeout),
        )

    def send_batch(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> list[Delivery]:
        """Write many messages; return their deliveries in input order.

        If any message fails, raises ``bus.DeliveryError`` whose ``outcomes`` hold each
        message's ``Delivery`` or error, in input order.
        """
        batch = self._prepare_batch(messages)
        return batch_outcome(self._driver.send_batch(batch, check_timeout(timeout)))

    def enqueue(
        self,
        topic: str,
        value: Any,
        *,
        key: Any = None,
        headers: Any = None,
        partition: int | None = None,
        timestamp: int | None = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        """Hand a message over without waiting for its acknowledgement.

        Waits only while the local buffer is full. ``on_delivery(delivery, error)`` is
        called exactly once, possibly before ``enqueue`` returns and possibly from
        another thread of the backend.
        """
        if on_delivery is not None:
            if not callable(on_delivery):
                raise self._not_a_callback(on_delivery)
            on_delivery = guarded(on_delivery, "on_delivery")
        self._handoff(self._enqueue, topic, value, key, headers, partition, timestamp, on_delivery)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every enqueued message is acknowledged or failed.

        Raises ``bus.TimeoutError`` saying how many are pending, and the first failure
        of a message enqueued without ``on_delivery``.
        """
        if self._closed:
            raise ClosedError("Producer is closed")
        self._driver.flush(check_timeout(timeout))

    def close(self, timeout: float | None = None) -> None:
        """Flush, then release. Idempotent; raises what ``flush`` raises, closed anyway."""
        timeout = check_timeout(timeout)
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._driver.close(timeout)

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncProducer(_ProducerCore):
    """The asyncio twin of ``Producer``: the same methods, as coroutines.

    Safe to use from many tasks of one event loop (not from several loops). ``close()``
    flushes, then releases; it is idempotent, and any later call raises
    ``bus.ClosedError``. Use it as an async context manager to close it.
    """

    def __init__(
        self,
        driver: AsyncProducerDriver,
        backend: str,
        encode_value: Encoder | None = None,
        encode_key: Encoder | None = None,
        *,
        capabilities: frozenset[str] | None = None,
    ):
        super().__init__(backend, encode_value, encode_key, capabilities)
        self._driver = driver

    async def send(
        self,
        topic: str,
        value: Any,
        *,
        key: Any = None,
        headers: Any = None,
        partition: int | None = None,
        timestamp: int | None = None,
        timeout: float | None = None,
    ) -> Delivery:
        """Write one message and return its ``Delivery`` once acknowledged."""
        return await self._handoff(
            self._driver.send,
            topic,
            value,
            key,
            headers,
            partition,
            timestamp,
            check_timeout(timeout),
        )

    async def send_batch(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> list[Delivery]:
        """Write many messages; deliveries in input order, or ``bus.DeliveryError``."""
        batch = self._prepare_batch(messages)
        return batch_outcome(await self._driver.send_batch(batch, check_timeout(timeout)))

    async def enqueue(
        self,
        topic: str,
        value: Any,
        *,
        key: Any = None,
        headers: Any = None,
        partition: int | None = None,
        timestamp: int | None = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        """Hand a message over without waiting for its acknowledgement."""
        if on_delivery is not None:
            if not callable(on_delivery):
                raise self._not_a_callback(on_delivery)
            on_delivery = guarded(on_delivery, "on_delivery")
        await self._handoff(
            self._driver.enqueue, topic, value, key, headers, partition, timestamp, on_delivery
        )

    async def flush(self, timeout: float | None = None) -> None:
        """Wait for every enqueued message; raise as ``Producer.flush`` does."""
        if self._closed:
            raise ClosedError("AsyncProducer is closed")
        await self._driver.flush(check_timeout(timeout))

    async def close(self, timeout: float | None = None) -> None:
        """Flush, then release. Idempotent; raises what ``flush`` raises, closed anyway."""
        timeout = check_timeout(timeout)
        if self._closed:
            return
        self._closed = True
        await self._driver.close(timeout)

    async def __aenter__(self) -> AsyncProducer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
