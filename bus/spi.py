"""The backend SPI: what a backend plugin provides. Public and stable for third parties.

A backend is a pluggy plugin whose ``bus_register_backends()`` hook returns
``BackendDescriptor``s. ``bus.connect(url)`` picks the descriptor serving the URL's
scheme, validates the options against the core table plus ``descriptor.options``,
and calls ``descriptor.factory(config)`` to get a ``Backend``: one connection to the
transport. The ``Bus`` facade asks the ``Backend`` for *drivers* and wraps each in
the public ``Producer``/``Consumer``/``AsyncProducer``/``AsyncConsumer``.

The wrappers do everything that does not depend on the transport, identically for
every backend: argument checking (``TypeError`` for wrong types), serialization,
header normalisation, the closed state and ``ClosedError``, ``DeliveryError`` for a
failed ``send_batch``, iteration and ``close()`` from another thread or task.
A driver therefore sees bytes and checked arguments. Threads: a ``ProducerDriver``
must be thread-safe (``Producer`` is, and does not serialize calls); an
``AsyncProducerDriver`` is used from one event loop. A consumer driver's
``poll_batch`` is called by one thread (or task) at a time, and ``close`` never while
it runs; ``commit`` and ``seek`` come from the same thread, possibly from inside
``poll_batch`` (an ``on_revoke`` callback committing); ``wakeup()`` may come from any
thread.

Backends raise ``bus`` errors, keeping the native exception as ``__cause__``.

Everything a backend needs is public here or in ``bus``, so a third-party backend can
match the built-ins' behaviour and speed without private imports (the built-in
backends import nothing else from ``bus``; an import contract checks it):

- option declarations: ``Option``, the scopes ``BUS``, ``PRODUCER``, ``CONSUMER``
  (``CLIENTS``: both clients, ``ALL``: every scope) and the converters ``choice``,
  ``boolean``, ``integer``, ``seconds``, ``text``, ``callback``, ``mapping``;
- the parsed URL (``BusURL``) and ``is_secret_key`` for backend-native settings;
- the partitioner factory ``make_partitioner(name)`` (the ``partitioner`` option) and
  the ``Partitioner`` type, so a backend places keys where the others do;
- ``RecordMessage`` and ``record_wrapper``, for a backend whose client library's
  records already hold every field: a ``Message`` over the record, read on access;
- the fast constructors ``consumed_message`` and ``acknowledged`` for backends that
  build a ``Message``/``Delivery`` per record, and the ``Headers`` type;
- ``GivenBack``, the bookkeeping of a consumer driver's ``give_back``;
- ``group_description``, which builds what ``Backend.describe_group`` returns from
  members, committed positions and log end offsets (lag computed alike everywhere);
- ``UnclaimedFailures``, the bookkeeping of failures no ``on_delivery`` claimed, and
  ``ProblemReporter``, which tells ``on_error`` of each problem once per change;
- ``client_settings(url, scope, options)``: the settings a driver factory gets,
  computed without connecting (for a backend's own tests of its option mapping).
"""

from __future__ import annotations

import abc
import contextlib
import logging
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import attrs

from bus._errors import BusError, UnsupportedError
from bus._groups import GROUP_STATES, GroupDescription, group_description
from bus._message import (
    Delivery,
    Headers,
    Message,
    RecordMessage,
    TopicPartition,
    acknowledged,
    consumed_message,
    record_wrapper,
)
from bus._options import (
    ALL,
    BUS,
    CLIENTS,
    CONSUMER,
    PRODUCER,
    Converter,
    Option,
    boolean,
    callback,
    choice,
    integer,
    mapping,
    seconds,
    text,
)
from bus._partitioner import Partitioner, make_partitioner
from bus._topics import TopicDescription
from bus._url import BusURL, is_secret_key

__all__ = [
    "ALL",
    "BUS",
    "CAPABILITIES",
    "CLIENTS",
    "CONSUMER",
    "GROUP_STATES",
    "PRODUCER",
    "AsyncConsumerDriver",
    "AsyncProducerDriver",
    "Backend",
    "BackendConfig",
    "BackendDescriptor",
    "BusURL",
    "ConsumerDriver",
    "Converter",
    "DeliveryCallback",
    "FreshURL",
    "GivenBack",
    "Headers",
    "Option",
    "Partitioner",
    "ProblemReporter",
    "ProducerDriver",
    "RecordMessage",
    "UnclaimedFailures",
    "acknowledged",
    "boolean",
    "callback",
    "choice",
    "client_settings",
    "consumed_message",
    "group_description",
    "integer",
    "is_secret_key",
    "make_partitioner",
    "mapping",
    "record_wrapper",
    "seconds",
    "text",
]

