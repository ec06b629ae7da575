"""Cross-process throughput and latency of the ``sqlite://`` backend against kombu's
SQLAlchemy transport on SQLite.

Every timed run uses a fresh database file in a new temporary directory and **separate
processes** (``multiprocessing``, start method ``spawn``): one producer process and one
consumer process, or one consumer process reading what the parent wrote. Each child
connects, makes its client (and, for ``send_batch``, its ``bus.Message`` inputs), says
it is ready and waits for a start signal; the parent notes ``time.monotonic_ns()``
(CLOCK_MONOTONIC, one clock for every process on Linux) and gives the signal. A run
ends when the consumer process has read its last message; rates are messages / (that
moment - the start), CPU the two children's CPU seconds over the same span.

Cases (ours, then kombu doing the same work, in turns):

* ``sqlite sync enqueue``: round trip. The producer process ``enqueue``s N values of
  100 bytes one by one, then ``flush()``; meanwhile the consumer process (no group,
  ``offset_reset="earliest"``) reads them with ``poll_batch(500)``. kombu: the producer
  process ``Producer.publish(value, serializer=None)`` N times; the consumer process
  ``SimpleQueue(no_ack=True).get_nowait()`` until N, pausing on ``Empty`` as our
  consumer does (1 ms, doubling up to 10 ms: ``sqlite://``'s ``max_check_interval``).
* ``sqlite sync send_batch``: the same round trip, our producer calling ``send_batch``
  with chunks of 1,000 prebuilt messages (``--chunk``); kombu as above (it has no batch
  publish).
* ``sqlite sync poll_batch``: consumer throughput. The parent writes M messages
  (``send_batch``; kombu: ``publish``) before the children start; the consumer process
  reads all of them with ``poll_batch(500)`` (kombu: ``get_nowait()``).
* ``sqlite sync latency``: produce-to-consume latency. The producer process ``send``s
  one message every 5-10 ms (uniform, seeded), the ``monotonic_ns()`` before the call
  in the first 20 bytes of its value; the consumer process notes ``monotonic_ns()``
  when ``poll_batch`` returns, and records the difference for each message. Median
  and 90th percentile over 300 messages (``--latency-count``). The row's rates are
  the paced rates; the latency fields hold the goal.

Every run must read exactly the messages sent, the last one (offset N-1 on ours)
carrying the value sent, and nothing after it; otherwise the benchmark fails.

kombu moves far fewer messages per run (``--kombu-count``, default 2,000): it makes
one transaction per publish and one ``BEGIN IMMEDIATE`` transaction per get, a few
hundred a second. Rates are per message.

Usage: ``python -m bench.sqlite [--count N] [--quick] [--rounds R] [--only TEXT]``.
"""

from __future__ import annotations

import argparse
import importlib
import multiprocessing
import queue
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bus
from bench._common import (
    BenchError,
    Contender,
    Run,
    Sample,
    alternate,
    check,
    environment,
    environment_after,
    expect_count,
    in_case_order,
    log,
    message_chunks,
    parser,
    payload,
    report,
    row,
    save,
    selected,
    settle,
    verify_read,
    with_other_cases,
)

if TYPE_CHECKING:
    from multiprocessing.synchronize import Event

PREFIX = "sqlite "
ENQUEUE = "sqlite sync enqueue"
SEND_BATCH = "sqlite sync send_batch"
POLL_BATCH = "sqlite sync poll_batch"
LATENCY = "sqlite sync latency"
CASES = (ENQUEUE, SEND_BATCH, POLL_BATCH, LATENCY)
KOMBU_ROUND_TRIP = "kombu sqla+sqlite publish + SimpleQueue.get_nowait (2 processes)"
KOMBU_DRAIN = "kombu sqla+sqlite SimpleQueue.get_nowait"
KOMBU_LATENCY = "kombu sqla+sqlite publish every 5-10 ms"

