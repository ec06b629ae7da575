"""Options: one table for URL queries and keywords, with clear errors."""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bus
from bus._options import BUS, CONSUMER, CORE_OPTIONS, PRODUCER, OptionTable, redact
from bus.testing import strategies as bst

TABLE = OptionTable.build()


def test_an_unknown_option_names_itself_and_the_closest_valid_one() -> None:
    with pytest.raises(bus.ConfigError, match=r"unknown option 'ack'; did you mean 'acks'\?"):
        TABLE.validate({"ack": 1}, PRODUCER, where="memory://")


def test_an_unknown_option_with_nothing_close_lists_the_valid_ones() -> None:
    with pytest.raises(bus.ConfigError) as info:
        TABLE.validate({"zzzz": 1}, CONSUMER, where="memory://")
    assert "did you mean" not in str(info.value)
    assert "offset_reset" in str(info.value)


def test_an_option_of_another_scope_is_refused() -> None:
    with pytest.raises(bus.ConfigError, match="'offset_reset' is a consumer option"):
        TABLE.validate({"offset_reset": "earliest"}, PRODUCER, where="memory://")


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("acks", 2, "'all', 1 or 0"),
        ("compression", "brotli", "'none', 'gzip', 'snappy', 'lz4', 'zstd'"),
        ("linger_ms", -1, "integer between 0"),
        ("auto_commit", "maybe", "true or false"),
        ("offset_reset", "smallest", "'latest', 'earliest'"),
        ("delivery_timeout", "soon", "number"),
    ],
)
def test_a_bad_value_says_what_is_allowed(name: str, value: Any, allowed: str) -> None:
    with pytest.raises(bus.ConfigError) as info:
        TABLE.validate({name: value}, BUS, where="memory://")
    assert name in str(info.value)
    assert allowed in str(info.value)


def test_wrong_types_from_keywords_are_config_errors_too() -> None:
    with pytest.raises(bus.ConfigError, match="linger_ms"):
        TABLE.validate({"linger_ms": True}, PRODUCER, where="memory://")
    with pytest.raises(bus.ConfigError, match="on_assign"):
        TABLE.validate({"on_assign": "not callable"}, CONSUMER, where="memory://")


# What each option accepts, as a keyword value and as the text a URL carries.
_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "acks": st.sampled_from(["all", 1, 0]),
    "idempotent": st.booleans(),
    "linger_ms": st.integers(0, 900_000),
    "batch_size": st.integers(1, 2**31 - 1),
    "compression": st.sampled_from(["none", "gzip", "snappy", "lz4", "zstd"]),
    "partitioner": st.sampled_from(["murmur2", "random", "round_robin"]),
    "delivery_timeout": st.floats(0.001, 1e6, allow_nan=False),
    "offset_reset": st.sampled_from(["latest", "earliest"]),
    "auto_commit": st.booleans(),
    "auto_commit_interval": st.floats(0.001, 1e4, allow_nan=False),
    "client_id": st.text("abcxyz-_.0123456789", min_size=1, max_size=20),
    "serializer": st.sampled_from(["json", "str", "bytes"]),
    "key_serializer": st.sampled_from(["json", "str", "bytes"]),
    "deserializer": st.sampled_from(["json", "str", "bytes"]),
    "key_deserializer": st.sampled_from(["json", "str", "bytes"]),
}


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, float) else str(value)


@given(
    st.dictionaries(st.sampled_from(sorted(_VALUES)), st.none()).flatmap(
        lambda keys: st.fixed_dictionaries({k: _VALUES[k] for k in keys})
    )
)
def test_a_url_query_means_the_same_as_keywords(options: dict[str, Any]) -> None:
    query = urlencode({k: _as_text(v) for k, v in options.items()})
    from_url = bus.connect(f"memory://options?{query}")
    from_keywords = bus.connect("memory://options", **options)
    assert (
        from_url._config.options
        == from_keywords._config.options
        == {k: (float(v) if isinstance(v, float) else v) for k, v in options.items()}
    )


@given(
    st.sampled_from(["true", "TRUE", "1", "yes", "on"]),
    st.sampled_from(["false", "0", "no", "Off"]),
)
def test_booleans_read_from_a_url_the_usual_ways(yes: str, no: str) -> None:
    assert TABLE.validate({"auto_commit": yes}, CONSUMER, where="u")["auto_commit"] is True
    assert TABLE.validate({"auto_commit": no}, CONSUMER, where="u")["auto_commit"] is False