#: Every capability word a backend may declare, with what it promises.
CAPABILITIES: Mapping[str, str] = {
    "sync": "blocking Producer and Consumer",
    "async": "asyncio AsyncProducer and AsyncConsumer",
    "partitions": "topics have several partitions; order is kept per partition",
    "consumer_groups": "consumers in a group share partitions and commit positions",
    "headers": "messages carry ordered headers, duplicates allowed",
    "timestamps": "messages carry a create timestamp, settable by the producer",
    "seek": "a consumer can move to any offset of an assigned partition",
    "admin": "create_topic, delete_topic, topics, partitions (with consumer_groups: groups, "
    "describe_group)",
    "persistence": "messages outlive the process that wrote them",
    "cross_process": "other processes can read what this one writes",
    "idempotence": "a retried send is written once",
    "pause": "a consumer can pause and resume fetching from assigned partitions",
    "offsets": "a consumer reads watermarks, offsets for times and committed positions, "
    "and reads given partitions without a group",
    "transactions": "atomic writes across partitions",
}

#: ``on_delivery`` callbacks: called once per message with ``(delivery, None)`` on
#: success or ``(None, error)`` on failure.
DeliveryCallback = Callable[[Delivery | None, BusError | None], None]

#: ``BackendDescriptor.fresh_url``: a context manager yielding the URL of a new, empty
#: instance of the backend that nothing else uses, discarded on exit.
FreshURL = Callable[[], contextlib.AbstractContextManager[str]]


@attrs.frozen
class BackendConfig:
    """What a backend factory is given: the parsed URL and the validated options of
    ``connect()`` (URL query and keyword arguments; only those given, converted)."""

    url: BusURL
    options: Mapping[str, Any]


@attrs.frozen
class BackendDescriptor:
    """A backend, as the ``bus_register_backends`` hook declares it.

    ``factory(config)`` builds a ``Backend``; it is only called by ``connect``, so a
    plugin module imports its client library inside the factory (importing ``bus``
    never imports a Kafka client). ``requires`` names the modules the factory needs;
    when one is missing, ``connect`` raises ``BackendNotFound`` telling the user to
    install ``extra`` (``"polybus[kafka]"``). ``options`` are the backend's own options
    besides the core ones; ``capabilities`` are words of ``CAPABILITIES``; ``hints`` say
    where to turn for a capability it lacks.
    """

    name: str
    schemes: tuple[str, ...]
    capabilities: frozenset[str]
    factory: Callable[[BackendConfig], Backend]
    options: tuple[Option, ...] = ()
    description: str = ""
    requires: tuple[str, ...] = ()
    extra: str | None = None
    #: What to tell a user who asks for a capability this backend lacks, by capability
    #: word: ``{"async": "use aiokafka:// (pip install 'polybus[aiokafka]')"}``.
    hints: Mapping[str, str] = attrs.field(factory=dict)
    #: ``fresh_url()`` enters a new, empty, isolated instance of the backend and yields
    #: its URL; leaving the context discards it (frees its memory, removes its files).
    #: The pytest plugin's default ``bus_url`` and the state machine use it. ``None``
    #: for a backend that cannot make one on demand (a Kafka cluster).
    fresh_url: FreshURL | None = None

    def __attrs_post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError("a backend needs a non-empty name")
        if not self.schemes or not all(isinstance(s, str) and s for s in self.schemes):
            raise ValueError(f"backend {self.name!r} declares no URL scheme")
        unknown = set(self.capabilities) - set(CAPABILITIES)
        if unknown:
            raise ValueError(
                f"backend {self.name!r} declares unknown capabilities {sorted(unknown)}"
            )
        if not callable(self.factory):
            raise ValueError(f"backend {self.name!r}: factory is not callable")