TOPIC = "bench"
SIZE = 100
VALUE = payload(SIZE)
STAMP = 20  # bytes of a latency message's value that hold its send time
POLL = 500  # poll_batch(max_messages)
POLL_TIMEOUT = 1.0
DEFAULT_CHUNK = 1000
KOMBU_CAP = 2_000
LATENCY_COUNT = 300
PACE = (0.005, 0.010)  # seconds between two latency messages, uniform
SEED = 10
#: kombu's consumer pauses on Empty as a waiting sqlite:// consumer does.
FIRST_PAUSE, MAX_PAUSE = 0.001, 0.01
#: Longest any child may take to get ready, or to finish its run.
DEADLINE = 180.0
PACKAGES = ["polybus", "polybus-sqlite", "kombu", "sqlalchemy"]


# -- the child processes ----------------------------------------------------------------------


@dataclass(frozen=True)
class Started:
    """When a child's timed part began: the start signal seen, its CPU seconds then."""

    cpu: float

    def done(self, **result: Any) -> dict[str, Any]:
        """The child's result: ``result``, the end (``monotonic_ns``) and CPU seconds."""
        end = time.monotonic_ns()
        return {**result, "end_ns": end, "cpu": time.process_time() - self.cpu}


def _start(ready: Event, go: Event) -> Started:
    """Say this child is ready, wait for the signal; the timed part begins."""
    ready.set()
    if not go.wait(DEADLINE):
        raise BenchError("no start signal")
    return Started(time.process_time())


def _kombu_api() -> Any:
    """The ``kombu`` package, untyped: its hints are partial (untyped calls), and this
    module is type-checked strictly."""
    return importlib.import_module("kombu")


def _kombu(url: str, name: str) -> tuple[Any, Any, Any]:
    """A kombu connection on ``url``, its exchange and queue ``name`` (declared: the
    engine, the session and the queue's row exist before the clock starts)."""
    kombu = _kombu_api()
    conn = kombu.Connection(url)
    exchange = kombu.Exchange(name, type="direct")
    q = kombu.Queue(name, exchange, routing_key=name)
    q(conn.default_channel).declare()
    return conn, exchange, q


def sqlite_produce(spec: dict[str, Any], ready: Event, go: Event) -> dict[str, Any]:
    n, chunk = spec["n"], spec.get("chunk")
    with bus.connect(spec["url"]) as b:
        producer = b.producer()
        chunks = message_chunks(TOPIC, VALUE, n, chunk) if chunk else None
        enqueue, send_batch, value = producer.enqueue, producer.send_batch, VALUE
        sent = 0
        began = _start(ready, go)
        if chunks is None:
            for _ in range(n):
                enqueue(TOPIC, value)
            producer.flush()
            sent = n
        else:
            for messages in chunks:
                sent += len(send_batch(messages))
        result = began.done(sent=sent)
        producer.close()
    return result


def sqlite_consume(spec: dict[str, Any], ready: Event, go: Event) -> dict[str, Any]:
    n = spec["n"]
    with bus.connect(spec["url"]) as b:
        consumer = b.consumer(TOPIC, offset_reset="earliest")
        poll_batch = consumer.poll_batch
        read = 0
        last = None
        began = _start(ready, go)
        deadline = time.monotonic() + DEADLINE
        while read < n:
            batch = poll_batch(POLL, timeout=POLL_TIMEOUT)
            if batch:
                read += len(batch)
                last = batch[-1]
            elif time.monotonic() > deadline:
                break
        result = began.done(
            read=read,
            last_offset=None if last is None else last.offset,
            last_value=None if last is None else last.value,
        )
        result["more"] = len(poll_batch(POLL, timeout=0))
        consumer.close()
    return result


