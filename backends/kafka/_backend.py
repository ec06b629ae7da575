"""``KafkaBackend``: a connection to an Apache Kafka cluster through confluent-kafka."""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Mapping
from typing import Any

from confluent_kafka import (
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ConfigResource,
    NewTopic,
    OffsetSpec,
)

import bus
from backends._kafka_groups import group_state, member_host, partition_description
from backends._kafka_options import merged
from backends.kafka._consumer import KafkaConsumer
from backends.kafka._errors import OTHER, Standing, mapped, with_cause
from backends.kafka._producer import KafkaProducer
from backends.kafka._settings import common_config, consumer_config, producer_config
from bus.spi import (
    Backend,
    BackendConfig,
    ConsumerDriver,
    ProducerDriver,
    group_description,
)

#: Longest one wait for an admin answer lasts before looking for a refused login.
_SLICE = 0.1

#: The deadline (``time.monotonic()``) of an admin call and the seconds it was given.
_Budget = tuple[float, float]

#: Seconds between asking again for offsets while a leader moves: doubling, up to the last.
_FIRST_RETRY, _LAST_RETRY = 0.05, 0.5

#: What a partition answers ``ListOffsets`` with while its leadership moves (just after
#: the topic was made, or a broker restarted). librdkafka does not flag each retriable.
_LEADER_MOVING = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.REPLICA_NOT_AVAILABLE,
        KafkaError.OFFSET_NOT_AVAILABLE,
        KafkaError.UNKNOWN_LEADER_EPOCH,
        KafkaError.FENCED_LEADER_EPOCH,
    }
)


def _leader_moving(error: BaseException) -> bool:
    """Whether ``error`` (ours, made from librdkafka's) says a partition's leader moves."""
    cause = error.__cause__
    native = cause.args[0] if isinstance(cause, KafkaException) and cause.args else None
    return isinstance(native, KafkaError) and native.code() in _LEADER_MOVING