class Backend:
    """One connection to a transport, made by a descriptor's factory.

    ``producer_settings`` and ``consumer_settings`` passed to the driver factories are
    complete: every option of that scope with its default filled in (codecs are
    handled by the wrappers and removed). ``create_topic`` gets a name, counts and
    settings already checked (every setting is one Kafka 4.x has, with a value it
    can read: ``bus.ConfigError`` otherwise). The admin methods block; an asyncio-only
    backend runs them on its own loop thread. ``close()`` releases the connection
    after the ``Bus`` has closed every blocking client it made (``Bus.aclose()`` closes
    the asyncio ones first); it is called once.
    """

    def producer(self, settings: Mapping[str, Any]) -> ProducerDriver:
        raise UnsupportedError("this backend has no blocking producer")

    def consumer(
        self, topics: tuple[str, ...], group: str | None, settings: Mapping[str, Any]
    ) -> ConsumerDriver:
        raise UnsupportedError("this backend has no blocking consumer")

    def async_producer(self, settings: Mapping[str, Any]) -> AsyncProducerDriver:
        raise UnsupportedError("this backend has no asyncio producer")

    def async_consumer(
        self, topics: tuple[str, ...], group: str | None, settings: Mapping[str, Any]
    ) -> AsyncConsumerDriver:
        raise UnsupportedError("this backend has no asyncio consumer")

    def create_topic(
        self, name: str, partitions: int, replication_factor: int, config: Mapping[str, str]
    ) -> None:
        raise UnsupportedError("this backend has no admin API")

    def delete_topic(self, name: str) -> None:
        raise UnsupportedError("this backend has no admin API")

    def topics(self) -> dict[str, int]:
        raise UnsupportedError("this backend has no admin API")

    def partitions(self, topic: str) -> list[int]:
        raise UnsupportedError("this backend has no admin API")

    def describe_topic(self, topic: str, timeout: float | None) -> TopicDescription:
        """Optional (``admin``): ``topic``'s partitions with their watermarks and, where
        the backend has brokers, leaders and replicas, within ``timeout`` seconds
        (``None``: the backend's own admin bound). Raise ``bus.UnknownTopicError`` for a
        topic that does not exist."""
        raise UnsupportedError("this backend cannot describe topics")

    def groups(self, timeout: float | None) -> list[str]:
        """Optional (``consumer_groups`` and ``admin``): the names of the consumer groups
        the backend knows (with members or committed positions), sorted. ``timeout``:
        seconds the whole call may take (``None``: the backend's own admin bound)."""
        raise UnsupportedError("this backend cannot list consumer groups")

    def describe_group(self, group: str, timeout: float | None) -> GroupDescription:
        """Optional (``consumer_groups`` and ``admin``): ``group``'s state, members and
        positions (build it with ``group_description``), within ``timeout`` as
        ``groups``. Raise ``bus.UnknownGroupError`` for a group with no member and no
        committed position."""
        raise UnsupportedError("this backend cannot describe consumer groups")

    def ping(self, timeout: float) -> None:
        """Return once the transport answers (a metadata round trip, say), within
        ``timeout`` seconds; else raise ``bus.TimeoutError`` (or the ``bus`` error
        that says why: a refused login, ...). Blocks. The default returns at once: right
        for a backend in the process, wrong for one with a network under it."""

    def close(self) -> None:
        """Release the connection."""


class ProducerDriver(abc.ABC):
    """The transport side of a blocking ``Producer``.

    Values, keys and headers arrive as bytes (``None`` allowed for value and key),
    ``partition`` and ``timestamp`` as ``int`` or ``None``; ``timeout`` is seconds or
    ``None`` (the producer's ``delivery_timeout``). Order is kept per partition.
    """

    @abc.abstractmethod
    def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: Headers,
        partition: int | None,
        timestamp: int | None,
        timeout: float | None,
    ) -> Delivery:
        """Write one message and wait for its acknowledgement, or raise."""

    @abc.abstractmethod
    def send_batch(
        self, messages: Sequence[Message], timeout: float | None
    ) -> list[Delivery | BusError]:
        """Write every message; return one outcome per message, in input order."""

    @abc.abstractmethod
    def enqueue(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: Headers,
        partition: int | None,
        timestamp: int | None,
        on_delivery: DeliveryCallback | None,
    ) -> None:
        """Hand one message over without waiting. ``on_delivery`` is called exactly once.

        With ``on_delivery=None`` a failure must be kept and raised by the next
        ``flush()`` or ``close()`` (``UnclaimedFailures`` does the bookkeeping).
        """

    @abc.abstractmethod
    def flush(self, timeout: float | None) -> None:
        """Wait for every enqueued message, then raise any unclaimed failure.
        On timeout raise ``bus.TimeoutError`` saying how many are pending."""

    @abc.abstractmethod
    def close(self, timeout: float | None) -> None:
        """Flush (raising as ``flush`` does) and release. Called once."""


