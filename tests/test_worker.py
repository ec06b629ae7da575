"""Workers on memory://: the arguments they refuse, the pure rules they share
(``bus._work``: retry policy, dead-letter message, lanes) as properties, signals, and
the retry bound that keeps a member in its group."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bus
from bus._work import DLT_HEADERS, RUN, Lanes, dead_letter_message, error_type
from bus.testing import strategies as bst
from bus.testing.helpers import fresh_url


@pytest.fixture
def b() -> Iterator[bus.Bus]:
    with fresh_url("memory") as url, bus.connect(url) as connection:
        connection.create_topic("orders", partitions=2)
        yield connection


def _noop(message: bus.Message) -> None:
    pass


# -- arguments ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "error", "said"),
    [
        ({"concurrency": 0}, ValueError, "concurrency must be an int of at least 1"),
        ({"concurrency": True}, ValueError, "concurrency must be an int"),
        ({"concurrency": 5000}, ValueError, "at most 1024"),
        ({"retry": 3}, TypeError, "retry must be a bus.Retry"),
        ({"dead_letter": ""}, TypeError, "dead_letter must be a topic name"),
        ({"dead_letter": "{topic}"}, bus.ConfigError, "is topic 'orders' itself"),
        ({"dead_letter": "bad name!"}, bus.ConfigError, "makes 'bad name!'"),
        ({"shutdown_timeout": -1}, ValueError, "shutdown_timeout must be"),
        ({"shutdown_timeout": float("inf")}, ValueError, "shutdown_timeout must be"),
        ({"auto_commit": True}, bus.ConfigError, "takes no auto_commit"),
        ({"no_such_option": 1}, bus.ConfigError, "no_such_option"),
        ({"group": None}, TypeError, "a worker needs a group"),
    ],
)
def test_a_worker_refuses_bad_arguments_when_it_is_made(
    b: bus.Bus, arguments: dict[str, Any], error: type[Exception], said: str
) -> None:
    kwargs: dict[str, Any] = {"group": "g", **arguments}
    with pytest.raises(error, match=said.replace("(", r"\(").replace("!", "!")):
        b.worker(_noop, "orders", **kwargs)
    with pytest.raises(error, match=said.replace("(", r"\(")):
        b.async_worker(_noop, "orders", **kwargs)


def test_a_handler_must_be_callable(b: bus.Bus) -> None:
    with pytest.raises(TypeError, match="handler must be callable"):
        b.worker("handle", "orders", group="g")  # type: ignore[arg-type]


def test_a_worker_needs_a_topic(b: bus.Bus) -> None:
    with pytest.raises(TypeError, match="at least one topic"):
        b.worker(_noop, group="g")


@pytest.mark.parametrize(
    ("kwargs", "said"),
    [
        ({"attempts": 0}, "attempts must be an int of at least 1"),
        ({"attempts": 2.5}, "attempts must be an int"),
        ({"backoff": -0.1}, "backoff must be a finite number"),
        ({"backoff": float("nan")}, "backoff must be a finite number"),
        ({"max_backoff": float("inf")}, "max_backoff must be a finite number"),
        ({"backoff": 2.0, "max_backoff": 1.0}, r"max_backoff \(1\) must be at least backoff \(2\)"),
    ],
)
def test_retry_refuses_what_cannot_be_waited(kwargs: dict[str, Any], said: str) -> None:
    with pytest.raises(ValueError, match=said):
        bus.Retry(**kwargs)


def test_a_worker_runs_once(b: bus.Bus) -> None:
    worker = b.worker(_noop, "orders", group="g")
    worker.stop()
    worker.run()  # stopped before it ran: returns at once
    with pytest.raises(RuntimeError, match="runs once"):
        worker.run()


# -- the pure rules -------------------------------------------------------------------------


class _Custom(Exception):
    pass


@given(
    message=bst.messages(),
    partition=st.integers(0, 2**31 - 1),
    offset=st.integers(0, 2**63 - 2),
    text=st.text(max_size=5000),
)
def test_a_dead_letter_keeps_the_message_and_says_where_it_came_from(
    message: bus.Message, partition: int, offset: int, text: str
) -> None:
    raw = message.replace(partition=partition, offset=offset)
    dead = dead_letter_message("{topic}.DLT", raw, _Custom(text))
    assert dead.topic == f"{raw.topic}.DLT"
    assert (dead.key, dead.value) == (raw.key, raw.value)
    kept = [(k, v) for k, v in raw.headers if k not in DLT_HEADERS]
    assert list(dead.headers[: len(kept)]) == kept
    added = dict(dead.headers[len(kept) :])
    assert list(added) == list(DLT_HEADERS)
    assert added["bus.dlt.topic"] == raw.topic.encode()
    assert int(added["bus.dlt.partition"]) == partition
    assert int(added["bus.dlt.offset"]) == offset
    assert added["bus.dlt.error.type"] == f"{__name__}._Custom".encode()
    said = added["bus.dlt.error.message"].decode()
    assert len(said) <= 4000
    assert text.startswith(said.removesuffix("…"))


def test_error_types_are_named_as_users_import_them() -> None:
    assert error_type(ValueError()) == "ValueError"
    assert error_type(bus.SerializationError("x")) == "bus.SerializationError"
    assert error_type(_Custom()) == f"{__name__}._Custom"


@settings(max_examples=200)
@given(
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("add"), st.lists(st.integers(0, 3), max_size=300)),
            st.tuples(st.just("take"), st.none()),
            st.tuples(st.just("finish"), st.integers(0, 3)),
            st.tuples(st.just("revoke"), st.integers(0, 3)),
        ),
        max_size=60,
    )
)
def test_lanes_hand_each_partition_out_in_order_to_one_runner_at_a_time(
    steps: list[tuple[str, Any]],
) -> None:
    lanes = Lanes()
    next_offset = dict.fromkeys(range(4), 0)
    handed: dict[int, list[int]] = {p: [] for p in range(4)}
    running: dict[int, Any] = {}  # partition -> (lane, run)
    for kind, arg in steps:
        if kind == "add":
            batch = []
            for p in arg:
                batch.append(bus.Message("t", b"", partition=p, offset=next_offset[p]))
                next_offset[p] += 1
            lanes.add(batch)
        elif kind == "take":
            taken = lanes.take()
            if taken is None:
                continue
            lane, run = taken
            p = lane.tp.partition
            assert p not in running, "one lane, two runners"
            assert 0 < len(run) <= RUN
            running[p] = (lane, run)
            handed[p] += [m.offset for m in run]
        elif kind == "finish" and arg in running:
            lane, run = running.pop(arg)
            lane.done = run[-1]
            lanes.release(lane)
        elif kind == "revoke":
            gone = lanes.revoke({bus.TopicPartition("t", arg)})
            if arg in running:
                assert gone and gone[0].gone
                running.pop(arg)
            handed[arg].append(-1)  # a new owner starts again after this
    for offsets in handed.values():
        for segment in _split(offsets):
            assert segment == sorted(segment) and len(set(segment)) == len(segment)
    assert lanes.waiting == sum(len(lane.queue) for lane in lanes.lanes.values())


def _split(offsets: list[int]) -> Iterator[list[int]]:
    segment: list[int] = []
    for o in offsets:
        if o == -1:
            yield segment
            segment = []
        else:
            segment.append(o)
    yield segment


# -- the retry bound ------------------------------------------------------------------------


def test_retries_give_up_before_the_member_would_overstay_max_poll_interval(b: bus.Bus) -> None:
    with b.producer() as producer:
        producer.send("orders", b"poison", partition=0)
    calls: list[float] = []

    def fails(message: bus.Message) -> None:
        calls.append(time.monotonic())
        raise ConnectionError("down")

    worker = b.worker(
        fails, "orders", group="g", offset_reset="earliest", dead_letter="orders.DLT",
        retry=bus.Retry(attempts=1000, backoff=0.1, max_backoff=0.1),
        session_timeout=1.0, heartbeat_interval=0.2, max_poll_interval=1.0,
    )  # fmt: skip
    with b.consumer("orders.DLT", offset_reset="earliest") as dlt:
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        try:
            dead = dlt.poll(timeout=30)
        finally:
            worker.stop()
            thread.join(30)
    assert dead is not None and dead.value == b"poison"
    assert 2 <= len(calls) < 1000
    assert calls[-1] - calls[0] <= 0.5  # half of max_poll_interval


# -- signals --------------------------------------------------------------------------------


def _signal_soon(signum: int, seen: threading.Event) -> threading.Thread:
    def send() -> None:
        assert seen.wait(30)
        os.kill(os.getpid(), signum)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_a_worker_run_in_the_main_thread(b: bus.Bus, signum: int) -> None:
    before = signal.getsignal(signum)
    with b.producer() as producer:
        producer.send("orders", b"one", partition=0)
    seen = threading.Event()

    def handle(message: bus.Message) -> None:
        seen.set()

    sender = _signal_soon(signum, seen)
    b.worker(handle, "orders", group="g", offset_reset="earliest").run()  # returns
    sender.join(30)
    assert signal.getsignal(signum) is before


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_an_async_worker_run_in_the_main_thread(b: bus.Bus, signum: int) -> None:
    before = signal.getsignal(signum)
    seen = threading.Event()

    async def handle(message: bus.Message) -> None:
        seen.set()

    async def main() -> None:
        producer = b.async_producer()
        await producer.send("orders", b"one", partition=0)
        await producer.close()
        await b.async_worker(handle, "orders", group="g", offset_reset="earliest").run()

    sender = _signal_soon(signum, seen)
    asyncio.run(asyncio.wait_for(main(), 60))
    sender.join(30)
    assert signal.getsignal(signum) is before


# -- without pause, and when the transport goes away ---------------------------------------


@pytest.mark.parametrize("pausing", [True, False], ids=["pause", "no pause"])
def test_a_worker_stops_fetching_a_partition_its_handler_is_far_behind_on(
    b: bus.Bus, pausing: bool
) -> None:
    from bus._work import HIGH_WATER, POLL_BATCH, RUN

    assert "pause" in b.capabilities
    if not pausing:
        b.capabilities = b.capabilities - {"pause"}  # as a backend that cannot pause
    total = 3 * HIGH_WATER
    with b.producer() as producer:
        producer.send_batch([bus.Message("orders", b"%d" % i, partition=0) for i in range(total)])
    release = threading.Event()
    handled: list[int] = []

    def slow_start(message: bus.Message) -> None:
        release.wait(30)
        handled.append(message.offset or 0)
        if len(handled) == total:
            worker.stop()

    worker = b.worker(slow_start, "orders", group="g", offset_reset="earliest")
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        # the runner holds up to RUN of what was fetched, the lane the rest
        while worker._lanes.waiting < HIGH_WATER - RUN and time.monotonic() < deadline:
            time.sleep(0.01)
        assert worker._lanes.waiting >= HIGH_WATER - RUN
        quiet = time.monotonic() + 0.5  # several fetch turns, none of which polls
        while time.monotonic() < quiet:
            assert worker._lanes.waiting < HIGH_WATER + POLL_BATCH
            time.sleep(0.01)
    finally:
        release.set()
    thread.join(60)
    assert handled == list(range(total))


def test_a_worker_whose_bus_closes_raises_and_leaves_no_thread_behind(b: bus.Bus) -> None:
    with b.producer() as producer:
        producer.send("orders", b"one", partition=0)
    seen = threading.Event()
    errors: list[BaseException] = []
    worker = b.worker(lambda m: seen.set(), "orders", group="g", offset_reset="earliest")

    def run() -> None:
        try:
            worker.run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert seen.wait(30)
    b.close()
    thread.join(30)
    assert not thread.is_alive()
    assert [type(e) for e in errors] == [bus.ClosedError]
    assert not [t for t in threading.enumerate() if t.name.startswith("bus-worker-")]


# -- interceptors around the handler ----------------------------------------------------------


class _Around(bus.Interceptor):
    """Notes what runs inside its ``processing``; ``fail`` makes entering or leaving raise."""

    def __init__(self, fail: str | None = None):
        self.fail = fail
        self.inside: list[Any] = []
        self.depth = threading.local()

    def processing(self, message: bus.Message) -> Any:
        @contextlib.contextmanager
        def around() -> Iterator[None]:
            if self.fail == "enter":
                raise RuntimeError("an interceptor with a bug")
            self.depth.n = 1
            try:
                yield
            finally:
                self.depth.n = 0
                if self.fail == "leave":
                    raise RuntimeError("an interceptor with a bug")

        return around()


@pytest.mark.parametrize("fail", [None, "enter", "leave"])
def test_a_handler_runs_inside_the_interceptors_processing_and_a_raising_one_loses_nothing(
    b: bus.Bus, fail: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    with b.producer() as producer:
        for i in range(6):
            producer.send("orders", b"%d" % i, partition=i % 2)
    around = _Around(fail)
    handled: list[tuple[bytes | None, int]] = []

    def handle(message: bus.Message) -> None:
        handled.append((message.value, getattr(around.depth, "n", 0)))
        if len(handled) == 6:
            worker.stop()

    worker = b.worker(
        handle, "orders", group="g", concurrency=2, offset_reset="earliest",
        interceptors=[around],
    )  # fmt: skip
    worker.run()
    assert sorted(v for v, _ in handled) == [b"%d" % i for i in range(6)]
    assert {depth for _, depth in handled} == {0 if fail == "enter" else 1}
    logged = [r.getMessage() for r in caplog.records if r.name == "bus"]
    if fail == "enter":
        assert any("raised in processing" in m for m in logged)
    elif fail == "leave":
        assert any("raised leaving processing" in m for m in logged)
    with b.consumer("orders", group="g") as after:  # every one was committed
        assert after.poll(timeout=0.2) is None
