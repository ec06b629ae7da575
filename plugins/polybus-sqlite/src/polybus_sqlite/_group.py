"""Consumer groups in the file: members, their shares, owners and committed positions.

The model is ``memory://``'s, kept in tables so that it holds across processes:

* A member joins when its consumer is created (a row in ``members``, in join order)
  and leaves when it closes; a member whose heartbeats stop for its
  ``session_timeout`` is removed by the next heartbeat of another member (or the next
  join). Each join, leave or removal bumps the group's generation and recomputes every
  member's share, its ``target`` (the range assignor over members in join order); a
  topic created or deleted recomputes them too, bumping the generation if they changed.
* A member applies a new generation at its next poll: it commits the processed
  positions of the partitions it loses (when auto-committing), calls ``on_revoke``,
  releases them (deletes its ``owners`` rows) and claims those of its share that no
  other member owns any more, each from the committed position (else
  ``offset_reset``), then calls ``on_assign``. Rebalancing is incremental: what a
  member keeps it never stops reading.
* Fencing: every write of a member (a claim, a commit) checks, in its transaction,
  that the member still exists and owns the partition. A member removed for silence
  (a zombie) owns nothing, so its commits fail with ``bus.CommitError``; at its next
  poll it learns that it lost everything, calls ``on_revoke`` and joins again.

The functions that take ``raw`` run inside a transaction of their caller's;
``ConsumerState`` is pure bookkeeping, without I/O.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from bus import CommitError, GroupDescription, GroupMember, Message, TopicPartition
from bus.spi import consumed_message, group_description

from polybus_sqlite._log import Row, decode_headers, high_watermark

Positions = dict[TopicPartition, int]


def new_member_id() -> str:
    return uuid.uuid4().hex


# -- the group's shares -------------------------------------------------------------------------


def _shares(
    members: list[tuple[str, list[str]]], counts: Mapping[str, int]
) -> dict[str, list[list[Any]]]:
    """The range assignor: each topic's partitions in contiguous ranges over its
    subscribers, in join order."""
    target: dict[str, list[list[Any]]] = {member: [] for member, _ in members}
    subscribers: dict[str, list[str]] = {}
    for member, topics in members:
        for name in topics:
            subscribers.setdefault(name, []).append(member)
    for name, ids in subscribers.items():
        count = counts.get(name)
        if count is None:
            continue
        base, extra = divmod(count, len(ids))
        start = 0
        for i, member in enumerate(ids):
            size = base + (1 if i < extra else 0)
            target[member] += [[name, p] for p in range(start, start + size)]
            start += size
    return target


def reassign(raw: sqlite3.Connection, group: str, *, force: bool) -> None:
    """Recompute every member's share; bump the generation if forced or changed."""
    members = [
        (member, json.loads(topics), target)
        for member, topics, target in raw.execute(
            "SELECT member, topics, target FROM members WHERE grp = ? ORDER BY seq", (group,)
        )
    ]
    wanted = {name for _, topics, _ in members for name in topics}
    counts = {
        name: count
        for name, count in raw.execute("SELECT name, partitions FROM topics")
        if name in wanted
    }
    shares = _shares([(m, topics) for m, topics, _ in members], counts)
    encoded = {m: json.dumps(share, separators=(",", ":")) for m, share in shares.items()}
    changed = any(encoded[m] != old for m, _, old in members)
    if force or changed:
        raw.executemany(
            "UPDATE members SET target = ? WHERE grp = ? AND member = ?",
            [(share, group, m) for m, share in encoded.items()],
        )
        raw.execute(
            "INSERT INTO groups (name, generation) VALUES (?, 1) "
            "ON CONFLICT (name) DO UPDATE SET generation = generation + 1",
            (group,),
        )
    raw.execute(
        "DELETE FROM owners WHERE grp = ? AND topic NOT IN (SELECT name FROM topics)", (group,)
    )


def topics_changed(raw: sqlite3.Connection) -> None:
    """A topic was created or deleted: every group with members recomputes its shares."""
    for (group,) in raw.execute("SELECT DISTINCT grp FROM members").fetchall():
        reassign(raw, group, force=False)


