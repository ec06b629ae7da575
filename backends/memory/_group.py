"""Consumer groups and the per-consumer state machine of the memory backend.

Pure bookkeeping: every method here is called with the broker's lock held, never
blocks and never calls user code. The drivers (``_sync``, ``_async``) do the waiting
and run a rebalance in three locked steps, calling the user's callbacks between them
with the lock released: ``ConsumerState.revoke_begin`` (then ``on_revoke``),
``revoke_finish``, ``claim`` (then ``on_assign``).

The model, as in Kafka with incremental rebalancing:

* A member joins when its consumer is created and leaves when it closes; either
  bumps the group's generation and recomputes the target assignment (range
  assignor, members in join order). A topic created or deleted recomputes it too,
  bumping the generation if it changed.
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
from collections.abc import Callable, Collection, Mapping
from typing import Any

from backends.memory._log import Broker, Record
from bus import CommitError, Message, TopicPartition, UnknownTopicError
from bus.spi import consumed_message

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

    def state(self) -> str:
        """``"empty"`` without members, ``"rebalancing"`` while a member has yet to apply
        the latest generation or to hold its whole target, else ``"stable"``."""
        if not self.members:
            return "empty"
        for member_id, member in self.members.items():
            if member.generation != self.generation or member.assigned != self.target.get(
                member_id, frozenset()
            ):
                return "rebalancing"
        return "stable"

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
        self.client_id: str | None = settings.get("client_id")
        self.broker = broker
        self.topics = topics
        #: ``partitions=``: exactly these are read (no group), whether they exist or not
        self.given: frozenset[TopicPartition] | None = settings.get("partitions")
        self.latest = settings["offset_reset"] == "latest"
        self.auto_commit = bool(settings["auto_commit"]) and group is not None
        self.interval: float = settings["auto_commit_interval"]
        self.next_commit = time.monotonic() + self.interval
        self.assigned: frozenset[TopicPartition] = frozenset()  # held: owned and read
        self.target: frozenset[TopicPartition] = frozenset()  # the group's wish for us
        self.positions: dict[TopicPartition, int] = {}  # held partitions: next offset
        self.returned: dict[TopicPartition, int] = {}  # after the batch last handed out
        self.processed: dict[TopicPartition, int] = {}
        #: Commits this member made by itself (interval, revoke, close), for the driver
        #: to report outside the lock (``take_own_commits``).
        self.own_commits: list[dict[TopicPartition, int]] = []
        self.paused: set[TopicPartition] = set()  # held partitions fetch skips
        self.generation = 0
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
        log = self.log(tp)
        return len(log) if log is not None and self.latest else 0

    def log(self, tp: TopicPartition) -> list[Record] | None:
        """The partition's log, ``None`` if the topic or the partition does not exist."""
        topic = self.broker.topics.get(tp.topic)
        if topic is None or tp.partition >= len(topic.logs):
            return None
        return topic.logs[tp.partition]

    def refresh_standalone(self) -> None:
        """No group: read every partition of the subscribed topics that exist now (with
        ``partitions=``, just those, from the start)."""
        now = (
            self.given
            if self.given is not None
            else frozenset(
                TopicPartition(name, p)
                for name in self.topics
                if (topic := self.broker.topics.get(name)) is not None
                for p in range(len(topic.logs))
            )
        )
        if now == self.assigned:
            return
        for tp in self.assigned - now:
            self._forget(tp)
        for tp in now - self.assigned:
            self.positions[tp] = self._reset(tp)
        self.assigned = now

    def _forget(self, tp: TopicPartition) -> None:
        self.positions.pop(tp, None)
        self.returned.pop(tp, None)
        self.processed.pop(tp, None)
        self.paused.discard(tp)  # assigned again, it starts unpaused
        if self.group is not None and self.group.owner.get(tp) == self.id:
            del self.group.owner[tp]

    # -- rebalance ---------------------------------------------------------------------------

    def revoke_begin(self) -> frozenset[TopicPartition] | None:
        """Apply a new generation's target: commit the processed positions of the held
        partitions it no longer has (if auto-committing) and return them, still held,
        for ``on_revoke``; ``None`` if there is nothing to give up."""
        group = self.group
        if group is None:
            self.refresh_standalone()
            return None
        if self.generation != group.generation:
            self.generation = group.generation
            self.target = group.target.get(self.id, frozenset())
        revoked = self.assigned - self.target
        if not revoked:
            return None
        if self.auto_commit:
            self.commit_processed(revoked, own=True)
        return revoked

    def revoke_finish(self, revoked: frozenset[TopicPartition]) -> None:
        """Release ``revoked``: from now on another member may claim them."""
        for tp in revoked:
            self._forget(tp)
        self.assigned -= revoked
        self.broker.notify()

    def claim(self) -> frozenset[TopicPartition]:
        """Take every partition of the target that no other member holds any more; each
        starts at the group's committed position (else ``offset_reset``). Returns the
        ones gained, for ``on_assign``."""
        group = self.group
        if group is None or self.target == self.assigned:
            return frozenset()
        gained = set()
        for tp in self.target - self.assigned:
            if group.owner.get(tp, self.id) != self.id or tp.topic not in self.broker.topics:
                continue
            group.owner[tp] = self.id
            committed = group.committed.get(tp)
            self.positions[tp] = self._reset(tp) if committed is None else committed
            gained.add(tp)
        self.assigned |= gained
        return frozenset(gained)

    def needs_rebalance(self) -> bool:
        """Whether a new generation waits to be applied or a partition of the target
        has been released and can be claimed."""
        group = self.group
        if group is None:
            return False
        if self.generation != group.generation:
            return True
        return any(group.owner.get(tp) is None for tp in self.target - self.assigned)

    # -- reading -------------------------------------------------------------------------------

    def mark_processed(self) -> None:
        """The application asked for more: what it was given last is processed."""
        if self.returned:
            self.processed.update(self.returned)
            self.returned = {}

    def pause(self, partitions: Collection[TopicPartition]) -> None:
        """Fetch nothing more from these held partitions (others are ignored). What
        ``give_back`` returned stays at its position, read again once resumed."""
        self.paused.update(tp for tp in partitions if tp in self.assigned)

    def resume(self, partitions: Collection[TopicPartition]) -> None:
        self.paused.difference_update(partitions)

    def fetch(self, max_messages: int) -> list[Message]:
        """Up to ``max_messages`` from the held partitions not paused, rotating the
        start."""
        if not self.positions:
            return []
        tps = [tp for tp in self.positions if tp not in self.paused]
        if not tps:
            return []
        self.rotation = (self.rotation + 1) % len(tps)
        out: list[Message] = []
        topics = self.broker.topics
        for tp in itertools.chain(tps[self.rotation :], tps[: self.rotation]):
            topic = topics.get(tp.topic)
            if topic is None or tp.partition >= len(topic.logs):  # partitions= one, not yet
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
                consumed_message(name, value, key, headers, partition, offset, timestamp)
                for offset, (value, key, headers, timestamp) in enumerate(
                    log[position:end], position
                )
            ]
            self.positions[tp] = self.returned[tp] = end
            if len(out) >= max_messages:
                break
        return out

    def give_back(self, positions: Mapping[TopicPartition, int]) -> None:
        """The application stopped short in the batch handed out last: per partition,
        what lies below the offset is processed, the rest is read again from there."""
        for tp, offset in positions.items():
            if self.returned.pop(tp, None) is None:
                continue  # not in the last batch, or seeked or revoked since
            if self.processed.get(tp, -1) < offset:
                self.processed[tp] = offset
            self.positions[tp] = offset

    def seek(self, tp: TopicPartition, offset: int) -> None:
        if tp not in self.assigned:
            raise ValueError(
                f"cannot seek {tp.topic}[{tp.partition}]: not assigned to this "
                f"consumer (assigned: {sorted(self.assigned)})"
            )
        self.positions[tp] = offset
        self.returned.pop(tp, None)

    # -- positions (capability ``offsets``) ------------------------------------------------------

    def _existing(self, tp: TopicPartition) -> list[Record]:
        log = self.log(tp)
        if log is None:
            raise UnknownTopicError(
                f"{tp.topic}[{tp.partition}] does not exist"
                if tp.topic in self.broker.topics
                else f"topic {tp.topic!r} does not exist"
            )
        return log

    def watermarks(self, tp: TopicPartition) -> tuple[int, int]:
        """Nothing is ever deleted from a memory log: low is 0, high its length."""
        return 0, len(self._existing(tp))

    def offsets_for_times(
        self, times: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, int | None]:
        """The first offset whose timestamp is at or after the time, as Kafka's time
        index finds it (timestamps need not grow with offsets)."""
        logs = {tp: self._existing(tp) for tp in times}  # every one checked first
        return {
            tp: next((offset for offset, r in enumerate(log) if r[3] >= times[tp]), None)
            for tp, log in logs.items()
        }

    def committed(self, partitions: Collection[TopicPartition]) -> dict[TopicPartition, int | None]:
        group = self.group
        assert group is not None  # the core asks only with a group
        for tp in partitions:
            self._existing(tp)
        return {tp: group.committed.get(tp) for tp in partitions}

    # -- committing ----------------------------------------------------------------------------

    def commit_processed(
        self, only: frozenset[TopicPartition] | None = None, *, own: bool = False
    ) -> None:
        """Commit the processed positions (of ``only``) this member owns; ``own``: a
        commit of its own (not ``commit()``), noted in ``own_commits`` if it moved any."""
        group = self.group
        if group is None:
            return
        written = {}
        for tp, position in self.processed.items():
            if (
                (only is None or tp in only)
                and group.owner.get(tp) == self.id
                and group.committed.get(tp) != position
            ):
                group.committed[tp] = written[tp] = position
        if own and written:
            self.own_commits.append(written)

    def take_own_commits(self) -> list[dict[TopicPartition, int]]:
        taken, self.own_commits = self.own_commits, []
        return taken

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
            self.commit_processed(own=True)
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
                self.commit_processed(own=True)
            self.group.leave(self, self.broker)
        self.positions.clear()
        self.assigned = frozenset()
        self.broker.notify()


def report_own_commits(
    state: ConsumerState, listener: Callable[[Mapping[TopicPartition, int]], None] | None
) -> None:
    """Tell ``listener`` (the driver's ``on_committed``) of the commits ``state`` made by
    itself, outside the broker's lock; with no listener they are just forgotten."""
    if not state.own_commits:
        return
    with state.broker.lock:
        taken = state.take_own_commits()
    if listener is not None:
        for offsets in taken:
            listener(offsets)