class ConsumerDriver(abc.ABC):
    """The transport side of a blocking ``Consumer``.

    At-least-once is the driver's job: the messages a ``poll_batch`` returned count as
    processed when ``poll_batch`` (or ``commit(None)``) is called again; auto-commit,
    rebalance and close commit processed positions only. ``on_assign``/``on_revoke``
    are called from inside ``poll_batch``.

    A driver that also implements ``give_back`` lets the core iterate over a held
    batch: ``for message in consumer`` then asks for many messages at a time and hands
    them out one by one, telling the driver through ``give_back`` where the
    application stopped whenever that matters (a commit, a rebalance, close, a batch
    held for half of ``max_poll_interval``). Without it, iteration polls one message at
    a time.

    ``settings["partitions"]`` is ``None`` or (capability ``offsets``) a frozenset of
    ``TopicPartition``: then the consumer has no group and reads exactly those
    partitions (``topics`` are their topics), from ``offset_reset``, and no other:
    ``assignment()`` is that set from the start, new partitions of the topics are not
    added and nothing rebalances. A partition that does not exist yet is read once it
    does.
    """

    #: Set by the core before the first ``poll_batch`` when the driver implements
    #: ``give_back``. A driver whose rebalances run outside ``poll_batch`` (in a
    #: background thread or task) calls it with the partitions it is about to give up,
    #: *before* it commits their processed positions: the core gives back what it
    #: still holds of them and never hands those out. Called from inside
    #: ``poll_batch`` it does nothing, and a driver may do that too.
    before_revoke: Callable[[set[TopicPartition]], None] | None = None

    #: Set by the core before the first ``poll_batch`` when interceptors watch the
    #: consumer (``on_commit``); ``None`` otherwise, and then nothing need be told. The
    #: driver calls it after each commit *it* made that succeeded, with the positions
    #: written (``{TopicPartition: next offset}``, never empty): the auto-commit
    #: interval's, a rebalance's for the partitions it takes away, ``close``'s. Called
    #: from inside ``poll_batch`` or ``close`` (or a thread the driver rebalances on),
    #: never while the driver holds a lock of its own. Never for a ``commit()`` call: the
    #: core reports those. A driver that commits nothing by itself may ignore it.
    on_committed: Callable[[Mapping[TopicPartition, int]], None] | None = None

    def give_back(self, positions: Mapping[TopicPartition, int]) -> None:
        """Optional. The application stopped short in the batch ``poll_batch`` returned
        last: for each partition named, the messages from that offset on never reached
        it (or, when closing, it did not finish them). The driver counts that
        partition's messages below the offset as processed (never lowering a position
        a commit raised), forgets the rest as returned, and returns them again, first
        and in order, from its next ``poll_batch``, unless the partition is revoked or
        seeked meanwhile. Partitions not named are left as they are; a partition not in
        the last batch (seeked or revoked since) is ignored. Bookkeeping only: no I/O,
        called from the polling thread or from ``before_revoke``."""
        raise UnsupportedError(f"{type(self).__name__} cannot give messages back")

    def pause(self, partitions: Collection[TopicPartition]) -> None:
        """Optional (capability ``pause``): stop fetching from these assigned
        partitions; a ``poll_batch`` returns none of their messages that were not
        returned already, and the group membership is kept while it goes on being
        polled. Positions and commits are unchanged. A partition not assigned is
        ignored; a rebalance that takes a partition away forgets its pause (a partition
        assigned again starts unpaused). Bookkeeping or a client call: no waiting."""
        raise UnsupportedError(f"{type(self).__name__} cannot pause partitions")

    def resume(self, partitions: Collection[TopicPartition]) -> None:
        """Optional (capability ``pause``): fetch again from these paused partitions,
        from where their returned messages end. Not paused or not assigned: ignored."""
        raise UnsupportedError(f"{type(self).__name__} cannot resume partitions")

    # -- positions (capability ``offsets``) ---------------------------------------------------
    #
    # The core checks the arguments (valid names, partition numbers, timestamps) and
    # passes ``timeout`` as seconds, never ``None`` (its default bound fills it in). Any
    # partition of any topic may be asked about, assigned or not. A topic or partition
    # the cluster does not have raises ``bus.UnknownTopicError``; no answer within
    # ``timeout`` raises ``bus.TimeoutError``. Called from the consuming thread, never
    # while ``poll_batch`` runs; positions and fetching are unchanged.

    def watermarks(self, topic: str, partition: int, timeout: float) -> tuple[int, int]:
        """Optional (capability ``offsets``): ``(low, high)`` of the partition: the
        offset of the first message still in the log, and the offset the next message
        written gets (``low == high``: empty)."""
        raise UnsupportedError(f"{type(self).__name__} cannot read watermarks")

    def offsets_for_times(
        self, times: Mapping[TopicPartition, int], timeout: float
    ) -> dict[TopicPartition, int | None]:
        """Optional (capability ``offsets``): per partition, the earliest offset whose
        message's timestamp is at or after the milliseconds given; ``None`` when no
        message is that late. ``times`` is never empty."""
        raise UnsupportedError(f"{type(self).__name__} cannot look up offsets for times")

    def committed(
        self, partitions: frozenset[TopicPartition], timeout: float
    ) -> dict[TopicPartition, int | None]:
        """Optional (capability ``offsets``): the group's committed position of each
        partition (the offset of the next message to read), as the cluster has it now;
        ``None`` where nothing is committed. Only called with a group (the core raises
        ``bus.CommitError`` without one) and with at least one partition (the core
        gives the assignment for ``partitions=None``)."""
        raise UnsupportedError(f"{type(self).__name__} cannot read committed positions")

    @abc.abstractmethod
    def poll_batch(self, max_messages: int, timeout: float | None) -> list[Message]:
        """Up to ``max_messages`` messages, waiting at most ``timeout`` seconds
        (``None``: until there is one). Returns ``[]`` early after ``wakeup()``."""

    @abc.abstractmethod
    def commit(self, message: Message | None) -> None:
        """Commit every processed position (``None``: including the last returned
        batch), or ``message``'s partition up to and including it."""

    @abc.abstractmethod
    def seek(self, topic: str, partition: int, offset: int) -> None:
        """Make ``offset`` the next message returned from an assigned partition."""

    @abc.abstractmethod
    def assignment(self) -> frozenset[TopicPartition]:
        """The partitions this consumer reads now."""

    @abc.abstractmethod
    def wakeup(self) -> None:
        """From any thread: make the current (or next) ``poll_batch`` return early."""

    @abc.abstractmethod
    def close(self, timeout: float | None) -> None:
        """Commit processed positions if auto-committing, leave the group, release.
        Called once, never while ``poll_batch`` runs."""


