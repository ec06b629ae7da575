"""Hypothesis strategies for polybus: topic names, keys, values, headers, timestamps and
``bus.Message``s ready for ``send_batch``, and the hostile input a careless caller gives.

The first group draws only what every backend, real Kafka included, accepts: valid
Kafka topic names, header names without NUL or surrogates, timestamps from 2000 to
2023 (brokers may refuse timestamps far in the future). Sizes are small by default
and adjustable.

The ``hostile_*`` strategies draw what must be refused, mixed with what must not:
numbers of any size and type, header shapes, values and keys of the wrong type, topic
names, topic settings, bus URLs and option values. They say nothing about the outcome;
a test decides what each input must give (``bus.testing._conformance_hostile`` does,
for every backend). Secrets are drawn by ``secrets()``: passwords framed by markers
(``SECRET_MARKERS``) that nothing else drawn here contains, so a test finds any piece
of one in a ``repr``, an error or a log record.

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
    "SECRET_MARKERS",
    "header_names",
    "headers",
    "hostile_headers",
    "hostile_numbers",
    "hostile_option_values",
    "hostile_payloads",
    "hostile_timeouts",
    "hostile_topic_configs",
    "hostile_topic_names",
    "hostile_urls",
    "keys",
    "message_batches",
    "messages",
    "secrets",
    "timestamps",
    "topic_configs",
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


# -- hostile input ------------------------------------------------------------------------------

#: The two ends of every password ``secrets()`` draws. Nothing else drawn here contains
#: them, so finding either in a ``repr``, an error or a log record means a leak.
SECRET_MARKERS = ("S3CRETa", "S3CRETz")

#: Integers at the edges of the ranges that Kafka's wire format and its clients hold.
_EDGES = (
    *(2**bits + d for bits in (7, 8, 15, 16, 31, 32, 53, 63, 64) for d in (-1, 0)),
    *(-(2**bits) + d for bits in (15, 31, 63) for d in (-1, 0)),
    100_000,
    100_001,
    10_000,
    10_001,
    1_000_000,
    1_000_001,
)


def _view(data: bytes) -> memoryview:
    return memoryview(data)


class _Integer(int):
    """An ``int`` subclass (an ``IntEnum`` is one): as good as an ``int``."""


def hostile_numbers() -> st.SearchStrategy[object]:
    """What a careless caller passes where an integer goes: ints of every size (edges
    of 8 to 64 bits, huge, negative) and ``int`` subclasses, but also ``bool``, ``float``
    (``nan``, ``inf``), numeric strings, ``bytes``, ``Decimal``, ``Fraction``,
    ``complex``, ``None`` and lists."""
    from decimal import Decimal
    from fractions import Fraction

    integers = (
        st.sampled_from(_EDGES)
        | st.integers(-3, 10)
        | st.integers(min_value=-(2**80), max_value=2**80)
        | st.integers()
    )
    others = (
        st.booleans()
        | st.floats()
        | st.sampled_from([0.0, 1.0, 2.0**31, float("nan"), float("inf"), -1.0])
        | st.text(string.digits + "-+. ", max_size=6)
        | st.binary(max_size=3)
        | st.sampled_from([Decimal(1), Fraction(1, 2), complex(1, 0), [0], (1,)])
        | st.none()
    )
    return integers | integers.map(_Integer) | others


def hostile_timeouts(*, max_wait: float = 0.3) -> st.SearchStrategy[object]:
    """Timeouts in seconds: short valid ones (``0`` to ``max_wait``) mixed with what
    must be refused (negative, ``nan``, ``-inf``, ``bool``, strings, ...). Never a long
    valid wait, so a call given one returns soon."""
    valid = st.floats(0, max_wait) | st.sampled_from([0, 0.0])
    invalid = (
        st.floats(max_value=-1e-9)
        | st.integers(max_value=-1)
        | st.sampled_from([float("nan"), float("-inf"), True, False, "1", b"1", [1]])
    )
    return valid | invalid


def _junk() -> st.SearchStrategy[object]:
    """Scalars and small containers of the wrong type for whatever is asked."""
    return (
        st.integers()
        | st.floats()
        | st.booleans()
        | st.text(max_size=4)
        | st.binary(max_size=4)
        | st.lists(st.integers(), max_size=2)
        | st.dictionaries(st.integers(), st.integers(), max_size=1)
        | st.sampled_from([object(), len, 1j])
    )


def hostile_headers() -> st.SearchStrategy[object]:
    """Header shapes as a careless caller gives them: lists, tuples and dicts of pairs
    (2-tuples, 2-lists), of wrong arity, of strings, of junk; names that are not
    ``str`` or hold NUL or surrogates; values of ``bytes``, ``bytearray``,
    ``memoryview``, ``str``, ``None`` or junk; and scalars, strings and bytes in place
    of the whole. Valid shapes are drawn often enough to be checked too."""
    name = (
        header_names(max_size=6)
        | st.sampled_from(["", "trace", "a\x00b", "\ud800", "é"])
        | st.text(max_size=3)
        | st.binary(max_size=3)
        | st.integers(-1, 1)
        | st.none()
    )
    value = (
        st.binary(max_size=8)
        | st.none()
        | st.binary(max_size=8).map(bytearray)
        | st.binary(max_size=8).map(_view)
        | st.text(max_size=4)
        | st.sampled_from(["\udc80", 0, 1.5, [b"x"]])
    )
    pair = (
        st.tuples(name, value)
        | st.tuples(name, value).map(list)
        | st.tuples(name)
        | st.tuples(name, value, value)
        | name
        | _junk()
    )
    valid_pair = st.tuples(header_names(max_size=6), st.none() | st.binary(max_size=8))
    whole = (
        st.lists(valid_pair, max_size=4)
        | st.lists(pair, max_size=4)
        | st.lists(pair, max_size=4).map(tuple)
        | st.dictionaries(name, value, max_size=3)
        | st.text(max_size=4)
        | st.binary(max_size=4)
        | _junk()
    )
    return st.none() | whole


def hostile_payloads() -> st.SearchStrategy[object]:
    """Values and keys as a careless caller gives them: ``bytes``, ``bytearray``,
    ``memoryview`` and ``None`` (what the bytes codec takes), mixed with ``str``,
    numbers, ``bool``, lists, dicts and other objects."""
    return (
        st.none()
        | st.binary(max_size=16)
        | st.binary(max_size=16).map(bytearray)
        | st.binary(max_size=16).map(_view)
        | st.text(max_size=8)
        | st.sampled_from(["\ud800", 1.5, float("nan"), {1, 2}])
        | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
        | _junk()
    )


def hostile_topic_names() -> st.SearchStrategy[object]:
    """Topic names no backend may accept: empty, ``.`` and ``..``, longer than 249
    characters, with a character outside ``[A-Za-z0-9._-]`` (spaces, ``/``, NUL,
    unicode), and names that are not ``str`` at all (``bytes``, ``None``, numbers).
    Never a valid name."""
    valid = topic_names(max_size=20)
    bad_char = st.characters(
        exclude_characters=_TOPIC_ALPHABET, exclude_categories=["Cs"]
    ) | st.sampled_from(list(" /\\:*?\x00\n\tö€"))
    with_bad_char = st.tuples(valid | st.just(""), bad_char, valid | st.just("")).map("".join)
    too_long = st.text(_TOPIC_ALPHABET, min_size=250, max_size=300)
    not_text = st.binary(min_size=1, max_size=8) | st.none() | st.integers() | st.lists(valid)
    return st.sampled_from(["", ".", ".."]) | with_bad_char | too_long | not_text


_LONG_MAX = 2**63 - 1
_INT_MAX = 2**31 - 1

#: The integer topic settings of Kafka 4.x (one node, its defaults) and their ranges.
_INT_TOPIC_CONFIGS: dict[str, tuple[int, int]] = {
    "compression_lz4_level": (1, 17),
    "compression_zstd_level": (-131072, 22),
    "delete_retention_ms": (0, _LONG_MAX),
    "file_delete_delay_ms": (0, _LONG_MAX),
    "flush_messages": (1, _LONG_MAX),
    "flush_ms": (0, _LONG_MAX),
    "index_interval_bytes": (0, _INT_MAX),
    "max_compaction_lag_ms": (1, _LONG_MAX),
    "max_message_bytes": (0, _INT_MAX),
    "message_timestamp_after_max_ms": (0, _LONG_MAX),
    "message_timestamp_before_max_ms": (0, _LONG_MAX),
    "min_insync_replicas": (1, _INT_MAX),
    "retention_bytes": (-1, _LONG_MAX),
    "retention_ms": (-1, _LONG_MAX),
    "segment_bytes": (1_048_576, _INT_MAX),
    "segment_index_bytes": (4, _INT_MAX),
    "segment_jitter_ms": (0, _LONG_MAX),
    "segment_ms": (1, _LONG_MAX),
}
_CHOICE_TOPIC_CONFIGS: dict[str, tuple[str, ...]] = {
    "cleanup_policy": ("delete", "compact", "compact,delete", "delete, compact"),
    "compression_type": ("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"),
    "message_timestamp_type": ("CreateTime", "LogAppendTime"),
}
_BOOLEAN_TOPIC_CONFIGS = ("preallocate", "unclean_leader_election_enable")


def _int_values(low: int, high: int) -> st.SearchStrategy[object]:
    number = st.sampled_from([low, high]) | st.integers(low, high)
    return number | number.map(str)


#: Topic settings a Kafka 4.x broker with its defaults (one node, no tiered storage)
#: accepts, by keyword, with what each may hold. Settings that depend on the cluster
#: (``remote.*``, ``local.retention.*``, throttled replicas) are left out, and so is
#: ``min.compaction.lag.ms``, which must not exceed ``max.compaction.lag.ms``.
_VALID_TOPIC_CONFIGS: dict[str, st.SearchStrategy[object]] = {
    **{name: _int_values(*bounds) for name, bounds in _INT_TOPIC_CONFIGS.items()},
    **{name: st.sampled_from(allowed) for name, allowed in _CHOICE_TOPIC_CONFIGS.items()},
    **{
        name: st.booleans() | st.sampled_from(["true", "false", "TRUE", "False"])
        for name in _BOOLEAN_TOPIC_CONFIGS
    },
    "compression_gzip_level": st.sampled_from([-1, *range(1, 10)]),
    "min_cleanable_dirty_ratio": st.floats(0, 1) | st.sampled_from(["0", "0.5", "1", "1.0"]),
}
#: Every topic setting of Kafka 4.x, drawn or not: a misspelling must miss them all.
_TOPIC_CONFIG_NAMES = frozenset(
    {name.replace("_", ".") for name in _VALID_TOPIC_CONFIGS}
    | {
        "follower.replication.throttled.replicas",
        "leader.replication.throttled.replicas",
        "local.retention.bytes",
        "local.retention.ms",
        "min.compaction.lag.ms",
        "remote.log.copy.disable",
        "remote.log.delete.on.disable",
        "remote.storage.enable",
    }
)


def topic_configs(*, max_settings: int = 3) -> st.SearchStrategy[dict[str, object]]:
    """Valid topic settings for ``Bus.create_topic(name, **config)``: keyword names
    (``retention_ms``) and values as a caller gives them (``int``, ``str``, ``bool``),
    that a Kafka 4.x broker with its defaults and the memory backend both accept."""
    names = st.lists(st.sampled_from(sorted(_VALID_TOPIC_CONFIGS)), max_size=max_settings)
    return names.flatmap(
        lambda chosen: st.fixed_dictionaries({n: _VALID_TOPIC_CONFIGS[n] for n in chosen})
    )


def _trimmed(text: str) -> str:
    """``text`` without leading and trailing characters up to U+0020, as Java's
    ``String.trim`` (and so a Kafka broker) reads a setting."""
    return text.strip("".join(map(chr, range(33))))


def _misspelt(name: str) -> st.SearchStrategy[str]:
    """``name`` with one character dropped, doubled, replaced or inserted, never
    landing on a real setting."""
    alphabet = string.ascii_lowercase + "_."

    def edit(draw_position: int, char: str, kind: int) -> str:
        i = draw_position % (len(name) + 1)
        if kind == 0:
            return name[:i] + name[i + 1 :]
        if kind == 1:
            return name[:i] + char + name[i:]
        return name[:i] + char + name[i + 1 :]

    return st.builds(edit, st.integers(0, 64), st.sampled_from(alphabet), st.integers(0, 2)).filter(
        lambda spelt: spelt.replace("_", ".") not in _TOPIC_CONFIG_NAMES
    )


def _bad_value(name: str) -> st.SearchStrategy[object]:
    """What setting ``name`` must refuse, whatever the broker."""
    junk = st.none() | st.lists(st.integers(), min_size=1, max_size=2) | st.just(b"1")
    if name in _BOOLEAN_TOPIC_CONFIGS:
        text = st.text(max_size=6).filter(lambda t: _trimmed(t).lower() not in ("true", "false"))
        return text | st.integers() | junk
    if name in _CHOICE_TOPIC_CONFIGS:
        return st.text(max_size=8).filter(lambda t: not t.isalpha()) | st.integers() | junk
    if name == "min_cleanable_dirty_ratio":
        return (
            st.floats(min_value=1.0, exclude_min=True)
            | st.floats(max_value=0.0, exclude_max=True)
            | st.sampled_from([float("nan"), "half", "", True])
            | junk
        )
    if name == "compression_gzip_level":
        return st.just(0) | st.integers(max_value=-2) | st.integers(min_value=10) | junk
    low, high = _INT_TOPIC_CONFIGS[name]
    return (
        st.integers(max_value=low - 1)
        | st.integers(min_value=high + 1)
        | st.floats()  # "1.0", "inf", "1e+16": never an integer to Kafka
        | st.text(max_size=6).filter(lambda t: not any(c in string.digits for c in t))
        | st.sampled_from(["--5", "5-", "1e3", "0x10", "1_000", "\u00b2", "1 000", True, False])
        | junk
    )


def hostile_topic_configs() -> st.SearchStrategy[dict[str, object]]:
    """Topic settings ``Bus.create_topic`` must refuse with ``bus.ConfigError``: a
    misspelt or invented name, or a known setting with a value no broker takes (out of
    range, unreadable, the wrong type), among up to two valid settings."""
    known = sorted(_VALID_TOPIC_CONFIGS)
    misspelt = st.sampled_from(known).flatmap(_misspelt).map(lambda n: (n, "1"))
    invented = (
        st.text(max_size=12)
        .filter(lambda n: n.replace("_", ".") not in _TOPIC_CONFIG_NAMES)
        .map(lambda n: (n, "1"))
    )
    bad_value = st.sampled_from(known).flatmap(lambda n: _bad_value(n).map(lambda v: (n, v)))
    bad = misspelt | invented | bad_value

    def combine(good: dict[str, object], entry: tuple[str, object]) -> dict[str, object]:
        name, value = entry
        return {**{k: v for k, v in good.items() if k != name}, name: value}

    return st.builds(combine, topic_configs(max_settings=2), bad)


def secrets() -> st.SearchStrategy[str]:
    """Passwords: ``SECRET_MARKERS`` around text that holds what breaks URLs and
    naive redaction (``/ ? # @ : % & =``, spaces, unicode)."""
    body = st.text(st.sampled_from("/?#@:%&=+;, ab9é") | st.characters(), max_size=8)
    return body.map(lambda text: SECRET_MARKERS[0] + text + SECRET_MARKERS[1])


def _clean_text(max_size: int = 8) -> st.SearchStrategy[str]:
    """Text that cannot hold a secret marker (no upper-case letters)."""
    return st.text(
        st.characters(exclude_categories=["Lu", "Lt", "Cs"]), max_size=max_size
    ) | st.text("abcxyz019-_.:,/@?=&%# ", max_size=max_size)


def hostile_option_values(names: list[str]) -> st.SearchStrategy[dict[str, object]]:
    """Keyword options for ``bus.connect`` or a client factory: some of ``names`` (and
    a misspelt or invented one now and then) with values of any type: numbers of any
    size, ``nan``, text, ``bool``, ``None``, callables, dicts; secrets only under names
    that say they hold one (``sasl_password``, ``ssl_password``, ``config``'s
    ``sasl.password``)."""
    value = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.integers(0, 10**8)
        | st.floats()
        | st.floats(0, 1e8)
        | _clean_text()
        | st.sampled_from(["all", "earliest", "json", "zstd", "murmur2", "1", "-1", "0.5"])
        | st.sampled_from(["PLAIN", "SASL_SSL", "SSL", "JUNK", "/nonexistent.pem", "/etc/hostname"])
        | st.sampled_from(["\ud800", "a\x00b", " ", "é" * 300])
        | st.just(print)
        | st.dictionaries(_clean_text(6), st.integers() | _clean_text(), max_size=2)
        | st.binary(max_size=4)
    )
    secret_value = secrets() | value
    config = st.dictionaries(
        st.sampled_from(["sasl.password", "ssl.key.password", "linger.ms", "x"]) | _clean_text(6),
        secret_value,
        max_size=2,
    ).map(
        lambda d: {
            k: v
            if k in ("sasl.password", "ssl.key.password") or not isinstance(v, str)
            else v.replace(SECRET_MARKERS[0], "").replace(SECRET_MARKERS[1], "")
            for k, v in d.items()
        }
    )

    def for_name(name: str) -> st.SearchStrategy[object]:
        if name in ("sasl_password", "ssl_password"):
            return secret_value
        if name == "config":
            return config | value
        return value

    chosen = st.lists(
        st.sampled_from(names) | st.sampled_from(names).flatmap(_misspelt_option),
        unique=True,
        max_size=3,
    )
    return chosen.flatmap(lambda keys: st.fixed_dictionaries({k: for_name(k) for k in keys}))


