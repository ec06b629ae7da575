"""The service examples (examples/, shown in docs/services.md) run: orders are written to
the bus, and /health answers 200 while the bus answers, 503 when it does not."""

from __future__ import annotations

import asyncio
import importlib.util
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import svcs
from fastapi.testclient import TestClient

import bus

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ("fastapi_app", "svcs_app")


def _load(name: str) -> ModuleType:
    """examples/NAME.py as a fresh module (by path: ``examples`` is not a package)."""
    path = ROOT / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"polybus_examples_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(params=EXAMPLES)
def example(request: pytest.FixtureRequest) -> ModuleType:
    return _load(request.param)


@pytest.fixture
def closed_port() -> int:
    """A local TCP port nothing listens on (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def _read_back(url: str, partition: int, offset: int) -> bus.Message:
    """The message at orders/partition@offset, read by a consumer of the same broker."""
    async with bus.connect(url) as b:
        consumer = b.async_consumer("orders", offset_reset="earliest")
        try:
            for _ in range(100):
                message = await consumer.poll(timeout=0.1)
                if message is not None and (message.partition, message.offset) == (
                    partition,
                    offset,
                ):
                    return message
        finally:
            await consumer.close()
    raise AssertionError(f"nothing read at orders/{partition}@{offset}")


@pytest.mark.bus_capability("async")
def test_an_order_is_written_to_the_bus(
    example: ModuleType, bus_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BUS_URL", bus_url)
    with TestClient(example.app) as client:
        response = client.post("/orders", content=b'{"id": 7, "item": "tea"}')
        assert response.status_code == 202, response.text
        where = response.json()
        assert set(where) == {"partition", "offset"}
        message = asyncio.run(_read_back(bus_url, where["partition"], where["offset"]))
    assert message.value == b'{"id": 7, "item": "tea"}'
    assert (message.topic, message.partition, message.offset) == (
        "orders",
        where["partition"],
        where["offset"],
    )


@pytest.mark.bus_capability("async")
def test_health_is_ok_while_the_bus_answers(
    example: ModuleType, bus_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BUS_URL", bus_url)
    with TestClient(example.app) as client:
        response = client.get("/health")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ok"


def test_health_is_503_when_no_broker_answers(
    example: ModuleType, closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The app starts without a broker (aiokafka connects lazily); its ping fails.
    monkeypatch.setenv("BUS_URL", f"aiokafka://127.0.0.1:{closed_port}")
    monkeypatch.setenv("BUS_PING_TIMEOUT", "0.5")
    with TestClient(example.app) as client:
        response = client.get("/health")
    assert response.status_code == 503, response.text
    assert response.json()["status"] == "unavailable"


async def _registered_bus(registry: svcs.Registry) -> bus.Bus:
    async with svcs.Container(registry) as container:
        b: bus.Bus = await container.aget(bus.Bus)  # a Bus is an async context manager
    return b


def test_health_is_503_after_the_bus_is_closed(
    bus_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """svcs' registry reaches the very Bus the lifespan connected (its ping fails once
    that Bus is closed), and the route reports the failing service by name."""
    monkeypatch.setenv("BUS_URL", bus_url)
    module = _load("svcs_app")
    with TestClient(module.app) as client:
        b = asyncio.run(_registered_bus(svcs.fastapi.get_registry(client)))
        b.close()  # as if the transport had gone; the app's shutdown closes the rest
        response = client.get("/health")
    assert response.status_code == 503, response.text
    assert set(response.json()["failing"]) == {f"{bus.Bus.__module__}.{bus.Bus.__qualname__}"}


def test_the_app_refuses_a_backend_without_asyncio(
    example: ModuleType, closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kafka:// has no asyncio API: the app does not start, and says what to use."""
    monkeypatch.setenv("BUS_URL", f"kafka://127.0.0.1:{closed_port}")
    with pytest.raises(bus.UnsupportedError, match="aiokafka://"), TestClient(example.app):
        pass


# -- docs/services.md shows the examples whole --------------------------------------------

_FILE_BLOCK = re.compile(
    r"<!--\s*file: (examples/\w+\.py)\s*-->\s*\n```python\n(.*?)^```$", re.S | re.M
)


def _shown() -> Iterator[tuple[str, str]]:
    text = (ROOT / "docs" / "services.md").read_text()
    yield from _FILE_BLOCK.findall(text)


def test_the_docs_show_each_example_as_it_is() -> None:
    shown = dict(_shown())
    assert set(shown) == {f"examples/{name}.py" for name in EXAMPLES}
    for path, code in shown.items():
        assert code == (ROOT / path).read_text(), f"docs/services.md shows an old {path}"
