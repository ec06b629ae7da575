"""Conformance: hostile input, as a careless caller gives it, through either API.

Each test is a Hypothesis property over what ``bus.testing.strategies``' ``hostile_*``
strategies draw: numbers of any size and type for every numeric field, header shapes,
values and keys of the wrong type, topic names, topic settings, timeouts. What must
hold on every backend:

- bad input is refused before anything is sent: a ``TypeError``, or a ``ValueError``
  naming the field (``bus.ConfigError`` for topic settings), never a client library's
  ``OverflowError``, ``AssertionError`` or struct error, and nothing of the call is
  written, not even the good messages of a ``send_batch`` holding one bad message;
- what is valid is accepted and read back exactly as given (headers, timestamps,
  values, keys), or refused by the broker with a ``bus.BusError``;
- no call given a timeout runs much past it (``SLACK`` seconds);
- a producer that refused or failed a message goes on working.

The expectations are written here from ``docs/concepts.md`` and ``DESIGN.md``, not
taken from ``bus._checks``, so a check that goes missing in the core fails here. Each
producing example is framed by two sentinel messages, so what it wrote is counted
there and then, and each producing test reads its topic back at the end and compares
it with what was written.

Example counts are modest on a backend whose broker is another process (capability
``cross_process``: a real Kafka) and larger in memory; see ``examples``.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

import bus
from bus.testing import strategies as bst
from bus.testing._conformance_common import PARTITIONS, QUIET, eventually, needs
from bus.testing.apis import BusAPI
from bus.testing.helpers import consume, poll_until, wait_for_assignment
from bus.testing.plugin import unique_topic_name

__all__ = [
    "TestHostileAdmin",
    "TestHostileConsuming",
    "TestHostileProducing",
]

#: Seconds a call may run past the timeout it was given before it counts as hung.
SLACK = 5.0
#: The ranges docs/concepts.md gives the numeric fields (inclusive).
RANGES: Mapping[str, tuple[int, int]] = {
    "partition": (0, 2**31 - 1),
    "offset": (0, 2**63 - 1),
    "timestamp": (0, 2**63 - 1),
    "partitions": (1, 100_000),
}
#: Valid timeouts no call could wait out: a poll given one waits until closed.
_LONG = st.floats(min_value=1e3) | st.integers(min_value=10**3, max_value=2**70)
#: A partition count every backend creates quickly, even a real broker.
FEW_PARTITIONS = 8

#: The outcome an input must have: accepted, or refused with one of these.
Verdict = type[BaseException] | None


def examples(message_bus: bus.Bus, local: int, remote: int) -> settings:
    """Hypothesis settings for a property: ``local`` examples on a backend in this
    process, ``remote`` on one whose broker is another process (``cross_process``),
    where each example costs round trips; no shrinking there either (each step is a
    round trip too), the failing example is reported as found."""
    far = "cross_process" in message_bus.capabilities
    phases = [Phase.explicit, Phase.reuse, Phase.generate]
    return settings(
        max_examples=remote if far else local,
        deadline=None,
        phases=phases if far else [*phases, Phase.shrink],
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
            HealthCheck.data_too_large,
        ],
    )


# -- what each input must give ---------------------------------------------------------------


def number_verdict(value: object, field: str, *, nullable: bool = True) -> Verdict:
    """``None`` if ``value`` is a valid ``field`` (an int, not a bool, in its range, or
    ``None`` where the field may be left out), else the error it must raise."""
    if value is None:
        return None if nullable else TypeError
    if isinstance(value, bool) or not isinstance(value, int):
        return TypeError
    low, high = RANGES[field]
    return None if low <= value <= high else ValueError


def timeout_verdict(value: object) -> Verdict:
    """A timeout is ``None`` or a number of seconds ``>= 0`` (not a bool, not nan)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return TypeError
    return None if value >= 0 else ValueError


def max_messages_verdict(value: object) -> Verdict:
    if isinstance(value, bool) or not isinstance(value, int):
        return TypeError
    return None if value >= 1 else ValueError


