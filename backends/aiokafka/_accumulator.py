"""What the producer needs of aiokafka's batches that aiokafka keeps to itself.

aiokafka never expires a batch of an idempotent producer (it retries until the broker
takes it, to keep sequence numbers gapless) and its ``stop()`` waits for every batch,
however long the broker is away. The producer's ``delivery_timeout`` and
``close(timeout)`` need two things aiokafka has no public call for:

- failing the batches that were never sent, so they are not written later. Such a
  batch has no sequence number yet (aiokafka numbers a batch when it first takes it
  for sending), so removing it leaves no gap for an idempotent producer;
- stopping the background sender at once, so that nothing queued leaves after close.

Every private name of aiokafka this project touches is in this module (the
``MessageAccumulator`` of ``AIOKafkaProducer._message_accumulator``: ``_batches``,
``_pending_batches``; a batch's ``_ctime`` and ``retry_count``; the
``Sender.sender_task``; the ``TransactionManager``'s producer id, its waiter and its
sequence numbers), and the producer's tests run on a real broker against the
aiokafka versions ``pyproject.toml`` allows. A batch that was sent at least once is
never removed here: it may be on the broker already.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable
from typing import Any

#: What a failed batch's messages get: ``error(topic, sent)``, ``sent`` True for a batch
#: that was sent at least once (it may have been written).
ErrorFor = Callable[[str, bool], BaseException]


def fail_unsent(raw: Any, created_before: float, error: ErrorFor) -> int:
    """Fail and remove every batch of ``raw`` not yet sent that was started before
    ``created_before`` (``time.monotonic()``); returns how many. The messages' futures
    get ``error(topic, False)``; nothing of those batches is written."""
    accumulator = raw._message_accumulator
    failed = 0
    for tp, batches in list(accumulator._batches.items()):
        kept: collections.deque[Any] = collections.deque()
        for batch in batches:
            if batch.retry_count == 0 and batch._ctime <= created_before:
                batch.failure(exception=error(tp.topic, False))
                failed += 1
            else:
                kept.append(batch)
        if kept:
            accumulator._batches[tp] = kept
        else:
            del accumulator._batches[tp]
    return failed


def forget_producer_id(raw: Any) -> bool:
    """Make an idempotent (not transactional) ``raw`` ask for a new producer id before
    it sends its next batch, numbering every partition from 0 again; whether it did.
    aiokafka's sender asks for an id whenever it has none."""
    txn = getattr(raw, "_txn_manager", None)
    if txn is None or getattr(txn, "transactional_id", None) or not txn.has_pid():
        return False
    txn._pid_and_epoch = type(txn._pid_and_epoch)(-1, -1)  # aiokafka's "no producer id"
    txn._pid_waiter = asyncio.get_running_loop().create_future()
    txn._sequence_numbers.clear()
    return True


async def abandon(raw: Any, error: ErrorFor, timeout: float) -> None:
    """Give up on everything ``raw`` still holds and stop it within ``timeout``: the
    messages of each batch get ``error(topic, sent)``, ``sent`` True for a batch sent
    at least once (in flight, or waiting to be retried); the sender stops, so nothing
    more leaves. A request already on the wire may still be written by the broker."""
    deadline = time.monotonic() + timeout
    accumulator = raw._message_accumulator
    for batch in list(accumulator._pending_batches):
        batch.failure(exception=error(batch.tp.topic, True))
    for batches in list(accumulator._batches.values()):
        for batch in batches:
            batch.failure(exception=error(batch.tp.topic, batch.retry_count > 0))
    accumulator._batches.clear()
    sender = getattr(raw, "_sender", None)
    task = getattr(sender, "sender_task", None)
    while task is not None and not task.done():
        task.cancel()  # again and again: a cancelled sender waits for its requests
        left = deadline - time.monotonic()
        if left <= 0:
            break
        await asyncio.wait({task}, timeout=min(left, 0.1))
    await stop(raw, max(0.05, deadline - time.monotonic()))


async def stop(raw: Any, timeout: float) -> None:
    """``raw.stop()``, given up after ``timeout`` (its connections go with it)."""
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(raw.stop(), timeout)
