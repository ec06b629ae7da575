"""kafka://'s consumed messages are ``bus.spi.RecordMessage``s over librdkafka's own
records: each must keep ``bus.Message``'s whole contract (tests/test_message.py), and
be indistinguishable from the plain ``Message`` with the same fields."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest
from confluent_kafka import Message as RawMessage
from hypothesis import given
from hypothesis import strategies as st

import bus
from backends.kafka._consumer import _new_record, _put_record, _Record

FIELDS = ("topic", "value", "key", "headers", "partition", "offset", "timestamp")

consumed = st.tuples(
    st.text(min_size=1, max_size=20),
    st.none() | st.binary(max_size=20),
    st.none() | st.binary(max_size=20),
    st.lists(st.tuples(st.text(max_size=5), st.none() | st.binary(max_size=5)), max_size=3).map(
        tuple
    ),
    st.integers(0, 2**31 - 1),
    st.integers(0, 2**63 - 1),
    st.none() | st.integers(1, 2**63 - 1),
)


def record(values: tuple[Any, ...]) -> bus.Message:
    topic, value, key, headers, partition, offset, timestamp = values
    raw = RawMessage(
        topic=topic,
        value=value,
        key=key,
        headers=list(headers) or None,
        partition=partition,
        offset=offset,
        timestamp=(0, 0) if timestamp is None else (1, timestamp),
    )
    m = _new_record(_Record)
    _put_record(m, raw)
    return m  # type: ignore[no-any-return]


@given(consumed)
def test_a_record_is_the_plain_message_with_its_fields(values: tuple[Any, ...]) -> None:
    m, plain = record(values), bus.Message(*values)
    assert isinstance(m, bus.Message)
    assert tuple(getattr(m, f) for f in FIELDS) == values
    assert m == plain and plain == m
    assert (m != plain) is False and (plain != m) is False
    assert hash(m) == hash(plain)
    assert repr(m) == repr(plain)
    assert m.replace() == plain and type(m.replace()) is bus.Message


@given(consumed)
def test_a_record_pickles_and_copies_as_a_plain_message(values: tuple[Any, ...]) -> None:
    m = record(values)
    for twin in (pickle.loads(pickle.dumps(m)), copy.copy(m), copy.deepcopy(m)):
        assert type(twin) is bus.Message and twin == m


@given(consumed)
def test_a_record_is_frozen(values: tuple[Any, ...]) -> None:
    m = record(values)
    for name in (*FIELDS, "_record", "other"):
        with pytest.raises(AttributeError):
            setattr(m, name, 1)
    assert tuple(getattr(m, f) for f in FIELDS) == values


def test_a_record_message_is_not_made_by_hand() -> None:
    with pytest.raises(TypeError, match="bus.Message"):
        _Record("t", b"v")
    with pytest.raises(TypeError, match="RecordMessage"):
        bus.spi.record_wrapper(bus.Message)  # type: ignore[arg-type]