# -- membership ------------------------------------------------------------------------------------


def expire(raw: sqlite3.Connection, group: str, now: float) -> int:
    """Remove the members of ``group`` silent for longer than their session timeout
    (and what they own); return how many."""
    dead = [
        member
        for (member,) in raw.execute(
            "SELECT member FROM members WHERE grp = ? AND heartbeat + session_timeout < ?",
            (group, now),
        )
    ]
    for member in dead:
        _remove(raw, group, member)
    if dead:
        reassign(raw, group, force=True)
    return len(dead)


def _remove(raw: sqlite3.Connection, group: str, member: str) -> None:
    raw.execute("DELETE FROM owners WHERE grp = ? AND member = ?", (group, member))
    raw.execute("DELETE FROM members WHERE grp = ? AND member = ?", (group, member))


def join(
    raw: sqlite3.Connection,
    group: str,
    member: str,
    topics: Iterable[str],
    session_timeout: float,
    client_id: str | None,
) -> None:
    now = time.time()
    expire(raw, group, now)
    (seq,) = raw.execute(
        "SELECT COALESCE(MAX(seq), 0) + 1 FROM members WHERE grp = ?", (group,)
    ).fetchone()
    raw.execute(
        "INSERT INTO members (grp, member, seq, topics, target, heartbeat, session_timeout, "
        "client_id, pid, host) VALUES (?, ?, ?, ?, '[]', ?, ?, ?, ?, ?)",
        (
            group,
            member,
            seq,
            json.dumps(list(topics)),
            now,
            session_timeout,
            client_id,
            os.getpid(),
            socket.gethostname(),
        ),
    )
    reassign(raw, group, force=True)


def leave(raw: sqlite3.Connection, group: str, member: str) -> None:
    if raw.execute(
        "SELECT 1 FROM members WHERE grp = ? AND member = ?", (group, member)
    ).fetchone():
        _remove(raw, group, member)
        reassign(raw, group, force=True)


def heartbeat(raw: sqlite3.Connection, group: str, member: str) -> int:
    """Note that ``member`` is alive and remove the silent members of its group;
    return how many were removed."""
    now = time.time()
    raw.execute(
        "UPDATE members SET heartbeat = ? WHERE grp = ? AND member = ?", (now, group, member)
    )
    return expire(raw, group, now)


def view(
    raw: sqlite3.Connection, group: str, member: str, generation: int
) -> tuple[bool, int, frozenset[TopicPartition] | None]:
    """``(alive, generation, share)``: the share only when the generation is not the
    one given (the member applied that one already)."""
    row = raw.execute(
        "SELECT g.generation, CASE WHEN g.generation != ? THEN m.target END "
        "FROM members m JOIN groups g ON g.name = m.grp WHERE m.grp = ? AND m.member = ?",
        (generation, group, member),
    ).fetchone()
    if row is None:
        return False, generation, None
    if row[1] is None:
        return True, row[0], None
    return True, row[0], frozenset(TopicPartition(t, p) for t, p in json.loads(row[1]))


def free(
    raw: sqlite3.Connection, group: str, member: str, wanted: Collection[TopicPartition]
) -> bool:
    """Whether a partition of ``wanted`` is owned by nobody (or by ``member``)."""
    owners = {
        (t, p): m
        for t, p, m in raw.execute(
            "SELECT topic, partition, member FROM owners WHERE grp = ?", (group,)
        )
    }
    return any(owners.get((tp.topic, tp.partition), member) == member for tp in wanted)


