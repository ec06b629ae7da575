"""Consumer groups and the per-consumer state machine of the memory backend.

Pure bookkeeping: every method here is called with the broker's lock held, never
blocks and never calls user code. The drivers (``_sync``, ``_async``) call the user's
``on_revoke``/``on_assign`` between ``rebalance_begin`` and ``rebalance_finish``, with
the lock released, and do the waiting.

The model, as in Kafka with incremental rebalancing:

* A member joins when its consumer is created and leaves when it closes; either
  bumps the group's generation and recomputes the target assignment (range
  assignor, members in join order). Topics created or deleted do the same.
* A member applies a new generation at its next poll: it commits the processed
  positions of the partitions it loses (when auto-committing), calls ``on_revoke``
  with them, releases them, and calls ``on_assign`` with those it gains.
* A partition has at most one owner. A member starts reading a gained partition only
  once the previous owner has released it, from the group's committed position
  (else ``offset_reset``), so nothing processed is read twice and nothing is skipped.
* Messages returned by a poll count as processed when the member polls again (or
  commits them); commits write processed positions only.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping
from typing import Any

from backends.memory._log import Broker
from bus import CommitError, Message, TopicPartition

_member_ids = itertools.count(1)


class Group:
    """One consumer group: members, target assignment, owners and committed positions."""

    def __init__(self, name: str):
        self.name = name
        self.members: dict[int, ConsumerState] = {}  # in join order
        self.generation = 0
        self.target: dict[int, frozenset[TopicPartition]] = {}
        self.owner: dict[TopicPartition, int] = {}
        self.committed: dict[TopicPartition, int] = {}

    def join(self, member: ConsumerState, broker: Broker) -> None:
        self.members[member.id] = member
        self._reassign(broker, force=True)

    def leave(self, member: ConsumerState, broker: Broker) -> None:
        for tp in [tp for tp, owner in self.owner.items() if owner == member.id]:
            del self.owner[tp]
        self.members.pop(member.id, None)
        self.target.pop(member.id, None)
        self._reassign(broker, force=True)

    def topics_changed(self, broker: Broker) -> None:
        self._reassign(broker, force=False)

    def _reassign(self, broker: Broker, *, force: bool) -> None:
        target: dict[int, set[TopicPartition]] = {m: set() for m in self.members}
        subscribers: dict[str, list[int]] = {}
        for member_id, member in self.members.items():
            for name in member.topics:
                subscribers.setdefault(name, []).append(member_id)
        for name, member_ids in subscribers.items():
            topic = broker.topics.get(name)
            if topic is None:
                continue
            base, extra = divmod(len(topic.logs), len(member_ids))
            start = 0
            for i, member_id in enumerate(member_ids):
                count = base + (1 if i < extra else 0)
                target[member_id].update(
                    TopicPartition(name, p) for p in range(start, start + count)
                )
                start += count
        frozen = {m: frozenset(tps) for m, tps in target.items()}
        if force or frozen != self.target:
            self.target = frozen
            self.generation += 1
        for tp in [tp for tp in self.owner if tp.topic not in broker.topics]:
            del self.owner[tp]


class ConsumerState:
    """Everything one consumer knows. Guarded by the broker's lock."""

    def __init__(
        self,
        broker: Broker,
        topics: tuple[str, ...],
        group: str | None,
        settings: Mapping[str, Any],
    ):
        self.id = next(_member_ids)
        self.broker = broker
        self.topics = topics
        self.latest = settings["offset_reset"] == "latest"
        self.auto_commit = bool(settings["auto_commit"]) and group is not None
        self.interval: float = settings["auto_commit_interval"]
        self.next_commit = time.monotonic() + self.interval
        self.assigned: frozenset[TopicPartition] = frozenset()
        self.positions: dict[TopicPartition, int] = {}  # claimed partitions: next offset
        self.sought: dict[TopicPartition, int] = {}  # seeks on partitions not claimed yet
        self.returned: dict[TopicPartition, int] = {}  # after the batch last handed out
        self.processed: dict[TopicPartition, int] = {}
        self.generation = 0
        self.pending: tuple[int, frozenset[TopicPartition]] | None = None
        self.woken = False
        self.rotation = 0
        self.group: Group | None = None
        if group is not None:
            found = broker.groups.get(group)
            if found is None:
                found = broker.groups[group] = Group(group)
            self.group = found
            found.join(self, broker)
        else:
            self.refresh_standalone()
        broker.notify()

    # -- positions --------------------------------------------------------------------------

    def _reset(self, tp: TopicPartition) -> int:
        topic = self.broker.topics.get(tp.topic)
        return len(topic.logs[tp.partition]) if topic is not None and self.latest else 0

    def refresh_standalone(self) -> None:
        """No group: read every partition of the subscribed topics that exist now."""
        now = frozenset(
            TopicPartition(name, p)
            for name in self.topics
            if (topic := self.broker.topics.get(name)) is not None
            for p in range(len(topic.logs))
        )
        if now == self.assigned:
            return
        for tp in self.assigned - now:
            self._forget(tp)
        for tp in now - self.assigned:
            self.positions[tp] = self._reset(tp)
        self.assigned = now

    def _claim(self) -> None:
        group = self.group
        if group is None:
            return
        for tp in self.assigned:
            if tp in self.positions or group.owner.get(tp, self.id) != self.id:
                continue
            group.owner[tp] = self.id
            if tp in self.sought:
                self.positions[tp] = self.sought.pop(tp)
            else:
                committed = group.committed.get(tp)
                self.positions[tp] = self._reset(tp) if committed is None else committed

    def _forget(self, tp: TopicPartition) -> None:
        self.positions.pop(tp, None)
        self.sought.pop(tp, None)
        self.returned.pop(tp, None)
        self.processed.pop(tp, None)
        if self.group is not None and self.group.owner.get(tp) == self.id:
            del self.group.owner[tp]

    # -- rebalance ---------------------------------------------------------------------------

    def rebalance_begin(self) -> frozenset[TopicPartition] | None:
        """Start applying a new generation: commit the processed positions of the
        partitions to lose (if auto-committing) and return them; ``None`` if there is
        nothing to apply."""
        group = self.group
        if group is None:
            self.refresh_standalone()
            return None
        if self.generation == group.generation:
            return None
        target = group.target.get(self.id, frozenset())
        self.pending = (group.generation, target)
        revoked = self.assigned - target
        if revoked and self.auto_commit:
            self.commit_processed(revoked)
        return revoked

    def rebalance_finish(self) -> frozenset[TopicPartition]:
        """Release the lost partitions, take the new assignment; return the gained ones."""
        assert self.pending is not None
        generation, target = self.pending
        self.pending = None
        lost = self.assigned - target
        for tp in lost:
            self._forget(tp)
        gained = target - self.assigned
        self.assigned = target
        self.generation = generation
        if lost:
            self.broker.notify()
        return gained

    # -- reading -------------------------------------------------------------------------------

    def mark_processed(self) -> None:
        """The application asked for more: what it was given last is processed."""
        if self.returned:
            self.processed.update(self.returned)
            self.returned = {}

    def fetch(self, max_messages: int) -> list[Message]:
        """Up to ``max_messages`` from the claimed partitions, rotating the start."""
        self._claim()
        if not self.positions:
            return []
        tps = list(self.positions)
        self.rotation = (self.rotation + 1) % len(tps)
        out: list[Message] = []
        topics = self.broker.topics
        for tp in itertools.chain(tps[self.rotation :], tps[: self.rotation]):
            topic = topics.get(tp.topic)
            if topic is None:
                continue
            log = topic.logs[tp.partition]
            position = self.positions[tp]
            if position > len(log):  # out of range (a seek past the end): reset
                position = len(log) if self.latest else 0
            count = min(max_messages - len(out), len(log) - position)
            if count <= 0:
                self.positions[tp] = position
                continue
            end = position + count
            name, partition = tp.topic, tp.partition
            out += [
                Message(name, value, key, headers, partition, offset, timestamp)
                for offset, (value, key, headers, timestamp) in enumerate(
                    log[position:end], position
                )
            ]
            self.positions[tp] = self.returned[tp] = end
            if len(out) >= max_messages:
                break
        return out

    def seek(self, tp: TopicPartition, offset: int) -> None:
        if tp not in self.assigned:
            raise ValueError(
                f"cannot seek {tp.topic}[{tp.partition}]: not assigned to this "
                f"consumer (assigned: {sorted(self.assigned)})"
            )
        if tp in self.positions:
            self.positions[tp] = offset
        else:
            self.sought[tp] = offset
        self.returned.pop(tp, None)

    # -- committing ----------------------------------------------------------------------------

    def commit_processed(self, only: frozenset[TopicPartition] | None = None) -> None:
        group = self.group
        if group is None:
            return
        for tp, position in self.processed.items():
            if (only is None or tp in only) and group.owner.get(tp) == self.id:
                group.committed[tp] = position

    def commit(self, message: Message | None) -> None:
        group = self.group
        if group is None:
            raise CommitError(
                "this consumer has no group, so there is nothing to commit to; "
                "pass group=... to consumer()"
            )
        if message is None:
            self.mark_processed()
            self.commit_processed()
            return
        tp = TopicPartition(message.topic, message.partition)  # type: ignore[arg-type]
        if group.owner.get(tp) != self.id:
            raise CommitError(
                f"cannot commit {tp.topic}[{tp.partition}]: the partition is not "
                "assigned to this consumer (a rebalance may have moved it)"
            )
        end = message.offset + 1  # type: ignore[operator]
        group.committed[tp] = end
        if self.processed.get(tp, -1) < end:
            self.processed[tp] = end

    def maybe_auto_commit(self, now: float) -> None:
        if self.auto_commit and now >= self.next_commit:
            self.commit_processed()
            self.next_commit = now + self.interval

    def wait_time(self, deadline: float | None, now: float) -> float | None:
        """How long to wait for news: until ``deadline`` or the next auto-commit."""
        limit = deadline
        if self.auto_commit and self.processed:
            limit = self.next_commit if limit is None else min(limit, self.next_commit)
        return None if limit is None else limit - now

    # -- leaving --------------------------------------------------------------------------------

    def close(self) -> None:
        """Commit processed positions (if auto-committing) and leave the group."""
        if self.group is not None:
            if self.auto_commit:
                self.commit_processed()
            self.group.leave(self, self.broker)
        self.positions.clear()
        self.assigned = frozenset()
        self.broker.notify()