def sqlite_stamp(spec: dict[str, Any], ready: Event, go: Event) -> dict[str, Any]:
    pauses = _pauses(spec["n"])
    with bus.connect(spec["url"]) as b:
        producer = b.producer()
        send, sleep, clock = producer.send, time.sleep, time.monotonic_ns
        began = _start(ready, go)
        for pause in pauses:
            sleep(pause)
            send(TOPIC, _stamped(clock()))
        result = began.done(sent=len(pauses))
        producer.close()
    return result


def sqlite_stamp_read(spec: dict[str, Any], ready: Event, go: Event) -> dict[str, Any]:
    n = spec["n"]
    with bus.connect(spec["url"]) as b:
        consumer = b.consumer(TOPIC, offset_reset="earliest")
        poll_batch, clock = consumer.poll_batch, time.monotonic_ns
        latencies: list[int] = []
        began = _start(ready, go)
        deadline = time.monotonic() + DEADLINE
        while len(latencies) < n and time.monotonic() < deadline:
            batch = poll_batch(100, timeout=POLL_TIMEOUT)
            now = clock()
            latencies += [now - int(m.value[:STAMP]) for m in batch if m.value]
        result = began.done(read=len(latencies), latencies_ns=latencies)
        result["more"] = len(poll_batch(POLL, timeout=0))
        consumer.close()
    return result


def kombu_produce(spec: dict[str, Any], ready: Event, go: Event) -> dict[str, Any]:
    n, name = spec["n"], spec["queue"]
    conn, exchange, _ = _kombu(spec["url"], name)
    with conn:
        producer = _kombu_api().Producer(
            conn.default_channel, exchange=exchange, auto_declare=False
        )
        publish, value = producer.publish, VALUE
        began = _start(ready, go)
        for _ in range(n):
            publish(value, routing_key=name, serializer=None)
        return began.done(sent=n)


def kombu_consume(spec: dict[str, Any], ready: Event, go: Event) -> dict[str, Any]:
    n = spec["n"]
    conn, _, q = _kombu(spec["url"], spec["queue"])
    with conn:
        simple = conn.SimpleQueue(q, no_ack=True)
        get_nowait, sleep = simple.get_nowait, time.sleep
        read = 0
        last: Any = None
        pause = FIRST_PAUSE
        began = _start(ready, go)
        deadline = time.monotonic() + DEADLINE
        while read < n:
            try:
                last = get_nowait()
            except queue.Empty:
                if time.monotonic() > deadline:
                    break
                sleep(pause)
                pause = min(2 * pause, MAX_PAUSE)
                continue
            read += 1
            pause = FIRST_PAUSE
        result = began.done(read=read, last_value=None if last is None else last.body)
        result["more"] = _kombu_more(get_nowait)
        simple.close()
    return result


def kombu_stamp(spec: dict[str, Any], ready: Event, go: Event) -> dict[str, Any]:
    name = spec["queue"]
    pauses = _pauses(spec["n"])
    conn, exchange, _ = _kombu(spec["url"], name)
    with conn:
        producer = _kombu_api().Producer(
            conn.default_channel, exchange=exchange, auto_declare=False
        )
        publish, sleep, clock = producer.publish, time.sleep, time.monotonic_ns
        began = _start(ready, go)
        for pause in pauses:
            sleep(pause)
            publish(_stamped(clock()), routing_key=name, serializer=None)
        return began.done(sent=len(pauses))


def kombu_stamp_read(spec: dict[str, Any], ready: Event, go: Event) -> dict[str, Any]:
    n = spec["n"]
    conn, _, q = _kombu(spec["url"], spec["queue"])
    with conn:
        simple = conn.SimpleQueue(q, no_ack=True)
        get_nowait, sleep, clock = simple.get_nowait, time.sleep, time.monotonic_ns
        latencies: list[int] = []
        pause = FIRST_PAUSE
        began = _start(ready, go)
        deadline = time.monotonic() + DEADLINE
        while len(latencies) < n and time.monotonic() < deadline:
            try:
                message = get_nowait()
            except queue.Empty:
                sleep(pause)
                pause = min(2 * pause, MAX_PAUSE)
                continue
            latencies.append(clock() - int(message.body[:STAMP]))
            pause = FIRST_PAUSE
        result = began.done(read=len(latencies), latencies_ns=latencies)
        result["more"] = _kombu_more(get_nowait)
        simple.close()
    return result


