"""Topic settings as Apache Kafka 4.x reads them: which names exist, what each holds.

``Bus.create_topic`` checks every setting here before a backend sees it, so a
misspelt name or an unreadable value is the same ``bus.ConfigError`` on every
backend: code tested on ``memory://`` fails there as it would on a real cluster,
not later. Pure functions, no I/O.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping

from bus._checks import INT32_MAX, INT64_MAX
from bus._errors import ConfigError

Check = Callable[[str], str | None]  # None when the text is valid, else what is allowed

#: What Java's ``String.trim`` removes, as a broker reads a setting: U+0000 to U+0020.
_JAVA_SPACE = "".join(map(chr, range(33)))
_INTEGER = re.compile(r"-?[0-9]+")  # ASCII digits only: Python's int() takes others too
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def trimmed(text: str) -> str:
    """``text`` as a broker reads it: without leading and trailing U+0000 to U+0020."""
    return text.strip(_JAVA_SPACE)


def _number(low: int, high: int, *also: int) -> Check:
    def check(text: str) -> str | None:
        body = trimmed(text)
        if _INTEGER.fullmatch(body) and (low <= int(body) <= high or int(body) in also):
            return None
        return f"an integer from {low} to {high}" + "".join(f" or {a}" for a in also)

    return check


def _ratio(text: str) -> str | None:
    body = trimmed(text)
    if _DECIMAL.fullmatch(body) and 0 <= float(body) <= 1:
        return None
    return "a number from 0 to 1"


def _boolean(text: str) -> str | None:
    return None if trimmed(text).lower() in ("true", "false") else "true or false"


def _one_of(*allowed: str) -> Check:
    def check(text: str) -> str | None:
        return None if trimmed(text) in allowed else f"one of {', '.join(allowed)}"

    return check


def _list_of(*allowed: str) -> Check:
    def check(text: str) -> str | None:
        items = [trimmed(item) for item in trimmed(text).split(",")]
        if items and all(item in allowed for item in items):
            return None
        return f"a comma-separated list of {', '.join(allowed)}"

    return check


_REPLICA = re.compile(r"[0-9]+:[0-9]+")


def _replicas(text: str) -> str | None:
    """``*``, empty, or ``partition:broker`` pairs separated by commas."""
    body = trimmed(text)
    if body in ("", "*"):
        return None
    if all(_REPLICA.fullmatch(trimmed(item)) for item in body.split(",")):
        return None
    return "'*' or a comma-separated list of partition:broker pairs"


_MS = _number(0, INT64_MAX)

#: Every topic-level setting of Apache Kafka 4.x and what its value must be.
TOPIC_CONFIGS: Mapping[str, Check] = {
    "cleanup.policy": _list_of("delete", "compact"),
    "compression.gzip.level": _number(1, 9, -1),
    "compression.lz4.level": _number(1, 17),
    "compression.type": _one_of("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"),
    "compression.zstd.level": _number(-131072, 22),
    "delete.retention.ms": _MS,
    "file.delete.delay.ms": _MS,
    "flush.messages": _number(1, INT64_MAX),
    "flush.ms": _MS,
    "follower.replication.throttled.replicas": _replicas,
    "index.interval.bytes": _number(0, INT32_MAX),
    "leader.replication.throttled.replicas": _replicas,
    "local.retention.bytes": _number(-2, INT64_MAX),
    "local.retention.ms": _number(-2, INT64_MAX),
    "max.compaction.lag.ms": _number(1, INT64_MAX),
    "max.message.bytes": _number(0, INT32_MAX),
    "message.timestamp.after.max.ms": _MS,
    "message.timestamp.before.max.ms": _MS,
    "message.timestamp.type": _one_of("CreateTime", "LogAppendTime"),
    "min.cleanable.dirty.ratio": _ratio,
    "min.compaction.lag.ms": _MS,
    "min.insync.replicas": _number(1, INT32_MAX),
    "preallocate": _boolean,
    "remote.log.copy.disable": _boolean,
    "remote.log.delete.on.disable": _boolean,
    "remote.storage.enable": _boolean,
    "retention.bytes": _number(-1, INT64_MAX),
    "retention.ms": _number(-1, INT64_MAX),
    "segment.bytes": _number(1_048_576, INT32_MAX),  # Kafka 4.0 raised the minimum
    "segment.index.bytes": _number(4, INT32_MAX),
    "segment.jitter.ms": _MS,
    "segment.ms": _number(1, INT64_MAX),
    "unclean.leader.election.enable": _boolean,
}


def check_topic_config(config: Mapping[str, str]) -> dict[str, str]:
    """Raise ``ConfigError`` for a setting Kafka does not have (suggesting the closest)
    or a value it cannot read (saying what it takes); return the settings as a broker
    reads them (trimmed), for the backend."""
    result: dict[str, str] = {}
    for name, text in config.items():
        check = TOPIC_CONFIGS.get(name)
        if check is None:
            close = difflib.get_close_matches(name, sorted(TOPIC_CONFIGS), n=1)
            hint = (
                f"; did you mean {close[0]!r} (keyword {close[0].replace('.', '_')})?"
                if close
                else ""
            )
            raise ConfigError(f"unknown topic config {name!r}{hint}")
        allowed = check(text)
        if allowed is not None:
            raise ConfigError(f"topic config {name!r} must be {allowed}, not {text!r}")
        result[name] = trimmed(text)
    return result
