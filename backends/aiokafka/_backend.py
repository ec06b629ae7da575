"""``AioKafkaBackend``: asyncio clients of an Apache Kafka cluster through aiokafka.

The ``Bus`` admin methods are blocking. Here they run on a private event loop in a
background thread (made on the first admin call, closed with the bus), so they never
need the application's loop: called from a coroutine, they block that loop for one
admin round trip (milliseconds on a healthy cluster; ``admin_timeout`` at worst).
Async code that cannot afford that calls them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

import bus
from backends._kafka_options import merged
from backends.aiokafka import _auth
from backends.aiokafka._consumer import AioKafkaConsumer
from backends.aiokafka._errors import OTHER, mapped
from backends.aiokafka._producer import AioKafkaProducer
from backends.aiokafka._settings import (
    check_kwargs,
    common_kwargs,
    consumer_kwargs,
    producer_kwargs,
)
from bus.spi import AsyncConsumerDriver, AsyncProducerDriver, Backend, BackendConfig

_T = TypeVar("_T")
_Kwargs = TypeVar("_Kwargs", bound=Mapping[str, Any])

_auth.install_log_filter()


def _protected(kwargs: _Kwargs) -> _Kwargs:
    """``kwargs``, whose passwords aiokafka's log records will not show."""
    _auth.protect(kwargs.get("sasl_plain_password"))
    return kwargs


class AioKafkaBackend(Backend):
    def __init__(self, config: BackendConfig):
        self._common = _protected(common_kwargs(config.url, config.options))
        _auth.protect(config.options.get("ssl_password"))
        self._options = config.options
        self._timeout: float = config.options.get("admin_timeout", 30.0)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._admin_client: AIOKafkaAdminClient | None = None
        self._lock = threading.Lock()

    def async_producer(self, settings: Mapping[str, Any]) -> AsyncProducerDriver:
        settings = merged(self._options, settings)
        kwargs = _protected(producer_kwargs(self._common, settings))
        check_kwargs(AIOKafkaProducer, kwargs, "producer")
        return AioKafkaProducer(kwargs, settings)

    def async_consumer(
        self, topics: tuple[str, ...], group: str | None, settings: Mapping[str, Any]
    ) -> AsyncConsumerDriver:
        settings = merged(self._options, settings)
        kwargs = _protected(consumer_kwargs(self._common, group, settings))
        check_kwargs(AIOKafkaConsumer, kwargs, "consumer")
        return AioKafkaConsumer(kwargs, topics, group, settings)

    # -- admin on a private loop ------------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="bus-aiokafka-admin", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(self._timeout + 5)
        except TimeoutError:
            future.cancel()
            raise bus.TimeoutError(f"admin call took longer than {self._timeout:g}s") from None

    async def _admin(self) -> AIOKafkaAdminClient:
        if self._admin_client is None:
            kwargs = {**self._common, "request_timeout_ms": int(self._timeout * 1000)}
            kwargs.pop("client_id", None)
            client = AIOKafkaAdminClient(**kwargs)
            try:
                await _auth.start(client.start(), kwargs, self._timeout)
            except (KafkaError, asyncio.TimeoutError, OSError) as exc:
                await client.close()
                raise mapped(exc, OTHER, "aiokafka:// admin could not connect") from exc
            self._admin_client = client
        return self._admin_client

    async def _metadata(self) -> dict[str, int]:
        admin = await self._admin()
        try:
            described = await admin.describe_topics()
        except KafkaError as exc:
            raise mapped(exc, OTHER, "cluster metadata") from exc
        return {
            t["topic"]: len(t["partitions"])
            for t in described
            if not t.get("error_code") and not t.get("is_internal")
        }

    async def _wait_for(self, name: str, partitions: int | None) -> None:
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline:
            found = (await self._metadata()).get(name)
            if (partitions is None and found is None) or (
                partitions is not None and found is not None and found >= partitions
            ):
                return
            await asyncio.sleep(0.05)
        raise bus.TimeoutError(
            f"topic {name!r} did not {'appear' if partitions else 'go'} within {self._timeout:g}s"
        )

    async def _create(
        self, name: str, partitions: int, replication_factor: int, config: Mapping[str, str]
    ) -> None:
        admin = await self._admin()
        topic = NewTopic(name, partitions, replication_factor, topic_configs=dict(config))
        try:
            response = await admin.create_topics([topic])
        except KafkaError as exc:
            raise mapped(exc, OTHER, f"create topic {name!r}") from exc
        _raise_topic_errors(response, name)
        await self._wait_for(name, partitions)

    async def _delete(self, name: str) -> None:
        admin = await self._admin()
        try:
            response = await admin.delete_topics([name])
        except KafkaError as exc:
            raise mapped(exc, OTHER, f"delete topic {name!r}") from exc
        _raise_topic_errors(response, name)
        await self._wait_for(name, None)

    def create_topic(
        self, name: str, partitions: int, replication_factor: int, config: Mapping[str, str]
    ) -> None:
        self._run(self._create(name, partitions, replication_factor, config))

    def delete_topic(self, name: str) -> None:
        self._run(self._delete(name))

    def topics(self) -> dict[str, int]:
        """Every topic but Kafka's internal ones."""
        return dict(sorted(self._run(self._metadata()).items()))

    def partitions(self, topic: str) -> list[int]:
        count = self._run(self._metadata()).get(topic)
        if count is None:
            raise bus.UnknownTopicError(f"topic {topic!r} does not exist")
        return list(range(count))

    async def _ping(self) -> None:
        admin = await self._admin()
        try:
            await admin.describe_cluster()
        except KafkaError as exc:
            raise mapped(exc, OTHER, "ping") from exc

    def ping(self, timeout: float) -> None:
        """A metadata round trip (``describe_cluster``) within ``timeout``."""

        async def bounded() -> None:
            try:
                await asyncio.wait_for(self._ping(), timeout)
            except asyncio.TimeoutError:
                raise bus.TimeoutError(f"the cluster did not answer within {timeout:g}s") from None

        self._run(bounded())

    def close(self) -> None:
        if self._loop is None:
            return
        if self._admin_client is not None:
            client = self._admin_client
            self._admin_client = None
            self._run(client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        self._loop.close()
        self._loop = None


def _raise_topic_errors(response: Any, name: str) -> None:
    """Raise the error a CreateTopics/DeleteTopics response carries for ``name``."""
    from aiokafka.errors import for_code

    entries: Any = getattr(response, "topic_errors", None) or getattr(
        response, "topic_error_codes", None
    )
    for entry in entries or ():
        code = entry[1]
        if code:
            message = entry[2] if len(entry) > 2 and entry[2] else ""
            raise mapped(for_code(code)(message), OTHER, f"topic {name!r}")