def test_acks_minus_one_is_all() -> None:
    assert TABLE.validate({"acks": "-1"}, PRODUCER, where="u") == {"acks": "all"}
    assert TABLE.validate({"acks": -1}, PRODUCER, where="u") == {"acks": "all"}


def test_defaults_are_those_of_docs_concepts_md() -> None:
    """The defaults docs/concepts.md's option tables and questions state."""
    producer = TABLE.defaults(PRODUCER)
    assert producer["acks"] == "all"
    assert producer["idempotent"] is True
    assert producer["partitioner"] == "murmur2"
    consumer = TABLE.defaults(CONSUMER)
    assert consumer["offset_reset"] == "latest"
    assert consumer["auto_commit"] is True
    assert consumer["auto_commit_interval"] == 5.0


def test_every_core_option_is_documented_in_its_spec() -> None:
    for option in CORE_OPTIONS:
        assert option.doc.strip(), option.name
        assert option.scopes, option.name


def test_secret_values_are_redacted() -> None:
    secret = OptionTable.build(
        [
            bus._options.Option("sasl_password", frozenset({BUS}), None, "pw", secret=True),
            bus._options.Option("config", frozenset({BUS}), None, "native", mapping=True),
        ]
    )
    shown = redact({"sasl_password": "hunter2", "config": {"sasl.password": "x", "a": 1}}, secret)
    assert shown == {"sasl_password": "***", "config": {"sasl.password": "***", "a": 1}}


def test_a_secret_value_is_masked_in_a_conversion_error() -> None:
    table = OptionTable.build(
        [
            bus._options.Option(
                "sasl_password",
                frozenset({BUS}),
                None,
                "pw",
                convert=bus._options.text,
                secret=True,
            ),
        ]
    )
    with pytest.raises(bus.ConfigError) as info:
        table.validate({"sasl_password": ""}, BUS, where="kafka://")
    assert "***" in str(info.value)


# -- hostile URLs and option values (no network: clients are made, never used) ----------------

#: A URL of each backend; the Kafka ones name a port nothing listens on, and nothing
#: here connects (producers and asyncio consumers are made lazily; a blocking Kafka
#: consumer fetches metadata when made, so none is made).
_URLS = {
    "memory": "memory://hostile-options",
    "kafka": "kafka://127.0.0.1:9",
    "aiokafka": "aiokafka://127.0.0.1:9",
}
#: What a bad URL or option may raise: a configuration error, or a TypeError for a value
#: of the wrong type; UnsupportedError for a value the backend cannot honour.
_REFUSALS = (bus.ConfigError, TypeError, bus.UnsupportedError)


def _leaks(*texts: str) -> list[str]:
    return [t for t in texts if any(marker in t for marker in bst.SECRET_MARKERS)]


def _logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    formatter = logging.Formatter("%(message)s")
    return [formatter.format(record) for record in caplog.records]


def _names(scheme: str) -> list[str]:
    from bus._plugins import registry

    table = OptionTable.build(registry().backend_for(scheme).descriptor.options)
    return sorted(table.options)


def _clients(connection: bus.Bus, scheme: str, options: dict[str, Any]) -> list[str]:
    """Make (and close) a producer and, where that needs no network, a consumer with
    ``options``; the ``repr`` of each."""
    shown: list[str] = []
    if scheme == "aiokafka":

        async def make() -> None:
            for factory in (connection.async_producer, connection.async_consumer):
                args = ("t",) if factory == connection.async_consumer else ()
                client = factory(*args, **options)
                shown.append(repr(client))
                await client.close()

        asyncio.run(make())
        return shown
    with connection.producer(**options) as producer:
        shown.append(repr(producer))
    if scheme == "memory":
        with connection.consumer("t", **options) as consumer:
            shown.append(repr(consumer))
    return shown


