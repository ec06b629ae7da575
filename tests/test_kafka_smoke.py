"""Smoke tests of the real-Kafka harness with the raw clients (confluent-kafka, aiokafka).

Single broker (``kafka_broker``): topic with 3 partitions, idempotent ``acks=all``
producer, consumer group, commit, committed offsets read back, for both clients; the two
clients' partitioners agree; a broker restart keeps data and committed offsets.

3-node cluster (``kafka_cluster``): SIGKILL the leader of a partition while producing with
``acks=all``; every acknowledged record must be readable afterwards at its acknowledged
offset.  The killed node is restarted at the end.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin import NewTopic as AIONewTopic
from aiokafka.errors import CommitFailedError
from aiokafka.structs import TopicPartition as AIOTopicPartition
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

PARTITIONS = 3
COUNT = 300


def unique(prefix: str) -> str:
    return f"smoke-{prefix}-{uuid.uuid4().hex[:10]}"


# --------------------------------------------------------------------------- helpers


def create_topic(
    bootstrap: str, topic: str, partitions: int = PARTITIONS, replicas: int = -1
) -> Any:
    """Create ``topic`` and wait until every partition has a leader and a full ISR."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=replicas)],
        operation_timeout=30,
        request_timeout=30,
    )
    futures[topic].result(timeout=60)
    return wait_for_topic(admin, topic, partitions, min_isr=max(replicas, 1))


def wait_for_topic(
    admin: AdminClient, topic: str, partitions: int, min_isr: int = 1, timeout: float = 60
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        meta = admin.list_topics(topic, timeout=10).topics.get(topic)
        if (
            meta is not None
            and meta.error is None
            and len(meta.partitions) == partitions
            and all(p.leader >= 0 and len(p.isrs) >= min_isr for p in meta.partitions.values())
        ):
            return meta
        assert time.monotonic() < deadline, f"topic {topic} not ready: {meta}"
        time.sleep(0.2)


def confluent_producer(bootstrap: str, **extra: Any) -> Producer:
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            # librdkafka's default (consistent_random, CRC32) disagrees with Java/aiokafka.
            "partitioner": "murmur2_random",
            "linger.ms": 5,
            **extra,
        }
    )


def close_producer(producer: Producer) -> None:
    """Flush, then ``close()`` where the installed confluent-kafka has it (2.16 does)."""
    producer.flush(10)
    close = getattr(producer, "close", None)
    if close is not None:
        close()


def produce(producer: Producer, topic: str, **kwargs: Any) -> None:
    """``produce()``, serving delivery reports and retrying while the local queue is full."""
    while True:
        try:
            producer.produce(topic, **kwargs)
            producer.poll(0)
            return
        except BufferError:
            producer.poll(0.1)


def consume(consumer: Consumer, count: int, timeout: float = 60) -> list[Message]:
    """Poll until ``count`` records arrived; fail on a real error or the timeout."""
    records: list[Message] = []
    deadline = time.monotonic() + timeout
    while len(records) < count:
        assert time.monotonic() < deadline, f"got {len(records)} of {count} records"
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        err = msg.error()
        if err is not None:
            # A topic just created may be briefly unknown to the consumer's metadata.
            assert err.code() in (
                KafkaError._PARTITION_EOF,
                KafkaError.UNKNOWN_TOPIC_OR_PART,
            ), err
            continue
        records.append(msg)
    return records


#: What a group coordinator answers while it loads or moves, as after a broker restart.
_COORDINATOR_MOVING = frozenset(
    {KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS}
)


def committed_offsets(
    bootstrap: str, group: str, topic: str, partitions: int = PARTITIONS
) -> dict[int, int]:
    """The group's committed offsets, read by a separate consumer instance. Right after
    a broker restart the group coordinator may still be loading (NOT_COORDINATOR,
    COORDINATOR_LOAD_IN_PROGRESS): asked again until it answers, for up to 60 s."""
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                tps = reader.committed(
                    [TopicPartition(topic, p) for p in range(partitions)], timeout=30
                )
                break
            except KafkaException as exc:
                error = exc.args[0]
                # librdkafka does not always flag NOT_COORDINATOR as retriable here
                loading = error.code() in _COORDINATOR_MOVING or error.retriable()
                if not loading or time.monotonic() >= deadline:
                    raise
                time.sleep(0.1)
    finally:
        reader.close()
    return {tp.partition: tp.offset for tp in tps}


