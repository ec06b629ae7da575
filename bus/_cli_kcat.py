"""The kcat habits of ``bus consume`` and ``bus produce``: ``-f FORMAT``, ``-J`` (one JSON
object a message, both ways), ``-o`` (where each partition starts) and ``-e`` (where it
ends). Pure functions of what the broker answered; the I/O stays in ``bus._cli``."""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from bus._format import text
from bus._message import Message, TopicPartition

# -- -f FORMAT ------------------------------------------------------------------------------

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "0": "\0"}
_TOKEN = re.compile(r"%(.)|\\(.)", re.S)


def _headers_text(message: Message) -> str:
    return ",".join(f"{name}={text(value)}" for name, value in message.headers or ())


_FIELDS: dict[str, Callable[[Message], str]] = {
    "t": lambda m: m.topic,
    "p": lambda m: str(m.partition),
    "o": lambda m: str(m.offset),
    "k": lambda m: text(m.key),
    "s": lambda m: text(m.value),
    "T": lambda m: "" if m.timestamp is None else str(m.timestamp),
    "h": _headers_text,
    "K": lambda m: str(-1 if m.key is None else len(m.key)),
    "S": lambda m: str(-1 if m.value is None else len(m.value)),
    "%": lambda m: "%",
}


def _const(literal: str) -> Callable[[Message], str]:
    return lambda message: literal


def compile_format(spec: str) -> Callable[[Message], str]:
    """A ``-f`` format as a function of a message. ``%t`` topic, ``%p`` partition, ``%o``
    offset, ``%k`` key, ``%s`` value, ``%T`` timestamp (ms), ``%h`` headers
    (``name=value,...``), ``%K``/``%S`` key/value length (-1 for None), ``%%`` a ``%``;
    ``\\n``, ``\\t``, ``\\r``, ``\\\\`` escapes. Anything else is refused (``ValueError``)."""
    parts: list[Callable[[Message], str]] = []
    at = 0
    for match in _TOKEN.finditer(spec):
        literal = spec[at : match.start()]
        if literal:
            parts.append(_const(literal))
        at = match.end()
        token, escape = match.group(1), match.group(2)
        if token is not None:
            if token not in _FIELDS:
                raise ValueError(f"unknown format token %{token} (known: %t %p %o %k %s %T %h)")
            parts.append(_FIELDS[token])
        else:
            char = _ESCAPES.get(escape)
            if char is None:
                raise ValueError(f"unknown escape \\{escape} (known: \\n \\t \\r \\\\)")
            parts.append(_const(char))
    rest = spec[at:]
    if rest.endswith(("%", "\\")):
        raise ValueError(f"format ends in a lone {rest[-1]!r}")
    if rest:
        parts.append(_const(rest))
    return lambda m: "".join(part(m) for part in parts)


def format_type(spec: str) -> Callable[[Message], str]:
    """``compile_format`` as an argument type: a bad format exits 2 while parsing."""
    try:
        return compile_format(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# -- -J -------------------------------------------------------------------------------------

#: The largest timestamp a message can have (a Kafka int64).
_LONG_MAX = 2**63 - 1


def _encode(data: Any) -> Any:
    """Bytes that are UTF-8 as a JSON string, other bytes as ``{"base64": ...}``,
    ``None`` as null (a ``str`` stays a string)."""
    if data is None or isinstance(data, str):
        return data
    raw = bytes(data)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(raw).decode("ascii")}


def _decode(data: Any, what: str) -> bytes | None:
    if data is None:
        return None
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, dict) and set(data) == {"base64"} and isinstance(data["base64"], str):
        try:
            return base64.b64decode(data["base64"], validate=True)
        except binascii.Error:
            raise ValueError(f"{what}: invalid base64") from None
    raise ValueError(f'{what} must be a string, {{"base64": "..."}} or null, not {data!r}')


def to_json(message: Message) -> str:
    """One line of ``consume -J``."""
    return json.dumps(
        {
            "topic": message.topic,
            "partition": message.partition,
            "offset": message.offset,
            "timestamp": message.timestamp,
            "key": _encode(message.key),
            "value": _encode(message.value),
            "headers": [[name, _encode(value)] for name, value in message.headers or ()],
        },
        ensure_ascii=False,
    )


@attrs.frozen
class Record:
    """What ``bus produce`` sends for one line."""

    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    partition: int | None = None
    timestamp: int | None = None


