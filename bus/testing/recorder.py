"""``Recorder``: every message produced and consumed through a ``Bus``, for tests that
check what an application sent without reading it back. The ``bus_recorder`` fixture
gives one wired into ``message_bus``."""

from __future__ import annotations

import threading
from typing import Any

import bus

__all__ = ["ANY", "Recorder"]


class _Any:
    def __repr__(self) -> str:
        return "ANY"


#: In ``assert_produced``: any value (the default for every field).
ANY: Any = _Any()


class Recorder(bus.Interceptor):
    """A ``bus.Interceptor`` that keeps what went through: ``produced`` (each message
    the broker acknowledged, before serialization, with its partition, offset and
    timestamp) and ``consumed`` (each message handed to the application, after
    deserialization). Thread-safe. Give it as ``interceptors=[recorder]`` to
    ``bus.connect`` (the ``bus_recorder`` fixture does that for ``message_bus``), or to
    one client; a client's own ``interceptors`` option replaces the connection's."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._produced: list[bus.Message] = []
        self._consumed: list[bus.Message] = []
        self._failed: list[tuple[bus.Message, bus.BusError]] = []

    @property
    def produced(self) -> list[bus.Message]:
        """Every message the broker acknowledged, in the order the acknowledgements came:
        as the application gave it (before serialization), with the ``partition``,
        ``offset`` and ``timestamp`` of its ``Delivery``. A copy: later sends do not change it."""
        with self._lock:
            return list(self._produced)

    @property
    def consumed(self) -> list[bus.Message]:
        """Every message handed to the application, in order, after deserialization.
        A copy."""
        with self._lock:
            return list(self._consumed)

    @property
    def failed(self) -> list[tuple[bus.Message, bus.BusError]]:
        """Messages a producer could not deliver, with their errors."""
        with self._lock:
            return list(self._failed)

    def on_acknowledgement(
        self, message: bus.Message, delivery: bus.Delivery | None, error: bus.BusError | None
    ) -> None:
        """The interceptor hook: keeps an acknowledged message in ``produced``, a failed
        one in ``failed``."""
        with self._lock:
            if delivery is not None:
                self._produced.append(
                    message.replace(
                        partition=delivery.partition,
                        offset=delivery.offset,
                        timestamp=delivery.timestamp,
                    )
                )
            elif error is not None:
                self._failed.append((message, error))

    def on_consume(self, messages: list[bus.Message]) -> list[bus.Message]:
        """The interceptor hook: keeps each fetched batch in ``consumed``, unchanged."""
        with self._lock:
            self._consumed.extend(messages)
        return messages

    def assert_produced(
        self, topic: str, value: Any = ANY, key: Any = ANY, headers: Any = ANY
    ) -> bus.Message:
        """The first produced message to ``topic`` with these fields (values as the
        application gave them, before serialization); ``AssertionError`` listing what
        was produced to ``topic`` otherwise."""
        wanted = {"value": value, "key": key, "headers": headers}
        candidates = [m for m in self.produced if m.topic == topic]
        for m in candidates:
            if all(want is ANY or getattr(m, name) == want for name, want in wanted.items()):
                return m
        asked = ", ".join(f"{n}={w!r}" for n, w in wanted.items() if w is not ANY)
        seen = "\n".join(f"  {m!r}" for m in candidates) or "  nothing"
        raise AssertionError(
            f"no message produced to {topic!r}"
            + (f" with {asked}" if asked else "")
            + f"; produced there:\n{seen}"
        )

    def clear(self) -> None:
        """Forget everything recorded so far (``produced``, ``consumed``, ``failed``)."""
        with self._lock:
            self._produced.clear()
            self._consumed.clear()
            self._failed.clear()