def claim(
    raw: sqlite3.Connection,
    group: str,
    member: str,
    wanted: Collection[TopicPartition],
    latest: bool,
) -> dict[TopicPartition, tuple[int, int | None]] | None:
    """Take the partitions of ``wanted`` nobody else owns: ``{tp: (start, committed)}``;
    ``None`` if ``member`` is no member any more."""
    if not raw.execute(
        "SELECT 1 FROM members WHERE grp = ? AND member = ?", (group, member)
    ).fetchone():
        return None
    counts = dict(raw.execute("SELECT name, partitions FROM topics").fetchall())
    gained: dict[TopicPartition, tuple[int, int | None]] = {}
    for tp in wanted:
        if tp.partition >= counts.get(tp.topic, 0):
            continue
        row = raw.execute(
            "SELECT member FROM owners WHERE grp = ? AND topic = ? AND partition = ?",
            (group, tp.topic, tp.partition),
        ).fetchone()
        if row is not None and row[0] != member:
            continue
        raw.execute(
            "INSERT OR REPLACE INTO owners (grp, topic, partition, member) VALUES (?, ?, ?, ?)",
            (group, tp.topic, tp.partition, member),
        )
        found = raw.execute(
            "SELECT offset FROM commits WHERE grp = ? AND topic = ? AND partition = ?",
            (group, tp.topic, tp.partition),
        ).fetchone()
        if found is not None:
            gained[tp] = (found[0], found[0])
        else:
            start = high_watermark(raw, tp.topic, tp.partition) if latest else 0
            gained[tp] = (start, None)
    return gained


def release(
    raw: sqlite3.Connection, group: str, member: str, partitions: Iterable[TopicPartition]
) -> None:
    raw.executemany(
        "DELETE FROM owners WHERE grp = ? AND topic = ? AND partition = ? AND member = ?",
        [(group, tp.topic, tp.partition, member) for tp in partitions],
    )


_COMMIT = (
    "INSERT INTO commits (grp, topic, partition, offset) SELECT ?, ?, ?, ? WHERE EXISTS "
    "(SELECT 1 FROM owners WHERE grp = ? AND topic = ? AND partition = ? AND member = ?) "
    "ON CONFLICT (grp, topic, partition) DO UPDATE SET offset = excluded.offset"
)


def commit(
    raw: sqlite3.Connection, group: str, member: str, positions: Mapping[TopicPartition, int]
) -> tuple[bool, set[TopicPartition]]:
    """Commit the positions of the partitions ``member`` owns: ``(alive, committed)``."""
    if not raw.execute(
        "SELECT 1 FROM members WHERE grp = ? AND member = ?", (group, member)
    ).fetchone():
        return False, set()
    done = set()
    for tp, offset in positions.items():
        args = (group, tp.topic, tp.partition, offset, group, tp.topic, tp.partition, member)
        if raw.execute(_COMMIT, args).rowcount > 0:
            done.add(tp)
    return True, done


# -- one consumer's bookkeeping ----------------------------------------------------------------