def from_json(line: bytes, number: int) -> Record:
    """One line of ``consume -J`` as a record to send: key, value, headers, partition
    and timestamp are kept; topic and offset are ignored (the message goes to the
    topic named on the command line and gets the offset the log gives it). A missing
    or null field is ``None``. Raises ``ValueError`` naming the line."""
    where = f"line {number}"
    try:
        data = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{where} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{where} is not a JSON object")
    headers = data.get("headers") or []
    if not isinstance(headers, list) or not all(
        isinstance(h, list) and len(h) == 2 and isinstance(h[0], str) for h in headers
    ):
        raise ValueError(f'{where}: "headers" must be a list of [name, value] pairs')
    partition = data.get("partition")
    if partition is not None and (
        isinstance(partition, bool) or not isinstance(partition, int) or partition < 0
    ):
        raise ValueError(f'{where}: "partition" must be a partition number or null')
    timestamp = data.get("timestamp")
    if timestamp is not None and (
        isinstance(timestamp, bool)
        or not isinstance(timestamp, int)
        or not 0 <= timestamp <= _LONG_MAX
    ):
        raise ValueError(
            f'{where}: "timestamp" must be milliseconds since the epoch (0 to 2**63-1) or null'
        )
    return Record(
        key=_decode(data.get("key"), f"{where}: key"),
        value=_decode(data.get("value"), f"{where}: value"),
        headers=tuple((n, _decode(v, f"{where}: header {n}")) for n, v in headers),
        partition=partition,
        timestamp=timestamp,
    )


# -- -o and -e ------------------------------------------------------------------------------


@attrs.frozen
class Offset:
    """Where ``consume -o`` starts each partition: ``kind`` is ``beginning``, ``end``,
    ``stored``, ``absolute`` (``value`` the offset), ``tail`` (``value`` messages
    before the end) or ``time`` (``value`` milliseconds since the epoch)."""

    kind: str
    value: int = 0

    @property
    def seeks(self) -> bool:
        """Whether each partition is placed by a seek (else by ``offset_reset``)."""
        return self.kind in ("absolute", "tail", "time")


def offset_type(spec: str) -> Offset:
    """An argument type: ``beginning``, ``end``, ``stored``, ``N``, ``-N`` or ``@MS``."""
    if spec in ("beginning", "end", "stored"):
        return Offset(spec)
    kind, digits = ("time", spec[1:]) if spec.startswith("@") else ("absolute", spec)
    if kind == "absolute" and spec.startswith("-"):
        kind, digits = "tail", spec[1:]
    if not digits.isdigit() or not digits.isascii():
        raise argparse.ArgumentTypeError(
            f"must be beginning, end, stored, N, -N or @MS (milliseconds), not {spec!r}"
        )
    return Offset(kind, int(digits))


def start_positions(
    offset: Offset,
    watermarks: Mapping[TopicPartition, tuple[int, int]],
    times: Mapping[TopicPartition, int | None],
) -> dict[TopicPartition, int]:
    """Per partition, the offset a seeking ``-o`` starts at: an absolute offset as given,
    ``-N`` N before the high watermark (not before the low one), ``@MS`` the first
    message at or after that time (the end where none is that late)."""
    found: dict[TopicPartition, int] = {}
    for tp, (low, high) in watermarks.items():
        if offset.kind == "absolute":
            found[tp] = offset.value
        elif offset.kind == "tail":
            found[tp] = max(low, high - offset.value)
        else:
            at = times.get(tp)
            found[tp] = high if at is None else at
    return found


def first_positions(
    offset: Offset,
    earliest: bool,
    watermarks: Mapping[TopicPartition, tuple[int, int]],
    seeks: Mapping[TopicPartition, int],
    committed: Mapping[TopicPartition, int | None],
) -> dict[TopicPartition, int]:
    """Per partition, the offset of the first message the consume reads (for ``-e``):
    where it seeks, else its committed position, else the low (``earliest``) or the
    high watermark."""
    first: dict[TopicPartition, int] = {}
    for tp, (low, high) in watermarks.items():
        if tp in seeks:
            first[tp] = seeks[tp]
        elif committed.get(tp) is not None:
            first[tp] = committed[tp]  # type: ignore[assignment]
        else:
            first[tp] = low if earliest else high
    return first


@attrs.define
class Ends:
    """``-e``: the end offset of each partition read as of the start; ``done`` once the
    next position of every one reached it."""

    ends: dict[TopicPartition, int]
    positions: dict[TopicPartition, int]

    def saw(self, message: Message) -> None:
        tp = TopicPartition(message.topic, message.partition or 0)
        if message.offset is not None:
            self.positions[tp] = max(self.positions.get(tp, 0), message.offset + 1)

    def done(self) -> bool:
        return all(self.positions.get(tp, 0) >= end for tp, end in self.ends.items())
