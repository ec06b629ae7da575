"""The plugin registry: built-ins through entry points, broken plugins isolated."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable
from typing import Any

import pytest

import bus
from bus._plugins import Registry
from bus.spi import Backend, BackendConfig, BackendDescriptor


def _descriptor(name: str, *schemes: str, **extra: Any) -> BackendDescriptor:
    return BackendDescriptor(
        name=name,
        schemes=schemes or (name,),
        capabilities=frozenset({"async"}),
        factory=lambda config: Backend(),
        **extra,
    )


class _Plugin:
    def __init__(self, *descriptors: Any) -> None:
        self.descriptors = descriptors

    @bus.hookimpl
    def bus_register_backends(self) -> Iterable[Any]:
        return self.descriptors


class _Raising:
    @bus.hookimpl
    def bus_register_backends(self) -> Iterable[BackendDescriptor]:
        raise RuntimeError("boom")


def test_the_memory_backend_comes_through_the_bus_entry_point() -> None:
    registry = Registry.load()
    info = registry.schemes["memory"]
    assert info.plugin == "memory"
    assert info.distribution == "polybus"
    assert {"sync", "async", "consumer_groups", "partitions"} <= info.descriptor.capabilities
    assert registry.problems == []


def test_codecs_are_registered_through_the_hook() -> None:
    assert {"bytes", "str", "json"} <= set(Registry.load().codecs)


def test_a_plugin_whose_hook_raises_is_reported_and_the_others_work() -> None:
    registry = Registry.load(plugins=[_Raising(), _Plugin(_descriptor("toy"))])
    assert "toy" in registry.schemes and "memory" in registry.schemes
    assert len(registry.problems) == 1
    assert "raised RuntimeError: boom" in registry.problems[0].problem


def test_a_bad_descriptor_is_reported_with_its_plugin() -> None:
    registry = Registry.load(entry_points=False, plugins=[_Plugin("not a descriptor")])
    assert registry.schemes == {}
    assert "not a BackendDescriptor" in registry.problems[0].problem


def test_a_duplicate_scheme_is_refused_and_the_first_backend_keeps_it() -> None:
    registry = Registry.load(plugins=[_Plugin(_descriptor("impostor", "memory"))])
    assert registry.schemes["memory"].descriptor.name == "memory"
    assert "claims scheme 'memory' of backend 'memory'" in registry.problems[0].problem


def test_a_plugin_that_fails_to_import_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.metadata.entry_points
    broken = importlib.metadata.EntryPoint("broken", "no_such_module_xyz", "bus")

    def entry_points(**kwargs: Any) -> Any:
        found = list(real(**kwargs))
        return [*found, broken] if kwargs.get("group") == "bus" else found

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    registry = Registry.load()
    assert "memory" in registry.schemes
    assert [p.plugin for p in registry.problems] == ["broken (no_such_module_xyz)"]
    assert "ModuleNotFoundError" in registry.problems[0].problem


def test_an_unknown_scheme_names_the_installed_ones() -> None:
    registry = Registry.load()
    with pytest.raises(bus.BackendNotFound, match=r"no backend serves nats://.*memory://"):
        registry.backend_for("nats")


def test_a_known_backend_with_a_missing_client_says_which_extra_to_install() -> None:
    toy = _descriptor("toy", requires=("no_such_client_lib",), extra="polybus[toy]")
    registry = Registry.load(entry_points=False, plugins=[_Plugin(toy)])
    with pytest.raises(
        bus.BackendNotFound, match=r"no_such_client_lib .*pip install 'polybus\[toy\]'"
    ):
        registry.backend_for("toy")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": ""}, "non-empty name"),
        ({"schemes": ()}, "no URL scheme"),
        ({"capabilities": frozenset({"teleport"})}, "unknown capabilities"),
        ({"factory": "nope"}, "not callable"),
    ],
)
def test_a_descriptor_checks_itself(fields: dict[str, Any], message: str) -> None:
    base: dict[str, Any] = {
        "name": "toy",
        "schemes": ("toy",),
        "capabilities": frozenset(),
        "factory": lambda config: Backend(),
    }
    with pytest.raises(ValueError, match=message):
        BackendDescriptor(**{**base, **fields})


def test_connect_uses_a_third_party_backend_and_its_capabilities(fresh_registry: None) -> None:
    made: list[BackendConfig] = []

    def factory(config: BackendConfig) -> Backend:
        made.append(config)
        return Backend()

    toy = BackendDescriptor("toy", ("toy",), frozenset({"async"}), factory)
    bus._plugins.reset_registry(Registry.load(plugins=[_Plugin(toy)]))
    with bus.connect("toy://somewhere?client_id=svc") as b:
        assert b.backend == "toy"
        assert b.capabilities == frozenset({"async"})
        with pytest.raises(
            bus.UnsupportedError, match=r"no blocking API; use kafka:// or memory://"
        ):
            b.producer()
    assert made[0].url.location == "somewhere"
    assert made[0].options == {"client_id": "svc"}


def test_the_core_refuses_what_a_backend_lacks(fresh_registry: None) -> None:
    from backends.memory import bus_register_backends as memory_backends

    (memory,) = memory_backends()
    lean = BackendDescriptor("lean", ("lean",), frozenset({"sync"}), memory.factory)
    bus._plugins.reset_registry(Registry.load(plugins=[_Plugin(lean)]))
    with bus.connect("lean://lean-test") as b:
        producer = b.producer()
        with pytest.raises(bus.UnsupportedError, match="'headers' capability"):
            producer.send("t", b"x", headers={"h": b"v"})
        with pytest.raises(bus.UnsupportedError, match="'timestamps' capability"):
            producer.enqueue("t", b"x", timestamp=5)
        with pytest.raises(bus.UnsupportedError, match="'headers' capability"):
            producer.send_batch([bus.Message("t", b"x", headers=(("h", b"v"),))])
        assert producer.send("t", b"plain").offset == 0
        with pytest.raises(bus.UnsupportedError, match="no consumer group API"):
            b.consumer("t", group="g")
        consumer = b.consumer("t", offset_reset="earliest")
        with pytest.raises(bus.UnsupportedError, match="cannot seek"):
            consumer.seek("t", 0, 0)
        with pytest.raises(bus.UnsupportedError, match="no admin API"):
            b.topics()


class _Interceptors:
    """Registers interceptors by name, as a third-party package would."""

    def __init__(self, made: list[tuple[Any, dict[str, Any]]]) -> None:
        self.made = made

    @bus.hookimpl
    def bus_register_interceptors(self) -> dict[str, Any]:
        def tracing(options: Any) -> bus.Interceptor:
            interceptor = _Tagging()
            self.made.append((interceptor, dict(options)))
            return interceptor

        return {"tracing": tracing, "broken": lambda options: "not an interceptor"}


class _Tagging(bus.Interceptor):
    def on_send(self, message: bus.Message) -> bus.Message:
        return message.replace(headers=(*message.headers, ("via", b"tracing")))


def test_interceptors_come_by_name_from_a_plugin_one_per_client(fresh_registry: None) -> None:
    made: list[tuple[Any, dict[str, Any]]] = []
    bus._plugins.reset_registry(Registry.load(plugins=[_Interceptors(made)]))
    with bus.connect("memory://?interceptors=tracing") as b:
        b.create_topic("t")
        with b.producer(client_id="one") as p:
            p.send("t", b"v")
        with b.producer(client_id="two") as p:
            p.send("t", b"w")
        with b.consumer("t", offset_reset="earliest") as c:
            got = c.poll_batch(10, timeout=5)
    assert [m.headers for m in got] == [(("via", b"tracing"),)] * 2
    assert [options["client_id"] for _, options in made[:2]] == ["one", "two"]
    assert made[0][0] is not made[1][0]  # a fresh interceptor per client


def test_an_unknown_interceptor_name_fails_at_connect_and_suggests(fresh_registry: None) -> None:
    bus._plugins.reset_registry(Registry.load(plugins=[_Interceptors([])]))
    with pytest.raises(bus.ConfigError, match=r"unknown interceptor 'tracng'.*'tracing'"):
        bus.connect("memory://?interceptors=tracng")
    with bus.connect("memory://") as b:
        with pytest.raises(bus.ConfigError, match="not a bus.Interceptor"):
            b.producer(interceptors=["broken"])
        with pytest.raises(bus.ConfigError, match="bus.Interceptor instances"):
            b.producer(interceptors=[42])