class KafkaBackend(Backend):
    """Admin calls go through one ``AdminClient``, made on first use. After creating or
    deleting a topic they wait until the cluster's metadata shows it, so a producer
    made right after sees the topic as it is."""

    def __init__(self, config: BackendConfig):
        self._common = common_config(config.url, config.options)
        self._options = config.options
        self._timeout: float = config.options.get("admin_timeout", 30.0)
        self._admin_client: AdminClient | None = None
        self._lock = threading.Lock()
        self._standing = Standing()  # a wrong password: admin calls raise it, not wait

    def producer(self, settings: Mapping[str, Any]) -> ProducerDriver:
        settings = merged(self._options, settings)
        return KafkaProducer(producer_config(self._common, settings), settings, self.topic_limit)

    def topic_limit(self, topic: str, timeout: float) -> int | None:
        """The topic's ``max.message.bytes`` (its override or the broker's default), or
        None when the cluster does not say within ``timeout`` (no such topic yet, not
        allowed to describe it, a refused login, no answer). Thread-safe."""
        try:
            admin = self._admin()
            futures = admin.describe_configs(
                [ConfigResource("topic", topic)], request_timeout=max(timeout, 0.001)
            )
            (future,) = futures.values()
            deadline = time.monotonic() + timeout
            while not future.done():
                admin.poll(0)
                if time.monotonic() >= deadline or self._standing.current() is not None:
                    return None
                time.sleep(0.005)  # polling the future, bounded by the deadline
            entry = future.result().get("max.message.bytes")
        except Exception:  # of every kind: the limit is then not known, not fatal
            return None
        if entry is None or entry.value is None:
            return None
        return int(entry.value)

    def consumer(
        self, topics: tuple[str, ...], group: str | None, settings: Mapping[str, Any]
    ) -> ConsumerDriver:
        settings = merged(self._options, settings)
        conf = consumer_config(self._common, group, settings)
        return KafkaConsumer(conf, topics, group, settings)

    # -- admin ----------------------------------------------------------------------------------

    def _admin(self) -> AdminClient:
        with self._lock:
            if self._admin_client is None:
                conf = {**self._common, **(self._options.get("config") or {})}
                conf["error_cb"] = self._standing.note
                try:
                    self._admin_client = AdminClient(conf)
                except KafkaException as exc:
                    raise mapped(exc, "config", "kafka:// admin") from exc
            return self._admin_client

    def _metadata(self, topic: str | None = None, timeout: float | None = None) -> Any:
        admin = self._admin()
        seconds = self._timeout if timeout is None else timeout
        try:
            if topic is None:
                return admin.list_topics(timeout=seconds)
            return admin.list_topics(topic, timeout=seconds)
        except KafkaException as exc:
            admin.poll(0)  # serves error_cb: a refused login says why
            self._standing.check()
            raise mapped(exc, OTHER, "cluster metadata") from exc

    def ping(self, timeout: float) -> None:
        """A metadata round trip within ``timeout`` (every topic's: naming one could
        create it on a cluster that creates topics on first use)."""
        admin = self._admin()
        try:
            admin.list_topics(timeout=max(timeout, 0.001))
        except KafkaException as exc:
            admin.poll(0)  # serves error_cb: a refused login says why
            self._standing.check()
            error = exc.args[0] if exc.args else None
            if isinstance(error, KafkaError) and error.code() in (
                KafkaError._TIMED_OUT,
                KafkaError._TRANSPORT,
                KafkaError._ALL_BROKERS_DOWN,
            ):
                raise bus.TimeoutError(
                    f"the cluster did not answer within {timeout:g}s: {error.str()}"
                ) from exc
            raise mapped(exc, OTHER, "ping") from exc
        self._standing.check()

    def _result(self, future: Any, what: str, within: _Budget | None = None) -> Any:
        """Wait for an admin future within ``admin_timeout`` (or the ``within`` budget
        of a call of several requests) and return its result, raising what the cluster
        said, or a refused login as soon as librdkafka reports it."""
        admin = self._admin()
        deadline, seconds = within or self._budget(None)
        limit = f"{seconds:g}s (admin_timeout)" if within is None else f"{seconds:g}s"
        while True:
            try:
                result = future.result(timeout=max(0.0, min(_SLICE, deadline - time.monotonic())))
                self._standing.clear()
                return result
            except KafkaException as exc:
                raise mapped(exc, OTHER, what) from exc
            except TimeoutError:  # concurrent.futures': not done yet
                admin.poll(0)
                self._standing.check()
                if time.monotonic() >= deadline:
                    raise bus.TimeoutError(
                        f"{what}: no answer from the cluster within {limit}"
                    ) from None

    def _wait_for(self, name: str, partitions: int | None) -> None:
        """Until metadata shows ``name`` with ``partitions`` (``None``: until it is gone)."""
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline:
            meta = self._metadata().topics.get(name)
            present = meta is not None and meta.error is None
            if partitions is None and not present:
                return
            if (
                partitions is not None
                and meta is not None
                and present
                and len(meta.partitions) >= partitions
                and all(p.leader >= 0 for p in meta.partitions.values())
            ):
                return
            time.sleep(0.05)
        raise bus.TimeoutError(
            f"topic {name!r} did not {'appear' if partitions else 'go'} within {self._timeout:g}s"
        )

    def create_topic(
        self, name: str, partitions: int, replication_factor: int, config: Mapping[str, str]
    ) -> None:
        topic = NewTopic(
            name,
            num_partitions=partitions,
            replication_factor=replication_factor,
            config=dict(config),
        )
        future = self._admin().create_topics([topic], request_timeout=self._timeout)[name]
        self._result(future, f"create topic {name!r}")
        self._wait_for(name, partitions)

    def delete_topic(self, name: str) -> None:
        future = self._admin().delete_topics([name], request_timeout=self._timeout)[name]
        self._result(future, f"delete topic {name!r}")
        self._wait_for(name, None)

    def topics(self) -> dict[str, int]:
        """Every topic but Kafka's internal ones (names starting with ``__``)."""
        meta = self._metadata()
        return {
            name: len(t.partitions)
            for name, t in sorted(meta.topics.items())
            if not name.startswith("__") and t.error is None
        }

    def partitions(self, topic: str) -> list[int]:
        meta = self._metadata(topic).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise bus.UnknownTopicError(f"topic {topic!r} does not exist")
        return sorted(meta.partitions)

    # -- consumer groups --------------------------------------------------------------------

    def _budget(self, timeout: float | None) -> _Budget:
        seconds = self._timeout if timeout is None else timeout
        return time.monotonic() + seconds, seconds

    def _left(self, within: _Budget) -> float:
        """The ``request_timeout`` librdkafka gets for a call with budget ``within``:
        never less than ``admin_timeout``. ``_result`` keeps the caller's deadline and
        abandons a future that runs late; a request that librdkafka times out itself
        while its answer comes in can abort the process (librdkafka 2.x: an assertion
        in ``rd_kafka_enq_once_del_source_return``), as short ones do."""
        return max(self._timeout, within[1])

    def groups(self, timeout: float | None) -> list[str]:
        within = self._budget(timeout)
        future = self._admin().list_consumer_groups(request_timeout=self._left(within))
        listed = self._result(future, "list consumer groups", within)
        if listed.errors:
            error = listed.errors[0]
            raise with_cause(mapped(error, OTHER, "list consumer groups"), error)
        return sorted({g.group_id for g in listed.valid})

    def describe_group(self, group: str, timeout: float | None) -> bus.GroupDescription:
        within = self._budget(timeout)
        admin = self._admin()
        # Both requests at once: they go to the group's coordinator.
        described = admin.describe_consumer_groups([group], request_timeout=self._left(within))
        offsets = admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group)], request_timeout=self._left(within)
        )
        what = f"describe consumer group {group!r}"
        found = self._result(described[group], what, within)
        listed = self._result(offsets[group], what, within)
        committed = {
            bus.TopicPartition(tp.topic, tp.partition): tp.offset
            for tp in listed.topic_partitions or ()
            if tp.offset >= 0
        }
        members = [
            bus.GroupMember(
                m.member_id,
                m.client_id or None,
                member_host(m.host),
                frozenset(
                    bus.TopicPartition(tp.topic, tp.partition)
                    for tp in (m.assignment.topic_partitions if m.assignment else ())
                ),
            )
            for m in found.members or ()
        ]
        state = group_state(found.state.name)
        if state == "dead" and not members and not committed:
            raise bus.UnknownGroupError(f"consumer group {group!r} does not exist")
        wanted = set(committed).union(*(m.assignment for m in members))
        return group_description(group, state, members, committed, self._ends(wanted, what, within))

    def _ends(
        self, partitions: set[bus.TopicPartition], what: str, within: _Budget
    ) -> dict[bus.TopicPartition, int]:
        """The log end offset of each of ``partitions`` that still exists."""
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        return self._list_offsets(partitions, latest, what, within, missing_ok=True)

    def _list_offsets(
        self,
        partitions: Collection[bus.TopicPartition],
        spec: Any,
        what: str,
        within: _Budget,
        *,
        missing_ok: bool,
    ) -> dict[bus.TopicPartition, int]:
        """The offset ``spec`` names in each of ``partitions``, asked again while a
        partition's leader moves (as just after the topic was made), until ``within``
        runs out; a partition whose topic is gone is left out with ``missing_ok``."""
        delay = _FIRST_RETRY
        while True:
            try:
                return self._offsets_once(partitions, spec, what, within, missing_ok)
            except bus.BusError as exc:
                if not _leader_moving(exc) or time.monotonic() + delay >= within[0]:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, _LAST_RETRY)

    def _offsets_once(
        self,
        partitions: Collection[bus.TopicPartition],
        spec: Any,
        what: str,
        within: _Budget,
        missing_ok: bool,
    ) -> dict[bus.TopicPartition, int]:
        if not partitions:
            return {}
        futures = self._admin().list_offsets(
            {TopicPartition(tp.topic, tp.partition): spec for tp in partitions},
            request_timeout=self._left(within),
        )
        found = {}
        for tp, future in futures.items():
            try:
                info = self._result(future, what, within)
            except bus.UnknownTopicError:
                if not missing_ok:
                    raise
                continue  # deleted meanwhile
            found[bus.TopicPartition(tp.topic, tp.partition)] = info.offset
        return found

    # -- describing a topic -----------------------------------------------------------------

    def describe_topic(self, topic: str, timeout: float | None) -> bus.TopicDescription:
        """Leaders, replicas and in-sync replicas from the cluster metadata; the
        watermarks from ``ListOffsets`` (earliest, then latest)."""
        within = self._budget(timeout)
        what = f"describe topic {topic!r}"
        meta = self._metadata(topic, max(within[0] - time.monotonic(), 0.001)).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise bus.UnknownTopicError(f"topic {topic!r} does not exist")
        every = [bus.TopicPartition(topic, n) for n in sorted(meta.partitions)]
        earliest = OffsetSpec.earliest()  # type: ignore[no-untyped-call]
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        lows = self._list_offsets(every, earliest, what, within, missing_ok=False)
        highs = self._list_offsets(every, latest, what, within, missing_ok=False)
        return bus.TopicDescription(
            topic,
            [
                partition_description(
                    tp.partition,
                    lows[tp],
                    highs[tp],
                    meta.partitions[tp.partition].leader,
                    meta.partitions[tp.partition].replicas,
                    meta.partitions[tp.partition].isrs,
                )
                for tp in every
            ],
        )
