"""Options: one table for URL queries and keywords, with clear errors."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

import bus
from bus._options import BUS, CONSUMER, CORE_OPTIONS, PRODUCER, OptionTable, redact

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
    "delivery_timeout": st.floats(0, 1e6, allow_nan=False),
    "offset_reset": st.sampled_from(["latest", "earliest"]),
    "auto_commit": st.booleans(),
    "auto_commit_interval": st.floats(0, 1e4, allow_nan=False),
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
