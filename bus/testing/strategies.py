"""Hypothesis strategies for polybus: topic names, keys, values, headers, timestamps and
``bus.Message``s ready for ``send_batch``.

Every strategy draws only what every backend, real Kafka included, accepts: valid
Kafka topic names, header names without NUL or surrogates, timestamps from 2000 to
2023 (brokers may refuse timestamps far in the future). Sizes are small by default
and adjustable.

    from hypothesis import given
    from bus.testing import strategies as bst

    @given(bst.messages(topic="orders", partitions=3))
    def test_round_trip(message): ...
"""

from __future__ import annotations

import string

from hypothesis import strategies as st

import bus

__all__ = [
    "header_names",
    "headers",
    "keys",
    "message_batches",
    "messages",
    "timestamps",
    "topic_names",
    "values",
]

_TOPIC_ALPHABET = string.ascii_letters + string.digits + "._-"
#: Where drawn timestamps lie: 2000-01-01 to 2023-11-14 (ms since the epoch).
MIN_TIMESTAMP = 946_684_800_000
MAX_TIMESTAMP = 1_700_000_000_000


def topic_names(*, min_size: int = 1, max_size: int = 249) -> st.SearchStrategy[str]:
    """Valid Kafka topic names: 1 to 249 of ``[A-Za-z0-9._-]``, never ``.`` or ``..``."""
    if not 1 <= min_size <= max_size <= 249:
        raise ValueError("topic names have 1 to 249 characters")
    return st.text(_TOPIC_ALPHABET, min_size=min_size, max_size=max_size).filter(
        lambda name: name not in (".", "..")
    )


def keys(*, max_size: int = 64, nullable: bool = True) -> st.SearchStrategy[bytes | None]:
    """Message keys: bytes (the empty key included), or ``None`` when ``nullable``."""
    data = st.binary(max_size=max_size)
    return st.none() | data if nullable else data


def values(*, max_size: int = 1024, nullable: bool = True) -> st.SearchStrategy[bytes | None]:
    """Message values: bytes (empty included), or ``None`` (a tombstone) when ``nullable``."""
    data = st.binary(max_size=max_size)
    return st.none() | data if nullable else data


def header_names(*, max_size: int = 16) -> st.SearchStrategy[str]:
    """Header names: non-empty text without NUL or surrogates (encodable as UTF-8)."""
    return st.text(
        st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
        min_size=1,
        max_size=max_size,
    )


def headers(
    *, max_headers: int = 5, max_value_size: int = 64
) -> st.SearchStrategy[tuple[tuple[str, bytes], ...]]:
    """Headers as ``bus.Message`` holds them: ordered ``(name, bytes)`` pairs. Names
    often repeat, since order and duplicates are what backends get wrong."""
    name = header_names() | st.sampled_from(["trace", "tag", "Trace"])
    pair = st.tuples(name, st.binary(max_size=max_value_size))
    return st.lists(pair, max_size=max_headers).map(tuple)


def timestamps(
    *, min_value: int = MIN_TIMESTAMP, max_value: int = MAX_TIMESTAMP
) -> st.SearchStrategy[int]:
    """Producer timestamps in milliseconds since the epoch."""
    return st.integers(min_value=min_value, max_value=max_value)


def messages(
    topic: str | st.SearchStrategy[str] | None = None,
    *,
    partitions: int | None = None,
    with_headers: bool = True,
    with_timestamps: bool = True,
    max_value_size: int = 1024,
) -> st.SearchStrategy[bus.Message]:
    """``bus.Message``s to send: ``topic`` (a name, a strategy, or any valid name),
    value, key, and optionally headers and a timestamp.

    With ``partitions`` the message sometimes names an explicit partition below it,
    else it leaves the choice to the partitioner. Turn off ``with_headers`` or
    ``with_timestamps`` for a backend without that capability.
    """
    topic_strategy: st.SearchStrategy[str]
    if topic is None:
        topic_strategy = topic_names(max_size=40)
    elif isinstance(topic, str):
        topic_strategy = st.just(topic)
    else:
        topic_strategy = topic
    partition: st.SearchStrategy[int | None] = st.none()
    if partitions is not None:
        if partitions < 1:
            raise ValueError("partitions must be >= 1")
        partition = st.none() | st.integers(0, partitions - 1)
    return st.builds(
        bus.Message,
        topic=topic_strategy,
        value=values(max_size=max_value_size),
        key=keys(),
        headers=headers() if with_headers else st.just(()),
        partition=partition,
        timestamp=st.none() | timestamps() if with_timestamps else st.none(),
    )


def message_batches(
    topic: str | st.SearchStrategy[str] | None = None,
    *,
    min_size: int = 0,
    max_size: int = 20,
    partitions: int | None = None,
    with_headers: bool = True,
    with_timestamps: bool = True,
    max_value_size: int = 1024,
) -> st.SearchStrategy[list[bus.Message]]:
    """Lists of ``messages(topic, ...)`` for ``send_batch``."""
    one = messages(
        topic,
        partitions=partitions,
        with_headers=with_headers,
        with_timestamps=with_timestamps,
        max_value_size=max_value_size,
    )
    return st.lists(one, min_size=min_size, max_size=max_size)
