"""Argument checks and (de)serialization shared by the blocking and asyncio wrappers.

Pure functions: no I/O, no state but what is passed in. Wrong types raise
``TypeError`` saying what to pass instead; bad values raise ``ValueError``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from bus._codecs import Codec, Decoder, Encoder
from bus._errors import BusError, ConfigError, DeliveryError, SerializationError
from bus._message import Delivery, Headers, Message, TopicPartition, consumed_message

_TOPIC = re.compile(r"[A-Za-z0-9._\-]{1,249}")


def check_topic(topic: Any) -> str:
    """A valid Kafka topic name: 1-249 of ``[A-Za-z0-9._-]``, not ``.`` or ``..``."""
    if not isinstance(topic, str):
        raise TypeError(f"topic must be a str, not {type(topic).__name__}")
    if not _TOPIC.fullmatch(topic) or topic in (".", ".."):
        raise ValueError(
            f"invalid topic name {topic!r}: use 1 to 249 characters of letters, digits, "
            "'.', '_' and '-' (and not '.' or '..')"
        )
    return topic


def check_bytes(value: Any, what: str) -> bytes | None:
    """``value`` as bytes (``bytearray``/``memoryview`` copied), ``None`` kept."""
    if value is None or value.__class__ is bytes:
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    hint = "serializer" if what == "value" else "key_serializer"
    raise TypeError(
        f"{what} must be bytes or None, not {type(value).__name__}; set {hint}='str' or "
        f"'json' (or any callable) to send other objects"
    )


def check_headers(headers: Any) -> Headers:
    """Headers as a tuple of ``(str, bytes | None)`` pairs, from ``None``, a mapping or
    an iterable of pairs (2-tuples or 2-lists; a string is not a pair, nor headers).

    ``str`` values are UTF-8 encoded; order and repeated names are kept. A name must be
    encodable as UTF-8 and hold no NUL (a ``ValueError`` otherwise): a client library
    would crash on it or cut it short.
    """
    if headers is None:
        return ()
    if isinstance(headers, (str, bytes, bytearray, memoryview)):
        raise TypeError(
            f"headers must be a dict or a sequence of (str, bytes) pairs, not "
            f"{type(headers).__name__} {_shown(headers)}"
        )
    items: Iterable[Any] = headers.items() if isinstance(headers, Mapping) else headers
    try:
        pairs = tuple(items)
    except TypeError:
        raise TypeError(
            f"headers must be a dict or a sequence of (str, bytes) pairs, not "
            f"{type(headers).__name__}"
        ) from None
    if all(
        p.__class__ is tuple
        and len(p) == 2
        and p[0].__class__ is str
        and p[1].__class__ is bytes
        and p[0].isascii()
        and "\x00" not in p[0]
        for p in pairs
    ):
        return pairs
    result = []
    for pair in pairs:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(
                f"each header must be a (str, bytes) pair, not {type(pair).__name__} {_shown(pair)}"
            )
        name, value = pair
        if not isinstance(name, str):
            raise TypeError(f"header names must be str, not {type(name).__name__}")
        if isinstance(value, str):
            if not _utf8(value):
                raise ValueError(f"header {name!r} has a str value that UTF-8 cannot encode")
            value = value.encode()
        elif isinstance(value, (bytearray, memoryview)):
            value = bytes(value)
        elif value is not None and not isinstance(value, bytes):
            raise TypeError(
                f"header {name!r} must have a bytes, str or None value, not {type(value).__name__}"
            )
        if "\x00" in name or not _utf8(name):
            raise ValueError(
                f"header name {_shown(name)} must be text without NUL that UTF-8 can encode"
            )
        result.append((name, value))
    return tuple(result)


def _utf8(text: str) -> bool:
    """Whether UTF-8 can encode ``text`` (no lone surrogates)."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _shown(value: Any, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters, for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


#: The largest values Kafka's wire format holds, and so every backend accepts.
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
#: The most messages one ``poll_batch`` returns, whatever ``max_messages`` asks for
#: (librdkafka's limit for one call).
MAX_POLL_BATCH = 1_000_000
#: The ranges of the numeric fields, checked before anything is sent.
RANGES: Mapping[str, tuple[int, int]] = {
    "partition": (0, INT32_MAX),
    "offset": (0, INT64_MAX),
    "timestamp": (0, INT64_MAX),
    "partitions": (1, 100_000),
    "replication_factor": (1, 2**15 - 1),
}


def check_optional_int(value: Any, what: str) -> int | None:
    """``None`` or an int (not a bool) within ``RANGES[what]`` (``>= 0`` for a field
    not listed there). Raises ``TypeError`` or ``ValueError`` naming the field and the
    range, before any client library sees the number."""
    if value is None:
        return None
    if value.__class__ is not int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{what} must be an int or None, not {type(value).__name__}")
        value = int(value)
    low, high = RANGES.get(what, (0, None))
    if value < low or (high is not None and value > high):
        shown = f"{low} to {high}" if high is not None else f">= {low}"
        raise ValueError(f"{what} must be {shown}, not {value}")
    return value  # type: ignore[no-any-return]


#: Seconds from which a timeout means no limit: 2**31 ms (about 24.8 days) and more,
#: more than any backend can wait for at once (librdkafka counts in int32 milliseconds,
#: a thread cannot wait for ``inf``).
NO_LIMIT = INT32_MAX / 1000


def check_timeout(timeout: Any) -> float | None:
    """``None`` (no limit) or a number of seconds >= 0; ``NO_LIMIT`` or more (``inf``
    included) is ``None``."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(
            f"timeout must be a number of seconds or None, not {type(timeout).__name__}"
        )
    if not timeout >= 0:  # also rejects NaN
        raise ValueError(f"timeout must be >= 0 seconds, not {timeout}")
    return float(timeout) if timeout < NO_LIMIT else None


def check_max_messages(value: Any) -> int:
    """An int >= 1; more than ``MAX_POLL_BATCH`` means ``MAX_POLL_BATCH`` ("up to")."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"max_messages must be an int, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"max_messages must be >= 1, not {value}")
    return min(int(value), MAX_POLL_BATCH)