@pytest.mark.parametrize("scheme", sorted(_URLS))
def test_connect_takes_any_url_or_raises_a_config_error_hiding_the_password(
    scheme: str, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip({"kafka": "confluent_kafka", "aiokafka": "aiokafka"}.get(scheme, "bus"))
    caplog.set_level(logging.DEBUG)

    @settings(max_examples=300, deadline=None)
    @given(bst.hostile_urls())
    def check(drawn: tuple[str, str | None]) -> None:
        caplog.clear()
        text, _ = drawn
        try:
            connection = bus.connect(text)
        except Exception as error:
            assert isinstance(error, bus.ConfigError), repr(error)
            assert not _leaks(str(error), repr(error), *_logged(caplog))
            return
        try:
            assert not _leaks(repr(connection), str(connection.url), *_logged(caplog))
        finally:
            connection.close()

    check()


@pytest.mark.parametrize("scheme", sorted(_URLS))
def test_any_option_value_is_taken_or_refused_with_a_config_error_hiding_secrets(
    scheme: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Keyword options of any value, to connect() or to the client factories, and the
    same as URL query text: taken (and the clients made), or refused with a ConfigError
    (a TypeError for a wrong type); never another exception, never a secret shown."""
    pytest.importorskip({"kafka": "confluent_kafka", "aiokafka": "aiokafka"}.get(scheme, "bus"))
    caplog.set_level(logging.DEBUG)
    names = _names(scheme)

    @settings(max_examples=300, deadline=None)
    @given(bst.hostile_option_values(names), st.sampled_from(["connect", "client", "url"]))
    def check(options: dict[str, Any], where: str) -> None:
        caplog.clear()
        url, keywords, client = _URLS[scheme], options, {}
        if where == "client":
            keywords, client = {}, options
        elif where == "url":
            query = "&".join(
                f"{quote(k)}={quote(v, safe='', errors='surrogatepass')}"
                for k, v in options.items()
                if isinstance(v, str)
            )
            url, keywords = f"{url}?{query}", {}
        shown: list[str] = []
        try:
            connection = bus.connect(url, **keywords)
            try:
                shown.append(repr(connection))
                shown += _clients(connection, scheme, client)
            finally:
                connection.close()
        except Exception as error:
            assert isinstance(error, _REFUSALS), f"{options} at {where}: {error!r}"
            shown += [str(error), repr(error)]
        assert not _leaks(*shown, *_logged(caplog)), shown

    check()


#: Core options of the clients (a producer's on the producer, a consumer's on the consumer).
_CLIENT_OPTIONS = {o.name: o.scopes for o in CORE_OPTIONS if o.scopes & {PRODUCER, CONSUMER}}


def _kafka_consumer(connection: bus.Bus, options: dict[str, Any]) -> None:
    """What ``connection.consumer("t", **options)`` checks and makes on kafka://, up to
    the librdkafka consumer (made and closed), without its first metadata request."""
    import confluent_kafka

    from backends.kafka import consumer_config

    settings = connection._settings(CONSUMER, options)
    for name in ("deserializer", "key_deserializer"):
        connection._codec(settings, name)
    try:
        confluent_kafka.Consumer(consumer_config(_URLS["kafka"], **options)).close()
    except confluent_kafka.KafkaException as exc:  # what the backend makes a ConfigError
        raise bus.ConfigError(str(exc)) from exc


def _verdict(scheme: str, options: dict[str, Any]) -> str:
    """``"ok"`` if a producer and a consumer of ``scheme`` take ``options``, else the
    name of the error."""
    producer = {k: v for k, v in options.items() if PRODUCER in _CLIENT_OPTIONS[k]}
    consumer = {k: v for k, v in options.items() if CONSUMER in _CLIENT_OPTIONS[k]}
    connection = bus.connect(_URLS[scheme])
    try:
        if scheme == "aiokafka":

            async def make() -> None:
                await connection.async_producer(**producer).close()
                await connection.async_consumer("t", **consumer).close()

            asyncio.run(make())
        else:
            connection.producer(**producer).close()
            if scheme == "memory":
                connection.consumer("t", **consumer).close()
            else:  # a blocking Kafka consumer fetches metadata when made: make its client
                _kafka_consumer(connection, consumer)
    except Exception as error:
        return type(error).__name__
    finally:
        connection.close()
    return "ok"


@given(
    bst.hostile_option_values(sorted(o.name for o in CORE_OPTIONS)).map(
        lambda options: {k: v for k, v in options.items() if k in _CLIENT_OPTIONS}
    )
)
@settings(max_examples=300, deadline=None)
def test_core_options_mean_the_same_on_every_backend(options: dict[str, Any]) -> None:
    """What memory:// takes, every backend takes, and what it refuses every backend
    refuses: code tested in memory does not fail on a real broker for its options."""
    pytest.importorskip("confluent_kafka")
    pytest.importorskip("aiokafka")
    verdicts = {scheme: _verdict(scheme, options) for scheme in _URLS}
    assert len(set(verdicts.values())) == 1, verdicts
