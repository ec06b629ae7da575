"""Option specifications and their validation: one table serves the URL query, keyword
arguments, the docs and the tests.

Each option has the scopes it applies to (``bus``: the connection itself,
``producer``, ``consumer``), a default and a converter that turns a keyword value or
a URL query string into the typed value, or raises ``ValueError``/``TypeError``
saying what is allowed. Backends add options of their own with the same type.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from bus._codecs import Codec
from bus._errors import ConfigError
from bus._interceptors import interceptor_list
from bus._url import is_secret_key

#: The scopes of an option (``Option.scopes``): ``BUS`` for the connection (given to
#: ``bus.connect``), ``PRODUCER`` and ``CONSUMER`` for the clients.
BUS, PRODUCER, CONSUMER = "bus", "producer", "consumer"
#: The scopes of an option of both clients (producers and consumers).
CLIENTS = frozenset({PRODUCER, CONSUMER})
#: Every scope: an option valid on the connection and on both clients.
ALL = frozenset({BUS, PRODUCER, CONSUMER})

#: ``convert(value) -> value``: checks an option's value (text, from a URL, or a Python
#: value) and returns it converted, or raises ``ValueError`` saying what is allowed.
Converter = Callable[[Any], Any]


@attrs.frozen
class Option:
    """One option: its name, where it applies, its default and how to read a value.

    ``convert`` takes a keyword value or, from a URL query, a string; it returns the
    typed value or raises ``ValueError``/``TypeError`` whose text says what is allowed.
    A ``mapping`` option holds a dict; in a URL query ``name.key=value`` adds ``key``
    to it (for backend-native settings). A ``secret`` option's value is never shown.
    """

    name: str
    scopes: frozenset[str]
    default: Any
    doc: str
    convert: Converter = attrs.field(default=lambda value: value, repr=False)
    secret: bool = False
    mapping: bool = False


# -- converters ---------------------------------------------------------------------------


def choice(*allowed: Any) -> Converter:
    """Exactly one of ``allowed``; a URL string matches case-insensitively."""
    by_text = {str(a).lower(): a for a in allowed}

    def convert(value: Any) -> Any:
        if isinstance(value, str) and value.lower() in by_text:
            return by_text[value.lower()]
        if not isinstance(value, (bool, str)) and value in allowed:
            return value
        raise ValueError(f"must be one of {', '.join(repr(a) for a in allowed)}, not {value!r}")

    return convert


def boolean(value: Any) -> bool:
    """``True``/``False``; from a URL ``true/false``, ``1/0``, ``yes/no``, ``on/off``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off"):
            return False
    raise ValueError(f"must be true or false, not {value!r}")


def integer(low: int = 0, high: int | None = None) -> Converter:
    """An int in ``[low, high]``; a URL string of digits."""

    def convert(value: Any) -> int:
        number: int = _parse_number(value, int)
        if number < low or (high is not None and number > high):
            bounds = f">= {low}" if high is None else f"between {low} and {high}"
            raise ValueError(f"must be an integer {bounds}, not {value!r}")
        return number

    return convert


def seconds(value: Any) -> float:
    """A duration in seconds: a finite number >= 0."""
    number = float(_parse_number(value, float))
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"must be a number of seconds >= 0, not {value!r}")
    return number


def _seconds_between(low: float, high: float) -> Converter:
    """A duration in seconds from ``low`` to ``high``: the range every backend's client
    library holds (librdkafka's in milliseconds), so a value memory:// takes a Kafka
    backend takes too."""

    def convert(value: Any) -> float:
        number = seconds(value)
        if not low <= number <= high:
            raise ValueError(f"must be a number of seconds from {low:g} to {high:g}, not {value!r}")
        return number

    return convert


def text(value: Any) -> str:
    """Any non-empty string that UTF-8 can encode, without NUL (a client library written
    in C would cut it short there)."""
    if isinstance(value, str) and value and "\x00" not in value:
        try:
            value.encode()
        except UnicodeEncodeError:
            pass
        else:
            return value
    raise ValueError(f"must be a non-empty string without NUL or lone surrogates, not {value!r}")


def callback(value: Any) -> Callable[..., Any] | None:
    """A callable, or ``None``. Not settable from a URL."""
    if value is None or callable(value):
        return value  # type: ignore[no-any-return]
    raise TypeError(f"must be a callable or None, not {type(value).__name__}")


