"""What the kafka:// backend adds to the conformance suite: configuration, faults
(a broker stopped and restarted under a live producer and consumer), the demo."""

from __future__ import annotations

import asyncio
import io
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

import bus
from bus._demo import run_demo
from tools.kafka_harness import KafkaCluster


def _topic() -> str:
    return f"kb-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def url(kafka_broker) -> str:  # type: ignore[no-untyped-def]
    return f"kafka://{kafka_broker.bootstrap_servers}"


def test_an_unknown_librdkafka_setting_is_refused_with_librdkafkas_words(url: str) -> None:
    with bus.connect(url, config={"no.such.setting": "1"}) as b:
        with pytest.raises(bus.ConfigError, match="No such configuration property"):
            b.producer()
        with pytest.raises(bus.ConfigError, match="No such configuration property"):
            b.consumer("t")


def test_librdkafka_settings_pass_through_from_the_url(url: str) -> None:
    with bus.connect(f"{url}?config.linger.ms=0&config.socket.keepalive.enable=true") as b:
        topic = _topic()
        b.create_topic(topic)
        with b.producer() as producer:
            assert producer.send(topic, b"x").offset == 0


def test_passwords_never_show(url: str) -> None:
    host = url.removeprefix("kafka://")
    b = bus.connect(
        f"kafka://alice:hunter2@{host}",
        sasl_password="hunter3",
        config={"ssl.key.password": "hunter4"},
    )
    assert not any(secret in repr(b) for secret in ("hunter2", "hunter3", "hunter4"))
    b.close()


def test_there_is_no_asyncio_api_and_the_error_names_aiokafka(url: str) -> None:
    with bus.connect(url) as b, pytest.raises(bus.UnsupportedError, match="aiokafka://"):
        b.async_producer()


def test_round_robin_partitioning_cycles_the_partitions(url: str) -> None:
    topic = _topic()
    with bus.connect(url) as b:
        b.create_topic(topic, partitions=3)
        with b.producer(partitioner="round_robin") as producer:
            partitions = [producer.send(topic, b"x", key=b"same").partition for _ in range(6)]
    assert partitions == [0, 1, 2, 0, 1, 2]


def test_a_stopped_broker_times_out_on_time_and_both_clients_carry_on_after_restart(
    own_kafka_broker: KafkaCluster,
) -> None:
    topic = _topic()
    errors: list[bus.BusError] = []
    with bus.connect(f"kafka://{own_kafka_broker.bootstrap_servers}") as b:
        b.create_topic(topic)
        producer = b.producer()
        consumer = b.consumer(
            topic,
            group=f"g-{topic}",
            offset_reset="earliest",
            on_error=errors.append,
            auto_commit_interval=0.5,  # commits fall due during the outage
        )
        producer.send(topic, b"before")
        first = consumer.poll(timeout=30)
        assert first is not None and first.value == b"before"

        own_kafka_broker.nodes[0].stop()
        started = time.monotonic()
        with pytest.raises(bus.TimeoutError):
            producer.send(topic, b"during", timeout=2.0)
        assert time.monotonic() - started < 4.0

        started = time.monotonic()
        assert consumer.poll(timeout=1.0) is None
        assert time.monotonic() - started < 2.5
        deadline = time.monotonic() + 15
        while not errors and time.monotonic() < deadline:
            consumer.poll(timeout=0.5)
        assert errors, "on_error heard nothing while the broker was down"
        # librdkafka retries about 19 times a second; on_error hears of each problem once.
        until = time.monotonic() + 5
        while time.monotonic() < until:
            started = time.monotonic()
            assert consumer.poll(timeout=0.5) is None
            assert time.monotonic() - started < 1.5, "a poll overstayed its timeout"
        assert len(errors) <= 4, [str(e) for e in errors]

        own_kafka_broker.nodes[0].restart()
        producer.send(topic, b"after", timeout=60)
        seen: list[bytes] = []
        deadline = time.monotonic() + 60
        while b"after" not in seen and time.monotonic() < deadline:
            message = consumer.poll(timeout=1)
            if message is not None:
                seen.append(message.value)
        # "during" timed out locally but stayed queued, so librdkafka may deliver it too.
        # The outage outlasted the session timeout: the group moved on without the
        # member, whose commit of "before" could not reach it, so "before" may come
        # again (at-least-once), but nothing else may.
        assert seen[-1] == b"after"
        assert set(seen) <= {b"before", b"during", b"after"}
        consumer.close()
        producer.close()


def test_close_from_another_thread_ends_iteration_promptly(url: str) -> None:
    topic = _topic()
    with bus.connect(url) as b:
        b.create_topic(topic)
        consumer = b.consumer(topic, offset_reset="earliest")
        threading.Timer(1.0, consumer.close).start()
        started = time.monotonic()
        assert list(consumer) == []
        assert time.monotonic() - started < 3.0


