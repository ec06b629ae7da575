"""Partitioners: which partition a message with no explicit partition goes to.

Pure functions shared by every backend that picks partitions itself. The default,
``murmur2``, is the Java client's rule, so a key lands on the same partition on the
memory backend as on a production Kafka cluster written to by Java or librdkafka
(with ``murmur2_random``) clients.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable

#: name -> factory of a fresh partitioner; a partitioner maps (key, partition count)
#: to a partition and may keep state (round robin), so each producer gets its own.
Partitioner = Callable[[bytes | None, int], int]

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF
_SEED = 0x9747B28C


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of ``data`` as a signed 32-bit int (``Utils.murmur2``)."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    end = length - (length & 3)
    for i in range(0, end, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length & 3
    if rest:
        if rest == 3:
            h ^= data[end + 2] << 16
        if rest >= 2:
            h ^= data[end + 1] << 8
        h ^= data[end]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def murmur2_partition(key: bytes, partitions: int) -> int:
    """The Java client's partition for ``key``: ``(murmur2(key) & 0x7fffffff) % partitions``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def _murmur2_random() -> Partitioner:
    uniform = random.Random().random

    def choose(key: bytes | None, partitions: int) -> int:
        if key is None:
            return int(uniform() * partitions)
        return (murmur2(key) & 0x7FFFFFFF) % partitions

    return choose


def _random() -> Partitioner:
    uniform = random.Random().random
    return lambda key, partitions: int(uniform() * partitions)


def _round_robin() -> Partitioner:
    counter = itertools.count()
    return lambda key, partitions: next(counter) % partitions


#: Keyed messages follow murmur2; unkeyed ones spread at random (as librdkafka's
#: ``murmur2_random``). ``random`` and ``round_robin`` ignore the key.
PARTITIONERS: dict[str, Callable[[], Partitioner]] = {
    "murmur2": _murmur2_random,
    "random": _random,
    "round_robin": _round_robin,
}


def make_partitioner(name: str) -> Partitioner:
    """A fresh partitioner for ``name`` (one of ``PARTITIONERS``)."""
    return PARTITIONERS[name]()
