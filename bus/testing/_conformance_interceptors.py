"""Conformance: interceptors (``bus.Interceptor``), through either API (``bus_api``).
The wrappers call them, so every backend gets them: ``on_send`` sees each message
before serialization and may change it, ``on_acknowledgement`` hears of each outcome
exactly once (in reverse order across interceptors); ``on_consume`` sees each batch
after deserialization, ``on_processed`` each message when the application asks for
the next one or commits it, ``on_commit`` each commit (the application's, and those
the consumer makes itself: auto-commit, rebalance, close); an interceptor that raises is
logged and skipped and loses nothing, ``close`` comes with the client's."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

import bus
from bus.testing._conformance_common import (
    NEVER,
    PARTITIONS,
    QUIET,
    needs,
    send_all,
    values,
)
from bus.testing.apis import BusAPI
from bus.testing.helpers import DEADLINE, consume, topic_partitions, wait_for_group

__all__ = ["TestConsumerInterceptors", "TestProducerInterceptors"]


class _Recorder(bus.Interceptor):
    """Records every call; ``tag`` (if set) is added as a header by ``on_send``."""

    def __init__(self, name: str, calls: list[tuple[str, Any]], tag: bool = False):
        self.name = name
        self.calls = calls
        self.tag = tag
        self.lock = threading.Lock()
        self.acks: list[tuple[bus.Message, bus.Delivery | None, bus.BusError | None]] = []
        self.closed = 0

    def on_send(self, message: bus.Message) -> bus.Message:
        with self.lock:
            self.calls.append((f"{self.name}.send", message.value))
        if self.tag:
            return message.replace(headers=(*message.headers, ("trace", self.name.encode())))
        return message

    def on_acknowledgement(
        self, message: bus.Message, delivery: bus.Delivery | None, error: bus.BusError | None
    ) -> None:
        with self.lock:
            self.calls.append((f"{self.name}.ack", message.value))
            self.acks.append((message, delivery, error))

    def close(self) -> None:
        self.closed += 1


class _Raising(bus.Interceptor):
    def on_send(self, message: bus.Message) -> bus.Message:
        raise RuntimeError("an interceptor with a bug")

    def on_acknowledgement(self, *args: Any) -> None:
        raise RuntimeError("an interceptor with a bug")


class _NotAMessage(bus.Interceptor):
    def on_send(self, message: bus.Message) -> Any:
        return message.value


class TestProducerInterceptors:
    """``bus.Interceptor`` on producers: every way of producing is seen once by
    ``on_send`` and acknowledged once, what ``on_send`` returns is written, and one that
    raises loses nothing."""

    def test_every_way_of_producing_is_seen_once_and_acknowledged_once(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        calls: list[tuple[str, Any]] = []
        seen = _Recorder("a", calls)
        with bus_api.producer(interceptors=[seen]) as producer:
            sent = producer.send(bus_topic, b"send")
            producer.enqueue(bus_topic, b"enqueue")
            batch = producer.send_batch([bus.Message(bus_topic, b"batch")])
            producer.flush()
        assert sorted(v for kind, v in calls if kind == "a.send") == [b"batch", b"enqueue", b"send"]
        acks = {m.value: (d, e) for m, d, e in seen.acks}
        assert sorted(acks) == [b"batch", b"enqueue", b"send"] and len(seen.acks) == 3
        assert acks[b"send"] == (sent, None)
        assert acks[b"batch"] == (batch[0], None)
        delivery, error = acks[b"enqueue"]
        assert error is None and isinstance(delivery, bus.Delivery)
        assert seen.closed == 1

    def test_on_send_sees_the_value_before_serialization(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        calls: list[tuple[str, Any]] = []
        seen = _Recorder("a", calls)
        with bus_api.producer(interceptors=[seen], serializer="json") as producer:
            producer.send(bus_topic, {"n": 1})
        assert calls[0] == ("a.send", {"n": 1})
        with bus_api.consumer(bus_topic, offset_reset="earliest") as consumer:
            assert [m.value for m in consume(consumer, 1)] == [b'{"n":1}']

    @needs("headers")
    def test_what_on_send_returns_is_what_is_written(self, bus_api: BusAPI, bus_topic: str) -> None:
        calls: list[tuple[str, Any]] = []
        first, second = _Recorder("a", calls, tag=True), _Recorder("b", calls, tag=True)
        with bus_api.producer(interceptors=[first, second]) as producer:
            producer.send(bus_topic, b"v", headers={"app": b"1"})
        with bus_api.consumer(bus_topic, offset_reset="earliest") as consumer:
            (message,) = consume(consumer, 1)
        assert message.headers == (("app", b"1"), ("trace", b"a"), ("trace", b"b"))
        assert calls == [("a.send", b"v"), ("b.send", b"v"), ("b.ack", b"v"), ("a.ack", b"v")]
        assert second.acks[0][0].headers == message.headers  # as on_send returned it

    def test_a_failure_is_acknowledged_and_still_raised(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        calls: list[tuple[str, Any]] = []
        seen = _Recorder("a", calls)
        with bus_api.producer(interceptors=[seen]) as producer:
            with pytest.raises(bus.BusError) as raised:
                producer.send(bus_topic, b"nowhere", partition=99)
            outcomes = None
            try:
                producer.send_batch(
                    [
                        bus.Message(bus_topic, b"ok", partition=0),
                        bus.Message(bus_topic, b"no", partition=99),
                    ]
                )
            except bus.DeliveryError as error:
                outcomes = error.outcomes
            producer.enqueue(bus_topic, b"lost?", partition=99)
            with pytest.raises(bus.BusError):
                producer.flush()  # no on_delivery: the failure is not dropped
        assert outcomes is not None and isinstance(outcomes[1], bus.BusError)
        acks = {m.value: (d, e) for m, d, e in seen.acks}
        assert len(seen.acks) == 4
        assert acks[b"nowhere"] == (None, raised.value)
        assert isinstance(acks[b"ok"][0], bus.Delivery) and acks[b"ok"][1] is None
        assert acks[b"no"] == (None, outcomes[1])
        assert acks[b"lost?"][0] is None and isinstance(acks[b"lost?"][1], bus.BusError)

    def test_an_interceptor_that_raises_is_logged_and_loses_nothing(
        self, bus_api: BusAPI, bus_topic: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        calls: list[tuple[str, Any]] = []
        seen = _Recorder("a", calls)
        reported: list[Any] = []
        interceptors = [_Raising(), _NotAMessage(), seen]
        with (
            caplog.at_level(logging.ERROR, logger="bus"),
            bus_api.producer(interceptors=interceptors) as producer,
        ):
            producer.send(bus_topic, b"s")
            producer.enqueue(bus_topic, b"e", on_delivery=lambda d, e: reported.append(d))
            producer.send_batch([bus.Message(bus_topic, b"b")])
            producer.flush()
        assert len(reported) == 1 and isinstance(reported[0], bus.Delivery)
        assert len(seen.acks) == 3 and all(d is not None for _, d, _ in seen.acks)
        assert any("raised in on_send" in r.getMessage() for r in caplog.records)
        assert any("raised in on_acknowledgement" in r.getMessage() for r in caplog.records)
        assert any("not a bus.Message" in r.getMessage() for r in caplog.records)
        with bus_api.consumer(bus_topic, offset_reset="earliest") as consumer:
            assert sorted(m.value for m in consume(consumer, 3)) == [b"b", b"e", b"s"]

    def test_a_connections_interceptors_serve_each_of_its_producers(
        self, bus_api: BusAPI, bus_topic: str, bus_url: str
    ) -> None:
        calls: list[tuple[str, Any]] = []
        seen = _Recorder("a", calls)
        other = bus.connect(bus_url, interceptors=[seen])
        try:
            api = bus_api.using(other)
            for value in (b"1", b"2"):
                with api.producer() as producer:
                    send_all(producer, bus_topic, [value])
            with api.producer(interceptors=[]) as producer:  # a client's own option wins
                send_all(producer, bus_topic, [b"3"])
        finally:
            other.close()
        assert sorted(v for kind, v in calls if kind == "a.send") == [b"1", b"2"]
        assert seen.closed == 2


class _Watcher(bus.Interceptor):
    """Records what a consumer tells it; ``mark`` adds a header to what it hands out."""

    def __init__(self, mark: bool = False):
        self.mark = mark
        self.batches: list[list[Any]] = []
        self.processed: list[Any] = []
        self.commits: list[dict[bus.TopicPartition, int]] = []
        self.closed = 0

    def on_consume(self, messages: list[bus.Message]) -> list[bus.Message]:
        self.batches.append([m.value for m in messages])
        if self.mark:
            return [m.replace(headers=(*m.headers, ("seen", b"1"))) for m in messages]
        return messages

    def on_processed(self, message: bus.Message) -> None:
        self.processed.append(message.value)

    def on_commit(self, offsets: Any) -> None:
        self.commits.append(dict(offsets))

    def close(self) -> None:
        self.closed += 1


class _Dropping(bus.Interceptor):
    def on_consume(self, messages: list[bus.Message]) -> list[bus.Message]:
        return messages[1:]

    def on_processed(self, message: bus.Message) -> None:
        raise RuntimeError("an interceptor with a bug")

    def on_commit(self, offsets: Any) -> None:
        raise RuntimeError("an interceptor with a bug")


class TestConsumerInterceptors:
    """``bus.Interceptor`` on consumers: ``on_consume`` sees each batch after
    deserialization, ``on_processed`` when a message is processed, and one that
    misbehaves loses nothing."""

    def test_on_consume_sees_each_batch_after_deserialization(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        with bus_api.producer(serializer="json") as producer:
            for n in range(3):
                producer.send(bus_topic, {"n": n}, partition=0)
        watcher = _Watcher()
        options = {"offset_reset": "earliest", "deserializer": "json"}
        with bus_api.consumer(bus_topic, interceptors=[watcher], **options) as consumer:
            got = consume(consumer, 3)
        assert [m.value for m in got] == [{"n": 0}, {"n": 1}, {"n": 2}]
        assert [v for batch in watcher.batches for v in batch] == [m.value for m in got]
        assert watcher.closed == 1

    @needs("headers")
    def test_what_on_consume_returns_is_what_the_application_gets(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        with bus_api.producer() as producer:
            send_all(producer, bus_topic, [b"a", b"b"])
        with bus_api.consumer(
            bus_topic, offset_reset="earliest", interceptors=[_Watcher(mark=True)]
        ) as consumer:
            got = consume(consumer, 2)
        assert [m.headers for m in got] == [(("seen", b"1"),)] * 2

    @needs("consumer_groups")
    def test_a_message_is_processed_when_the_next_is_asked_for_or_it_is_committed(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        with bus_api.producer() as producer:
            send_all(producer, bus_topic, values("p", 4))
        watcher = _Watcher()
        options = {"offset_reset": "earliest", "auto_commit_interval": NEVER}
        group = f"{bus_topic}-g"
        with bus_api.consumer(bus_topic, group=group, interceptors=[watcher], **options) as c:
            first = consume(c, 1)[0]
            assert watcher.processed == []  # in the application's hands
            second = consume(c, 1)[0]
            assert watcher.processed == [first.value]
            c.commit(second)
            assert watcher.processed == [first.value, second.value]
            tp = bus.TopicPartition(bus_topic, 0)
            assert watcher.commits == [{tp: (second.offset or 0) + 1}]
            rest = []
            for message in c:  # iteration: each turn processes the one before
                rest.append(message)
                if len(rest) == 2:
                    break
            assert watcher.processed == [first.value, second.value, rest[0].value]
            c.commit()
            assert watcher.processed == [m.value for m in [first, second, *rest]]
            assert watcher.commits[-1] == {tp: (rest[-1].offset or 0) + 1}

    @needs("consumer_groups")
    def test_auto_commits_reach_on_commit(self, bus_api: BusAPI, bus_topic: str) -> None:
        with bus_api.producer() as producer:
            send_all(producer, bus_topic, values("a", 3))
        watcher = _Watcher()
        tp = bus.TopicPartition(bus_topic, 0)
        options = {"offset_reset": "earliest", "auto_commit_interval": 0.2}
        group = f"{bus_topic}-g"
        with bus_api.consumer(bus_topic, group=group, interceptors=[watcher], **options) as c:
            consume(c, 3)
            deadline = time.monotonic() + DEADLINE
            while {tp: 3} not in watcher.commits and time.monotonic() < deadline:
                assert c.poll(timeout=0.1) is None  # asking for more processed all three
        assert {tp: 3} in watcher.commits, watcher.commits
        assert all(set(c) == {tp} and 0 < c[tp] <= 3 for c in watcher.commits), watcher.commits
        with bus_api.producer() as producer:  # what it reported is what the group has
            producer.send(bus_topic, b"after", partition=0)
        with bus_api.consumer(bus_topic, group=group, **options) as after:
            assert [m.value for m in consume(after, 1)] == [b"after"]

    @needs("consumer_groups")
    def test_the_commit_of_close_reaches_on_commit(self, bus_api: BusAPI, bus_topic: str) -> None:
        with bus_api.producer() as producer:
            send_all(producer, bus_topic, values("c", 2))
        watcher = _Watcher()
        tp = bus.TopicPartition(bus_topic, 0)
        options = {"offset_reset": "earliest", "auto_commit_interval": NEVER}
        with bus_api.consumer(
            bus_topic, group=f"{bus_topic}-g", interceptors=[watcher], **options
        ) as consumer:
            consume(consumer, 2)
            assert consumer.poll(timeout=QUIET) is None  # both processed, none committed
            assert watcher.commits == []
        assert watcher.commits[-1] == {tp: 2}, watcher.commits
        assert watcher.closed == 1

    @needs("consumer_groups", "partitions", "admin")
    def test_a_rebalance_commits_what_it_takes_away_and_on_commit_hears_of_it(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        everything = topic_partitions(bus_topic, PARTITIONS)
        with bus_api.producer() as producer:
            for p in range(PARTITIONS):
                send_all(producer, bus_topic, values(f"r{p}", 2), partition=p)
        watcher = _Watcher()
        options = {"offset_reset": "earliest", "auto_commit_interval": NEVER}
        group = f"{bus_topic}-g"
        first = bus_api.consumer(bus_topic, group=group, interceptors=[watcher], **options)
        second = None
        try:
            consume(first, 2 * PARTITIONS)
            assert first.poll(timeout=QUIET) is None  # all processed, none committed
            assert watcher.commits == []
            second = bus_api.consumer(bus_topic, group=group, **options)
            _, taken = wait_for_group([first, second], everything)
            reported: dict[bus.TopicPartition, int] = {}
            for commit in watcher.commits:
                reported.update(commit)
            assert taken and all(reported.get(tp) == 2 for tp in taken), watcher.commits
        finally:
            first.close()
            if second is not None:
                second.close()

    @needs("consumer_groups")
    def test_a_consumer_interceptor_that_misbehaves_loses_nothing(
        self, bus_api: BusAPI, bus_topic: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        with bus_api.producer() as producer:
            send_all(producer, bus_topic, values("m", 3))
        watcher = _Watcher()
        options = {"offset_reset": "earliest", "auto_commit_interval": NEVER}
        with (
            caplog.at_level(logging.ERROR, logger="bus"),
            bus_api.consumer(
                bus_topic, group=f"{bus_topic}-g", interceptors=[_Dropping(), watcher], **options
            ) as consumer,
        ):
            got = consume(consumer, 3)
            consumer.commit()
        assert [m.value for m in got] == values("m", 3)
        assert watcher.processed == values("m", 3) and len(watcher.commits) == 1
        messages = [r.getMessage() for r in caplog.records]
        assert any("on_consume must return the messages" in m for m in messages)
        assert any("raised in on_processed" in m for m in messages)
        assert any("raised in on_commit" in m for m in messages)
