"""The Bus facade: connecting, option defaults, life cycle, errors."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

import bus


def _url() -> str:
    return f"memory://facade-{uuid.uuid4().hex[:8]}"


def test_connect_without_a_url_reads_bus_url_then_uses_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BUS_URL", raising=False)
    with bus.connect() as b:
        assert b.backend == "memory"
    monkeypatch.setenv("BUS_URL", "nats://x")
    with pytest.raises(bus.BackendNotFound):
        bus.connect()


def test_memory_and_memory_default_are_one_broker_other_names_are_not() -> None:
    topic = f"t-{uuid.uuid4().hex[:8]}"
    with bus.connect("memory://") as a, bus.connect("memory://default") as b:
        a.create_topic(topic, partitions=2)
        assert b.partitions(topic) == [0, 1]
    with bus.connect(_url()) as other:
        assert topic not in other.topics()


def test_connection_options_are_defaults_that_clients_override() -> None:
    with bus.connect(_url(), serializer="json", offset_reset="earliest") as b:
        b.create_topic("t")
        with b.producer() as p:
            p.send("t", {"a": 1})
        with b.producer(serializer="str") as p:
            p.send("t", "plain")
        with b.consumer("t") as c:
            values = [m.value for m in c.poll_batch(10, timeout=1)]
    assert values == [json.dumps({"a": 1}, separators=(",", ":")).encode(), b"plain"]


def test_a_codec_name_that_is_not_registered_fails_at_connect() -> None:
    with pytest.raises(bus.ConfigError, match="unknown codec 'yaml'.*json"):
        bus.connect(_url(), serializer="yaml")


def test_close_closes_every_client_and_later_use_raises_closed() -> None:
    b = bus.connect(_url())
    producer = b.producer()
    consumer = b.consumer("t")
    b.close()
    b.close()  # idempotent
    with pytest.raises(bus.ClosedError):
        producer.send("t", b"x")
    with pytest.raises(bus.ClosedError):
        consumer.poll(0)
    with pytest.raises(bus.ClosedError):
        b.producer()
    with pytest.raises(bus.ClosedError):
        b.topics()


def test_aclose_closes_asyncio_clients_too() -> None:
    url = _url()

    async def main() -> frozenset[bus.TopicPartition]:
        async with bus.connect(url) as b:
            b.create_topic("t", partitions=2)
            producer = b.async_producer()
            consumer = b.async_consumer("t", group="g")
            await consumer.poll(0)  # joins the group and takes both partitions
        with pytest.raises(bus.ClosedError):
            await producer.send("t", b"x")
        with pytest.raises(bus.ClosedError):
            await consumer.poll(0)
        async with bus.connect(url) as b, b.async_consumer("t", group="g") as newcomer:
            await newcomer.poll(0)
            return newcomer.assignment()

    # the closed consumer left its group, so a newcomer gets every partition
    assert asyncio.run(main()) == {bus.TopicPartition("t", 0), bus.TopicPartition("t", 1)}


def test_consumer_needs_topics_and_a_string_group() -> None:
    with bus.connect(_url()) as b:
        with pytest.raises(TypeError, match="at least one topic"):
            b.consumer()
        with pytest.raises(TypeError, match="group must be"):
            b.consumer("t", group=3)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="invalid topic name"):
            b.consumer("bad topic!")


def test_create_topic_checks_its_arguments() -> None:
    with bus.connect(_url()) as b:
        with pytest.raises(ValueError, match="partitions must be 1 to 100000, not 0"):
            b.create_topic("t", partitions=0)
        with pytest.raises(ValueError, match="partitions must be 1 to 100000"):
            b.create_topic("t", partitions=2**31)  # refused before memory allocates anything
        with pytest.raises(ValueError, match="replication_factor must be 1 to 32767"):
            b.create_topic("t", replication_factor=2**15)
        assert "t" not in b.topics()
        with pytest.raises(TypeError, match="partitions"):
            b.create_topic("t", partitions="3")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="invalid topic name"):
            b.create_topic("x" * 250)


def test_repr_shows_the_backend_and_hides_secrets() -> None:
    b = bus.connect("memory://user:hunter2@secretive", client_id="svc")
    assert "hunter2" not in repr(b)
    assert "backend='memory'" in repr(b)
    assert "client_id='svc'" in repr(b)
    b.close()


def test_errors_form_one_hierarchy() -> None:
    assert issubclass(bus.BackendNotFound, bus.ConfigError)
    assert issubclass(bus.MessageTooLarge, bus.DeliveryError)
    assert issubclass(bus.TimeoutError, TimeoutError)
    for error in (
        bus.ConfigError,
        bus.UnsupportedError,
        bus.DeliveryError,
        bus.CommitError,
        bus.ClosedError,
        bus.SerializationError,
        bus.AuthenticationError,
        bus.AuthorizationError,
        bus.TimeoutError,
    ):
        assert issubclass(error, bus.BusError)


def test_importing_bus_imports_no_kafka_client() -> None:
    import subprocess
    import sys

    code = (
        "import sys, bus; b = bus.connect('memory://'); "
        "print(sorted({m.split('.')[0] for m in sys.modules} "
        "& {'confluent_kafka', 'aiokafka', 'kafka'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_fast_constructors_build_equal_values() -> None:
    from bus._message import acknowledged, consumed_message

    made = consumed_message("t", b"v", b"k", (("h", b"x"),), 1, 2, 3)
    assert made == bus.Message("t", b"v", b"k", (("h", b"x"),), 1, 2, 3)
    assert hash(made) == hash(bus.Message("t", b"v", b"k", (("h", b"x"),), 1, 2, 3))
    assert acknowledged("t", 1, 2, None) == bus.Delivery("t", 1, 2, None)
    with pytest.raises(AttributeError):
        made.value = b"other"  # type: ignore[misc]


def test_positions_and_given_partitions_need_the_offsets_capability() -> None:
    """A backend without ``offsets``: the core refuses before its driver is asked."""
    from backends.memory._backend import MemoryBackend
    from bus._plugins import Registry, reset_registry
    from bus.spi import BackendDescriptor

    class Plugin:
        @staticmethod
        @bus.hookimpl
        def bus_register_backends() -> list[BackendDescriptor]:
            return [
                BackendDescriptor(
                    name="plain",
                    schemes=("plain",),
                    capabilities=frozenset({"sync", "async", "consumer_groups"}),
                    factory=MemoryBackend,
                )
            ]

    tp = bus.TopicPartition("t", 0)
    reset_registry(Registry.load(plugins=[Plugin]))
    try:
        with bus.connect(f"plain://{uuid.uuid4().hex[:8]}") as b:
            for make in (b.consumer, b.async_consumer):
                with pytest.raises(bus.UnsupportedError, match="'offsets'"):
                    make(partitions=[tp])
            with b.consumer("t", group="g") as consumer:
                for call in (
                    lambda: consumer.watermarks("t", 0),
                    lambda: consumer.offsets_for_times({tp: 0}),
                    consumer.committed,
                ):
                    with pytest.raises(bus.UnsupportedError, match="'offsets'"):
                        call()

            async def lookups() -> None:
                async with b.async_consumer("t") as consumer:
                    with pytest.raises(bus.UnsupportedError, match="'offsets'"):
                        await consumer.watermarks("t", 0)

            asyncio.run(lookups())
    finally:
        reset_registry()


def test_a_consumer_of_given_partitions_has_their_topics() -> None:
    with bus.connect(_url()) as b:
        given = [bus.TopicPartition("b", 1), bus.TopicPartition("a", 0), bus.TopicPartition("b", 0)]
        with b.consumer(partitions=given) as consumer:
            assert consumer.topics == ("a", "b")
            assert consumer.group is None
            assert consumer.assignment() == set(given)
        with b.consumer(partitions=frozenset(given[:1])) as consumer:
            assert consumer.topics == ("b",)