def _kombu_more(get_nowait: Callable[[], Any]) -> int:
    try:
        get_nowait()
    except queue.Empty:
        return 0
    return 1


def _pauses(n: int) -> list[float]:
    rng = random.Random(SEED)
    return [rng.uniform(*PACE) for _ in range(n)]


def _stamped(now_ns: int) -> bytes:
    """A 100-byte value whose first ``STAMP`` bytes are ``now_ns`` in decimal."""
    return b"%020d" % now_ns + VALUE[STAMP:]


ROLES: dict[str, Callable[[dict[str, Any], Event, Event], dict[str, Any]]] = {
    "sqlite produce": sqlite_produce,
    "sqlite consume": sqlite_consume,
    "sqlite stamp": sqlite_stamp,
    "sqlite stamp read": sqlite_stamp_read,
    "kombu produce": kombu_produce,
    "kombu consume": kombu_consume,
    "kombu stamp": kombu_stamp,
    "kombu stamp read": kombu_stamp_read,
}


def _child(index: int, role: str, spec: dict[str, Any], ready: Event, go: Event, out: Any) -> None:
    """A child process: run ``role``, put ``(index, result)`` (or its error) on ``out``."""
    try:
        out.put((index, ROLES[role](spec, ready, go)))
    except BaseException as error:
        out.put((index, {"error": f"{role}: {error!r}\n{traceback.format_exc()}"}))
        ready.set()


def _spawn(roles: Sequence[tuple[str, dict[str, Any]]]) -> tuple[int, list[dict[str, Any]]]:
    """Start one process per ``(role, spec)``, wait until all are ready, give the start
    signal; return when it was given (``monotonic_ns``) and every child's result."""
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    out = ctx.Queue()
    readies = [ctx.Event() for _ in roles]
    children = [
        ctx.Process(target=_child, args=(i, role, spec, readies[i], go, out), daemon=True)
        for i, (role, spec) in enumerate(roles)
    ]
    results: dict[int, dict[str, Any]] = {}
    try:
        for child in children:
            child.start()
        for ready in readies:
            if not ready.wait(DEADLINE):
                raise BenchError(f"a child of {[r for r, _ in roles]} never got ready")
        start = time.monotonic_ns()
        go.set()
        while len(results) < len(roles):
            try:
                index, result = out.get(timeout=DEADLINE)
            except queue.Empty:
                raise BenchError(f"{[r for r, _ in roles]}: no result in time") from None
            if "error" in result:
                raise BenchError(result["error"])
            results[index] = result
        for child in children:
            child.join(DEADLINE)
    finally:
        for child in children:
            if child.is_alive():
                child.kill()
                child.join()
    return start, [results[i] for i in range(len(roles))]


# -- runs -------------------------------------------------------------------------------------


@contextmanager
def _database() -> Iterator[Path]:
    """A fresh database path in a new temporary directory, removed afterwards."""
    where = Path(tempfile.mkdtemp(prefix="bench-sqlite-"))
    try:
        yield where / "bench.db"
    finally:
        shutil.rmtree(where, ignore_errors=True)


def _sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"  # an absolute path: sqlite:////tmp/...


def _kombu_url(path: Path) -> str:
    return f"sqla+sqlite:///{path}"


@dataclass
class Notes:
    """What each run of a contender measured besides its ``Run``, by contender name (the
    warm-up run too: the timed ones are the last ``rounds``)."""

    runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def add(self, name: str, **facts: Any) -> None:
        self.runs.setdefault(name, []).append(facts)

    def last(self, name: str, rounds: int) -> list[dict[str, Any]]:
        return self.runs.get(name, [])[-rounds:]


NOTES = Notes()