def codec(value: Any) -> str | Codec | Callable[..., Any] | None:
    """A codec name, a ``Codec``, a callable, or ``None`` (bytes in, bytes out)."""
    if value is None or isinstance(value, (str, Codec)) or callable(value):
        return value  # type: ignore[no-any-return]
    raise TypeError(
        f"must be a codec name such as 'json', a Codec or a callable, not {type(value).__name__}"
    )


def mapping(value: Any) -> dict[str, Any]:
    """A dict of string keys."""
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return dict(value)
    raise TypeError(f"must be a dict with string keys, not {type(value).__name__}")


def _parse_number(value: Any, kind: type) -> Any:
    if isinstance(value, bool):
        raise TypeError(f"must be a number, not {value!r}")
    if isinstance(value, str):
        try:
            return kind(value.strip())
        except ValueError:
            raise ValueError(f"must be a number, not {value!r}") from None
    if kind is int and isinstance(value, int):
        return int(value)
    if kind is float and isinstance(value, (int, float)):
        return value
    raise TypeError(f"must be {'an integer' if kind is int else 'a number'}, not {value!r}")


def acks(value: Any) -> str | int:
    """``"all"`` (also ``-1``), ``1`` or ``0``."""
    if value in (-1, "-1") or (isinstance(value, str) and value.lower() == "all"):
        return "all"
    if value in (0, 1, "0", "1") and not isinstance(value, bool):
        return int(value)
    raise ValueError(f"must be 'all', 1 or 0, not {value!r}")


# -- the core table -------------------------------------------------------------------------

CORE_OPTIONS: tuple[Option, ...] = (
    Option(
        "interceptors",
        CLIENTS,
        None,
        "bus.Interceptor instances, or names plugins register, called around every "
        "message (a URL: names, comma-separated).",
        interceptor_list,
    ),
    Option("client_id", ALL, None, "Name of this client in broker logs and metrics.", text),
    Option(
        "acks",
        frozenset({PRODUCER}),
        "all",
        "Acknowledgement a send waits for: 'all' in-sync replicas, 1 (the leader), 0 (none).",
        acks,
    ),
    Option(
        "idempotent",
        frozenset({PRODUCER}),
        True,
        "Broker de-duplicates retried sends, so a retry never writes twice.",
        boolean,
    ),
    Option(
        "linger_ms",
        frozenset({PRODUCER}),
        5,
        "Milliseconds to wait for more messages before sending a batch.",
        integer(0, 900_000),
    ),
    Option(
        "batch_size",
        frozenset({PRODUCER}),
        1_000_000,
        "Largest batch in bytes sent to one partition at once.",
        integer(1, 2_147_483_647),
    ),
    Option(
        "compression",
        frozenset({PRODUCER}),
        "none",
        "Batch compression codec.",
        choice("none", "gzip", "snappy", "lz4", "zstd"),
    ),
    Option(
        "partitioner",
        frozenset({PRODUCER}),
        "murmur2",
        "Partition of a message with no explicit partition: 'murmur2' (the Java client's "
        "rule for keys, random without a key), 'random', 'round_robin'.",
        choice("murmur2", "random", "round_robin"),
    ),
    Option(
        "delivery_timeout",
        frozenset({PRODUCER}),
        120.0,
        "Seconds a message may take from enqueue to acknowledgement, retries included.",
        _seconds_between(0.001, 2_147_483.647),
    ),
    Option(
        "serializer",
        frozenset({PRODUCER}),
        None,
        "Codec for values: 'bytes', 'str', 'json', a Codec or a callable.",
        codec,
    ),
    Option("key_serializer", frozenset({PRODUCER}), None, "Codec for keys.", codec),
    Option(
        "offset_reset",
        frozenset({CONSUMER}),
        "latest",
        "Where a partition with no committed position starts: 'latest' or 'earliest'.",
        choice("latest", "earliest"),
    ),
    Option(
        "auto_commit",
        frozenset({CONSUMER}),
        True,
        "Commit processed positions every auto_commit_interval, on rebalance and on close.",
        boolean,
    ),
    Option(
        "auto_commit_interval",
        frozenset({CONSUMER}),
        5.0,
        "Seconds between automatic commits.",
        _seconds_between(0.001, 86_400),
    ),
    Option(
        "session_timeout",
        frozenset({CONSUMER}),
        10.0,
        "Seconds a group member may go without a heartbeat before the group moves on "
        "without it (the same default on every backend).",
        _seconds_between(0.001, 3_600),
    ),
    Option(
        "heartbeat_interval",
        frozenset({CONSUMER}),
        1.0,
        "Seconds between a group member's heartbeats; less than session_timeout.",
        _seconds_between(0.001, 3_600),
    ),
    Option(
        "max_poll_interval",
        frozenset({CONSUMER}),
        300.0,
        "Seconds a group member may go between polls (or loop turns) before the group "
        "takes it for dead and moves its partitions; at least session_timeout. Iteration "
        "never holds a fetched batch for more than half of it.",
        _seconds_between(0.001, 86_400),
    ),
    Option(
        "on_assign",
        frozenset({CONSUMER}),
        None,
        "Called with the set of TopicPartitions assigned by a rebalance.",
        callback,
    ),
    Option(
        "on_revoke",
        frozenset({CONSUMER}),
        None,
        "Called with the set of TopicPartitions taken away by a rebalance, after their "
        "processed positions are committed.",
        callback,
    ),
    Option(
        "on_error",
        frozenset({CONSUMER}),
        None,
        "Called with each error the backend retries by itself (broker down, ...).",
        callback,
    ),
    Option(
        "deserializer",
        frozenset({CONSUMER}),
        None,
        "Codec for values: 'bytes', 'str', 'json', a Codec or a callable.",
        codec,
    ),
    Option("key_deserializer", frozenset({CONSUMER}), None, "Codec for keys.", codec),
)


