"""``connect()`` and the ``Bus`` facade: a connection to one backend, by URL."""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any, TypeVar

from bus._async_worker import AsyncWorker
from bus._callbacks import guarded
from bus._checks import (
    check_optional_int,
    check_partition_set,
    check_timeout,
    check_topic,
    decoder,
    encoder,
    resolve_codec,
)
from bus._consumer import AsyncConsumer, Consumer, lacks_offsets
from bus._errors import BusError, ClosedError, ConfigError, UnsupportedError
from bus._groups import GroupDescription
from bus._interceptors import Chain, check_names, make_chain
from bus._message import Message, TopicPartition
from bus._options import BUS, CONSUMER, PRODUCER, OptionTable, redact
from bus._plugins import BackendInfo, Registry, registry
from bus._producer import AsyncProducer, Producer
from bus._topic_config import check_topic_config
from bus._topics import TopicDescription
from bus._url import BusURL, parse_url, resolve_url
from bus._work import Retry, check_worker_options
from bus._worker import Worker
from bus.spi import Backend, BackendConfig

_Client = TypeVar("_Client")

_CODEC_OPTIONS = ("serializer", "key_serializer", "deserializer", "key_deserializer")
#: Options the core takes out of the settings before a driver factory sees them.
_CORE_ONLY = (*_CODEC_OPTIONS, "interceptors")


