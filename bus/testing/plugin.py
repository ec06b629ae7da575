"""The polybus pytest plugin, loaded automatically (``pytest11`` entry point ``bus``).

Option ``--bus-url URL`` (default: ``$BUS_TEST_URL``; unset, each test gets a fresh
in-memory broker) picks the backend under test. Fixtures:

``bus_url``
    The URL of the backend under test. By default ``memory://test-<uuid>``, a fresh
    named memory broker per test, so tests are isolated from each other.
``message_bus``
    A ``bus.Bus`` connected to ``bus_url``, closed after the test (which closes the
    blocking clients made from it; asyncio clients must be closed by the test).
``bus_recorder``
    A ``bus.testing.recorder.Recorder`` wired into ``message_bus``: what the test's
    clients produced and consumed, and ``assert_produced(topic, value=..., key=...)``.
``bus_topic``
    A fresh, uniquely named topic. When the backend has ``admin`` it is created, with
    3 partitions when the backend has ``partitions`` (else 1), and deleted after the
    test; without ``admin`` it is only a new name.
``bus_api``
    Runs the test once per API, ``[sync]`` and ``[async]``: ``bus_api.producer()`` and
    ``bus_api.consumer(...)`` return blocking clients, or asyncio clients behind a
    blocking face (``bus.testing.apis``). The run of an API mode the backend lacks is
    skipped by capability. The conformance suite is written once this way.
``bus_topic_factory``
    ``make(partitions=None, **config) -> str``: more fresh topics, made as
    ``bus_topic`` is; ``config`` is passed to ``Bus.create_topic``
    (``max_message_bytes=1000``). Asking for partitions or config skips the test on
    a backend without ``admin``.

A test module (or conftest) may override ``bus_url``, e.g. to point at a broker another
fixture starts; the other fixtures and the capability marker then follow it.

Marker ``@pytest.mark.bus_capability(*words)`` (on a test, class or module) skips the
test, naming what is missing, unless the backend ``bus_url`` names declares every
capability word; ``require_capabilities(bus, *words)`` does the same from inside a test. A
capability word that does not exist is an error, so a typo never skips silently.

Importing this module imports ``bus`` (pluggy and attrs), never a Kafka client or
Hypothesis.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

import bus
from bus._plugins import registry
from bus._url import parse_url
from bus.spi import CAPABILITIES
from bus.testing.apis import AsyncAPI, BusAPI, SyncAPI
from bus.testing.recorder import Recorder

# The conformance suite asserts in library modules; have pytest explain its failures.
pytest.register_assert_rewrite(
    *(
        f"bus.testing.{name}"
        for name in (
            "conformance",
            "_conformance_common",
            "_conformance_producing",
            "_conformance_consuming",
            "_conformance_groups",
            "_conformance_api",
            "_conformance_asyncio",
            "_conformance_hostile",
            "helpers",
            "statemachine",
        )
    )
)

__all__ = [
    "ENV_VAR",
    "backend_capabilities",
    "configured_url",
    "require_capabilities",
    "unique_topic_name",
]

#: Environment variable naming the backend under test when ``--bus-url`` is not given.
ENV_VAR = "BUS_TEST_URL"
MARKER = "bus_capability"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("bus", "polybus: the backend under test")
    group.addoption(
        "--bus-url",
        dest="bus_url",
        default=None,
        metavar="URL",
        help=(
            f"bus URL of the backend the bus fixtures connect to (default: ${ENV_VAR}, "
            "else a fresh memory:// broker per test)"
        ),
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(*words): skip the test unless the backend under test (--bus-url) "
        "declares every capability word",
    )


def configured_url(config: pytest.Config) -> str | None:
    """The URL given by ``--bus-url`` or ``$BUS_TEST_URL``; ``None`` when neither is set
    (fresh memory brokers)."""
    url = config.getoption("bus_url", default=None) or os.environ.get(ENV_VAR)
    return url or None


def backend_capabilities(url: str) -> tuple[str, frozenset[str]] | None:
    """The name and capabilities of the installed backend serving ``url``, without
    connecting; ``None`` when no usable backend serves it (connecting then says why)."""
    try:
        info = registry().backend_for(parse_url(url).scheme)
    except bus.BusError:
        return None
    return info.descriptor.name, info.descriptor.capabilities


def _check_words(words: Iterable[Any]) -> list[str]:
    result = []
    for word in words:
        if word not in CAPABILITIES:
            pytest.fail(
                f"unknown capability {word!r} in {MARKER}; capability words are "
                f"{', '.join(CAPABILITIES)}",
                pytrace=False,
            )
        result.append(word)
    return result


def _skip_missing(backend: str, have: frozenset[str], words: Iterable[str]) -> None:
    wanted = set(words)
    missing = [w for w in CAPABILITIES if w in wanted and w not in have]
    if missing:
        noun = "capability" if len(missing) == 1 else "capabilities"
        pytest.skip(f"backend {backend!r} lacks {noun} {', '.join(map(repr, missing))}")


def require_capabilities(message_bus: bus.Bus, *words: str) -> None:
    """Skip the running test, naming what is missing, unless ``message_bus`` has every
    capability in ``words``."""
    _skip_missing(message_bus.backend, message_bus.capabilities, _check_words(words))


@pytest.fixture(autouse=True)
def _bus_capability_marker(request: pytest.FixtureRequest) -> None:
    """Skip a test marked ``bus_capability`` whose backend lacks a capability, before
    it connects. The backend is the one ``bus_url`` names, so a test module that
    overrides ``bus_url`` is judged by its own backend."""
    words = [word for mark in request.node.iter_markers(MARKER) for word in mark.args]
    if not words:
        return
    words = _check_words(words)
    found = backend_capabilities(request.getfixturevalue("bus_url"))
    if found is not None:
        _skip_missing(*found, words)


def unique_topic_name(hint: str = "topic") -> str:
    """A topic name no other test uses: ``test-<hint>-<random>``, valid on Kafka
    (letters, digits and ``-`` only, at most 100 characters)."""
    cleaned = re.sub(r"[^A-Za-z0-9-]+", "-", hint).strip("-")[:60] or "topic"
    return f"test-{cleaned}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def bus_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of the backend under test: ``--bus-url``, ``$BUS_TEST_URL``, else a
    fresh ``memory://test-<uuid>`` broker for this test alone (dropped after it)."""
    url = configured_url(request.config)
    if url is not None:
        yield url
        return
    from bus.testing.helpers import fresh_url  # after the assert rewrite hook is set

    with fresh_url() as url:
        yield url


