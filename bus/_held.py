"""The batch iteration holds between loop turns, and how far the application got
through it. Pure bookkeeping, shared by ``Consumer`` and ``AsyncConsumer``.

Iteration fetches many messages from the driver at once and hands them out one per
loop turn. The driver counts a whole batch as processed at its next ``poll_batch``,
which the consumer only calls once every held message has been handed out (and the
application asked for one more). Whenever the truth matters before that (a commit, a
rebalance, close, a batch held too long), the consumer tells the driver where the
application stopped with ``give_back(held.positions(...))``.
"""

from __future__ import annotations

from collections.abc import Collection

from bus._message import Message, TopicPartition

Key = tuple[str, int | None]


class Held:
    """Messages fetched for iteration, in the driver's order; ``next`` is the index of
    the first one not handed out yet. ``renew_at`` (``time.monotonic()``) is when the
    batch has been held for half of ``max_poll_interval``: the rest goes back and the
    driver is polled, so the group never takes the consumer for dead.

    Not thread-safe: the consumer changes it from its polling thread (or task), and
    reads it in ``close`` under the lock that also guards filling it."""

    __slots__ = ("messages", "next", "renew_at")

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.next = 0
        self.renew_at = 0.0

    def waiting(self) -> bool:
        """Whether some fetched message has not been handed out."""
        return self.next < len(self.messages)

    def fill(self, messages: list[Message], renew_at: float) -> None:
        self.messages, self.next, self.renew_at = messages, 0, renew_at

    def clear(self) -> None:
        self.messages, self.next = [], 0

    def take(self, count: int) -> list[Message]:
        """Hand out up to ``count`` of the messages not handed out yet."""
        start = self.next
        out = self.messages[start : start + count]
        self.next = start + len(out)
        return out

    def positions(
        self, start: int, *, every: bool, only: Collection[Key] | None = None
    ) -> dict[TopicPartition, int]:
        """What ``give_back`` needs when the application got no further than index
        ``start``: for each partition of the batch (of ``only``, if given), the offset of
        its first message from ``start`` on. With ``every``, also the partitions with
        none there, at the offset after their last message (all of theirs processed)."""
        found: dict[Key, int] = {}
        for m in self.messages[start:]:
            key = (m.topic, m.partition)
            if key not in found and (only is None or key in only):
                found[key] = m.offset  # type: ignore[assignment]
        if every:
            done: dict[Key, int] = {}
            for m in self.messages[:start]:
                key = (m.topic, m.partition)
                if key not in found and (only is None or key in only):
                    done[key] = m.offset + 1  # type: ignore[operator]
            found.update(done)
        return {TopicPartition(t, p): o for (t, p), o in found.items()}  # type: ignore[arg-type]

    def drop(self, keys: Collection[Key]) -> None:
        """Forget the messages of these partitions not handed out yet (a seek or a
        rebalance made them someone else's business); those handed out stay, for
        ``positions``."""
        start = self.next
        rest = [m for m in self.messages[start:] if (m.topic, m.partition) not in keys]
        if len(rest) < len(self.messages) - start:
            self.messages = self.messages[:start] + rest