def _seconds(start: int, end: int) -> float:
    return (end - start) / 1e9


def _check_read(case: str, got: dict[str, Any], n: int, offsets: bool) -> None:
    if offsets:
        verify_read(case, got["read"], n, got["last_offset"], got["last_value"], got["more"], VALUE)
    else:
        expect_count(case, got["read"], n)
        check(case, got["last_value"] == VALUE, "the last value is not what was sent")
        check(case, got["more"] == 0, f"{got['more']} more messages after the {n} expected")


def sqlite_round_trip(case: str, chunk: int | None) -> Callable[[int], Run]:
    def work(n: int) -> Run:
        with _database() as path:
            url = _sqlite_url(path)
            with bus.connect(url) as b:
                b.create_topic(TOPIC, partitions=1)
            start, (made, got) = _spawn(
                [("sqlite produce", {"url": url, "n": n, "chunk": chunk}),
                 ("sqlite consume", {"url": url, "n": n})]
            )  # fmt: skip
        check(case, made["sent"] == n, f"{made['sent']} deliveries for {n} messages")
        _check_read(case, got, n, offsets=True)
        NOTES.add(case, produce_s=_seconds(start, made["end_ns"]))
        return Run(got["read"], _seconds(start, got["end_ns"]), made["cpu"] + got["cpu"])

    return work


def kombu_round_trip(n: int) -> Run:
    with _database() as path:
        url, name = _kombu_url(path), f"bench-{uuid.uuid4().hex[:12]}"
        conn, _, _ = _kombu(url, name)
        conn.release()
        start, (made, got) = _spawn(
            [("kombu produce", {"url": url, "queue": name, "n": n}),
             ("kombu consume", {"url": url, "queue": name, "n": n})]
        )  # fmt: skip
    _check_read(KOMBU_ROUND_TRIP, got, n, offsets=False)
    NOTES.add(KOMBU_ROUND_TRIP, produce_s=_seconds(start, made["end_ns"]))
    return Run(got["read"], _seconds(start, got["end_ns"]), made["cpu"] + got["cpu"])


def sqlite_poll_batch(n: int) -> Run:
    with _database() as path:
        url = _sqlite_url(path)
        with bus.connect(url) as b, b.producer() as producer:
            b.create_topic(TOPIC, partitions=1)
            for messages in message_chunks(TOPIC, VALUE, n, DEFAULT_CHUNK):
                producer.send_batch(messages)
        start, (got,) = _spawn([("sqlite consume", {"url": url, "n": n})])
    _check_read(POLL_BATCH, got, n, offsets=True)
    return Run(got["read"], _seconds(start, got["end_ns"]), got["cpu"])


def kombu_drain(n: int) -> Run:
    with _database() as path:
        url, name = _kombu_url(path), f"bench-{uuid.uuid4().hex[:12]}"
        conn, exchange, _ = _kombu(url, name)
        with conn:
            producer = _kombu_api().Producer(
                conn.default_channel, exchange=exchange, auto_declare=False
            )
            for _ in range(n):
                producer.publish(VALUE, routing_key=name, serializer=None)
        start, (got,) = _spawn([("kombu consume", {"url": url, "queue": name, "n": n})])
    _check_read(KOMBU_DRAIN, got, n, offsets=False)
    return Run(got["read"], _seconds(start, got["end_ns"]), got["cpu"])


def _latency_run(name: str, start: int, made: dict[str, Any], got: dict[str, Any], n: int) -> Run:
    check(name, made["sent"] == n, f"{made['sent']} sent, expected {n}")
    expect_count(name, got["read"], n)
    check(name, got["more"] == 0, f"{got['more']} more messages after the {n} expected")
    ms = [x / 1e6 for x in got["latencies_ns"]]
    check(name, min(ms) >= 0, "a message arrived before it was sent: not one clock")
    NOTES.add(
        name,
        median_ms=statistics.median(ms),
        p90_ms=statistics.quantiles(ms, n=10)[-1],
        max_ms=max(ms),
    )
    return Run(got["read"], _seconds(start, got["end_ns"]), made["cpu"] + got["cpu"])