@pytest.fixture
def message_bus(bus_url: str, request: pytest.FixtureRequest) -> Iterator[bus.Bus]:
    """A ``bus.Bus`` connected to ``bus_url``; closed after the test. In a test that
    also asks for ``bus_recorder``, it records every message its clients move."""
    options: dict[str, Any] = {}
    if "bus_recorder" in request.fixturenames:
        options["interceptors"] = [request.getfixturevalue("bus_recorder")]
    connection = bus.connect(bus_url, **options)
    try:
        yield connection
    finally:
        connection.close()


@pytest.fixture
def bus_recorder() -> Recorder:
    """Every message produced and consumed through ``message_bus`` during the test
    (``.produced``, ``.consumed``, ``.failed``), and ``assert_produced(topic,
    value=..., key=...)``: a ``bus.testing.recorder.Recorder``."""
    return Recorder()


@pytest.fixture(params=["sync", "async"])
def bus_api(request: pytest.FixtureRequest, bus_url: str) -> Iterator[BusAPI]:
    """Clients through the blocking API (``[sync]``) or the asyncio one behind a
    blocking face (``[async]``); the run of a mode the backend lacks is skipped."""
    mode: str = request.param
    found = backend_capabilities(bus_url)
    if found is not None:
        _skip_missing(*found, [mode])
    message_bus: bus.Bus = request.getfixturevalue("message_bus")
    api: BusAPI = SyncAPI(message_bus) if mode == "sync" else AsyncAPI(message_bus)
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def bus_topic_factory(
    message_bus: bus.Bus, request: pytest.FixtureRequest
) -> Iterator[Callable[..., str]]:
    """``make(partitions=None, **config) -> str``: fresh topics, deleted after the test."""

    created: list[str] = []
    admin = "admin" in message_bus.capabilities

    def make(partitions: int | None = None, **config: Any) -> str:
        name = unique_topic_name(request.node.name)
        if not admin:
            if partitions is not None or config:
                _skip_missing(message_bus.backend, message_bus.capabilities, ["admin"])
            return name
        if partitions is None:
            partitions = 3 if "partitions" in message_bus.capabilities else 1
        message_bus.create_topic(name, partitions, **config)
        created.append(name)
        return name

    yield make
    for name in created:
        with contextlib.suppress(bus.BusError):  # the test closed the bus or deleted it
            message_bus.delete_topic(name)


@pytest.fixture
def bus_topic(bus_topic_factory: Callable[..., str]) -> str:
    """A fresh topic: 3 partitions when the backend has ``partitions`` and ``admin``."""
    return bus_topic_factory()
