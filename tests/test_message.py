"""``bus.Message``'s contract (DESIGN: frozen, hashable, equal only to a ``Message``,
readable ``repr``, ``replace(**changes)``), whatever builds it: ``Message(...)`` or the
backends' ``consumed_message``."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import bus
from bus.spi import consumed_message

FIELDS = ("topic", "value", "key", "headers", "partition", "offset", "timestamp")

fields = st.tuples(
    st.text(min_size=1, max_size=20),
    st.none() | st.binary(max_size=20),
    st.none() | st.binary(max_size=20),
    st.lists(st.tuples(st.text(max_size=5), st.none() | st.binary(max_size=5)), max_size=3).map(
        tuple
    ),
    st.none() | st.integers(0, 2**31 - 1),
    st.none() | st.integers(0, 2**63 - 1),
    st.none() | st.integers(0, 2**63 - 1),
)


def both(values: tuple[Any, ...]) -> tuple[bus.Message, bus.Message]:
    made = bus.Message(*values)
    topic, value, key, headers, partition, offset, timestamp = values
    consumed = consumed_message(topic, value, key, headers, partition, offset, timestamp)
    return made, consumed


@given(fields)
def test_fields_read_back_and_both_ways_of_building_agree(values: tuple[Any, ...]) -> None:
    made, consumed = both(values)
    assert tuple(getattr(made, f) for f in FIELDS) == values
    assert made == consumed and hash(made) == hash(consumed)
    assert type(consumed) is bus.Message


@given(fields, fields)
def test_equal_exactly_when_every_field_is(a: tuple[Any, ...], b: tuple[Any, ...]) -> None:
    assert (bus.Message(*a) == bus.Message(*b)) == (a == b)
    assert (bus.Message(*a) != bus.Message(*b)) == (a != b)


@given(fields)
def test_equal_only_to_a_message(values: tuple[Any, ...]) -> None:
    m = bus.Message(*values)
    assert m != values and values != m
    assert m != dict(zip(FIELDS, values, strict=True))
    assert m != object()


@given(fields)
def test_frozen(values: tuple[Any, ...]) -> None:
    m = bus.Message(*values)
    for name in (*FIELDS, "other"):
        with pytest.raises(AttributeError):
            setattr(m, name, 1)
        with pytest.raises(AttributeError):
            delattr(m, name)
    assert tuple(getattr(m, f) for f in FIELDS) == values


@given(fields)
def test_repr_reads_back(values: tuple[Any, ...]) -> None:
    m = bus.Message(*values)
    assert repr(m).startswith("Message(topic=")
    assert eval(repr(m), {"Message": bus.Message}) == m


@given(fields, st.data())
def test_replace_changes_only_what_it_is_given(values: tuple[Any, ...], data: Any) -> None:
    m = bus.Message(*values)
    names = data.draw(st.sets(st.sampled_from(FIELDS)))
    other = data.draw(fields)
    changes = {n: other[FIELDS.index(n)] for n in names}
    changed = m.replace(**changes)
    for i, name in enumerate(FIELDS):
        assert getattr(changed, name) == changes.get(name, values[i])
    assert m == bus.Message(*values)  # the original is untouched


def test_replace_refuses_a_field_it_does_not_have() -> None:
    with pytest.raises(TypeError, match="'offest'"):
        bus.Message("t", b"v").replace(offest=3)


@given(fields)
def test_copies_and_pickles_are_equal(values: tuple[Any, ...]) -> None:
    m = bus.Message(*values)
    assert copy.copy(m) == m and copy.deepcopy(m) == m
    assert pickle.loads(pickle.dumps(m)) == m


def test_keywords_and_defaults() -> None:
    m = bus.Message(topic="t", value=b"v", partition=2)
    assert (m.key, m.headers, m.partition, m.offset, m.timestamp) == (None, (), 2, None, None)
    with pytest.raises(TypeError):
        bus.Message("t")  # type: ignore[call-arg]


def test_match_takes_the_fields_in_order() -> None:
    match bus.Message("t", b"v", b"k"):
        case bus.Message(topic, value, key):
            assert (topic, value, key) == ("t", b"v", b"k")
        case _:
            pytest.fail("no match")


def test_a_decoded_value_that_cannot_be_hashed_makes_the_message_unhashable() -> None:
    m = bus.Message("t", {"a": 1})
    with pytest.raises(TypeError):
        hash(m)
    assert m == bus.Message("t", {"a": 1})