def test_the_demo_runs_on_kafka(url: str) -> None:
    out = io.StringIO()
    assert run_demo(url, out, timeout=60) is True, out.getvalue()
    assert "Demo finished: every check verified." in out.getvalue()


def test_bus_produce_and_bus_consume_work_across_processes(url: str) -> None:
    import re
    import subprocess
    import sys
    from pathlib import Path

    script = str(Path(sys.executable).with_name("bus"))
    topic = _topic()
    with bus.connect(url) as b:
        b.create_topic(topic, partitions=3)
    produced = subprocess.run(
        [script, "produce", topic, "--url", url, "--key-separator", ":"],
        input="k1:one\nk2:two\nk3:three\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert len(produced.stdout.splitlines()) == 3
    consumed = subprocess.run(
        [
            script,
            "consume",
            topic,
            "--url",
            url,
            "--from-beginning",
            "--count",
            "3",
            "--timeout",
            "30",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = consumed.stdout.splitlines()
    assert all(re.fullmatch(r"Partition:\d+, Offset:\d+, key:k\d, value:\w+", ln) for ln in lines)
    assert sorted(ln.split("value:")[1] for ln in lines) == ["one", "three", "two"]
    for line in lines:
        key = line.split("key:")[1].split(",")[0]
        partition = int(line.split(",")[0].removeprefix("Partition:"))
        assert partition == bus.murmur2_partition(key.encode(), 3)


def test_close_under_an_outage_reports_every_purged_message_and_writes_nothing_after(
    own_kafka_broker: KafkaCluster,
) -> None:
    topic = _topic()
    outcomes: dict[int, list[tuple[object, object]]] = {}
    url = f"kafka://{own_kafka_broker.bootstrap_servers}"
    with bus.connect(url) as b:
        b.create_topic(topic)
        producer = b.producer()
        producer.send(topic, b"warm", partition=0)  # connected, producer id assigned
        own_kafka_broker.nodes[0].stop()
        try:
            for i in range(1000):
                producer.enqueue(
                    topic,
                    b"%d" % i,
                    partition=0,
                    on_delivery=lambda d, e, i=i: outcomes.setdefault(i, []).append((d, e)),
                )
            started = time.monotonic()
            with pytest.raises(bus.TimeoutError, match="1000 message"):
                producer.close(timeout=2.0)
            assert time.monotonic() - started < 2.0 + 6.0
        finally:
            own_kafka_broker.nodes[0].restart()
    # every message reported exactly once, undelivered
    assert sorted(outcomes) == list(range(1000))
    assert all(len(reports) == 1 for reports in outcomes.values())
    errors = [e for [(d, e)] in outcomes.values()]
    assert all(isinstance(e, bus.DeliveryError) and e.retriable for e in errors)
    maybe = {i for i, [(_, e)] in outcomes.items() if getattr(e, "maybe_written", False)}
    # after the broker is back, the closed producer wrote nothing: the log holds the
    # warm-up message and at most the ones reported as maybe written
    with bus.connect(url) as b, b.consumer(topic, offset_reset="earliest") as consumer:
        seen: list[bytes] = []
        quiet_until = time.monotonic() + 10
        while time.monotonic() < quiet_until:
            seen += [m.value for m in consumer.poll_batch(500, timeout=0.5)]
    assert seen[0] == b"warm"
    assert {int(v) for v in seen[1:]} <= maybe


def _refusing_port() -> int:
    """A local port nothing listens on: bound, then released."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("scheme", ["kafka", "aiokafka"])
def test_ping_raises_within_its_timeout_when_no_broker_answers(scheme: str) -> None:
    with bus.connect(f"{scheme}://127.0.0.1:{_refusing_port()}") as b:
        started = time.monotonic()
        with pytest.raises(bus.BusError):
            b.ping(timeout=1.0)
        # The deadline holds (with slack for a loaded machine), then aping's too.
        assert time.monotonic() - started < 1.0 + 3.0
        started = time.monotonic()
        with pytest.raises(bus.BusError):
            asyncio.run(b.aping(timeout=1.0))
        assert time.monotonic() - started < 1.0 + 3.0


# -- pause and resume ---------------------------------------------------------------------


def _poll_until(
    consumer: bus.Consumer,
    done: Callable[[list[bus.Message]], bool],
    timeout: float = 30.0,
    max_messages: int = 100,
) -> list[bus.Message]:
    """Poll until ``done(seen)`` or ``timeout`` seconds have passed; what came."""
    seen: list[bus.Message] = []
    deadline = time.monotonic() + timeout
    while not done(seen) and time.monotonic() < deadline:
        seen += consumer.poll_batch(max_messages, timeout=0.1)
    return seen


def _values(messages: list[bus.Message], partition: int) -> list[bytes]:
    return [m.value for m in messages if m.partition == partition]


def test_a_paused_partition_gives_nothing_new_until_resumed_then_everything_once(
    url: str,
) -> None:
    """Partition 0 is paused with records in librdkafka's queues, partition 1 with
    records the consumer held and gave back; partition 2 goes on meanwhile."""
    topic = _topic()
    tp = [bus.TopicPartition(topic, p) for p in range(3)]

    def sent(partition: int, count: int) -> list[bytes]:
        return [b"%d-%d" % (partition, i) for i in range(count)]

    with bus.connect(url) as b:
        b.create_topic(topic, partitions=3)
        producer = b.producer()
        for i in range(50):
            for p in range(3):
                producer.enqueue(topic, b"%d-%d" % (p, i), partition=p)
        producer.flush(timeout=30)
        with b.consumer(topic, group=f"g-{topic}", offset_reset="earliest") as consumer:
            # A few records: librdkafka's queues hold more, fetched ahead.
            before = _poll_until(consumer, bool, timeout=60, max_messages=5)
            consumer._pause({tp[0]})
            for message in consumer:  # the rest of each batch is held
                before.append(message)
                if message.partition == 1:
                    break  # with, most likely, more of partition 1 held
            consumer._pause({tp[1]})
            consumer.commit()  # the held rest goes back to the driver
            for i in range(50, 60):
                for p in range(3):
                    producer.send(topic, b"%d-%d" % (p, i), partition=p)
            before += _poll_until(consumer, lambda seen: len(_values(before + seen, 2)) >= 60)
            assert _values(before, 2) == sent(2, 60)
            for p in (0, 1):  # what came of them before their pause, nothing after
                handed_out = _values(before, p)
                assert handed_out == sent(p, len(handed_out)) and len(handed_out) < 50

            consumer._resume({tp[0], tp[1]})
            after = _poll_until(
                consumer, lambda seen: all(len(_values(before + seen, p)) >= 60 for p in (0, 1))
            )
            assert _values(before + after, 0) == sent(0, 60)
            assert _values(before + after, 1) == sent(1, 60)
            assert _values(after, 2) == []
            assert consumer.poll(timeout=1.0) is None  # and nothing twice
        producer.close()


def test_a_paused_consumer_stays_in_its_group_past_its_timeouts_and_commits(url: str) -> None:
    topic = _topic()
    group = f"g-{topic}"
    revoked: list[set[bus.TopicPartition]] = []
    options: dict[str, Any] = {
        "offset_reset": "earliest",
        "auto_commit": False,
        "session_timeout": 1.0,
        "heartbeat_interval": 0.2,
        "max_poll_interval": 1.0,
        "on_revoke": revoked.append,
    }
    with bus.connect(url) as b:
        b.create_topic(topic, partitions=2)
        producer = b.producer()
        producer.send(topic, b"first", partition=0)
        with b.consumer(topic, group=group, **options) as consumer:
            assert [m.value for m in _poll_until(consumer, bool, timeout=60)] == [b"first"]
            everything = consumer.assignment()
            assert len(everything) == 2
            consumer._pause(everything)
            producer.send(topic, b"later", partition=0)
            until = time.monotonic() + 3 * options["max_poll_interval"]
            while time.monotonic() < until:  # paused for longer than both timeouts
                assert consumer.poll(timeout=0.1) is None
            assert consumer.assignment() == everything
            assert not revoked, f"the group took {revoked} away from a paused member"
            consumer.commit()  # "first", which the polls since made processed
        with b.consumer(topic, group=group, **options) as again:
            seen = _poll_until(again, bool, timeout=60)
            assert [m.value for m in seen] == [b"later"]  # the commit held
        producer.close()


def test_a_paused_partition_taken_away_and_given_back_starts_unpaused(url: str) -> None:
    topic = _topic()
    group = f"g-{topic}"
    options: dict[str, Any] = {
        "offset_reset": "earliest",
        "session_timeout": 6.0,
        "heartbeat_interval": 0.5,
    }
    with bus.connect(url) as b:
        b.create_topic(topic, partitions=2)
        producer = b.producer()
        with b.consumer(topic, group=group, **options) as first:
            _poll_until(first, lambda seen: len(first.assignment()) == 2, timeout=60)
            everything = first.assignment()
            first._pause(everything)
            second = b.consumer(topic, group=group, **options)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                first.poll(timeout=0.05)
                second.poll(timeout=0.05)
                if len(first.assignment()) == 1 and len(second.assignment()) == 1:
                    break
            (kept,) = first.assignment()
            (moved,) = everything - {kept}
            second.close()  # leaves the group: moved comes back to first
            _poll_until(first, lambda seen: first.assignment() == everything, timeout=60)
            assert first.assignment() == everything
            producer.send(topic, b"kept", partition=kept.partition)
            producer.send(topic, b"moved", partition=moved.partition)
            seen = _poll_until(first, bool)
            assert [m.value for m in seen] == [b"moved"]  # kept stays paused
            assert first.poll(timeout=1.0) is None
            first._resume({kept})
            assert [m.value for m in _poll_until(first, bool)] == [b"kept"]
        producer.close()