@attrs.frozen
class OptionTable:
    """The options one backend accepts: the core ones plus its own."""

    options: Mapping[str, Option]

    @classmethod
    def build(cls, extra: Iterable[Option] = ()) -> OptionTable:
        table = {o.name: o for o in CORE_OPTIONS}
        for option in extra:
            if option.name in table:
                raise ValueError(f"option {option.name!r} is defined twice")
            table[option.name] = option
        return cls(table)

    def names(self, scope: str) -> list[str]:
        return sorted(n for n, o in self.options.items() if scope in o.scopes)

    def validate(self, given: Mapping[str, Any], scope: str, *, where: str) -> dict[str, Any]:
        """Convert every given option for ``scope`` (``bus`` accepts every scope).

        Raises ``ConfigError`` naming an unknown option and the closest valid one, an
        option of another scope, or a value that does not convert.
        """
        result: dict[str, Any] = {}
        for name, value in given.items():
            option = self.options.get(name)
            if option is None:
                raise ConfigError(self._unknown(name, scope, where))
            if scope != BUS and scope not in option.scopes:
                scopes = " and ".join(sorted(option.scopes))
                raise ConfigError(
                    f"{where}: option {name!r} is a {scopes} option, not a {scope} one"
                )
            result[name] = self.convert(option, value, where=where)
        return result

    def convert(self, option: Option, value: Any, *, where: str) -> Any:
        try:
            return option.convert(value)
        except (TypeError, ValueError) as exc:
            shown = "***" if option.secret else repr(value)
            message = str(exc)
            if option.secret:  # the converter's text may quote the value: hide it
                for form in {repr(value), str(value)} - {""}:
                    message = message.replace(form, "***")
            raise ConfigError(f"{where}: option {option.name!r} {message} (got {shown})") from None

    def defaults(self, scope: str) -> dict[str, Any]:
        return {n: o.default for n, o in self.options.items() if scope in o.scopes}

    def _unknown(self, name: str, scope: str, where: str) -> str:
        valid = self.names(scope) if scope != BUS else sorted(self.options)
        close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else "."
        return f"{where}: unknown option {name!r}{hint} Valid options: {', '.join(valid)}"


def redact(options: Mapping[str, Any], table: OptionTable) -> dict[str, Any]:
    """A copy of ``options`` with every secret value (and secret mapping key) masked."""
    shown: dict[str, Any] = {}
    for name, value in options.items():
        option = table.options.get(name)
        if option is not None and option.secret:
            shown[name] = "***"
        elif isinstance(value, Mapping):
            shown[name] = {k: "***" if is_secret_key(k) else v for k, v in value.items()}
        else:
            shown[name] = value
    return shown