def expected_headers(headers: object) -> tuple[tuple[str, bytes | None], ...] | Verdict:
    """The headers a message sent with ``headers`` carries, or the error it must raise.

    ``None``, a dict, or an iterable of ``(name, value)`` 2-tuples or 2-lists; names are
    ``str`` (without NUL, encodable as UTF-8: a ``ValueError`` otherwise); values are
    ``bytes``, ``bytearray``, ``memoryview``, ``None``, or ``str`` (sent UTF-8 encoded).
    A string or bytes is never headers. Anything else is a ``TypeError``."""
    if headers is None:
        return ()
    if isinstance(headers, (str, bytes, bytearray, memoryview)):
        return TypeError
    if isinstance(headers, Mapping):
        items: list[Any] = list(headers.items())
    else:
        try:
            items = list(headers)  # type: ignore[call-overload]
        except TypeError:
            return TypeError
    result: list[tuple[str, bytes | None]] = []
    for item in items:  # the first bad pair decides
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            return TypeError
        name, value = item
        if not isinstance(name, str):
            return TypeError
        if isinstance(value, str):
            if not _encodable(value):
                return ValueError
            value = value.encode()
        elif isinstance(value, (bytes, bytearray, memoryview)):
            value = bytes(value)
        elif value is not None:
            return TypeError
        if "\x00" in name or not _encodable(name):
            return ValueError
        result.append((name, value))
    return tuple(result)


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def expected_payload(obj: object, codec: str | None) -> bytes | Verdict | None:
    """What a value (or key) ``obj`` is written as under ``codec`` (``None``: none,
    bytes in), or the error: ``TypeError`` for a non-bytes object without a codec,
    ``bus.SerializationError`` for one the codec cannot encode."""
    if obj is None:
        return None
    if codec is None or codec == "bytes":  # 'bytes' is no codec: bytes pass through
        if isinstance(obj, (bytes, bytearray, memoryview)):
            return bytes(obj)
        return TypeError
    if codec == "str":
        if not isinstance(obj, str) or not _encodable(obj):
            return bus.SerializationError
        return obj.encode()
    try:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
    except (TypeError, ValueError):
        return bus.SerializationError


def topic_verdict(name: object) -> Verdict:
    """The error every call taking a topic must raise for ``name``, which
    ``hostile_topic_names`` guarantees is not a valid one."""
    return ValueError if isinstance(name, str) else TypeError


def assert_refused(error: BaseException | None, verdict: Verdict, field: str | None) -> None:
    """``error`` is what ``verdict`` says, and a ``ValueError`` names ``field``."""
    assert verdict is not None
    assert error is not None, f"accepted; expected {verdict.__name__}"
    assert isinstance(error, verdict), f"expected {verdict.__name__}, got {error!r}"
    if verdict is ValueError and field is not None:
        assert field in str(error), f"the ValueError does not name {field!r}: {error}"


def outcome(call: Callable[[], Any]) -> tuple[Any, BaseException | None]:
    """``call()``'s result, or the ``Exception`` it raised."""
    try:
        return call(), None
    except Exception as exc:
        return None, exc


def bounded(call: Callable[[], Any], limit: float, what: str) -> tuple[Any, BaseException | None]:
    """``outcome(call)``, failing the test if the call runs past ``limit`` seconds (it is
    left running in its thread)."""
    box: list[tuple[Any, BaseException | None]] = []
    worker = threading.Thread(target=lambda: box.append(outcome(call)), daemon=True)
    started = time.monotonic()
    worker.start()
    worker.join(limit)
    if not box:
        raise AssertionError(f"{what} had not returned after {time.monotonic() - started:.1f} s")
    return box[0]


# -- the topic's contents --------------------------------------------------------------------


Record = tuple[bytes | None, bytes | None, tuple[tuple[str, bytes | None], ...], int | None]


class Ledger:
    """What a test wrote to a topic, partition by partition, in order: value, key,
    headers and the timestamp it gave (``None``: any). ``check`` reads the topic from
    the start and compares."""

    def __init__(self, topic: str):
        self.topic = topic
        self.partitions: dict[int, list[Record]] = {}
        self._count = 0
        self._start = self._before = 0

    def value(self, label: str) -> bytes:
        """A fresh value naming the example that sends it."""
        self._count += 1
        return f"{self._count}:{label}"[:200].encode("utf-8", "backslashreplace")

    def wrote(
        self,
        partition: int,
        value: bytes | None,
        key: bytes | None = None,
        headers: tuple[tuple[str, bytes | None], ...] = (),
        timestamp: int | None = None,
    ) -> None:
        self.partitions.setdefault(partition, []).append((value, key, headers, timestamp))

    def begin(self, producer: bus.Producer) -> None:
        """Start an example: a sentinel message to partition 0 marks where it starts."""
        value = self.value("start")
        self._start = producer.send(self.topic, value, partition=0).offset
        self.wrote(0, value)
        self._before = len(self.partitions[0])

    def sentinel(self, producer: bus.Producer) -> None:
        """End an example: a sentinel message to partition 0 must land right after what
        the example was meant to write there (so it wrote nothing else, whatever the
        examples before it did), and the producer must still work."""
        meant = len(self.partitions[0]) - self._before
        value = self.value("sentinel")
        delivery = producer.send(self.topic, value, partition=0)
        assert delivery.offset == self._start + 1 + meant, (
            f"the example wrote {delivery.offset - self._start - 1} message(s) to partition 0, "
            f"not {meant}"
        )
        self.wrote(0, value)

    def check(self, api: BusAPI) -> None:
        total = sum(len(records) for records in self.partitions.values())
        with api.consumer(self.topic, offset_reset="earliest") as consumer:
            received = consume(consumer, total) if total else []
            received += consumer.poll_batch(500, timeout=QUIET)
        found: dict[int, list[Record]] = {}
        for m in received:
            assert m.partition is not None
            found.setdefault(m.partition, []).append((m.value, m.key, m.headers, m.timestamp))
        for partition in sorted(set(found) | set(self.partitions)):
            want = self.partitions.get(partition, [])
            got = found.get(partition, [])
            # a timestamp of None in the ledger means "whatever the broker set"
            got = [
                (v, k, h, t if i >= len(want) or want[i][3] is not None else None)
                for i, (v, k, h, t) in enumerate(got)
            ]
            assert got == want, f"{self.topic}[{partition}] holds {got}, expected {want}"


