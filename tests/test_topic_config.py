"""Topic settings are checked as Kafka 4.x reads them, identically for every backend."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import bus
from bus._topic_config import INT64_MAX, TOPIC_CONFIGS, check_topic_config

LONGS = ["retention.ms", "segment.ms", "delete.retention.ms", "min.compaction.lag.ms"]


@given(st.sampled_from(LONGS), st.integers(min_value=1, max_value=INT64_MAX))
def test_positive_longs_are_accepted(name: str, number: int) -> None:
    check_topic_config({name: str(number)})


@given(st.sampled_from(LONGS), st.text().filter(lambda t: not t.strip().lstrip("-").isdigit()))
def test_non_numbers_are_refused_saying_what_is_allowed(name: str, text: str) -> None:
    with pytest.raises(bus.ConfigError, match=f"{name}' must be an integer from"):
        check_topic_config({name: text})


@given(st.sampled_from(LONGS), st.integers(min_value=INT64_MAX + 1))
def test_longs_past_the_wire_format_are_refused(name: str, number: int) -> None:
    with pytest.raises(bus.ConfigError):
        check_topic_config({name: str(number)})


@given(st.text(min_size=1).filter(lambda n: n not in TOPIC_CONFIGS))
def test_unknown_names_are_refused(name: str) -> None:
    with pytest.raises(bus.ConfigError, match="unknown topic config"):
        check_topic_config({name: "1"})


def test_a_misspelt_name_gets_a_suggestion_in_both_spellings() -> None:
    with pytest.raises(bus.ConfigError, match=r"'retention\.ms' \(keyword retention_ms\)"):
        check_topic_config({"retention.mss": "1"})


@pytest.mark.parametrize(
    ("name", "good", "bad"),
    [
        ("cleanup.policy", "compact,delete", "shred"),
        ("compression.type", "zstd", "brotli"),
        ("message.timestamp.type", "LogAppendTime", "logappendtime"),
        ("min.cleanable.dirty.ratio", "0.5", "1.5"),
        ("preallocate", "true", "yes"),
        ("retention.ms", "-1", "-2"),
        ("local.retention.ms", "-2", "-3"),
        ("leader.replication.throttled.replicas", "0:1,1:2", "0-1"),
        ("max.message.bytes", "1000", str(2**31)),
        ("segment.bytes", "1048576", "14"),  # Kafka 4.0 raised the minimum to 1 MiB
        ("compression.gzip.level", "-1", "0"),
        ("retention.ms", "\x00 100 \t", "--5"),  # trimmed as Java's String.trim does
        ("retention.ms", "1", "\u00b2"),  # ASCII digits only, as a broker reads them
        ("min.cleanable.dirty.ratio", "0.5", "0_5"),
        ("cleanup.policy", "delete ", "delete\u3000"),
    ],
)
def test_each_kind_of_value(name: str, good: str, bad: str) -> None:
    check_topic_config({name: good})
    with pytest.raises(bus.ConfigError, match=name):
        check_topic_config({name: bad})


def test_create_topic_checks_before_the_backend_sees_it() -> None:
    with bus.connect("memory://topic-config-check") as b:
        with pytest.raises(bus.ConfigError, match="retention.ms"):
            b.create_topic("t", retention_ms="soon")
        assert "t" not in b.topics()
        b.create_topic("t", retention_ms=1000, cleanup_policy="compact", preallocate=True)
        assert b.topics() == {"t": 1}


def test_settings_reach_the_backend_as_a_broker_reads_them() -> None:
    assert check_topic_config({"retention.ms": " 100\n", "preallocate": "TRUE"}) == {
        "retention.ms": "100",
        "preallocate": "TRUE",
    }