class AsyncProducerDriver(abc.ABC):
    """``ProducerDriver``'s asyncio twin: the same contract, coroutines instead."""

    @abc.abstractmethod
    async def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: Headers,
        partition: int | None,
        timestamp: int | None,
        timeout: float | None,
    ) -> Delivery: ...

    @abc.abstractmethod
    async def send_batch(
        self, messages: Sequence[Message], timeout: float | None
    ) -> list[Delivery | BusError]: ...

    @abc.abstractmethod
    async def enqueue(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: Headers,
        partition: int | None,
        timestamp: int | None,
        on_delivery: DeliveryCallback | None,
    ) -> None: ...

    @abc.abstractmethod
    async def flush(self, timeout: float | None) -> None: ...

    @abc.abstractmethod
    async def close(self, timeout: float | None) -> None: ...


class AsyncConsumerDriver(abc.ABC):
    """``ConsumerDriver``'s asyncio twin. A cancelled ``poll_batch`` returns nothing:
    the batch before it counts as processed (the application asked for more), none of
    what it would have returned does. ``wakeup()`` may come from any task or thread.
    ``give_back``, ``before_revoke`` and ``on_committed`` are as on ``ConsumerDriver``,
    and synchronous (called on the event loop, from the task that rebalances or
    commits)."""

    before_revoke: Callable[[set[TopicPartition]], None] | None = None
    on_committed: Callable[[Mapping[TopicPartition, int]], None] | None = None

    def give_back(self, positions: Mapping[TopicPartition, int]) -> None:
        """Optional: as ``ConsumerDriver.give_back``."""
        raise UnsupportedError(f"{type(self).__name__} cannot give messages back")

    def pause(self, partitions: Collection[TopicPartition]) -> None:
        """Optional: as ``ConsumerDriver.pause`` (synchronous, called on the loop)."""
        raise UnsupportedError(f"{type(self).__name__} cannot pause partitions")

    def resume(self, partitions: Collection[TopicPartition]) -> None:
        """Optional: as ``ConsumerDriver.resume``."""
        raise UnsupportedError(f"{type(self).__name__} cannot resume partitions")

    async def watermarks(self, topic: str, partition: int, timeout: float) -> tuple[int, int]:
        """Optional: as ``ConsumerDriver.watermarks``."""
        raise UnsupportedError(f"{type(self).__name__} cannot read watermarks")

    async def offsets_for_times(
        self, times: Mapping[TopicPartition, int], timeout: float
    ) -> dict[TopicPartition, int | None]:
        """Optional: as ``ConsumerDriver.offsets_for_times``."""
        raise UnsupportedError(f"{type(self).__name__} cannot look up offsets for times")

    async def committed(
        self, partitions: frozenset[TopicPartition], timeout: float
    ) -> dict[TopicPartition, int | None]:
        """Optional: as ``ConsumerDriver.committed``."""
        raise UnsupportedError(f"{type(self).__name__} cannot read committed positions")

    @abc.abstractmethod
    async def poll_batch(self, max_messages: int, timeout: float | None) -> list[Message]: ...

    @abc.abstractmethod
    async def commit(self, message: Message | None) -> None: ...

    @abc.abstractmethod
    async def seek(self, topic: str, partition: int, offset: int) -> None: ...

    @abc.abstractmethod
    def assignment(self) -> frozenset[TopicPartition]: ...

    @abc.abstractmethod
    def wakeup(self) -> None: ...

    @abc.abstractmethod
    async def close(self, timeout: float | None) -> None: ...


