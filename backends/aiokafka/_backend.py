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
from aiokafka import TopicPartition as RawTP
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.protocol import ConsumerProtocol
from aiokafka.errors import GroupIdNotFound, KafkaError

import bus
from backends._kafka_groups import group_state, member_host, partition_description
from backends._kafka_options import merged
from backends.aiokafka import _auth
from backends.aiokafka._client import no_auto_create
from backends.aiokafka._consumer import AioKafkaConsumer
from backends.aiokafka._errors import OTHER, mapped
from backends.aiokafka._producer import AioKafkaProducer
from backends.aiokafka._settings import (
    check_kwargs,
    common_kwargs,
    consumer_kwargs,
    producer_kwargs,
)
from bus.spi import (
    AsyncConsumerDriver,
    AsyncProducerDriver,
    Backend,
    BackendConfig,
    group_description,
)

_T = TypeVar("_T")
_CONSUMER = ConsumerProtocol.PROTOCOL_TYPE  # "consumer"
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
        self._offsets_reader: AIOKafkaConsumer | None = None  # log end offsets
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
        except bus.TimeoutError:  # the call's own, with what it says (a builtin one too)
            raise
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

    async def _describe_topic(self, topic: str) -> bus.TopicDescription:
        """Leaders and replicas from the metadata of every topic (naming one could
        create it on a cluster that creates topics on first use); the watermarks
        through the offsets reader."""
        admin = await self._admin()
        try:
            described = await admin.describe_topics()
        except KafkaError as exc:
            raise mapped(exc, OTHER, "cluster metadata") from exc
        found = [t for t in described if t["topic"] == topic and not t.get("error_code")]
        if not found or not found[0]["partitions"]:
            raise bus.UnknownTopicError(f"topic {topic!r} does not exist")
        partitions = {p["partition"]: p for p in found[0]["partitions"]}
        raw = [RawTP(topic, n) for n in sorted(partitions)]
        reader = await self._reader()
        try:
            with no_auto_create():
                lows = await reader.beginning_offsets(raw)
                highs = await reader.end_offsets(raw)
        except KafkaError as exc:
            raise mapped(exc, OTHER, f"describe topic {topic!r}") from exc
        return bus.TopicDescription(
            topic,
            [
                partition_description(
                    tp.partition,
                    lows[tp],
                    highs[tp],
                    partitions[tp.partition]["leader"],
                    partitions[tp.partition]["replicas"],
                    partitions[tp.partition]["isr"],
                )
                for tp in raw
            ],
        )

    def describe_topic(self, topic: str, timeout: float | None) -> bus.TopicDescription:
        return self._bounded(self._describe_topic(topic), timeout, f"describe topic {topic!r}")

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

    # -- consumer groups (on the private loop) ------------------------------------------

    def _bounded(self, coro: Coroutine[Any, Any, _T], timeout: float | None, what: str) -> _T:
        """Run ``coro`` on the private loop within ``timeout`` seconds (``None``:
        ``admin_timeout``)."""
        seconds = self._timeout if timeout is None else timeout

        async def bounded() -> _T:
            try:
                return await asyncio.wait_for(coro, seconds)
            except asyncio.TimeoutError:
                raise bus.TimeoutError(
                    f"{what}: no answer from the cluster within {seconds:g}s"
                ) from None

        return self._run(bounded())

    async def _list_groups(self) -> list[str]:
        admin = await self._admin()
        try:
            listed = await admin.list_consumer_groups()
        except KafkaError as exc:
            raise mapped(exc, OTHER, "list consumer groups") from exc
        # Consumer groups only (protocol type "consumer", or "" for offsets alone), as
        # Kafka's own admin client lists them: not Connect's workers, say.
        return sorted({entry[0] for entry in listed if entry[1] in (_CONSUMER, "")})

    def groups(self, timeout: float | None) -> list[str]:
        return self._bounded(self._list_groups(), timeout, "list consumer groups")

    async def _describe(self, group: str) -> bus.GroupDescription:
        from aiokafka.errors import for_code

        admin = await self._admin()
        what = f"describe consumer group {group!r}"
        try:
            (response,) = await admin.describe_consumer_groups([group])
            offsets = await admin.list_consumer_group_offsets(group)
        except KafkaError as exc:
            raise mapped(exc, OTHER, what) from exc
        (found,) = [g for g in response.groups if g[1] == group]
        error_code, _, native_state, protocol_type, _, raw_members = found[:6]
        if error_code:
            error = for_code(error_code)(what)
            if isinstance(error, GroupIdNotFound):
                raise bus.UnknownGroupError(f"consumer group {group!r} does not exist")
            raise mapped(error, OTHER, what)
        committed = {
            bus.TopicPartition(tp.topic, tp.partition): meta.offset
            for tp, meta in offsets.items()
            if meta.offset >= 0
        }
        members = [
            bus.GroupMember(
                member_id,
                client_id or None,
                member_host(host),
                _assignment(raw) if protocol_type == _CONSUMER else frozenset(),
            )
            for member_id, client_id, host, _, raw in raw_members
        ]
        state = group_state(native_state)
        if state == "dead" and not members and not committed:
            raise bus.UnknownGroupError(f"consumer group {group!r} does not exist")
        wanted = set(committed).union(*(m.assignment for m in members))
        return group_description(group, state, members, committed, await self._ends(wanted))

    async def _ends(self, partitions: set[bus.TopicPartition]) -> dict[bus.TopicPartition, int]:
        """The log end offset of each of ``partitions`` whose topic still exists, through
        a consumer without a group (made on first use, kept until ``close``)."""
        counts = await self._metadata() if partitions else {}
        raw = [
            RawTP(tp.topic, tp.partition)
            for tp in partitions
            if tp.partition < counts.get(tp.topic, 0)
        ]
        if not raw:
            return {}
        reader = await self._reader()
        try:
            with no_auto_create():
                ends = await reader.end_offsets(raw)
        except KafkaError as exc:
            raise mapped(exc, OTHER, "log end offsets") from exc
        return {bus.TopicPartition(tp.topic, tp.partition): end for tp, end in ends.items()}

    async def _reader(self) -> AIOKafkaConsumer:
        if self._offsets_reader is None:
            kwargs = {
                **self._common,
                "enable_auto_commit": False,
                "request_timeout_ms": int(self._timeout * 1000),
            }
            reader = AIOKafkaConsumer(**kwargs)
            try:
                with no_auto_create():
                    await _auth.start(reader.start(), kwargs, self._timeout)
            except BaseException as exc:  # cancelled by the call's timeout too: stop it
                await reader.stop()
                if isinstance(exc, (KafkaError, asyncio.TimeoutError, OSError)):
                    what = "aiokafka:// offsets reader could not connect"
                    raise mapped(exc, OTHER, what) from exc
                raise
            self._offsets_reader = reader
        return self._offsets_reader

    def describe_group(self, group: str, timeout: float | None) -> bus.GroupDescription:
        return self._bounded(self._describe(group), timeout, f"describe consumer group {group!r}")

    def close(self) -> None:
        if self._loop is None:
            return
        if self._offsets_reader is not None:
            reader, self._offsets_reader = self._offsets_reader, None
            self._run(reader.stop())
        if self._admin_client is not None:
            client = self._admin_client
            self._admin_client = None
            self._run(client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        self._loop.close()
        self._loop = None


def _assignment(raw: bytes) -> frozenset[bus.TopicPartition]:
    """A member's assignment, from the consumer protocol's bytes (none: nothing yet)."""
    if not raw:
        return frozenset()
    decoded = ConsumerProtocol.ASSIGNMENT.decode(raw)
    return frozenset(bus.TopicPartition(tp.topic, tp.partition) for tp in decoded.partitions())


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