def sqlite_latency(n: int) -> Run:
    with _database() as path:
        url = _sqlite_url(path)
        with bus.connect(url) as b:
            b.create_topic(TOPIC, partitions=1)
        start, (made, got) = _spawn(
            [("sqlite stamp", {"url": url, "n": n}), ("sqlite stamp read", {"url": url, "n": n})]
        )
    return _latency_run(LATENCY, start, made, got, n)


def kombu_latency(n: int) -> Run:
    with _database() as path:
        url, name = _kombu_url(path), f"bench-{uuid.uuid4().hex[:12]}"
        conn, _, _ = _kombu(url, name)
        conn.release()
        start, (made, got) = _spawn(
            [("kombu stamp", {"url": url, "queue": name, "n": n}),
             ("kombu stamp read", {"url": url, "queue": name, "n": n})]
        )  # fmt: skip
    return _latency_run(KOMBU_LATENCY, start, made, got, n)


# -- rows -------------------------------------------------------------------------------------


def _round_trip_extra(mine: Sample, theirs: Sample, rounds: int) -> dict[str, Any]:
    """The producer's side of a round trip: messages / (its last send's return - start)."""
    out: dict[str, Any] = {}
    for side, sample in (("ours", mine), ("baseline", theirs)):
        name, n = sample.contender.name, sample.contender.n
        rates = [n / note["produce_s"] for note in NOTES.last(name, rounds)]
        out[f"{side}_produce_rate"] = round(max(rates))
        out[f"{side}_produce_runs"] = [round(r) for r in rates]
    return out


def _latency_extra(mine: Sample, theirs: Sample, rounds: int) -> dict[str, Any]:
    """Latency of the least disturbed round of each side (lowest median), every round's
    median, and how many times ours is lower."""
    out: dict[str, Any] = {}
    for side, sample in (("ours", mine), ("baseline", theirs)):
        notes = NOTES.last(sample.contender.name, rounds)
        best = min(notes, key=lambda note: note["median_ms"])
        out[f"{side}_latency_median_ms"] = round(best["median_ms"], 2)
        out[f"{side}_latency_p90_ms"] = round(best["p90_ms"], 2)
        out[f"{side}_latency_max_ms"] = round(best["max_ms"], 2)
        out[f"{side}_latency_medians_ms"] = [round(note["median_ms"], 2) for note in notes]
    ratio = out["baseline_latency_median_ms"] / out["ours_latency_median_ms"]
    out["latency_ratio"] = round(ratio, 2)
    log(
        f"  latency: ours median {out['ours_latency_median_ms']} ms, "
        f"p90 {out['ours_latency_p90_ms']} ms; kombu median "
        f"{out['baseline_latency_median_ms']} ms, p90 {out['baseline_latency_p90_ms']} ms"
    )
    return out