class ConsumerState:
    """Everything one consumer knows, without I/O: what it holds and reads, what it
    returned and processed. Used by one thread (or task) at a time; ``woken`` may be
    set from any thread."""

    def __init__(self, topics: tuple[str, ...], group: str | None, settings: Mapping[str, Any]):
        self.topics = topics
        self.group = group
        #: ``partitions=[...]``: exactly these, no group, never rebalanced
        self.given: frozenset[TopicPartition] | None = settings.get("partitions")
        self.member: str | None = None
        self.latest = settings["offset_reset"] == "latest"
        self.auto_commit = bool(settings["auto_commit"]) and group is not None
        self.interval: float = settings["auto_commit_interval"]
        self.next_commit = time.monotonic() + self.interval
        self.assigned: frozenset[TopicPartition] = frozenset()
        self.target: frozenset[TopicPartition] = frozenset()
        self.generation = 0
        self.positions: Positions = {}  # held partitions: next offset to read
        self.returned: Positions = {}  # after the batch last handed out
        self.processed: Positions = {}
        self.committed: Positions = {}  # what this member last committed (or found)
        self.paused: set[TopicPartition] = set()
        self.woken = False
        self.dirty = True  # look at the file at the next turn, changed or not
        self.more = True  # the last fetch may have left messages behind
        self.rotation = 0

    # -- without a group ------------------------------------------------------------------------

    def standalone(self, counts: Mapping[str, int], starts: Mapping[TopicPartition, int]) -> None:
        """No group: read every partition of the subscribed topics that exist now
        (``counts``: their partition counts); ``starts`` holds where new ones begin."""
        now = self.given
        if now is None:
            now = frozenset(
                TopicPartition(name, p) for name, count in counts.items() for p in range(count)
            )
        for tp in self.assigned - now:
            self.forget(tp)
        for tp in now - self.assigned:
            self.positions[tp] = starts[tp]
            self.more = True
        self.assigned = now

    def missing(self, counts: Mapping[str, int]) -> list[TopicPartition]:
        """The partitions of ``counts`` a standalone consumer does not read yet."""
        if self.given is not None:
            return [tp for tp in self.given if tp not in self.assigned]
        return [
            tp
            for name, count in counts.items()
            for p in range(count)
            if (tp := TopicPartition(name, p)) not in self.assigned
        ]

    def standalone_changed(self, counts: Mapping[str, int]) -> bool:
        if self.given is not None:
            return self.given != self.assigned
        wanted = {TopicPartition(name, p) for name, count in counts.items() for p in range(count)}
        return wanted != self.assigned

    # -- rebalance ---------------------------------------------------------------------------------

    def forget(self, tp: TopicPartition) -> None:
        self.positions.pop(tp, None)
        self.returned.pop(tp, None)
        self.processed.pop(tp, None)
        self.committed.pop(tp, None)
        self.paused.discard(tp)  # assigned again, it starts unpaused

    def lose_all(self) -> frozenset[TopicPartition]:
        """The member was removed from its group: it holds nothing any more."""
        lost = self.assigned
        for tp in lost:
            self.forget(tp)
        self.assigned = frozenset()
        self.target = frozenset()
        self.member = None
        self.generation = 0
        self.dirty = True
        return lost

    def release(self, revoked: frozenset[TopicPartition]) -> None:
        for tp in revoked:
            self.forget(tp)
        self.assigned -= revoked

    def gain(
        self, starts: Mapping[TopicPartition, tuple[int, int | None]]
    ) -> frozenset[TopicPartition]:
        gained = set()
        for tp, (start, committed) in starts.items():
            if tp in self.assigned:
                continue
            self.positions[tp] = start
            if committed is not None:
                self.committed[tp] = committed
            gained.add(tp)
        self.assigned |= gained
        if gained:
            self.more = True
        return frozenset(gained)

    # -- reading -----------------------------------------------------------------------------------

    def mark_processed(self) -> None:
        """The application asked for more: what it was given last is processed."""
        if self.returned:
            self.processed.update(self.returned)
            self.returned = {}

    def plan(self) -> list[TopicPartition]:
        """The partitions to read from, not paused, starting at a rotating one."""
        tps = [tp for tp in self.positions if tp not in self.paused]
        if not tps:
            return []
        self.rotation = (self.rotation + 1) % len(tps)
        return tps[self.rotation :] + tps[: self.rotation]

    def take(self, tp: TopicPartition, position: int, rows: list[Row]) -> list[Message]:
        """The messages of ``rows``, read from ``position``, as handed out now."""
        if tp not in self.positions:
            return []
        name, partition = tp.topic, tp.partition
        out = [
            consumed_message(
                name,
                value,
                key,
                () if headers is None else decode_headers(headers),
                partition,
                offset,
                timestamp,
            )
            for offset, timestamp, key, value, headers in rows
        ]
        self.positions[tp] = self.returned[tp] = (rows[-1][0] + 1) if rows else position
        if not rows:
            self.returned.pop(tp, None)
        return out

    def pause(self, partitions: Collection[TopicPartition]) -> None:
        self.paused.update(tp for tp in partitions if tp in self.assigned)

    def resume(self, partitions: Collection[TopicPartition]) -> None:
        if self.paused & set(partitions):
            self.paused.difference_update(partitions)
            self.dirty = self.more = True

    def give_back(self, positions: Mapping[TopicPartition, int]) -> None:
        """The application stopped short in the batch handed out last: per partition,
        what lies below the offset is processed, the rest is read again from there."""
        for tp, offset in positions.items():
            if self.returned.pop(tp, None) is None:
                continue  # not in the last batch, or seeked or revoked since
            if self.processed.get(tp, -1) < offset:
                self.processed[tp] = offset
            self.positions[tp] = offset
            self.more = True

    def seek(self, tp: TopicPartition, offset: int) -> None:
        if tp not in self.assigned:
            raise ValueError(
                f"cannot seek {tp.topic}[{tp.partition}]: not assigned to this "
                f"consumer (assigned: {sorted(self.assigned)})"
            )
        self.positions[tp] = offset
        self.returned.pop(tp, None)
        self.more = True

    # -- committing --------------------------------------------------------------------------------

    def to_commit(self, only: Collection[TopicPartition] | None = None) -> Positions:
        """Processed positions not committed yet (of ``only``, if given)."""
        return {
            tp: offset
            for tp, offset in self.processed.items()
            if (only is None or tp in only) and self.committed.get(tp) != offset
        }

    def committed_now(
        self, positions: Mapping[TopicPartition, int], done: Iterable[TopicPartition]
    ) -> Positions:
        """``done`` of ``positions`` are committed: note them, and return them."""
        written = {tp: positions[tp] for tp in done}
        self.committed.update(written)
        return written

    def message_position(self, message: Message) -> tuple[TopicPartition, int]:
        if self.group is None:
            raise CommitError(
                "this consumer has no group, so there is nothing to commit to; "
                "pass group=... to consumer()"
            )
        tp = TopicPartition(message.topic, message.partition)  # type: ignore[arg-type]
        return tp, message.offset + 1  # type: ignore[operator]

    def committed_message(self, tp: TopicPartition, end: int) -> None:
        self.committed[tp] = end
        if self.processed.get(tp, -1) < end:
            self.processed[tp] = end

    def commit_due(self, now: float) -> bool:
        if self.auto_commit and now >= self.next_commit:
            self.next_commit = now + self.interval
            return True
        return False

    def wait_time(self, deadline: float | None, now: float) -> float | None:
        """How long to wait for news: until ``deadline`` or the next auto-commit."""
        limit = deadline
        if self.auto_commit and self.processed:
            limit = self.next_commit if limit is None else min(limit, self.next_commit)
        return None if limit is None else limit - now