class GivenBack:
    """The bookkeeping of ``give_back`` for a consumer driver that keeps two mappings
    from ``(topic, partition)`` to an offset: ``returned`` (the position after the
    batch ``poll_batch`` returned last, made processed by the next poll) and
    ``processed``. Set ``last`` to each batch ``poll_batch`` returns; ``take_back`` in
    ``give_back``; in ``poll_batch``, while ``kept`` holds messages, return ``take``'s
    before fetching more; ``forget`` partitions revoked or seeked. A driver with
    ``pause`` calls ``park`` after each ``give_back`` and ``pause`` (kept messages of
    paused partitions are held back) and ``unpark`` on ``resume``. Not thread-safe:
    used from the driver's polling thread (or task)."""

    __slots__ = ("kept", "last", "parked")

    def __init__(self) -> None:
        self.last: list[Message] = []  # the batch poll_batch returned last
        self.kept: list[Message] = []  # given back: returned first by the next poll
        self.parked: list[Message] = []  # given back, of paused partitions: not returned

    def take_back(
        self,
        positions: Mapping[TopicPartition, int],
        returned: dict[tuple[str, int], int],
        processed: dict[tuple[str, int], int],
    ) -> dict[tuple[str, int], int]:
        """Apply ``give_back(positions)`` to ``returned`` and ``processed``, keeping
        the messages given back; return the processed positions it raised (for a
        driver that hands them to its client library's offset store)."""
        given: dict[tuple[str, int], int] = {}
        raised: dict[tuple[str, int], int] = {}
        for tp, offset in positions.items():
            key = (tp.topic, tp.partition)
            if returned.pop(key, None) is None:
                continue  # not in the last batch, or seeked or revoked since
            given[key] = offset
            if processed.get(key, -1) < offset:
                processed[key] = raised[key] = offset
        if given:
            again = [
                m
                for m in self.last
                if (m.topic, m.partition) in given and m.offset >= given[(m.topic, m.partition)]  # type: ignore[index, operator]
            ]
            self.kept = again + self.kept  # what an earlier give_back kept comes after
        return raised

    def take(self, max_messages: int, returned: dict[tuple[str, int], int]) -> list[Message]:
        """Up to ``max_messages`` kept messages, in order, noted in ``returned``."""
        out, self.kept = self.kept[:max_messages], self.kept[max_messages:]
        for m in out:
            returned[(m.topic, m.partition)] = m.offset + 1  # type: ignore[index, operator]
        return out

    def forget(self, keys: Collection[tuple[str, int]]) -> None:
        """Drop the kept (and parked) messages of these partitions (revoked, or seeked)."""
        if self.kept:
            self.kept = [m for m in self.kept if (m.topic, m.partition) not in keys]
        if self.parked:
            self.parked = [m for m in self.parked if (m.topic, m.partition) not in keys]

    def park(self, paused: Collection[tuple[str, int]]) -> None:
        """Hold back the kept messages of the ``paused`` partitions until ``unpark``."""
        kept = self.kept
        if kept and paused:
            self.parked += [m for m in kept if (m.topic, m.partition) in paused]
            self.kept = [m for m in kept if (m.topic, m.partition) not in paused]

    def unpark(self, keys: Collection[tuple[str, int]]) -> None:
        """These partitions are resumed: their parked messages are returned first again,
        in order."""
        if not self.parked:
            return
        back = [m for m in self.parked if (m.topic, m.partition) in keys]
        if back:
            self.parked = [m for m in self.parked if (m.topic, m.partition) not in keys]
            self.kept = back + self.kept