# -- main -------------------------------------------------------------------------------------


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = parser(
        "python -m bench.sqlite",
        (__doc__ or "").splitlines()[0],
        default_count=200_000,
        quick_count=20_000,
    )
    p.add_argument(
        "--chunk",
        type=int,
        default=DEFAULT_CHUNK,
        help=f"messages per send_batch call (default {DEFAULT_CHUNK})",
    )
    p.add_argument(
        "--consume-count",
        type=int,
        default=None,
        help="messages read per poll_batch run (default 5 x count)",
    )
    p.add_argument(
        "--kombu-count",
        type=int,
        default=None,
        help=f"messages per kombu throughput run (default min(count, {KOMBU_CAP:,}); --quick: 500)",
    )
    p.add_argument(
        "--latency-count",
        type=int,
        default=None,
        help=f"messages per latency run, ours and kombu (default {LATENCY_COUNT}; --quick: 100)",
    )
    p.add_argument(
        "--only",
        default=None,
        help="run only the cases whose name contains one of these comma-separated texts "
        "(e.g. 'poll_batch,latency'); their rows replace only theirs in the output",
    )
    args = settle(p.parse_args(argv))
    if args.consume_count is None:
        args.consume_count = 5 * args.count
    if args.kombu_count is None:
        args.kombu_count = min(args.count, 500 if args.quick else KOMBU_CAP)
    if args.latency_count is None:
        args.latency_count = 100 if args.quick else LATENCY_COUNT
    if min(args.chunk, args.consume_count, args.kombu_count) < 1 or args.latency_count < 10:
        raise SystemExit(
            "--chunk, --consume-count and --kombu-count must be at least 1, "
            "--latency-count at least 10"
        )
    return args


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    n, rounds, chunk, kn = args.count, args.rounds, args.chunk, args.kombu_count
    cases = selected(CASES, args.only)
    round_trip = Contender(KOMBU_ROUND_TRIP, kn, kombu_round_trip)
    pairs = {
        ENQUEUE: (
            Contender(ENQUEUE, n, sqlite_round_trip(ENQUEUE, None)),
            round_trip,
            {"path": "enqueue one by one, then flush(); poll_batch(500) in another process"},
        ),
        SEND_BATCH: (
            Contender(SEND_BATCH, n, sqlite_round_trip(SEND_BATCH, chunk)),
            round_trip,
            {"path": f"send_batch of {chunk} prebuilt Messages; poll_batch(500) elsewhere"},
        ),
        POLL_BATCH: (
            Contender(POLL_BATCH, args.consume_count, sqlite_poll_batch),
            Contender(KOMBU_DRAIN, kn, kombu_drain),
            {"path": f"poll_batch({POLL}) of what another process wrote"},
        ),
        LATENCY: (
            Contender(LATENCY, args.latency_count, sqlite_latency),
            Contender(KOMBU_LATENCY, args.latency_count, kombu_latency),
            {"path": "send() every 5-10 ms; poll_batch(100) elsewhere; paced rates"},
        ),
    }
    begun = time.perf_counter()
    start = environment(PACKAGES)
    log(
        f"bench.sqlite: {n:,} messages of {SIZE} bytes per round trip, "
        f"{args.consume_count:,} per poll_batch run, kombu {kn:,}, "
        f"{args.latency_count} per latency run; {rounds} round(s); every run in fresh "
        f"processes on a fresh file; {start['cpu_count']} CPUs, load {start['loadavg_1_5_15']}"
    )
    rows: list[dict[str, Any]] = []
    try:
        for case in cases:
            ours, peer, extra = pairs[case]
            mine, theirs = alternate(ours, peer, rounds, warmup=100)
            if case == LATENCY:
                extra = {**extra, **_latency_extra(mine, theirs, rounds)}
            elif case != POLL_BATCH:
                extra = {**extra, **_round_trip_extra(mine, theirs, rounds)}
            rows.append(
                row(
                    case,
                    mine,
                    theirs,
                    size=SIZE,
                    partitions=1,
                    rounds=rounds,
                    processes="producer and consumer in separate processes (spawn)",
                    cpu="both children's CPU seconds",
                    **extra,
                )
            )
    except BenchError as error:
        log(f"bench.sqlite FAILED: {error}")
        return 1
    env = environment_after(
        PACKAGES,
        start,
        sqlite_library=sqlite3.sqlite_version,
        count=n,
        consume_count=args.consume_count,
        kombu_count=kn,
        latency_count=args.latency_count,
        chunk=chunk,
        rounds=rounds,
        database_dir=tempfile.gettempdir(),
        seconds=round(time.perf_counter() - begun, 1),
    )
    output: Path = args.output
    save(output, "sqlite", PREFIX, with_other_cases(output, rows, PREFIX, CASES), env)
    report(in_case_order(rows, CASES), rounds, env, output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