def read_all(bootstrap: str, topic: str, partitions: Iterable[int]) -> dict[tuple[int, int], bytes]:
    """Every record of the partitions up to their high watermark: {(partition, offset): value}."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": unique("reader"), "enable.auto.commit": False}
    )
    try:
        ends: dict[int, int] = {}
        for p in partitions:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            ends[p] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        records: dict[tuple[int, int], bytes] = {}
        total = sum(ends.values())
        deadline = time.monotonic() + 60
        while len(records) < total:
            assert time.monotonic() < deadline, f"read {len(records)} of {total} records"
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            partition, offset = msg.partition(), msg.offset()
            assert partition is not None and offset is not None
            if offset < ends[partition]:
                records[(partition, offset)] = msg.value() or b""
        return records
    finally:
        consumer.close()


# --------------------------------------------------------------------------- single broker


def test_confluent_produce_consume_commit(kafka_broker: Any) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    topic, group = unique("confluent"), unique("group")
    create_topic(bootstrap, topic)

    producer = confluent_producer(bootstrap)
    acked: list[tuple[int, int, bytes]] = []
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(err)
        else:
            acked.append((msg.partition() or 0, msg.offset() or 0, msg.value() or b""))

    for i in range(COUNT):
        produce(producer, topic, key=f"key-{i}", value=f"value-{i}", on_delivery=on_delivery)
    assert producer.flush(30) == 0
    assert errors == []
    assert len(acked) == COUNT
    assert {partition for partition, _, _ in acked} == set(range(PARTITIONS))

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            # Store offsets only after processing (librdkafka #1122), then commit them.
            "enable.auto.offset.store": False,
        }
    )
    try:
        consumer.subscribe([topic])
        records = consume(consumer, COUNT)
        for msg in records:
            consumer.store_offsets(message=msg)
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()

    assert sorted(msg.value() or b"" for msg in records) == sorted(v for _, _, v in acked)
    expected = dict.fromkeys(range(PARTITIONS), 0)
    for partition, offset, _ in acked:
        expected[partition] = max(expected[partition], offset + 1)
    assert committed_offsets(bootstrap, group, topic) == expected


def test_aiokafka_produce_consume_commit(kafka_broker: Any) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    topic, group = unique("aiokafka"), unique("group")

    async def scenario() -> tuple[dict[int, int], dict[int, int], list[bytes], list[bytes]]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([AIONewTopic(topic, PARTITIONS, 1)])
        finally:
            await admin.close()

        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5
        )
        await producer.start()
        try:
            futures = [
                await producer.send(topic, key=f"key-{i}".encode(), value=f"value-{i}".encode())
                for i in range(COUNT)
            ]
            metas = await asyncio.gather(*futures)
        finally:
            await producer.stop()
        ends = dict.fromkeys(range(PARTITIONS), 0)
        for meta in metas:
            ends[meta.partition] = max(ends[meta.partition], meta.offset + 1)
        sent = [f"value-{i}".encode() for i in range(COUNT)]

        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            received: list[bytes] = []
            deadline = time.monotonic() + 60
            while len(received) < COUNT:
                assert time.monotonic() < deadline, f"got {len(received)} of {COUNT}"
                batches = await consumer.getmany(timeout_ms=500)
                received += [rec.value or b"" for recs in batches.values() for rec in recs]
            for attempt in range(5):  # commit() may fail while a rebalance runs (#929)
                try:
                    await consumer.commit()
                    break
                except CommitFailedError:
                    if attempt == 4:
                        raise
                    await asyncio.sleep(1)
            committed = {
                p: await consumer.committed(AIOTopicPartition(topic, p)) or 0
                for p in range(PARTITIONS)
            }
        finally:
            await consumer.stop()
        return ends, committed, sent, received

    ends, committed, sent, received = asyncio.run(asyncio.wait_for(scenario(), 120))
    assert sorted(received) == sorted(sent)
    assert all(ends[p] > 0 for p in range(PARTITIONS))
    assert committed == ends
    # ... and the confluent client sees the same committed offsets.
    assert committed_offsets(bootstrap, group, topic) == ends


def test_clients_agree_on_key_partitions(kafka_broker: Any) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    topic = unique("partitioner")
    create_topic(bootstrap, topic)
    keys = [f"key-{i}" for i in range(30)]

    producer = confluent_producer(bootstrap)
    confluent_parts: dict[str, int] = {}

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        assert err is None, err
        confluent_parts[(msg.key() or b"").decode()] = msg.partition() or 0

    for key in keys:
        produce(producer, topic, key=key, value=b"c", on_delivery=on_delivery)
    assert producer.flush(30) == 0

    async def aiokafka_parts() -> dict[str, int]:
        aio = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await aio.start()
        try:
            return {
                key: (await aio.send_and_wait(topic, key=key.encode(), value=b"a")).partition
                for key in keys
            }
        finally:
            await aio.stop()

    assert asyncio.run(asyncio.wait_for(aiokafka_parts(), 60)) == confluent_parts
    assert len(set(confluent_parts.values())) > 1


def test_broker_restart_keeps_data_and_offsets(kafka_broker: Any) -> None:
    if not kafka_broker.nodes:
        pytest.skip("external broker (KAFKA_BOOTSTRAP_SERVERS): cannot restart it")
    node = kafka_broker.nodes[0]
    bootstrap = kafka_broker.bootstrap_servers
    topic, group = unique("restart"), unique("group")
    create_topic(bootstrap, topic, partitions=1)
    producer = confluent_producer(bootstrap)
    for i in range(50):
        produce(producer, topic, value=f"v{i}")
    assert producer.flush(30) == 0
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest"}
    )
    try:
        consumer.subscribe([topic])
        consume(consumer, 50)
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()

    node.restart()  # graceful: SIGTERM, then start on the same port and data

    assert node.bootstrap == bootstrap
    assert committed_offsets(bootstrap, group, topic, partitions=1) == {0: 50}
    assert sorted(read_all(bootstrap, topic, [0]).values()) == sorted(
        f"v{i}".encode() for i in range(50)
    )


# --------------------------------------------------------------------------- 3-node cluster


def test_cluster_sigkill_leader_loses_no_acknowledged_write(kafka_cluster: Any) -> None:
    bootstrap = kafka_cluster.bootstrap_servers
    topic = unique("failover")
    meta = create_topic(bootstrap, topic, replicas=3)
    victim = kafka_cluster.node(meta.partitions[0].leader)

    producer = confluent_producer(
        bootstrap, **{"message.timeout.ms": 120_000, "retry.backoff.ms": 100}
    )
    acked: dict[bytes, tuple[int, int]] = {}
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(err)
        else:
            acked[msg.value() or b""] = (msg.partition() or 0, msg.offset() or 0)

    def produce_range(start: int, stop: int) -> None:
        for i in range(start, stop):
            produce(producer, topic, value=f"m-{i}", partition=i % PARTITIONS,
                    on_delivery=on_delivery)  # fmt: skip

    produce_range(0, 300)
    assert producer.flush(30) == 0 and len(acked) == 300
    try:
        victim.kill()
        # Keep producing through the failover (the dead broker is fenced after
        # broker.session.timeout.ms=4 s), one batch every 100 ms for ~8 s.
        for batch in range(80):
            produce_range(300 + batch * 10, 310 + batch * 10)
            producer.poll(0.1)
        assert producer.flush(120) == 0
        assert errors == []
        assert len(acked) == 1100
        admin = AdminClient({"bootstrap.servers": bootstrap})
        new_leader = wait_for_topic(admin, topic, PARTITIONS).partitions[0].leader
        assert new_leader != victim.node_id, "the killed leader still leads partition 0"

        survivors = read_all(bootstrap, topic, range(PARTITIONS))
        lost = {v: pos for v, pos in acked.items() if survivors.get(pos) != v}
        assert not lost, f"{len(lost)} acknowledged records lost or overwritten, e.g. {lost}"
    finally:
        close_producer(producer)
        victim.start()
    kafka_cluster.wait_ready()
    wait_for_topic(AdminClient({"bootstrap.servers": bootstrap}), topic, PARTITIONS, min_isr=3)
