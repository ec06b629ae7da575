"""The plugin registry: a pluggy ``PluginManager`` for project ``bus`` that loads the
``bus`` entry-point group, and the backends and codecs its hooks declare.

A broken plugin (one that fails to import, raises from its hook, returns something
that is not a descriptor, or claims a scheme another backend has) is recorded as a
``PluginProblem`` naming it; the other plugins keep working.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import threading
from collections.abc import Iterable
from typing import Any

import attrs
import pluggy

from bus import hookspecs
from bus._codecs import BUILTIN_CODECS, Codec
from bus._errors import BackendNotFound
from bus._interceptors import InterceptorFactory
from bus.spi import BackendDescriptor

PROJECT = "bus"
ENTRY_POINT_GROUP = "bus"

#: The decorator marking a plugin's implementation of a hook of ``bus.hookspecs``:
#: ``@bus.hookimpl`` over ``def bus_register_backends(): ...`` (pluggy's
#: ``HookimplMarker`` of the project ``bus``).
hookimpl = pluggy.HookimplMarker(PROJECT)


class _BuiltinCodecs:
    """The core's own codecs, registered through the same hook as any plugin's."""

    @staticmethod
    @hookimpl
    def bus_register_codecs() -> Iterable[Codec]:
        return BUILTIN_CODECS


@attrs.frozen
class PluginProblem:
    """A plugin that could not be used, and why."""

    plugin: str
    problem: str


@attrs.frozen
class BackendInfo:
    """A registered backend and the plugin (and distribution) that provides it."""

    descriptor: BackendDescriptor
    plugin: str
    distribution: str | None

    def missing(self) -> list[str]:
        """The required modules that cannot be imported."""
        return [m for m in self.descriptor.requires if importlib.util.find_spec(m) is None]


class Registry:
    """Backends and codecs from every plugin. Build with ``Registry.load()``."""

    def __init__(self, manager: pluggy.PluginManager) -> None:
        self.manager = manager
        self.problems: list[PluginProblem] = []
        self.backends: dict[str, BackendInfo] = {}  # by backend name
        self.schemes: dict[str, BackendInfo] = {}
        self.codecs: dict[str, Codec] = {}
        self.interceptors: dict[str, InterceptorFactory] = {}

    @classmethod
    def load(cls, *, entry_points: bool = True, plugins: Iterable[object] = ()) -> Registry:
        manager = pluggy.PluginManager(PROJECT)
        manager.add_hookspecs(hookspecs)
        registry = cls(manager)
        manager.register(_BuiltinCodecs, name="bus.codecs")
        distributions: dict[str, str | None] = {"bus.codecs": "polybus"}
        if entry_points:
            for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
                name = f"{ep.name} ({ep.value})"
                try:
                    manager.register(ep.load(), name=ep.name)
                except Exception as exc:
                    registry.problems.append(
                        PluginProblem(name, f"failed to load: {type(exc).__name__}: {exc}")
                    )
                    continue
                distributions[ep.name] = ep.dist.name if ep.dist is not None else None
        for plugin in plugins:
            manager.register(plugin)
        registry._collect(distributions)
        return registry

    def _collect(self, distributions: dict[str, str | None]) -> None:
        for impl in self.manager.hook.bus_register_backends.get_hookimpls():
            plugin = impl.plugin_name
            for item in self._call(impl, plugin):
                if not isinstance(item, BackendDescriptor):
                    self._problem(plugin, f"returned {item!r}, not a BackendDescriptor")
                    continue
                self._add_backend(BackendInfo(item, plugin, distributions.get(plugin)))
        for impl in self.manager.hook.bus_register_codecs.get_hookimpls():
            for item in self._call(impl, impl.plugin_name):
                if not isinstance(item, Codec):
                    self._problem(impl.plugin_name, f"returned {item!r}, not a Codec")
                elif item.name in self.codecs:
                    self._problem(impl.plugin_name, f"codec {item.name!r} is registered already")
                else:
                    self.codecs[item.name] = item
        for impl in self.manager.hook.bus_register_interceptors.get_hookimpls():
            found = self._call_mapping(impl, impl.plugin_name)
            for name, factory in found.items():
                if not isinstance(name, str) or not callable(factory):
                    self._problem(
                        impl.plugin_name,
                        f"registered {name!r}: {factory!r}, not a name and a factory",
                    )
                elif name in self.interceptors:
                    self._problem(impl.plugin_name, f"interceptor {name!r} is registered already")
                else:
                    self.interceptors[name] = factory

    def _call_mapping(self, impl: pluggy.HookImpl, plugin: str) -> dict[Any, Any]:
        try:
            result = impl.function()
            return dict(result or {})  # type: ignore[call-overload,no-any-return]
        except Exception as exc:
            self._problem(
                plugin, f"hook {impl.function.__name__} raised {type(exc).__name__}: {exc}"
            )
            return {}

    def _call(self, impl: pluggy.HookImpl, plugin: str) -> list[Any]:
        try:
            result = impl.function()
            return list(result or ())  # type: ignore[call-overload,no-any-return]
        except Exception as exc:
            self._problem(
                plugin, f"hook {impl.function.__name__} raised {type(exc).__name__}: {exc}"
            )
            return []

    def _add_backend(self, info: BackendInfo) -> None:
        descriptor = info.descriptor
        if descriptor.name in self.backends:
            self._problem(
                info.plugin,
                f"backend name {descriptor.name!r} is taken by plugin "
                f"{self.backends[descriptor.name].plugin!r}",
            )
            return
        taken = [s for s in descriptor.schemes if s in self.schemes]
        if taken:
            owner = self.schemes[taken[0]]
            self._problem(
                info.plugin,
                f"backend {descriptor.name!r} claims scheme "
                f"{taken[0]!r} of backend {owner.descriptor.name!r}",
            )
            return
        self.backends[descriptor.name] = info
        for scheme in descriptor.schemes:
            self.schemes[scheme] = info

    def _problem(self, plugin: str, text: str) -> None:
        self.problems.append(PluginProblem(plugin, text))

    def backend_for(self, scheme: str) -> BackendInfo:
        """The backend serving ``scheme``, ready to use, or ``BackendNotFound``."""
        info = self.schemes.get(scheme)
        if info is None:
            installed = ", ".join(f"{s}://" for s in sorted(self.schemes)) or "none"
            message = f"no backend serves {scheme}://; installed schemes: {installed}"
            broken = list(self.problems)
            if broken:
                message += "; plugins that failed: " + "; ".join(
                    f"{p.plugin}: {p.problem}" for p in broken
                )
            raise BackendNotFound(message)
        missing = info.missing()
        if missing:
            hint = f": pip install '{info.descriptor.extra}'" if info.descriptor.extra else ""
            raise BackendNotFound(
                f"{scheme}:// is served by backend {info.descriptor.name!r}, which needs "
                f"{', '.join(missing)} (not installed){hint}"
            )
        return info


_lock = threading.Lock()
_registry: Registry | None = None


def registry() -> Registry:
    """The process-wide registry, loaded from entry points on first use."""
    global _registry
    with _lock:
        if _registry is None:
            _registry = Registry.load()
        return _registry


def reset_registry(new: Registry | None = None) -> None:
    """Replace the process-wide registry (``None``: reload on next use). For tests."""
    global _registry
    with _lock:
        _registry = new