def connect(url: str | None = None, **options: Any) -> Bus:
    """Connect to the backend serving ``url`` (default ``$BUS_URL``, else ``memory://``).

    URL query parameters and keyword arguments are options: the connection's own and
    defaults for every producer and consumer made from it (keywords win). Raises
    ``bus.BackendNotFound`` for a scheme no installed backend serves and
    ``bus.ConfigError`` for an unknown option or a bad value.
    """
    reg = registry()
    info, table, config = _configure(reg, url, options)
    check_names(config.options.get("interceptors") or (), reg.interceptors)
    try:
        backend = info.descriptor.factory(config)
    except BusError:
        raise
    except (TypeError, ValueError) as exc:  # what a factory refuses in its configuration
        raise ConfigError(
            f"backend {info.descriptor.name!r} refused {config.url.redacted()}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    except Exception as exc:
        raise BusError(
            f"backend {info.descriptor.name!r} failed to connect to "
            f"{config.url.redacted()}: {type(exc).__name__}: {exc}"
        ) from exc
    return Bus(backend, info, config, table, reg)


def _configure(
    reg: Registry, url: str | None, options: Mapping[str, Any]
) -> tuple[BackendInfo, OptionTable, BackendConfig]:
    """The backend serving ``url`` and what its factory is given: no connection made."""
    parsed = parse_url(resolve_url(url))
    info = reg.backend_for(parsed.scheme)
    table = OptionTable.build(info.descriptor.options)
    where = f"{parsed.scheme}://"
    given = _query_options(parsed, table, where)
    given.update(options)
    validated = table.validate(given, BUS, where=where)
    for name in _CODEC_OPTIONS:
        if name in validated:
            resolve_codec(validated[name], reg.codecs, name)  # fail at connect, not later
    return info, table, BackendConfig(parsed, validated)


def _client_settings(
    table: OptionTable,
    config: BackendConfig,
    scope: str,
    options: Mapping[str, Any],
) -> dict[str, Any]:
    """Every option of ``scope`` for a client: its own ``options`` over the connection's,
    over the defaults. Codecs included (the client factories pop them)."""
    where = f"{config.url.scheme}:// {scope}"
    own = table.validate(options, scope, where=where)
    settings = table.defaults(scope)
    settings.update({k: v for k, v in config.options.items() if scope in table.options[k].scopes})
    settings.update(own)
    if scope == PRODUCER and not settings["delivery_timeout"] * 1000 > settings["linger_ms"]:
        raise ConfigError(
            f"{where}: delivery_timeout ({settings['delivery_timeout']:g}s) must be more than "
            f"linger_ms ({settings['linger_ms']} ms): a message must outlive its batch's wait"
        )
    if scope == CONSUMER and not 0 < settings["heartbeat_interval"] < settings["session_timeout"]:
        raise ConfigError(
            f"{where}: heartbeat_interval ({settings['heartbeat_interval']:g}s) must be more "
            f"than 0 and less than session_timeout ({settings['session_timeout']:g}s)"
        )
    if scope == CONSUMER and settings["max_poll_interval"] < settings["session_timeout"]:
        raise ConfigError(
            f"{where}: max_poll_interval ({settings['max_poll_interval']:g}s) must be at least "
            f"session_timeout ({settings['session_timeout']:g}s)"
        )
    return settings


def client_settings(
    url: str, scope: str, options: Mapping[str, Any] | None = None
) -> tuple[BackendConfig, dict[str, Any]]:
    """What ``connect(url)`` hands the backend's factory, and the settings a
    ``producer(**options)`` (``scope="producer"``) or ``consumer(..., **options)``
    (``"consumer"``) made from it hands the driver factory, codecs removed; computed
    without connecting. Raises as ``connect`` and the client factories do."""
    if scope not in (PRODUCER, CONSUMER):
        raise ValueError(f"scope must be {PRODUCER!r} or {CONSUMER!r}, not {scope!r}")
    _, table, config = _configure(registry(), url, {})
    settings = _client_settings(table, config, scope, options or {})
    for name in _CORE_ONLY:
        settings.pop(name, None)
    return config, settings


def _query_options(url: BusURL, table: OptionTable, where: str) -> dict[str, Any]:
    """Options from the URL query; ``name.key=value`` fills the mapping option ``name``."""
    found: dict[str, Any] = {}
    for key, value in url.query:
        head, dot, rest = key.partition(".")
        option = table.options.get(head)
        if dot and option is not None and option.mapping:
            found.setdefault(head, {})[rest] = value
        elif key in found:
            raise ConfigError(f"{where}: option {key!r} is given twice in the URL")
        else:
            found[key] = value
    return found


class Bus:
    """A connection to one backend, and the factory of its producers and consumers.

    ``backend`` names the plugin serving it and ``capabilities`` what it can do. Every
    producer and consumer made here takes the connection's options as defaults.
    Thread-safe. ``close()`` closes every producer (flushing it) and consumer made
    from this bus that is still open, then the connection; it is idempotent and any
    later call raises ``bus.ClosedError``. Use it as a context manager.
    """

    def __init__(
        self,
        backend: Backend,
        info: BackendInfo,
        config: BackendConfig,
        table: OptionTable,
        registry_: Registry,
    ):
        self._backend = backend
        self._info = info
        self._config = config
        #: The URL connected to, parsed: a ``bus.spi.BusURL`` (its ``repr`` hides secrets).
        self.url = config.url
        self._table = table
        self._registry = registry_
        #: The name of the backend serving the connection: ``"memory"``, ``"kafka"``, ...
        self.backend: str = info.descriptor.name
        #: The capability words the backend declares (see ``bus.spi.CAPABILITIES``).
        self.capabilities: frozenset[str] = info.descriptor.capabilities
        self._clients: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._closed = False

    def _settings(self, scope: str, options: Mapping[str, Any]) -> dict[str, Any]:
        if self._closed:
            raise ClosedError("Bus is closed")
        return _client_settings(self._table, self._config, scope, options)

    @staticmethod
    def _guard_callbacks(settings: dict[str, Any]) -> dict[str, Any]:
        for name in ("on_assign", "on_revoke", "on_error"):
            if settings.get(name) is not None:
                settings[name] = guarded(settings[name], name)
        return settings

    def _codec(self, settings: dict[str, Any], name: str) -> Any:
        return resolve_codec(settings.pop(name), self._registry.codecs, name)

    def _chain(
        self, settings: dict[str, Any], scope: str, group: str | None = None
    ) -> Chain | None:
        """The client's interceptors, taken out of ``settings`` (drivers never see
        them); names are made by their plugins' factories from the client's options,
        with ``backend``, ``scope`` (``"producer"``/``"consumer"``) and ``group``."""
        given = settings.pop("interceptors", None) or ()
        options = {**settings, "backend": self.backend, "scope": scope, "group": group}
        return make_chain(given, self._registry.interceptors, options)

    def _need(self, capability: str, api: str) -> None:
        if capability in self.capabilities:
            return
        hint = self._info.descriptor.hints.get(capability)
        if hint is None:
            others = sorted(
                f"{i.descriptor.schemes[0]}://"
                for i in self._registry.backends.values()
                if capability in i.descriptor.capabilities
            )
            hint = f"use {' or '.join(others)}" if others else None
        raise UnsupportedError(
            f"backend {self.backend!r} has no {api} API" + (f"; {hint}" if hint else "")
        )

    def _track(self, client: _Client) -> _Client:
        with self._lock:
            if self._closed:
                raise ClosedError("Bus is closed")
            self._clients.add(client)
        return client

    def _topics(self, topics: tuple[Any, ...]) -> tuple[str, ...]:
        if not topics:
            raise TypeError("consumer() needs at least one topic name")
        for t in topics:
            check_topic(t)
        return tuple(dict.fromkeys(topics))

    def _group(self, group: Any) -> str | None:
        if group is not None and (not isinstance(group, str) or not group):
            raise TypeError(f"group must be a non-empty str or None, not {group!r}")
        if group is not None:
            self._need("consumer_groups", "consumer group")
        return group

    def _subscription(
        self, topics: tuple[Any, ...], group: Any, partitions: Any
    ) -> tuple[tuple[str, ...], str | None, frozenset[TopicPartition] | None]:
        """A consumer's topics, group and given partitions (``partitions=``: exactly
        those, no group, the topics theirs), checked."""
        if partitions is None:
            return self._topics(topics), self._group(group), None
        if topics:
            raise TypeError(
                "consumer() takes topic names or partitions=[...], not both: "
                "partitions= reads just the partitions given"
            )
        if group is not None:
            raise TypeError(
                "partitions= reads the partitions given without a group: pass group=None "
                "(or topic names, to share them in a group)"
            )
        if "offsets" not in self.capabilities:
            raise lacks_offsets(self.backend, "read given partitions (partitions=)")
        given = check_partition_set(partitions, "partitions", empty=False)
        return tuple(dict.fromkeys(tp.topic for tp in sorted(given))), None, given

    def producer(self, **options: Any) -> Producer:
        """A blocking ``Producer``; ``options`` override the connection's."""
        self._need("sync", "blocking")
        settings = self._settings(PRODUCER, options)
        chain = self._chain(settings, PRODUCER)
        value, key = self._codec(settings, "serializer"), self._codec(settings, "key_serializer")
        driver = self._backend.producer(settings)
        return self._track(
            Producer(
                driver,
                self.backend,
                encoder(value),
                encoder(key),
                capabilities=self.capabilities,
                interceptors=chain,
            )
        )

    def consumer(
        self,
        *topics: str,
        group: str | None = None,
        partitions: Collection[TopicPartition] | None = None,
        **options: Any,
    ) -> Consumer:
        """A blocking ``Consumer`` of ``topics``, in ``group`` (``None``: no group, read
        every partition, commit nothing); or, with ``partitions`` (a list, tuple or set
        of ``TopicPartition``, no topic names, no group), of exactly those partitions
        (capability ``offsets``)."""
        self._need("sync", "blocking")
        names, group, given = self._subscription(topics, group, partitions)
        settings = self._guard_callbacks(self._settings(CONSUMER, options))
        settings["partitions"] = given
        chain = self._chain(settings, CONSUMER, group)
        value, key = (
            self._codec(settings, "deserializer"),
            self._codec(settings, "key_deserializer"),
        )
        driver = self._backend.consumer(names, group, settings)
        return self._track(
            Consumer(
                driver,
                self.backend,
                names,
                group,
                decoder(value),
                decoder(key),
                capabilities=self.capabilities,
                max_poll_interval=settings["max_poll_interval"],
                interceptors=chain,
            )
        )

    def async_producer(self, **options: Any) -> AsyncProducer:
        """An asyncio ``AsyncProducer``; ``options`` override the connection's."""
        self._need("async", "asyncio")
        settings = self._settings(PRODUCER, options)
        chain = self._chain(settings, PRODUCER)
        value, key = self._codec(settings, "serializer"), self._codec(settings, "key_serializer")
        driver = self._backend.async_producer(settings)
        return self._track(
            AsyncProducer(
                driver,
                self.backend,
                encoder(value),
                encoder(key),
                capabilities=self.capabilities,
                interceptors=chain,
            )
        )

    def async_consumer(
        self,
        *topics: str,
        group: str | None = None,
        partitions: Collection[TopicPartition] | None = None,
        **options: Any,
    ) -> AsyncConsumer:
        """An asyncio ``AsyncConsumer`` of ``topics``, in ``group``, or of the given
        ``partitions``, as ``consumer``."""
        self._need("async", "asyncio")
        names, group, given = self._subscription(topics, group, partitions)
        settings = self._guard_callbacks(self._settings(CONSUMER, options))
        settings["partitions"] = given
        chain = self._chain(settings, CONSUMER, group)
        value, key = (
            self._codec(settings, "deserializer"),
            self._codec(settings, "key_deserializer"),
        )
        driver = self._backend.async_consumer(names, group, settings)
        return self._track(
            AsyncConsumer(
                driver,
                self.backend,
                names,
                group,
                decoder(value),
                decoder(key),
                capabilities=self.capabilities,
                max_poll_interval=settings["max_poll_interval"],
                interceptors=chain,
            )
        )

    # -- workers ----------------------------------------------------------------------------

    def _worker_parts(
        self,
        api: str,
        handler: Any,
        topics: tuple[Any, ...],
        group: Any,
        concurrency: Any,
        retry: Any,
        dead_letter: Any,
        shutdown_timeout: Any,
        options: dict[str, Any],
    ) -> dict[str, Any]:
        """What both worker factories check and work out: every argument, before any
        client is made."""
        self._need(api, "blocking" if api == "sync" else "asyncio")
        names = self._topics(topics)
        if group is None:
            raise TypeError("a worker needs a group: it commits what it processed there")
        self._group(group)
        check_worker_options(
            handler, names, concurrency, retry, dead_letter, shutdown_timeout, options
        )
        if dead_letter is not None and "headers" not in self.capabilities:
            raise UnsupportedError(
                f"backend {self.backend!r} has no headers: a dead letter could not say "
                "where its message came from and why it failed"
            )
        settings = self._settings(CONSUMER, {**options, "auto_commit": False})
        own = {k: v for k, v in options.items() if k not in _CODEC_OPTIONS}  # it decodes
        if own.get("on_revoke") is not None:
            own["on_revoke"] = guarded(own["on_revoke"], "on_revoke")
        return {
            "topics": names,
            "group": group,
            "concurrency": concurrency,
            "retry": retry,
            "dead_letter": dead_letter,
            "shutdown_timeout": float(shutdown_timeout),
            "options": own,
            "decode_value": decoder(self._codec(settings, "deserializer")),
            "decode_key": decoder(self._codec(settings, "key_deserializer")),
            "max_poll_interval": settings["max_poll_interval"],
            "commit_interval": settings["auto_commit_interval"],
        }

    def worker(
        self,
        handler: Callable[[Message], Any],
        *topics: str,
        group: str,
        concurrency: int = 1,
        retry: Retry | None = None,
        dead_letter: str | None = None,
        shutdown_timeout: float = 30.0,
        **options: Any,
    ) -> Worker:
        """A ``Worker`` running ``handler(message)`` over ``topics`` in ``group``: up to
        ``concurrency`` partitions at once, failures retried as ``retry`` says, then
        sent to ``dead_letter`` (a topic name; ``{topic}`` is replaced by the
        message's), stopping within ``shutdown_timeout`` seconds. Other ``options`` are
        consumer options (``auto_commit`` excepted: the worker commits). Call
        ``run()`` on it."""
        parts = self._worker_parts(
            "sync", handler, topics, group, concurrency, retry, dead_letter,
            shutdown_timeout, options,
        )  # fmt: skip
        return Worker(self, handler, **parts)

    def async_worker(
        self,
        handler: Callable[[Message], Awaitable[Any]],
        *topics: str,
        group: str,
        concurrency: int = 1,
        retry: Retry | None = None,
        dead_letter: str | None = None,
        shutdown_timeout: float = 30.0,
        **options: Any,
    ) -> AsyncWorker:
        """``worker`` for asyncio: an ``AsyncWorker`` awaiting ``handler(message)``, up to
        ``concurrency`` tasks at once. ``await`` its ``run()``."""
        parts = self._worker_parts(
            "async", handler, topics, group, concurrency, retry, dead_letter,
            shutdown_timeout, options,
        )  # fmt: skip
        return AsyncWorker(self, handler, **parts)

    # -- health -----------------------------------------------------------------------------

    def ping(self, timeout: float = 5.0) -> None:
        """Return when the transport answers, within ``timeout`` seconds; raise a
        ``bus.BusError`` (``bus.TimeoutError`` when nothing answered) when it does not.
        The health check of a service."""
        limit = check_timeout(timeout)
        if self._closed:
            raise ClosedError("Bus is closed")
        self._backend.ping(5.0 if limit is None else limit)

    async def aping(self, timeout: float = 5.0) -> None:
        """``ping`` for asyncio: the event loop goes on while the transport is asked."""
        limit = check_timeout(timeout)
        if self._closed:
            raise ClosedError("Bus is closed")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._backend.ping, 5.0 if limit is None else limit)

    # -- admin ------------------------------------------------------------------------------

    def create_topic(
        self, name: str, partitions: int = 1, replication_factor: int = 1, **config: Any
    ) -> None:
        """Create topic ``name``; ``config`` holds topic settings, dots written as
        underscores (``retention_ms=1000`` is ``retention.ms``). Raises
        ``bus.TopicExistsError`` if it exists."""
        self._admin()
        check_topic(name)
        for what, number in (
            ("partitions", partitions),
            ("replication_factor", replication_factor),
        ):
            if check_optional_int(number, what) is None:  # and within its range
                raise TypeError(f"{what} must be an int, not None")
        settings = {
            k.replace("_", "."): str(v).lower() if isinstance(v, bool) else str(v)
            for k, v in config.items()
        }
        settings = check_topic_config(settings)
        self._backend.create_topic(name, partitions, replication_factor, settings)

    def delete_topic(self, name: str) -> None:
        """Delete topic ``name``. Raises ``bus.UnknownTopicError`` if it does not exist."""
        self._admin()
        self._backend.delete_topic(check_topic(name))

    def topics(self) -> dict[str, int]:
        """Every topic and its partition count."""
        self._admin()
        return self._backend.topics()

    def partitions(self, topic: str) -> list[int]:
        """The partition numbers of ``topic``. Raises ``bus.UnknownTopicError``."""
        self._admin()
        return self._backend.partitions(check_topic(topic))

    def describe_topic(self, topic: str, timeout: float | None = None) -> TopicDescription:
        """``topic``'s partitions, each with its low and high watermarks and, on a
        backend with brokers, its leader, replicas and in-sync replicas: a
        ``bus.TopicDescription``. Raises ``bus.UnknownTopicError``, and
        ``bus.UnsupportedError`` on a backend that cannot describe topics. ``timeout``:
        seconds the call may take (``None``: the backend's own bound, ``admin_timeout``
        on Kafka)."""
        limit = check_timeout(timeout)
        self._admin()
        return self._backend.describe_topic(check_topic(topic), limit)

    def groups(self, timeout: float | None = None) -> list[str]:
        """The names of the consumer groups the backend knows (with members or committed
        positions), sorted. ``timeout``: seconds the call may take (``None``: the
        backend's own bound, ``admin_timeout`` on Kafka)."""
        limit = self._group_admin(timeout)
        return self._backend.groups(limit)

    def describe_group(self, group: str, timeout: float | None = None) -> GroupDescription:
        """``group``'s state, members (with their assignments) and, per partition, its
        committed position, the log end offset and the lag between them: a
        ``bus.GroupDescription``. Raises ``bus.UnknownGroupError`` for a group with no
        member and no committed position."""
        if not isinstance(group, str) or not group:
            raise TypeError(f"group must be a non-empty str, not {group!r}")
        limit = self._group_admin(timeout)
        return self._backend.describe_group(group, limit)

    def _group_admin(self, timeout: Any) -> float | None:
        limit = check_timeout(timeout)
        self._admin()
        self._need("consumer_groups", "consumer group")
        return limit

    def _admin(self) -> None:
        if self._closed:
            raise ClosedError("Bus is closed")
        self._need("admin", "admin")

    # -- life cycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Close every open client made here, then the connection. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            clients = list(self._clients)
        errors: list[BaseException] = []
        for client in clients:
            if isinstance(client, (AsyncProducer, AsyncConsumer)):
                continue  # closing needs their event loop; the application owns that
            try:
                client.close()
            except Exception as exc:
                errors.append(exc)
        self._backend.close()
        if errors:
            raise errors[0]

    async def aclose(self) -> None:
        """Close every open client made here, asyncio ones included, then the
        connection. Idempotent. ``async with bus.connect(...)`` calls it."""
        with self._lock:
            clients = [c for c in self._clients if isinstance(c, (AsyncProducer, AsyncConsumer))]
        errors: list[BaseException] = []
        for client in clients:
            try:
                await client.close()
            except Exception as exc:
                errors.append(exc)
        try:
            self.close()
        finally:
            if errors:
                raise errors[0]

    def __enter__(self) -> Bus:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Bus:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        options = redact(self._config.options, self._table)
        shown = "".join(f" {k}={v!r}" for k, v in options.items() if k not in _CODEC_OPTIONS)
        state = " closed" if self._closed else ""
        return f"<Bus {self.url.redacted()!r} backend={self.backend!r}{shown}{state}>"