#: Seconds a consumer's position lookup (``watermarks``, ``offsets_for_times``,
#: ``committed``) may take when its ``timeout`` is ``None``: the ``admin_timeout``
#: default of the Kafka backends.
POSITIONS_TIMEOUT = 30.0


def positions_timeout(timeout: Any) -> float:
    """A position lookup's bound in seconds: ``timeout`` checked as ``check_timeout``
    does, ``None`` (or no limit) meaning ``POSITIONS_TIMEOUT``."""
    limit = check_timeout(timeout)
    return POSITIONS_TIMEOUT if limit is None else limit


def check_topic_partition(value: Any, what: str = "partitions") -> TopicPartition:
    """A ``TopicPartition`` with a valid topic name and partition number."""
    if not isinstance(value, TopicPartition):
        raise TypeError(
            f"{what} holds bus.TopicPartition(topic, partition) values, not "
            f"{type(value).__name__} {_shown(value)}"
        )
    check_topic(value.topic)
    if check_optional_int(value.partition, "partition") is None:
        raise TypeError(f"{what}: the partition of {value!r} must be an int, not None")
    return value


def check_partition_set(value: Any, what: str, *, empty: bool) -> frozenset[TopicPartition]:
    """A list, tuple, set or frozenset of ``TopicPartition`` as a frozenset; ``empty``
    says whether none at all is allowed."""
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise TypeError(
            f"{what} must be a list, tuple or set of bus.TopicPartition, not {type(value).__name__}"
        )
    found = frozenset(check_topic_partition(tp, what) for tp in value)
    if not found and not empty:
        raise ValueError(f"{what} must name at least one bus.TopicPartition")
    return found


def check_times(times: Any) -> dict[TopicPartition, int]:
    """``offsets_for_times``' argument: a mapping of ``TopicPartition`` to a timestamp
    in milliseconds since the epoch (an int, 0 to 2**63-1)."""
    if not isinstance(times, Mapping):
        raise TypeError(
            "offsets_for_times takes a dict of bus.TopicPartition to a timestamp in "
            f"milliseconds, not {type(times).__name__}"
        )
    checked: dict[TopicPartition, int] = {}
    for tp, ms in times.items():
        check_topic_partition(tp, "offsets_for_times")
        stamp = check_optional_int(ms, "timestamp")
        if stamp is None:
            raise TypeError(f"the timestamp of {tp!r} must be an int of milliseconds, not None")
        checked[tp] = stamp
    return checked


def resolve_codec(
    spec: Any, codecs: Mapping[str, Codec], option: str
) -> Codec | Callable[..., Any] | None:
    """The codec an option names: ``None``/``'bytes'`` mean none (bytes pass through)."""
    if spec is None or spec == "bytes":
        return None
    if isinstance(spec, str):
        if spec not in codecs:
            raise ConfigError(
                f"option {option!r}: unknown codec {spec!r}; registered codecs: "
                f"{', '.join(sorted(codecs))}"
            )
        return codecs[spec]
    return spec  # type: ignore[no-any-return]


def encoder(spec: Codec | Callable[..., Any] | None) -> Encoder | None:
    if spec is None:
        return None
    return spec.encode if isinstance(spec, Codec) else spec


def decoder(spec: Codec | Callable[..., Any] | None) -> Decoder | None:
    if spec is None:
        return None
    return spec.decode if isinstance(spec, Codec) else spec


def serialize(encode: Encoder, obj: Any, what: str, topic: str) -> bytes | None:
    """``encode(obj)`` as bytes; ``None`` stays ``None``. Failures: ``SerializationError``."""
    if obj is None:
        return None
    try:
        data = encode(obj)
    except Exception as exc:
        raise SerializationError(
            f"could not serialize the {what} for topic {topic!r}: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise SerializationError(
            f"the {what} serializer for topic {topic!r} returned {type(data).__name__}, not bytes"
        )
    return bytes(data)


def deserialize_messages(
    messages: list[Message], value: Decoder | None, key: Decoder | None
) -> list[Message]:
    """Messages with value (and key) decoded; failures raise ``SerializationError``
    naming the topic, partition and offset of the message."""
    out = []
    for index, m in enumerate(messages):
        try:
            v = m.value if value is None or m.value is None else value(m.value)
            k = m.key if key is None or m.key is None else key(m.key)
        except Exception as exc:
            raise SerializationError(
                f"could not deserialize the message at {m.topic}[{m.partition}]@{m.offset}: "
                f"{type(exc).__name__}: {exc} (error.messages holds the {len(messages)} "
                "fetched messages undecoded)",
                messages=messages,
                index=index,
            ) from exc
        out.append(consumed_message(m.topic, v, k, m.headers, m.partition, m.offset, m.timestamp))  # type: ignore[arg-type]
    return out


def batch_outcome(outcomes: list[Delivery | BusError]) -> list[Delivery]:
    """The deliveries of a ``send_batch``, or ``DeliveryError`` carrying every outcome."""
    failed = [o for o in outcomes if not isinstance(o, Delivery)]
    if not failed:
        return outcomes  # type: ignore[return-value]
    first = failed[0]
    error = DeliveryError(
        f"{len(failed)} of {len(outcomes)} messages were not delivered; first: {first}",
        retriable=all(getattr(e, "retriable", False) for e in failed),
        outcomes=outcomes,
    )
    error.__cause__ = first
    raise error