class Producers:
    """One producer per set of options, reused while every example on it went well;
    after an example that failed or had a message refused, the next gets a new one, so
    an example never inherits the state another left."""

    def __init__(self, api: BusAPI):
        self.api = api
        self._open: dict[tuple[tuple[str, Any], ...], bus.Producer] = {}

    @contextlib.contextmanager
    def get(self, **options: Any) -> Iterator[bus.Producer]:
        key = tuple(sorted(options.items()))
        producer = self._open.get(key)
        if producer is None:
            producer = self._open[key] = self.api.producer(**options)
        try:
            yield producer
        except BaseException:
            self.spoil(**options)
            raise

    def spoil(self, **options: Any) -> None:
        producer = self._open.pop(tuple(sorted(options.items())), None)
        if producer is not None:
            outcome(lambda: producer.close(timeout=SLACK))


def partition_count(message_bus: bus.Bus) -> int:
    """Partitions of ``bus_topic`` (see the ``bus_topic`` fixture)."""
    return PARTITIONS if {"partitions", "admin"} <= message_bus.capabilities else 1


# -- producing ---------------------------------------------------------------------------------

_WAYS = ("send", "enqueue", "send_batch")


def produce(
    producer: bus.Producer, way: str, messages: list[bus.Message], index: int
) -> tuple[list[bus.Delivery | BaseException] | None, BaseException | None]:
    """Produce ``messages[index]`` by ``way`` (``send_batch``: all of ``messages``, else
    only that one); the outcome of every message produced, or the error the call raised."""
    m = messages[index]
    refusals = (bus.DeliveryError, bus.UnknownTopicError)  # what a broker may answer
    if way == "send_batch":
        deliveries, error = bounded(
            lambda: producer.send_batch(messages, timeout=30), 30 + SLACK, "send_batch"
        )
        if isinstance(error, bus.DeliveryError) and error.outcomes:
            return list(error.outcomes), None
        return deliveries, error
    fields = {"key": m.key, "headers": m.headers, "partition": m.partition}
    if m.timestamp is not None:
        fields["timestamp"] = m.timestamp
    if way == "send":
        delivery, error = bounded(
            lambda: producer.send(m.topic, m.value, timeout=30, **fields), 30 + SLACK, "send"
        )
        if isinstance(error, refusals):
            return [error], None
        return (None, error) if error is not None else ([delivery], None)
    reports: list[bus.Delivery | BaseException] = []

    def report(delivery: bus.Delivery | None, failure: BaseException | None) -> None:
        reports.append(failure if failure is not None else delivery)  # type: ignore[arg-type]

    _, error = outcome(lambda: producer.enqueue(m.topic, m.value, on_delivery=report, **fields))
    if isinstance(error, refusals):
        return [error], None
    if error is not None:
        return None, error
    _, error = bounded(lambda: producer.flush(timeout=30), 30 + SLACK, "flush")
    assert error is None, f"flush after enqueue raised {error!r}"
    assert len(reports) == 1, f"on_delivery was called {len(reports)} times"
    return reports, None


#: How many good messages go before and after the bad one in a ``send_batch``.
_AROUND = st.tuples(st.integers(0, 2), st.integers(0, 1))


def _batch(
    ledger: Ledger, bad: bus.Message, around: tuple[int, int]
) -> tuple[list[bus.Message], int]:
    """``bad`` among good messages to partition 0, ``around`` saying how many go before
    and after it; the list and the index of ``bad``."""
    before, after = around
    good = [bus.Message(ledger.topic, ledger.value("good"), partition=0) for _ in range(3)]
    return [*good[:before], bad, *good[before : before + after]], before


