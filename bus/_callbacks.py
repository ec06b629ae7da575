"""User callbacks that raise never take a client down.

``on_delivery``, ``on_assign``, ``on_revoke`` and ``on_error`` run inside the
backend's machinery (a delivery report, a rebalance, a retry loop). An exception
from one is logged on the ``bus`` logger with its traceback and the work goes on, as
the Java client does; it never escapes from an unrelated call such as ``enqueue``,
``flush`` or ``poll``. Shared by both APIs and every backend: the wrappers guard the
callbacks before a driver sees them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

LOGGER = logging.getLogger("bus")


def guarded(callback: Callable[..., Any], what: str) -> Callable[..., None]:
    """``callback`` that logs, instead of raising, what it raises (``Exception`` only:
    ``KeyboardInterrupt`` and ``SystemExit`` still stop the program)."""

    def call(*args: Any) -> None:
        try:
            callback(*args)
        except Exception:
            LOGGER.exception("%s callback %r raised; ignored", what, callback)

    call.__wrapped__ = callback  # type: ignore[attr-defined]
    return call