class ProblemReporter:
    """Tells ``on_error`` (or, without one, ``logger`` at WARNING) of each distinct
    problem once per change, not on every retry: ``report(error, key)`` passes the
    error on unless a problem with that ``key`` was told since the last ``clear()``
    (call it when the backend sees the transport work again), so problems that
    alternate during one outage are each told once.
    Thread-safe. An ``on_error`` that raises is the wrappers' business (it is
    guarded before a driver sees it)."""

    def __init__(
        self, on_error: Callable[[BusError], Any] | None, logger: logging.Logger, what: str
    ):
        self._on_error = on_error
        self._logger = logger
        self._what = what
        self._lock = threading.Lock()
        self._told: set[object] = set()

    def report(self, error: BusError, key: object) -> bool:
        """Tell of ``error`` unless its ``key`` was told already; whether it was."""
        with self._lock:
            if key in self._told:
                return False
            self._told.add(key)
        if self._on_error is not None:
            self._on_error(error)
        else:
            self._logger.warning("%s: %s", self._what, error)
        return True

    def clear(self) -> None:
        """The transport works again: every problem is news again."""
        with self._lock:
            self._told.clear()


class UnclaimedFailures:
    """Failures of messages enqueued without ``on_delivery``, kept for the next
    ``flush()``/``close()``. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._errors: list[BusError] = []

    def add(self, error: BusError) -> None:
        with self._lock:
            self._errors.append(error)

    def take(self) -> list[BusError]:
        """Every kept failure, forgotten here (a ``close`` that reports them itself)."""
        with self._lock:
            errors, self._errors = self._errors, []
        return errors

    def raise_first(self) -> None:
        """Raise (and forget) the first kept failure, noting how many there were."""
        with self._lock:
            errors, self._errors = self._errors, []
        if errors:
            first = errors[0]
            if len(errors) > 1 and hasattr(first, "add_note"):  # Python >= 3.11
                first.add_note(f"{len(errors) - 1} more enqueued message(s) failed as well")
            raise first


def client_settings(
    url: str, scope: str, options: Mapping[str, Any] | None = None
) -> tuple[BackendConfig, dict[str, Any]]:
    """What ``bus.connect(url)`` gives the backend's factory, and the complete settings
    that a ``producer(**options)`` (``scope="producer"``) or ``consumer(...,
    **options)`` (``scope="consumer"``) made from that connection gives the driver
    factory, codecs removed. Nothing connects; raises ``bus.ConfigError`` as
    ``connect`` and the client factories would."""
    from bus._bus import client_settings as resolve

    return resolve(url, scope, options)