def _edges(field: str) -> list[int]:
    """The numbers either side of each end of ``field``'s range, and 0."""
    low, high = RANGES[field]
    return sorted({0, low - 1, low, high, high + 1})


class TestHostileProducing:
    """Producing with careless input (Hypothesis): numbers, header shapes, values,
    keys, topic names and timeouts of every kind are refused before anything is sent, or
    written exactly as given; no call outlives its timeout."""

    def test_numeric_fields_are_checked_before_anything_is_sent(
        self, bus_api: BusAPI, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        """partition and timestamp, by send, enqueue and send_batch: any number is
        refused (TypeError, ValueError naming the field) with nothing written, or, in
        range, written where asked with the timestamp given, or refused by the broker."""
        count = partition_count(message_bus)
        stamps = "timestamps" in message_bus.capabilities
        ledger, producers = Ledger(bus_topic), Producers(bus_api)

        @examples(message_bus, local=300, remote=40)
        @given(
            st.sampled_from(["partition", "timestamp"]),
            bst.hostile_numbers(),
            st.sampled_from(_WAYS),
            _AROUND,
        )
        def check(field: str, number: Any, way: str, around: tuple[int, int]) -> None:
            verdict = number_verdict(number, field)
            fields: dict[str, Any] = {"partition": 0, field: number}
            bad = bus.Message(bus_topic, ledger.value(f"{field}={number!r} by {way}"), **fields)
            messages, index = _batch(ledger, bad, around) if way == "send_batch" else ([bad], 0)
            refused = False
            with producers.get() as producer:
                ledger.begin(producer)
                outcomes, error = produce(producer, way, messages, index)
                if verdict is not None:
                    assert_refused(error, verdict, field)
                elif field == "timestamp" and number is not None and not stamps:
                    assert isinstance(error, bus.UnsupportedError), error
                elif (
                    field == "timestamp" and number == 0 and isinstance(error, bus.UnsupportedError)
                ):
                    pass  # kafka://: librdkafka reads 0 as "now"; refused before sending
                else:
                    assert error is None, f"{field}={number!r} by {way} raised {error!r}"
                    assert outcomes is not None
                    refused = self._record(ledger, messages, outcomes, count)
                ledger.sentinel(producer)  # the producer goes on working after a refusal
            if refused:
                producers.spoil()  # and the next example starts afresh all the same

        for field in ("partition", "timestamp"):  # every edge of the range, every way
            for number in _edges(field):
                for way in _WAYS:
                    check = example(field, number, way, (1, 1))(check)
        check()
        ledger.check(bus_api)

    @staticmethod
    def _record(
        ledger: Ledger,
        messages: list[bus.Message],
        outcomes: list[bus.Delivery | BaseException],
        partitions: int,
    ) -> bool:
        """Check each in-range message's outcome and note what was written; whether the
        broker refused any. It may refuse a partition the topic lacks or a timestamp in
        the future, and with such a message, the others of its batch (a Kafka broker
        refuses a record batch whole), each reported."""
        assert len(outcomes) == len(messages)
        now = time.time() * 1000

        def refusable(m: bus.Message) -> bool:
            return (m.partition is not None and m.partition >= partitions) or (
                m.timestamp is not None and m.timestamp > now
            )

        refused = [isinstance(r, BaseException) for r in outcomes]
        batch_refused = any(r and refusable(m) for m, r in zip(messages, refused, strict=True))
        for m, result in zip(messages, outcomes, strict=True):
            if isinstance(result, BaseException):
                assert isinstance(result, bus.BusError), f"{m}: {result!r}"
                assert refusable(m) or batch_refused, f"{m} was refused: {result!r}"
                continue
            partition = m.partition if m.partition is not None else result.partition
            assert partition < partitions, f"{m} was written to a partition the topic lacks"
            assert (result.topic, result.partition) == (m.topic, partition), result
            if m.timestamp is not None:
                assert result.timestamp == m.timestamp, (
                    f"sent with timestamp={m.timestamp}, acknowledged with {result.timestamp}"
                )
            ledger.wrote(partition, m.value, m.key, m.headers, m.timestamp)
        return any(refused)

    @needs("headers")
    def test_header_shapes(self, bus_api: BusAPI, message_bus: bus.Bus, bus_topic: str) -> None:
        """Any shape of headers, by send, enqueue and send_batch: a ``TypeError`` (or a
        ``ValueError`` for a name with NUL or a surrogate) with nothing written, unless
        it is an iterable of (str, bytes | str | None) pairs, which is read back exactly."""
        ledger, producers = Ledger(bus_topic), Producers(bus_api)

        @examples(message_bus, local=400, remote=40)
        @given(bst.hostile_headers(), st.sampled_from(_WAYS), st.booleans(), st.data())
        def check(headers: Any, way: str, lazily: bool, data: st.DataObject) -> None:
            expected = expected_headers(headers)
            if lazily and isinstance(headers, (list, tuple)):
                headers = iter(headers)  # any iterable, once
            label = ledger.value(f"headers={headers!r}")
            bad = bus.Message(bus_topic, label, headers=headers, partition=0)
            messages, index = (
                _batch(ledger, bad, data.draw(_AROUND)) if way == "send_batch" else ([bad], 0)
            )
            with producers.get() as producer:
                ledger.begin(producer)
                outcomes, error = produce(producer, way, messages, index)
                if not isinstance(expected, tuple):
                    assert_refused(error, expected, "header")
                else:
                    assert error is None, f"headers={headers!r} by {way} raised {error!r}"
                    assert outcomes is not None
                    for m, result in zip(messages, outcomes, strict=True):
                        assert isinstance(result, bus.Delivery), result
                        ledger.wrote(0, m.value, None, expected if m is bad else ())
                ledger.sentinel(producer)

        check()
        ledger.check(bus_api)

    def test_values_and_keys_of_any_type(
        self, bus_api: BusAPI, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        """Values and keys of any type, with no codec, 'bytes', 'str' or 'json': bytes,
        bytearray, memoryview and None are written as bytes; other objects are a
        ``TypeError`` without a codec and ``bus.SerializationError`` with one that
        cannot encode them, with nothing written; what is written reads back as encoded."""
        ledger, producers = Ledger(bus_topic), Producers(bus_api)
        codecs = st.sampled_from([None, "bytes", "str", "json"])

        @examples(message_bus, local=300, remote=30)
        @given(
            bst.hostile_payloads(), bst.hostile_payloads(), codecs, codecs, st.sampled_from(_WAYS)
        )
        def check(value: Any, key: Any, codec: Any, key_codec: Any, way: str) -> None:
            want_value = expected_payload(value, codec)
            want_key = expected_payload(key, key_codec)
            options = {
                name: spec
                for name, spec in (("serializer", codec), ("key_serializer", key_codec))
                if spec is not None
            }
            marker = bus.Message(bus_topic, ledger.value("good"), partition=0)
            bad = bus.Message(bus_topic, value, key=key, partition=0)
            messages, index = [bad], 0
            if way == "send_batch" and not options:  # codecs encode every message of a batch
                messages, index = [marker, bad], 1
            with producers.get() as plain:
                ledger.begin(plain)
            with producers.get(**options) as producer:
                outcomes, error = produce(producer, way, messages, index)
                refusal = next(
                    (w for w in (want_value, want_key) if isinstance(w, type)),
                    None,
                )
                if refusal is not None:
                    # a value is checked before its key: either error may come first
                    others = {w for w in (want_value, want_key) if isinstance(w, type)}
                    assert error is not None, f"{value!r}/{key!r} under {options} was accepted"
                    assert isinstance(error, tuple(others)), f"expected {others}, got {error!r}"
                else:
                    assert error is None, f"{value!r}/{key!r} under {options}: {error!r}"
                    assert outcomes is not None
                    for m, result in zip(messages, outcomes, strict=True):
                        assert isinstance(result, bus.Delivery), result
                        if m is bad:
                            ledger.wrote(0, want_value, want_key)  # type: ignore[arg-type]
                        else:
                            ledger.wrote(0, m.value)
            with producers.get() as plain:
                ledger.sentinel(plain)

        check()
        ledger.check(bus_api)

    def test_topic_names_are_refused_by_every_call(
        self, bus_api: BusAPI, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        """An invalid topic name (empty, '.', '..', over 249 characters, a character
        outside [A-Za-z0-9._-], not a str) is a ``ValueError`` (``TypeError`` for a
        non-str) naming the topic from send, enqueue, send_batch and consumer, and
        nothing is written or created."""
        ledger, producers = Ledger(bus_topic), Producers(bus_api)

        @examples(message_bus, local=200, remote=20)
        @given(bst.hostile_topic_names(), st.data())
        def check(name: Any, data: st.DataObject) -> None:
            verdict = topic_verdict(name)
            bad = bus.Message(name, ledger.value(f"topic={name!r}"))
            with producers.get() as producer:
                ledger.begin(producer)
                for way in _WAYS:
                    messages, index = (
                        _batch(ledger, bad, data.draw(_AROUND))
                        if way == "send_batch"
                        else ([bad], 0)
                    )
                    _, error = produce(producer, way, messages, index)
                    assert_refused(error, verdict, "topic")
                ledger.sentinel(producer)
            for topics in ((name,), (bus_topic, name)):
                _, error = outcome(lambda: bus_api.consumer(*topics))  # noqa: B023
                assert_refused(error, verdict, "topic")

        check()
        ledger.check(bus_api)

    def test_timeouts_are_checked_and_kept(
        self, bus_api: BusAPI, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        """send, flush and close with any timeout: a ``TypeError``/``ValueError`` naming
        the timeout with nothing sent (the producer still open), or, valid, an outcome
        within the timeout and ``SLACK`` seconds."""
        producers = Producers(bus_api)
        written: list[bytes] = []

        @examples(message_bus, local=200, remote=20)
        @given(bst.hostile_timeouts(), st.sampled_from(["send", "flush", "close"]))
        def check(timeout: Any, way: str) -> None:
            verdict = timeout_verdict(timeout)
            value = f"{'bad' if verdict else 'good'}:{way}:{timeout!r}".encode()
            limit = (timeout if verdict is None else 0) + SLACK
            with producers.get() as producer:
                calls: dict[str, Callable[[], Any]] = {
                    "send": lambda: producer.send(bus_topic, value, partition=0, timeout=timeout),
                    "flush": lambda: producer.flush(timeout=timeout),
                    "close": lambda: producer.close(timeout=timeout),
                }
                _, error = bounded(calls[way], limit, f"{way}(timeout={timeout!r})")
                if verdict is not None:
                    assert_refused(error, verdict, "timeout")
                    # still open: the check came before anything else
                    producer.send(bus_topic, b"good:after", partition=0)
                else:
                    assert error is None or isinstance(error, bus.TimeoutError), repr(error)
                    if way == "send" and error is None:
                        written.append(value)
                    if way == "close":
                        producers.spoil()

        check()
        with bus_api.consumer(bus_topic, offset_reset="earliest") as consumer:
            received = poll_until(consumer, lambda got: len(got) >= len(written))
            received += consumer.poll_batch(500, timeout=QUIET)
        values = [m.value or b"" for m in received]
        assert not [v for v in values if v.startswith(b"bad:")], "a refused send was written"
        assert set(written) <= set(values)


# -- consuming ---------------------------------------------------------------------------------


class TestHostileConsuming:
    """Consuming with careless input (Hypothesis): ``poll``, ``seek`` and ``commit``
    arguments are checked and timeouts kept."""

    def test_poll_arguments_are_checked_and_timeouts_kept(
        self, bus_api: BusAPI, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        """poll and poll_batch with any max_messages and timeout: a ``TypeError`` or a
        ``ValueError`` naming the argument, or at most max_messages messages within the
        timeout and ``SLACK`` seconds (a huge max_messages included)."""
        with bus_api.producer() as producer:
            for i in range(3):
                producer.send(bus_topic, b"%d" % i, partition=0)
        consumer = bus_api.consumer(bus_topic, offset_reset="earliest")
        seen: list[bus.Message] = []
        short = st.floats(0, 0.1)

        @examples(message_bus, local=200, remote=25)
        @given(st.sampled_from(["poll", "timeout", "max_messages", "none", "long"]), st.data())
        def check(bad: str, data: st.DataObject) -> None:
            if bad == "long":
                self._poll_long(bus_api, bus_topic, data.draw(_LONG, "timeout"))
                return
            hostile = bad in ("poll", "timeout")
            timeout: Any = data.draw(bst.hostile_timeouts(max_wait=0.1) if hostile else short)
            most: Any = data.draw(
                bst.hostile_numbers() if bad == "max_messages" else st.integers(1, 3)
            )
            field = "max_messages" if bad == "max_messages" else "timeout"
            verdict = timeout_verdict(timeout) or max_messages_verdict(most)
            limit = (timeout if timeout_verdict(timeout) is None else 0) + SLACK
            call: Callable[[], Any] = (
                (lambda: consumer.poll(timeout=timeout))
                if bad == "poll"
                else (lambda: consumer.poll_batch(most, timeout=timeout))
            )
            result, error = bounded(call, limit, f"{bad}: timeout={timeout!r}, {most!r}")
            if verdict is not None:
                assert_refused(error, verdict, field)
                return
            assert error is None, repr(error)
            got = result if bad != "poll" else [result] if result is not None else []
            assert isinstance(got, list)
            assert len(got) <= most
            seen.extend(got)

        check()
        consumer.close()
        assert [m.offset for m in seen] == list(range(len(seen)))

    @staticmethod
    def _poll_long(bus_api: BusAPI, topic: str, timeout: float) -> None:
        """A poll with a long timeout (``inf`` included) on a consumer with nothing to
        read waits, and returns once the consumer is closed from another thread."""
        consumer = bus_api.consumer(topic)  # offset_reset="latest": nothing to read
        closer = threading.Timer(0.05, consumer.close)
        closer.start()
        try:
            got, error = bounded(lambda: consumer.poll(timeout=timeout), SLACK, "a long poll")
        finally:
            closer.join()
        assert got is None, got
        assert error is None or isinstance(error, bus.ClosedError), repr(error)

    @needs("seek")
    def test_seek_checks_its_numbers(
        self, bus_api: BusAPI, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        """seek with any partition and offset: a ``TypeError``/``ValueError`` naming the
        field, a ``ValueError`` for a partition not assigned, or the next message from
        that partition is the one at the offset sought."""
        count = partition_count(message_bus)
        with bus_api.producer() as producer:
            for p in range(count):
                for i in range(3):
                    producer.send(bus_topic, b"%d-%d" % (p, i), partition=p)
        consumer = bus_api.consumer(bus_topic, offset_reset="earliest")
        wait_for_assignment(consumer, into=[])

        @examples(message_bus, local=200, remote=20)
        @given(st.sampled_from(["partition", "offset", "none"]), st.data())
        def check(bad: str, data: st.DataObject) -> None:
            partition: Any = data.draw(
                bst.hostile_numbers() if bad == "partition" else st.integers(0, count - 1)
            )
            offset: Any = data.draw(bst.hostile_numbers() if bad == "offset" else st.integers(0, 2))
            verdict = number_verdict(partition, "partition", nullable=False) or number_verdict(
                offset, "offset", nullable=False
            )
            _, error = outcome(lambda: consumer.seek(bus_topic, partition, offset))
            if verdict is not None:
                assert_refused(error, verdict, bad)
                return
            if partition >= count:
                assert isinstance(error, ValueError), repr(error)
                assert "not assigned" in str(error), error
                return
            assert error is None, repr(error)
            if offset < 3:
                got = poll_until(consumer, lambda ms: any(m.partition == partition for m in ms))
                first = next(m for m in got if m.partition == partition)
                assert first.offset == offset, f"sought {offset}, read {first.offset}"

        check()
        consumer.close()

    @needs("consumer_groups")
    def test_commit_checks_the_message(
        self, bus_api: BusAPI, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        """commit of a message with any topic, partition and offset: a ``TypeError`` or
        a ``ValueError`` naming the field (a message without partition or offset is not
        a consumed one; the offset after the message must fit 64 bits, so 2**63-1 cannot
        be committed), a ``bus.CommitError`` for a partition not assigned, or committed."""
        count = partition_count(message_bus)
        consumer = bus_api.consumer(bus_topic, group=unique_topic_name("hostile-commit"))
        wait_for_assignment(consumer)

        @examples(message_bus, local=200, remote=25)
        @given(st.sampled_from(["topic", "partition", "offset", "none"]), st.data())
        def check(bad: str, data: st.DataObject) -> None:
            topic: Any = data.draw(
                bst.hostile_topic_names() if bad == "topic" else st.just(bus_topic)
            )
            partition: Any = data.draw(
                bst.hostile_numbers() if bad == "partition" else st.integers(0, count - 1)
            )
            offset: Any = data.draw(bst.hostile_numbers() if bad == "offset" else st.integers(0, 5))
            message = bus.Message(topic, b"v", partition=partition, offset=offset)
            verdict = {
                "topic": topic_verdict(topic),
                "partition": number_verdict(partition, "partition"),
                "offset": number_verdict(offset, "offset"),
                "none": None,
            }[bad]
            if partition is None or offset is None:
                verdict = ValueError  # not a consumed message: a ValueError saying so
            if bad == "offset" and offset == RANGES["offset"][1]:
                verdict = ValueError
            _, error = outcome(lambda: consumer.commit(message))
            if verdict is not None:
                assert_refused(error, verdict, bad)
                assert not isinstance(error, bus.BusError), repr(error)
                return
            if partition >= count:
                assert isinstance(error, bus.CommitError), repr(error)
            else:
                assert error is None, repr(error)

        check()
        consumer.close()


# -- admin -------------------------------------------------------------------------------------


@needs("admin")
class TestHostileAdmin:
    """Admin calls with careless input (Hypothesis): topic names, colliding names,
    partition and replica counts, and topic settings."""

    def test_topic_names_are_refused_by_admin_calls(
        self, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        """create_topic, delete_topic and partitions refuse an invalid name with a
        ``ValueError`` (``TypeError`` for a non-str) naming the topic."""

        @examples(message_bus, local=200, remote=20)
        @given(bst.hostile_topic_names())
        def check(name: Any) -> None:
            verdict = topic_verdict(name)
            for call in (
                lambda: message_bus.create_topic(name),
                lambda: message_bus.delete_topic(name),
                lambda: message_bus.partitions(name),
            ):
                _, error = outcome(call)
                assert_refused(error, verdict, "topic")

        check()
        assert set(message_bus.topics()) >= {bus_topic}

    def test_colliding_topic_names_are_refused(self, message_bus: bus.Bus) -> None:
        """'.' and '_' collide in topic names (Kafka's metric names): creating ``a_b``
        while ``a.b`` exists is a ``bus.BusError`` on every backend."""
        created: list[str] = []

        @examples(message_bus, local=20, remote=3)
        @given(st.sampled_from([".", "_"]), st.booleans())
        def check(mark: str, at_end: bool) -> None:
            base = unique_topic_name("collide")
            first = f"{base}{mark}x" if at_end else f"{base[:5]}{mark}{base[5:]}"
            other = first.translate(str.maketrans("._", "_."))
            message_bus.create_topic(first)
            created.append(first)
            _, error = outcome(lambda: message_bus.create_topic(other))
            if error is None:
                created.append(other)
            assert isinstance(error, bus.BusError), f"{other} was created beside {first}"

        try:
            check()
        finally:
            for name in created:
                outcome(lambda: message_bus.delete_topic(name))  # noqa: B023

    def test_partition_and_replica_counts_are_checked(self, message_bus: bus.Bus) -> None:
        """create_topic with any partitions and replication_factor: a ``TypeError`` or a
        ``ValueError`` naming the argument and nothing created, or created with that
        many partitions, or refused by the broker (``bus.BusError``)."""
        remote = "cross_process" in message_bus.capabilities
        numbers = bst.hostile_numbers()
        if remote:  # a real broker takes seconds to create thousands of partitions
            numbers = numbers.filter(
                lambda n: not (isinstance(n, int) and FEW_PARTITIONS < n <= 100_000)
            )
        created: list[str] = []

        @examples(message_bus, local=200, remote=20)
        @given(st.sampled_from(["partitions", "replication_factor", "none"]), st.data())
        def check(bad: str, data: st.DataObject) -> None:
            name = unique_topic_name("counts")
            partitions: Any = data.draw(numbers if bad == "partitions" else st.integers(1, 4))
            replication: Any = data.draw(numbers if bad == "replication_factor" else st.just(1))
            verdict = number_verdict(partitions, "partitions", nullable=False)
            if bad == "replication_factor":
                if isinstance(replication, bool) or not isinstance(replication, int):
                    verdict = TypeError
                elif replication < 1:
                    verdict = ValueError
            _, error = outcome(lambda: message_bus.create_topic(name, partitions, replication))
            if error is None:
                created.append(name)
            if verdict is not None:
                assert_refused(error, verdict, bad)
                assert not isinstance(error, bus.BusError), repr(error)
                assert name not in message_bus.topics()
                return
            if error is not None:
                # too many replicas for the cluster, too many partitions for its policy
                assert isinstance(error, (bus.BusError, ValueError)), repr(error)
                if isinstance(error, ValueError) and not isinstance(error, bus.BusError):
                    assert "replication_factor" in str(error), error
                assert replication > 1 or partitions > FEW_PARTITIONS, repr(error)
                return
            eventually(lambda: message_bus.topics().get(name) == partitions, f"{name} listed")

        try:
            check()
        finally:
            for name in created:
                outcome(lambda: message_bus.delete_topic(name))  # noqa: B023

    def test_topic_configs(self, message_bus: bus.Bus) -> None:
        """Misspelt or invented settings and values no broker takes are a
        ``bus.ConfigError`` with nothing created, on every backend; settings a Kafka 4.x
        broker takes are taken by every backend."""
        created: list[str] = []

        @examples(message_bus, local=300, remote=30)
        @given(st.booleans(), bst.hostile_topic_configs(), bst.topic_configs())
        def check(valid: bool, bad: dict[str, Any], good: dict[str, Any]) -> None:
            name = unique_topic_name("config")
            config = good if valid else bad
            _, error = outcome(lambda: message_bus.create_topic(name, 1, **config))
            if error is None:
                created.append(name)
            if valid:
                assert error is None, f"{config} was refused: {error!r}"
                eventually(lambda: name in message_bus.topics(), f"{name} is listed")
            else:
                assert isinstance(error, bus.ConfigError), f"{config}: {error!r}"
                assert name not in message_bus.topics()

        try:
            check()
        finally:
            for name in created:
                outcome(lambda: message_bus.delete_topic(name))  # noqa: B023
