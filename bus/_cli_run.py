"""``bus run``: a handler named ``MODULE:HANDLER`` run as a worker until SIGTERM."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

import bus
from bus._errors import ConfigError, UnsupportedError


def load_handler(spec: str) -> Callable[..., Any]:
    """The callable ``spec`` names: ``package.module:name`` (``name`` may be dotted,
    ``module:object.method``). The current directory is searched first, as ``python
    -m`` does. Raises ``ConfigError`` naming what is missing."""
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        raise ConfigError(f"handler {spec!r} is not MODULE:HANDLER (e.g. myapp.billing:handle)")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import module {module_name!r}: {exc}") from None
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigError(f"module {module_name!r} has no {attribute!r}") from None
    if not callable(target):
        raise ConfigError(f"{spec!r} is a {type(target).__name__}, not a callable handler")
    return target  # type: ignore[no-any-return]


def _is_async(handler: Any) -> bool:
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004 - an object with async __call__
    )


class Counted:
    """The handler, counting the messages it returned from (any thread)."""

    def __init__(self, handler: Callable[..., Any]):
        self.handler = handler
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self, message: bus.Message) -> Any:
        result = self.handler(message)
        with self._lock:
            self.count += 1
        return result

    async def acall(self, message: bus.Message) -> Any:
        result = self.handler(message)
        if inspect.isawaitable(result):
            result = await result
        with self._lock:
            self.count += 1
        return result

    async def in_thread(self, message: bus.Message) -> Any:
        return await asyncio.to_thread(self, message)


def run_worker(b: bus.Bus, handler: Callable[..., Any], topics: list[str], **options: Any) -> int:
    """Run ``handler`` as a worker over ``topics`` on ``b`` until a signal (or a
    failure, raised); the blocking API for a plain function where the backend has
    one, asyncio for a coroutine function (or where there is no blocking API, a
    plain function then runs in threads). Returns how many messages were handled."""
    counted = Counted(handler)
    if _is_async(handler):
        if "async" not in b.capabilities:
            raise UnsupportedError(
                f"the handler is a coroutine function and backend {b.backend!r} has no "
                "asyncio API; give a plain function, or use a backend with one"
            )
        asyncio.run(b.async_worker(counted.acall, *topics, **options).run())
    elif "sync" in b.capabilities:
        b.worker(counted, *topics, **options).run()
    else:
        asyncio.run(b.async_worker(counted.in_thread, *topics, **options).run())
    return counted.count
