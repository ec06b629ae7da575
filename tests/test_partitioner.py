"""The partitioners: murmur2 is the Java client's hash, byte for byte."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from bus import murmur2, murmur2_partition
from bus._partitioner import PARTITIONERS, make_partitioner

# org.apache.kafka.common.utils.UtilsTest#testMurmur2 and the empty input.
JAVA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
    b"": 275646681,
}


@pytest.mark.parametrize(("data", "expected"), JAVA_VECTORS.items())
def test_murmur2_matches_the_java_client(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected


def test_partition_is_the_positive_hash_modulo_the_partition_count() -> None:
    # toPositive(-790332482) = 1357151166; 1357151166 % 50 = 16
    assert murmur2_partition(b"foobar", 50) == 16


@given(st.binary(max_size=300))
def test_murmur2_agrees_with_aiokafka(data: bytes) -> None:
    # aiokafka's pure-Python port returns the same 32 bits, unsigned.
    assert murmur2(data) & 0xFFFFFFFF == aiokafka_murmur2(data)


@given(st.binary(max_size=64))
def test_murmur2_is_a_signed_32_bit_int(data: bytes) -> None:
    assert -(2**31) <= murmur2(data) < 2**31


@given(st.binary(min_size=1, max_size=64), st.integers(1, 1000))
def test_keyed_messages_follow_murmur2_whatever_the_partitioner_state(
    key: bytes, partitions: int
) -> None:
    choose = make_partitioner("murmur2")
    first = choose(key, partitions)
    assert first == murmur2_partition(key, partitions)
    assert all(choose(key, partitions) == first for _ in range(3))


@pytest.mark.parametrize("name", sorted(PARTITIONERS))
@given(key=st.one_of(st.none(), st.binary(max_size=16)), partitions=st.integers(1, 64))
def test_every_partitioner_stays_in_range(name: str, key: bytes | None, partitions: int) -> None:
    choose = make_partitioner(name)
    assert all(0 <= choose(key, partitions) < partitions for _ in range(20))


def test_round_robin_cycles_through_every_partition_in_order() -> None:
    choose = make_partitioner("round_robin")
    assert [choose(b"same key", 3) for _ in range(7)] == [0, 1, 2, 0, 1, 2, 0]


def test_unkeyed_murmur2_spreads_over_partitions() -> None:
    choose = make_partitioner("murmur2")
    seen = {choose(None, 4) for _ in range(400)}
    assert seen == {0, 1, 2, 3}