# -- describing groups (admin) -----------------------------------------------------------------


def group_names(raw: sqlite3.Connection) -> list[str]:
    """Every group with a member or a committed position, sorted."""
    return [
        name
        for (name,) in raw.execute(
            "SELECT grp FROM members UNION SELECT grp FROM commits ORDER BY 1"
        )
    ]


def describe(raw: sqlite3.Connection, group: str) -> GroupDescription | None:
    """What ``Bus.describe_group`` shows (``None``: no member, nothing committed). A
    group is ``rebalancing`` while some member does not own exactly its share."""
    members = []
    settled = True
    owned: dict[str, set[TopicPartition]] = {}
    for topic, partition, member in raw.execute(
        "SELECT topic, partition, member FROM owners WHERE grp = ?", (group,)
    ):
        owned.setdefault(member, set()).add(TopicPartition(topic, partition))
    for member, client_id, host, target in raw.execute(
        "SELECT member, client_id, host, target FROM members WHERE grp = ? ORDER BY seq",
        (group,),
    ):
        share = frozenset(TopicPartition(t, p) for t, p in json.loads(target))
        settled = settled and owned.get(member, set()) == share
        members.append(GroupMember(member, client_id, host, share))
    committed: dict[TopicPartition, int | None] = {
        TopicPartition(t, p): o
        for t, p, o in raw.execute(
            "SELECT topic, partition, offset FROM commits WHERE grp = ?", (group,)
        )
    }
    if not members and not committed:
        return None
    counts = dict(raw.execute("SELECT name, partitions FROM topics").fetchall())
    wanted = set(committed).union(*(m.assignment for m in members))
    ends = {
        tp: high_watermark(raw, tp.topic, tp.partition)
        for tp in wanted
        if tp.partition < counts.get(tp.topic, 0)
    }
    state = "empty" if not members else "stable" if settled else "rebalancing"
    return group_description(group, state, members, committed, ends)
