"""Conformance: what the API checks for every backend: codecs (``serializer``,
``deserializer``, ``SerializationError``), ``TypeError`` for wrong arguments,
``ConfigError`` for unknown options, capabilities and ``Bus.close``, the admin API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

import bus
from bus.spi import CAPABILITIES
from bus.testing._conformance_common import eventually, needs, run
from bus.testing.apis import BusAPI
from bus.testing.helpers import DEADLINE, async_consume, consume, poll_until

__all__ = ["TestArguments", "TestBus", "TestCodecs"]

# The producer is typed Any: these calls break the signatures on purpose.
_BAD_SENDS: dict[str, Callable[[Any, str], Any]] = {
    "str value": lambda p, t: p.send(t, "text"),
    "int value": lambda p, t: p.send(t, 5),
    "str key": lambda p, t: p.send(t, b"v", key="k"),
    "int topic": lambda p, t: p.send(5, b"v"),
    "str partition": lambda p, t: p.send(t, b"v", partition="0"),
    "float partition": lambda p, t: p.send(t, b"v", partition=0.0),
    "bool partition": lambda p, t: p.send(t, b"v", partition=True),
    "str timestamp": lambda p, t: p.send(t, b"v", timestamp="now"),
    "int header value": lambda p, t: p.send(t, b"v", headers=[("h", 1)]),
    "bytes header name": lambda p, t: p.send(t, b"v", headers=[(b"h", b"v")]),
    "header not a pair": lambda p, t: p.send(t, b"v", headers=["h"]),
    "headers of strings": lambda p, t: p.send(t, b"v", headers=["ab", "cd"]),
    "header of three": lambda p, t: p.send(t, b"v", headers=[("h", b"v", b"w")]),
    "headers a string": lambda p, t: p.send(t, b"v", headers="ab"),
    "bad header in a batch": lambda p, t: p.send_batch(
        [bus.Message(t, b"ok", partition=0), bus.Message(t, b"v", headers=(("h", 1),))]  # type: ignore[arg-type]
    ),
    "str timeout": lambda p, t: p.send(t, b"v", timeout="1"),
    "batch of bytes": lambda p, t: p.send_batch([b"v"]),
    "batch not iterable": lambda p, t: p.send_batch(5),
    "enqueue str value": lambda p, t: p.enqueue(t, "text"),
}

# Numbers out of the ranges Kafka's wire format holds: a ValueError before anything is
# sent, never a client library's OverflowError or a half-written batch.
_OUT_OF_RANGE: dict[str, Callable[[Any, str], Any]] = {
    "partition 2**31": lambda p, t: p.send(t, b"v", partition=2**31),
    "partition -1": lambda p, t: p.send(t, b"v", partition=-1),
    "timestamp 2**63": lambda p, t: p.send(t, b"v", timestamp=2**63),
    "timestamp -1": lambda p, t: p.send(t, b"v", timestamp=-1),
    "enqueue partition 2**31": lambda p, t: p.enqueue(t, b"v", partition=2**31),
    "batch with partition 2**31": lambda p, t: p.send_batch(
        [bus.Message(t, b"ok", partition=0), bus.Message(t, b"v", partition=2**31)]
    ),
    "batch with timestamp 2**64": lambda p, t: p.send_batch(
        [bus.Message(t, b"ok", partition=0), bus.Message(t, b"v", timestamp=2**64)]
    ),
}


class TestCodecs:
    """Serializers and deserializers: the built-in ``json``, ``str`` and ``bytes``, a
    ``bus.Codec`` or a callable, set on a client or on the connection; a failing codec
    raises ``bus.SerializationError``, an unknown name ``bus.ConfigError``."""

    def test_json_serializer_and_deserializer_round_trip(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        document = {"id": 7, "tags": ["a", "é"], "ok": True, "none": None}
        with bus_api.producer(serializer="json", key_serializer="json") as producer:
            producer.send(bus_topic, document, key=[1, 2], partition=0)
        with bus_api.consumer(
            bus_topic, offset_reset="earliest", deserializer="json", key_deserializer="json"
        ) as consumer:
            [message] = consume(consumer, 1)
        assert (message.value, message.key) == (document, [1, 2])

    def test_str_codec_writes_utf8(self, bus_api: BusAPI, bus_topic: str) -> None:
        with bus_api.producer(serializer="str", key_serializer="str") as producer:
            producer.send(bus_topic, "héllo", key="clé", partition=0)
        with bus_api.consumer(
            bus_topic, offset_reset="earliest", deserializer="str", key_deserializer="str"
        ) as consumer:
            [decoded] = consume(consumer, 1)
        with bus_api.consumer(bus_topic, offset_reset="earliest") as raw:
            [encoded] = consume(raw, 1)
        assert (decoded.value, decoded.key) == ("héllo", "clé")
        assert (encoded.value, encoded.key) == ("héllo".encode(), "clé".encode())

    def test_callables_serve_as_codecs(self, bus_api: BusAPI, bus_topic: str) -> None:
        with bus_api.producer(serializer=lambda n: b"%d" % n) as producer:
            producer.send(bus_topic, 41, partition=0)
        with bus_api.consumer(
            bus_topic, offset_reset="earliest", deserializer=lambda b: int(b) + 1
        ) as consumer:
            assert [m.value for m in consume(consumer, 1)] == [42]

    def test_codec_set_on_the_connection_applies_to_its_clients(
        self, bus_url: str, bus_topic: str, bus_api: BusAPI
    ) -> None:
        with bus.connect(bus_url, serializer="json", deserializer="json") as connection:
            api = bus_api.using(connection)
            with api.producer() as producer:
                producer.send(bus_topic, {"a": 1}, partition=0)
            with api.consumer(bus_topic, offset_reset="earliest") as consumer:
                assert [m.value for m in consume(consumer, 1)] == [{"a": 1}]

    def test_none_is_not_serialized(self, bus_api: BusAPI, bus_topic: str) -> None:
        with bus_api.producer(serializer="json") as producer:
            producer.send(bus_topic, None, partition=0)
        with bus_api.consumer(bus_topic, offset_reset="earliest", deserializer="json") as consumer:
            assert [m.value for m in consume(consumer, 1)] == [None]
        with bus_api.consumer(bus_topic, offset_reset="earliest") as raw:
            assert [m.value for m in consume(raw, 1)] == [None]

    def test_serializer_failure_raises_serialization_error(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        with bus_api.producer(serializer="json") as producer:
            with pytest.raises(bus.SerializationError) as caught:
                producer.send(bus_topic, object(), partition=0)
            assert isinstance(caught.value.__cause__, TypeError)
            with pytest.raises(bus.SerializationError):
                producer.send_batch([bus.Message(bus_topic, {1, 2}, partition=0)])
            with pytest.raises(bus.SerializationError):
                producer.enqueue(bus_topic, object(), partition=0)
            # nothing was written
            assert producer.send(bus_topic, "fine", partition=0).offset == 0

    def test_deserializer_failure_raises_serialization_error(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        with bus_api.producer() as producer:
            producer.send(bus_topic, b"\xffnot json", partition=0)
        with bus_api.consumer(bus_topic, offset_reset="earliest", deserializer="json") as consumer:
            with pytest.raises(bus.SerializationError) as caught:
                poll_until(consumer, bool)
            assert caught.value.__cause__ is not None

    def test_unknown_codec_name_is_a_config_error(self, bus_api: BusAPI, bus_topic: str) -> None:
        with pytest.raises(bus.ConfigError, match="nope"):
            bus_api.producer(serializer="nope")
        with pytest.raises(bus.ConfigError, match="nope"):
            bus_api.consumer(bus_topic, deserializer="nope")


class TestArguments:
    """Arguments are checked before anything is sent, the same on every backend: a
    wrong type is a ``TypeError`` saying what to pass, a value out of range or a bad topic
    name a ``ValueError``, an unknown option or bad option value a ``bus.ConfigError``."""

    @pytest.mark.parametrize("call", list(_BAD_SENDS.values()), ids=list(_BAD_SENDS))
    def test_wrong_argument_types_raise_type_error(
        self, bus_api: BusAPI, bus_topic: str, call: Callable[[Any, str], Any]
    ) -> None:
        with bus_api.producer() as producer:
            with pytest.raises(TypeError):
                call(producer, bus_topic)
            assert producer.send(bus_topic, b"after", partition=0).offset == 0

    @pytest.mark.parametrize("call", list(_OUT_OF_RANGE.values()), ids=list(_OUT_OF_RANGE))
    def test_numbers_out_of_range_raise_value_error_and_send_nothing(
        self, bus_api: BusAPI, bus_topic: str, call: Callable[[Any, str], Any]
    ) -> None:
        with bus_api.producer() as producer:
            with pytest.raises(ValueError, match=r"(partition|timestamp) must be 0 to \d+"):
                call(producer, bus_topic)
            assert producer.send(bus_topic, b"after", partition=0).offset == 0

    @needs("seek")
    def test_seek_and_commit_check_their_ranges(self, bus_api: BusAPI, bus_topic: str) -> None:
        with bus_api.consumer(bus_topic) as consumer:
            with pytest.raises(ValueError, match="partition"):
                consumer.seek(bus_topic, 2**31, 0)
            with pytest.raises(ValueError, match="offset"):
                consumer.seek(bus_topic, 0, 2**63)
            with pytest.raises(ValueError, match="offset"):
                consumer.commit(bus.Message(bus_topic, b"v", partition=0, offset=2**63))

    def test_type_error_says_what_to_pass_instead(self, bus_api: BusAPI, bus_topic: str) -> None:
        with bus_api.producer() as producer, pytest.raises(TypeError, match="serializer"):
            producer.send(bus_topic, "text")

    def test_invalid_topic_name_is_a_value_error(self, bus_api: BusAPI, bus_topic: str) -> None:
        with bus_api.producer() as producer:
            for name in ("", "a b", "..", "x" * 250):
                with pytest.raises(ValueError):
                    producer.send(name, b"v")

    def test_wrong_consumer_arguments_raise_type_error(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        with pytest.raises(TypeError):
            bus_api.consumer()
        with pytest.raises(TypeError):
            bus_api.consumer(5)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            bus_api.consumer(bus_topic, group=5)  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("make", "typo", "suggestion"),
        [
            ("producer", "ack", "acks"),
            ("producer", "linger_msec", "linger_ms"),
            ("consumer", "offset_rest", "offset_reset"),
            ("consumer", "auto_comit", "auto_commit"),
            ("connect", "client_idd", "client_id"),
        ],
    )
    def test_unknown_option_is_a_config_error_suggesting_the_closest(
        self,
        bus_api: BusAPI,
        bus_url: str,
        bus_topic: str,
        make: str,
        typo: str,
        suggestion: str,
    ) -> None:
        with pytest.raises(bus.ConfigError) as caught:
            if make == "producer":
                bus_api.producer(**{typo: "x"})
            elif make == "consumer":
                bus_api.consumer(bus_topic, **{typo: "x"})
            else:
                bus.connect(bus_url, **{typo: "x"}).close()
        assert typo in str(caught.value)
        assert repr(suggestion) in str(caught.value) or suggestion in str(caught.value)
        assert isinstance(caught.value, ValueError)

    def test_bad_option_values_are_config_errors(self, bus_api: BusAPI, bus_topic: str) -> None:
        with pytest.raises(bus.ConfigError, match="offset_reset"):
            bus_api.consumer(bus_topic, offset_reset="middle")
        with pytest.raises(bus.ConfigError, match="acks"):
            bus_api.producer(acks=2)
        with pytest.raises(bus.ConfigError, match="compression"):
            bus_api.producer(compression="brotli")
        with pytest.raises(bus.ConfigError, match="offset_reset"):
            bus_api.producer(offset_reset="earliest")  # a consumer option


class TestBus:
    """The connection: ``ping``, the capability words, each API mode working or
    raising ``bus.UnsupportedError``, ``close``/``aclose`` closing its clients, and the
    admin calls."""

    def test_ping_returns_when_the_transport_answers(self, message_bus: bus.Bus) -> None:
        started = time.monotonic()
        message_bus.ping(timeout=DEADLINE)
        asyncio.run(message_bus.aping(timeout=DEADLINE))
        assert time.monotonic() - started < 2 * DEADLINE
        with pytest.raises(TypeError):
            message_bus.ping(timeout="soon")  # type: ignore[arg-type]

    def test_capabilities_are_known_words(self, message_bus: bus.Bus) -> None:
        assert isinstance(message_bus.backend, str)
        assert message_bus.backend
        assert isinstance(message_bus.capabilities, frozenset)
        assert message_bus.capabilities <= set(CAPABILITIES)
        assert message_bus.capabilities & {"sync", "async"}

    def test_each_api_mode_works_or_raises_unsupported_error(
        self, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        """A declared API mode gives working clients; a missing one raises
        UnsupportedError naming the API."""
        if "sync" in message_bus.capabilities:
            with message_bus.producer() as producer:
                assert isinstance(producer, bus.Producer)
                assert producer.send(bus_topic, b"sync", partition=0).offset == 0
            with message_bus.consumer(bus_topic, offset_reset="earliest") as consumer:
                assert isinstance(consumer, bus.Consumer)
                assert [m.value for m in consume(consumer, 1)] == [b"sync"]
        else:
            with pytest.raises(bus.UnsupportedError, match=r"no blocking API"):
                message_bus.producer()
            with pytest.raises(bus.UnsupportedError, match=r"no blocking API"):
                message_bus.consumer(bus_topic)

        expected = [b"sync", b"async"] if "sync" in message_bus.capabilities else [b"async"]

        async def asyncio_clients() -> None:
            async with message_bus.async_producer() as producer:
                assert isinstance(producer, bus.AsyncProducer)
                await producer.send(bus_topic, b"async", partition=0)
            async with message_bus.async_consumer(bus_topic, offset_reset="earliest") as consumer:
                assert isinstance(consumer, bus.AsyncConsumer)
                received = await async_consume(consumer, len(expected))
                assert [m.value for m in received] == expected

        if "async" in message_bus.capabilities:
            run(asyncio_clients())
        else:
            with pytest.raises(bus.UnsupportedError, match=r"no asyncio API"):
                message_bus.async_producer()
            with pytest.raises(bus.UnsupportedError, match=r"no asyncio API"):
                message_bus.async_consumer(bus_topic)

    @needs("sync")
    def test_bus_close_closes_its_clients(self, message_bus: bus.Bus, bus_topic: str) -> None:
        outcomes: list[tuple[Any, Any]] = []
        producer = message_bus.producer()
        producer.enqueue(
            bus_topic,
            b"flushed by close",
            partition=0,
            on_delivery=lambda d, e: outcomes.append((d, e)),
        )
        consumer = message_bus.consumer(bus_topic)
        message_bus.close()
        message_bus.close()
        assert [(type(d), e) for d, e in outcomes] == [(bus.Delivery, None)]  # flushed
        with pytest.raises(bus.ClosedError):
            producer.send(bus_topic, b"v")
        with pytest.raises(bus.ClosedError):
            consumer.poll(timeout=0)
        with pytest.raises(bus.ClosedError):
            message_bus.producer()

    @needs("async")
    def test_bus_aclose_closes_its_asyncio_clients(
        self, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        outcomes: list[tuple[Any, Any]] = []

        async def main() -> None:
            producer = message_bus.async_producer()
            await producer.enqueue(
                bus_topic,
                b"flushed by aclose",
                partition=0,
                on_delivery=lambda d, e: outcomes.append((d, e)),
            )
            consumer = message_bus.async_consumer(bus_topic)
            await message_bus.aclose()
            await message_bus.aclose()
            with pytest.raises(bus.ClosedError):
                await producer.send(bus_topic, b"v")
            with pytest.raises(bus.ClosedError):
                await consumer.poll(timeout=0)
            with pytest.raises(bus.ClosedError):
                message_bus.async_producer()

        run(main())
        assert [(type(d), e) for d, e in outcomes] == [(bus.Delivery, None)]  # flushed

    @needs("admin")
    @pytest.mark.parametrize(
        "config",
        [{"retention_ms": "soon"}, {"cleanup_policy": "shred"}, {"retention_mss": 1000}],
        ids=["unreadable value", "unknown choice", "misspelt name"],
    )
    def test_invalid_topic_config_is_a_config_error(
        self, message_bus: bus.Bus, config: dict[str, Any]
    ) -> None:
        from bus.testing.plugin import unique_topic_name

        name = unique_topic_name("config")
        with pytest.raises(bus.ConfigError):
            message_bus.create_topic(name, 1, **config)
        assert name not in message_bus.topics()

    @needs("admin")
    def test_admin_creates_lists_and_deletes_topics(
        self, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        from bus.testing.plugin import unique_topic_name

        name = unique_topic_name("admin")
        count = 2 if "partitions" in message_bus.capabilities else 1
        message_bus.create_topic(name, count)
        eventually(lambda: message_bus.topics().get(name) == count, f"{name} is listed")
        assert message_bus.partitions(name) == list(range(count))
        with pytest.raises(bus.TopicExistsError):
            message_bus.create_topic(name, count)
        message_bus.delete_topic(name)
        eventually(lambda: name not in message_bus.topics(), f"{name} is gone")
        with pytest.raises(bus.UnknownTopicError):
            message_bus.partitions(name)
        assert bus_topic in message_bus.topics()
