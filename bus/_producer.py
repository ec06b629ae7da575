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
from bus._errors import BusError, ClosedError, UnsupportedError
from bus._interceptors import Chain
from bus._message import Delivery, Message
from bus.spi import (
    CAPABILITIES,
    AsyncProducerDriver,
    DeliveryCallback,
    ProducerDriver,
    UnclaimedFailures,
)

_T = TypeVar("_T")


def _fields(*fields: Any) -> tuple[Any, ...]:
    return fields


def _listed(messages: Iterable[Message]) -> list[Message]:
    """``send_batch``'s argument as a list of ``bus.Message``, or ``TypeError``."""
    try:
        batch = list(messages)
    except TypeError:
        raise TypeError(
            f"send_batch takes an iterable of bus.Message, not {type(messages).__name__}"
        ) from None
    for i, m in enumerate(batch):
        if not isinstance(m, Message):
            raise TypeError(f"send_batch takes bus.Message items; item {i} is {type(m).__name__}")
    return batch


class _ProducerCore:
    """What both producers share: argument checks and serialization, no I/O."""

    def __init__(
        self,
        backend: str,
        encode_value: Encoder | None,
        encode_key: Encoder | None,
        capabilities: frozenset[str] | None,
        interceptors: Chain | None,
    ):
        self._chain = interceptors  # None: the hot paths never look at interceptors
        self._unclaimed = UnclaimedFailures()  # intercepted enqueues without on_delivery
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
        batch = _listed(messages)
        plain = self._encode_value is None and self._encode_key is None
        if self._no_headers or self._no_timestamps:
            plain = False  # every message takes the checked path
        for i, m in enumerate(batch):
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

    # -- interceptors: what the intercepted paths share -----------------------------------

    def _message_in(
        self, topic: Any, value: Any, key: Any, headers: Any, partition: Any, timestamp: Any
    ) -> Message:
        """The message as the application gave it, checked but not serialized: what
        ``on_send`` sees."""
        if self._closed:
            raise ClosedError(f"{type(self).__name__} is closed")
        check_topic(topic)
        headers = () if headers is None else check_headers(headers)
        if headers and self._no_headers:
            raise self._unsupported("headers", "headers")
        partition = check_optional_int(partition, "partition")
        timestamp = check_optional_int(timestamp, "timestamp")
        if timestamp is not None and self._no_timestamps:
            raise self._unsupported("a producer timestamp", "timestamps")
        return Message(topic, value, key, headers, partition, None, timestamp)

    def _sent(self, chain: Chain, messages: Iterable[Message]) -> list[Message]:
        """``on_send`` for every message of a ``send_batch``, before any is sent."""
        if self._closed:
            raise ClosedError(f"{type(self).__name__} is closed")
        return [chain.send(m) for m in _listed(messages)]

    @staticmethod
    def _acknowledge_batch(
        chain: Chain, given: list[Message], outcomes: list[Delivery | BusError]
    ) -> None:
        for m, outcome in zip(given, outcomes, strict=True):
            if isinstance(outcome, Delivery):
                chain.acknowledged(m, outcome, None)
            else:
                chain.acknowledged(m, None, outcome)

    def _intercepted_report(
        self, chain: Chain, message: Message, on_delivery: DeliveryCallback | None
    ) -> tuple[DeliveryCallback, list[bool]]:
        """The ``on_delivery`` an intercepted ``enqueue`` gives its driver, and the flag
        it sets: ``on_acknowledgement`` first, then the application's callback (or,
        without one, a failure kept for ``flush``)."""
        done: list[bool] = []
        unclaimed = self._unclaimed

        def report(delivery: Delivery | None, error: BusError | None) -> None:
            done.append(True)
            chain.acknowledged(message, delivery, error)
            if on_delivery is not None:
                on_delivery(delivery, error)
            elif error is not None:
                unclaimed.add(error)

        return report, done

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
        interceptors: Chain | None = None,
    ):
        super().__init__(backend, encode_value, encode_key, capabilities, interceptors)
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
        if self._chain is not None:
            return self._send_intercepted(
                self._chain, topic, value, key, headers, partition, timestamp, timeout
            )
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

    def _send_intercepted(
        self,
        chain: Chain,
        topic: Any,
        value: Any,
        key: Any,
        headers: Any,
        partition: Any,
        timestamp: Any,
        timeout: Any,
    ) -> Delivery:
        timeout = check_timeout(timeout)
        m = chain.send(self._message_in(topic, value, key, headers, partition, timestamp))
        try:
            delivery = self._handoff(
                self._driver.send,
                m.topic,
                m.value,
                m.key,
                m.headers,
                m.partition,
                m.timestamp,
                timeout,
            )
        except BusError as error:
            chain.acknowledged(m, None, error)
            raise
        chain.acknowledged(m, delivery, None)
        return delivery

    def send_batch(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> list[Delivery]:
        """Write many messages; return their deliveries in input order.

        If any message fails, raises ``bus.DeliveryError`` whose ``outcomes`` hold each
        message's ``Delivery`` or error, in input order.
        """
        timeout = check_timeout(timeout)
        if self._chain is not None:
            given = self._sent(self._chain, messages)
            outcomes = self._driver.send_batch(self._prepare_batch(given), timeout)
            self._acknowledge_batch(self._chain, given, outcomes)
            return batch_outcome(outcomes)
        batch = self._prepare_batch(messages)
        return batch_outcome(self._driver.send_batch(batch, timeout))

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
        if self._chain is not None:
            chain = self._chain
            m = chain.send(self._message_in(topic, value, key, headers, partition, timestamp))
            report, done = self._intercepted_report(chain, m, on_delivery)
            try:
                self._handoff(
                    self._enqueue,
                    m.topic,
                    m.value,
                    m.key,
                    m.headers,
                    m.partition,
                    m.timestamp,
                    report,
                )
            except BusError as error:
                if not done:  # it never reached the driver's reports
                    chain.acknowledged(m, None, error)
                raise
            return
        self._handoff(self._enqueue, topic, value, key, headers, partition, timestamp, on_delivery)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every enqueued message is acknowledged or failed.

        Raises ``bus.TimeoutError`` saying how many are pending, and the first failure
        of a message enqueued without ``on_delivery``.
        """
        if self._closed:
            raise ClosedError("Producer is closed")
        self._driver.flush(check_timeout(timeout))
        self._unclaimed.raise_first()

    def close(self, timeout: float | None = None) -> None:
        """Flush, then release. Idempotent; raises what ``flush`` raises, closed anyway."""
        timeout = check_timeout(timeout)
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._driver.close(timeout)
            self._unclaimed.raise_first()
        finally:
            if self._chain is not None:
                self._chain.close()

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
        interceptors: Chain | None = None,
    ):
        super().__init__(backend, encode_value, encode_key, capabilities, interceptors)
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
        if self._chain is not None:
            chain = self._chain
            timeout = check_timeout(timeout)
            m = chain.send(self._message_in(topic, value, key, headers, partition, timestamp))
            try:
                delivery = await self._handoff(
                    self._driver.send,
                    m.topic,
                    m.value,
                    m.key,
                    m.headers,
                    m.partition,
                    m.timestamp,
                    timeout,
                )
            except BusError as error:
                chain.acknowledged(m, None, error)
                raise
            chain.acknowledged(m, delivery, None)
            return delivery
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
        timeout = check_timeout(timeout)
        if self._chain is not None:
            given = self._sent(self._chain, messages)
            outcomes = await self._driver.send_batch(self._prepare_batch(given), timeout)
            self._acknowledge_batch(self._chain, given, outcomes)
            return batch_outcome(outcomes)
        batch = self._prepare_batch(messages)
        return batch_outcome(await self._driver.send_batch(batch, timeout))

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
        if self._chain is not None:
            chain = self._chain
            m = chain.send(self._message_in(topic, value, key, headers, partition, timestamp))
            report, done = self._intercepted_report(chain, m, on_delivery)
            try:
                await self._handoff(
                    self._driver.enqueue,
                    m.topic,
                    m.value,
                    m.key,
                    m.headers,
                    m.partition,
                    m.timestamp,
                    report,
                )
            except BusError as error:
                if not done:  # it never reached the driver's reports
                    chain.acknowledged(m, None, error)
                raise
            return
        await self._handoff(
            self._driver.enqueue, topic, value, key, headers, partition, timestamp, on_delivery
        )

    async def flush(self, timeout: float | None = None) -> None:
        """Wait for every enqueued message; raise as ``Producer.flush`` does."""
        if self._closed:
            raise ClosedError("AsyncProducer is closed")
        await self._driver.flush(check_timeout(timeout))
        self._unclaimed.raise_first()

    async def close(self, timeout: float | None = None) -> None:
        """Flush, then release. Idempotent; raises what ``flush`` raises, closed anyway."""
        timeout = check_timeout(timeout)
        if self._closed:
            return
        self._closed = True
        try:
            await self._driver.close(timeout)
            self._unclaimed.raise_first()
        finally:
            if self._chain is not None:
                self._chain.close()

    async def __aenter__(self) -> AsyncProducer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