def _misspelt_option(name: str) -> st.SearchStrategy[str]:
    return st.sampled_from([name + "s", name[:-1], name.replace("_", ""), name.upper()])


def hostile_urls() -> st.SearchStrategy[tuple[str, str | None]]:
    """Bus URLs a careless caller writes, each with the password it holds (or ``None``):
    schemes known, unknown, miscased or missing, ``:/`` for ``://``, credentials with
    passwords raw (with ``/ ? # @`` in them), percent-encoded or in the query
    (``sasl_password=``, ``config.sasl.password=``), host lists with junk, paths, query
    strings with unknown, repeated or badly valued options, fragments; and plain text."""
    from urllib.parse import quote

    scheme = st.sampled_from(
        ["memory", "kafka", "aiokafka", "Kafka", "KAFKA", "kafak", "http", "9kafka", "", "x+y"]
    )
    separator = st.sampled_from(["://", "://", "://", ":/", ":", "//", ":///", ""])
    user = st.text("abcxyz019._-", max_size=6)
    host = st.lists(
        st.sampled_from(["127.0.0.1:9", "h1:9092", "h:x", "[::1]:9092", "", " ", "a b", "h:"])
        | st.text("abcxyz019.-:[]", max_size=8),
        max_size=3,
    ).map(",".join)
    path = st.sampled_from(["", "", "/", "/x", "//", "/a/b"])
    option = st.sampled_from(
        ["acks", "client_id", "partitions", "linger_ms", "compression", "config.linger.ms", "ack"]
    ) | st.text("abcxyz_.", min_size=1, max_size=6)
    pair = st.tuples(option, _clean_text(6).map(lambda v: quote(v, safe=""))).map("=".join)
    query = st.lists(pair, max_size=3).map("&".join)

    @st.composite
    def build(draw: st.DrawFn) -> tuple[str, str | None]:
        secret: str | None = None
        auth = ""
        style = draw(st.sampled_from(["none", "none", "user", "raw", "encoded", "query"]))
        if style != "none":
            secret = draw(secrets())
        if style == "user":
            auth, secret = draw(user) + "@", None
        elif style == "raw":
            assert secret is not None
            auth = f"{draw(user)}:{secret}@"
        elif style == "encoded":
            assert secret is not None
            auth = f"{draw(user)}:{quote(secret, safe='', errors='surrogatepass')}@"
        text = f"{draw(scheme)}{draw(separator)}{auth}{draw(host)}{draw(path)}"
        options = draw(query)
        if style == "query":
            assert secret is not None
            key = draw(st.sampled_from(["sasl_password", "ssl_password", "config.sasl.password"]))
            # raw, but for '&': in a query value it starts the next option, and no parser
            # can tell where the value ends (sasl_password=a&b=c is two options)
            raw = secret.replace("&", "%26")
            spelt = quote(secret, safe="", errors="surrogatepass") if draw(st.booleans()) else raw
            options = "&".join(filter(None, [options, f"{key}={spelt}"]))
        if options or draw(st.booleans()):
            text += "?" + options
        if draw(st.booleans()):
            text += "#" + draw(_clean_text(4))
        return text, secret

    return build() | _clean_text(20).map(lambda text: (text, None))
