"""User callbacks that raise never take a client down.

``on_delivery``, ``on_assign``, ``on_revoke`` and ``on_error`` run inside the
backend's machinery (a delivery report, a rebalance, a retry loop). An exception
from one is logged on the ``bus`` logger with its traceback and the work goes on, as
the Java client does; it never escapes from an unrelated call such as ``enqueue``,
``flush`` or ``poll``. Shared by both APIs and every backend: the wrappers guard the
callbacks before a driver sees them.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

LOGGER = logging.getLogger("bus")


def guarded(callback: Callable[..., Any], what: str) -> Callable[..., Any]:
    """``callback`` that logs, instead of raising, what it raises (``Exception`` only:
    ``KeyboardInterrupt`` and ``SystemExit`` still stop the program). A coroutine
    function stays one: what it returns is awaitable and guarded the same way, for
    the asyncio drivers that await a callback's result."""

    def call(*args: Any) -> Any:
        try:
            result = callback(*args)
        except Exception:
            LOGGER.exception("%s callback %r raised; ignored", what, callback)
            return None
        if inspect.isawaitable(result):
            return _awaited(result, what, callback)
        return None

    call.__wrapped__ = callback  # type: ignore[attr-defined]
    return call


async def _awaited(result: Awaitable[Any], what: str, callback: Callable[..., Any]) -> None:
    try:
        await result
    except Exception:
        LOGGER.exception("%s callback %r raised; ignored", what, callback)
