"""The ``otel`` interceptor (``bus.otel``) against the OpenTelemetry SDK's in-memory
span exporter and metric reader: a send and its processing share a trace, on
memory:// in one process and across two processes on the real broker (kafka://,
aiokafka://), with the messaging semantic conventions' names and attributes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import uuid
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import bus
from bus.otel import OpenTelemetryInterceptor
from bus.testing.apis import AsyncAPI, SyncAPI
from bus.testing.helpers import consume


class Telemetry:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def interceptor(self, **options: Any) -> OpenTelemetryInterceptor:
        return OpenTelemetryInterceptor(
            options, tracer_provider=self.tracer_provider, meter_provider=self.meter_provider
        )

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if s.name == name]

    def metrics(self) -> dict[str, list[Any]]:
        data = self.reader.get_metrics_data()
        out: dict[str, list[Any]] = {}
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    out.setdefault(metric.name, []).extend(metric.data.data_points)
        return out


@pytest.fixture
def telemetry() -> Telemetry:
    return Telemetry()


def test_a_send_and_its_processing_share_a_trace_in_memory(telemetry: Telemetry) -> None:
    url = f"memory://otel-{uuid.uuid4().hex}"
    topic = "orders"
    with bus.connect(url) as producing, bus.connect(url) as consuming:
        producing.create_topic(topic)
        sender = telemetry.interceptor(backend="memory", client_id="shop")
        with producing.producer(interceptors=[sender]) as producer:
            producer.send(topic, b"one", key=b"k1")
            producer.send(topic, None, key=b"k2")  # a tombstone
        reader = telemetry.interceptor(backend="memory", group="billing")
        options = {"offset_reset": "earliest", "auto_commit_interval": 3600.0}
        with consuming.consumer(topic, group="billing", interceptors=[reader], **options) as c:
            first, second = consume(c, 1)[0], consume(c, 1)[0]
            c.commit()
        assert (first.value, second.value) == (b"one", None)

    sends = telemetry.named(f"send {topic}")
    processes = telemetry.named(f"process {topic}")
    assert len(sends) == 2 and len(processes) == 2
    by_offset = {s.attributes["messaging.kafka.offset"]: s for s in sends}
    for process in processes:
        send = by_offset[process.attributes["messaging.kafka.offset"]]
        assert send.kind is SpanKind.PRODUCER and process.kind is SpanKind.CONSUMER
        assert process.context.trace_id == send.context.trace_id
        assert process.parent is not None and process.parent.span_id == send.context.span_id
        assert [link.context.span_id for link in process.links] == [send.context.span_id]
        assert process.attributes["messaging.consumer.group.name"] == "billing"
        assert process.attributes["messaging.destination.partition.id"] == "0"
    send = by_offset[0]
    assert send.attributes["messaging.system"] == "memory"
    assert send.attributes["messaging.destination.name"] == topic
    assert send.attributes["messaging.kafka.message.key"] == "k1"
    assert send.attributes["messaging.client.id"] == "shop"
    assert send.attributes["messaging.operation.type"] == "send"
    assert by_offset[1].attributes["messaging.kafka.message.tombstone"] is True
    (receive, *_) = telemetry.named(f"receive {topic}")
    assert receive.attributes["messaging.batch.message_count"] == 1
    (commit,) = telemetry.named("commit")
    assert commit.attributes["messaging.destination.name"] == topic

    metrics = telemetry.metrics()
    assert sum(p.value for p in metrics["messaging.client.sent.messages"]) == 2
    assert sum(p.value for p in metrics["messaging.client.consumed.messages"]) == 2
    assert sum(p.count for p in metrics["messaging.client.operation.duration"]) == 2
    assert sum(p.count for p in metrics["messaging.process.duration"]) == 2


@pytest.mark.parametrize("concurrency", [1, 3])
def test_a_worker_makes_one_process_span_per_handled_message_ending_with_its_handler(
    telemetry: Telemetry, concurrency: int
) -> None:
    topic = "orders"
    ended_by_then: list[int] = []
    with bus.connect(f"memory://otel-{uuid.uuid4().hex}") as b:
        b.create_topic(topic, partitions=3)
        sender = telemetry.interceptor(backend="memory")
        with b.producer(interceptors=[sender]) as producer:
            for i in range(9):
                producer.send(topic, b"%d" % i, key=b"%d" % i)
        handled: list[bytes] = []

        def handle(message: bus.Message) -> None:
            # the span of this message is not over while its handler runs
            ended_by_then.append(
                sum(
                    1
                    for s in telemetry.named(f"process {topic}")
                    if s.attributes["messaging.kafka.offset"] == message.offset
                    and s.attributes["messaging.destination.partition.id"] == str(message.partition)
                )
            )
            handled.append(message.value)
            if len(handled) == 9:
                worker.stop()

        reader = telemetry.interceptor(backend="memory", group="billing")
        worker = b.worker(
            handle, topic, group="billing", concurrency=concurrency,
            interceptors=[reader], offset_reset="earliest",
        )  # fmt: skip
        worker.run()
    assert ended_by_then == [0] * 9
    sends = {s.context.span_id for s in telemetry.named(f"send {topic}")}
    processes = telemetry.named(f"process {topic}")
    assert len(processes) == 9
    assert {p.parent.span_id for p in processes if p.parent is not None} == sends
    assert sum(p.count for p in telemetry.metrics()["messaging.process.duration"]) == 9


def _process_of(telemetry: Telemetry, topic: str) -> dict[tuple[str, int], ReadableSpan]:
    spans = telemetry.named(f"process {topic}")
    partition, offset = "messaging.destination.partition.id", "messaging.kafka.offset"
    return {(str(s.attributes[partition]), s.attributes[offset]): s for s in spans}


@pytest.mark.parametrize("concurrency", [1, 3])
def test_spans_a_worker_handler_starts_are_children_of_its_process_span(
    telemetry: Telemetry, concurrency: int
) -> None:
    topic = "orders"
    tracer = telemetry.tracer_provider.get_tracer("app")
    with bus.connect(f"memory://otel-{uuid.uuid4().hex}") as b:
        b.create_topic(topic, partitions=3)
        with b.producer(interceptors=[telemetry.interceptor(backend="memory")]) as producer:
            for i in range(9):
                producer.send(topic, b"%d" % i, key=b"%d" % i)
        handled: list[bus.Message] = []

        def handle(message: bus.Message) -> None:
            with tracer.start_as_current_span("charge", attributes={"at": message.offset}):
                pass
            handled.append(message)
            if len(handled) == 9:
                worker.stop()

        worker = b.worker(
            handle, topic, group="billing", concurrency=concurrency, offset_reset="earliest",
            interceptors=[telemetry.interceptor(backend="memory", group="billing")],
        )  # fmt: skip
        worker.run()
    processes = _process_of(telemetry, topic)
    charges = telemetry.named("charge")
    assert len(charges) == 9 and len(processes) == 9
    for m, charge in zip(handled, sorted(charges, key=lambda s: s.start_time or 0), strict=True):
        process = processes[(str(m.partition), m.offset)]
        assert charge.attributes["at"] == m.offset
        assert charge.parent is not None and charge.parent.span_id == process.context.span_id
        assert charge.context.trace_id == process.context.trace_id  # the send's trace


def test_spans_an_async_worker_handler_starts_are_children_of_its_process_span(
    telemetry: Telemetry,
) -> None:
    topic = "orders"
    tracer = telemetry.tracer_provider.get_tracer("app")

    async def main() -> list[bus.Message]:
        async with bus.connect(f"memory://otel-{uuid.uuid4().hex}") as b:
            b.create_topic(topic, partitions=2)
            async with b.async_producer(
                interceptors=[telemetry.interceptor(backend="memory")]
            ) as producer:
                for i in range(6):
                    await producer.send(topic, b"%d" % i, key=b"%d" % i)
            handled: list[bus.Message] = []

            async def handle(message: bus.Message) -> None:
                with tracer.start_as_current_span("charge"):
                    await asyncio.sleep(0)  # the context lives across an await
                    with tracer.start_as_current_span("inner"):
                        pass
                handled.append(message)
                if len(handled) == 6:
                    worker.stop()

            worker = b.async_worker(
                handle, topic, group="billing", concurrency=2, offset_reset="earliest",
                interceptors=[telemetry.interceptor(backend="memory", group="billing")],
            )  # fmt: skip
            await worker.run()
            return handled

    handled = asyncio.run(main())
    processes = {s.context.span_id: s for s in telemetry.named(f"process {topic}")}
    charges = telemetry.named("charge")
    assert len(handled) == 6 and len(charges) == 6
    assert all(c.parent is not None and c.parent.span_id in processes for c in charges)
    assert len({c.parent.span_id for c in charges if c.parent is not None}) == 6  # one each
    charge_ids = {c.context.span_id for c in charges}
    inner = telemetry.named("inner")
    assert len(inner) == 6
    assert all(i.parent is not None and i.parent.span_id in charge_ids for i in inner)


def test_processing_in_a_loop_of_ones_own_records_what_the_body_raised(
    telemetry: Telemetry,
) -> None:
    topic = "orders"
    tracer = telemetry.tracer_provider.get_tracer("app")
    reader = telemetry.interceptor(backend="memory")
    with bus.connect(f"memory://otel-{uuid.uuid4().hex}") as b:
        with b.producer() as producer:
            producer.send(topic, b"bad")
        with b.consumer(topic, offset_reset="earliest", interceptors=[reader]) as consumer:
            [message] = consume(consumer, 1)
            with pytest.raises(ValueError), reader.processing(message):
                with tracer.start_as_current_span("parse"):
                    pass
                raise ValueError("not a number")
            assert consumer.poll(timeout=0.05) is None  # processed: its span ends
    [process] = telemetry.named(f"process {topic}")
    [parse] = telemetry.named("parse")
    assert parse.parent is not None and parse.parent.span_id == process.context.span_id
    assert process.status.status_code is StatusCode.ERROR
    assert [e.name for e in process.events] == ["exception"]


def test_a_failed_send_has_an_error_status_and_type(telemetry: Telemetry) -> None:
    with bus.connect(f"memory://otel-{uuid.uuid4().hex}") as b:
        b.create_topic("t")
        interceptor = telemetry.interceptor(backend="memory")
        with b.producer(interceptors=[interceptor]) as producer, pytest.raises(bus.BusError):
            producer.send("t", b"v", partition=9)
    (send,) = telemetry.named("send t")
    assert send.status.status_code is StatusCode.ERROR
    assert send.attributes["error.type"] == "bus._errors.UnknownTopicError"
    (point,) = telemetry.metrics()["messaging.client.sent.messages"]
    assert point.attributes["error.type"] == "bus._errors.UnknownTopicError"


def test_a_message_passed_on_carries_the_new_send_context(telemetry: Telemetry) -> None:
    with bus.connect(f"memory://otel-{uuid.uuid4().hex}") as b:
        b.create_topic("in")
        b.create_topic("out")
        interceptor = telemetry.interceptor(backend="memory")
        with b.producer(interceptors=[interceptor]) as producer:
            producer.send("in", b"v")
            with b.consumer("in", offset_reset="earliest") as c:
                (message,) = consume(c, 1)
            producer.send_batch([message.replace(topic="out", partition=None, offset=None)])
        with b.consumer("out", offset_reset="earliest") as c:
            (passed_on,) = consume(c, 1)
    (second,) = telemetry.named("send out")
    traceparents = [v for k, v in passed_on.headers if k == "traceparent"]
    assert len(traceparents) == 1 and traceparents[0] is not None
    assert f"{second.context.span_id:016x}" in traceparents[0].decode()


def test_the_otel_name_works_without_an_sdk() -> None:
    """By name it uses the global providers; without an SDK they record nothing, and
    the messages go through unchanged."""
    with bus.connect(f"memory://otel-{uuid.uuid4().hex}?interceptors=otel") as b:
        b.create_topic("t")
        with b.producer() as producer:
            producer.send("t", b"v")
        with b.consumer("t", offset_reset="earliest") as c:
            assert [m.headers for m in consume(c, 1)] == [()]


_PRODUCER = textwrap.dedent(
    """
    import json, sys
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    import bus
    from bus.otel import OpenTelemetryInterceptor

    url, topic = sys.argv[1], sys.argv[2]
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    interceptor = OpenTelemetryInterceptor({"backend": "kafka"}, tracer_provider=provider)
    with bus.connect(url) as b, b.producer(interceptors=[interceptor]) as producer:
        producer.send(topic, b"across", partition=0)
    (span,) = spans.get_finished_spans()
    print(json.dumps({"trace": span.context.trace_id, "span": span.context.span_id,
                      "system": span.attributes["messaging.system"],
                      "offset": span.attributes["messaging.kafka.offset"]}))
    """
)


@pytest.mark.parametrize("scheme", ["kafka", "aiokafka"])
def test_a_trace_crosses_from_a_producer_process_to_a_consumer(
    scheme: str, kafka_broker: Any, telemetry: Telemetry
) -> None:
    url = f"{scheme}://{kafka_broker.bootstrap_servers}"
    topic = f"otel-{scheme}-{uuid.uuid4().hex[:8]}"
    with bus.connect(url) as b:
        b.create_topic(topic)
        produced = subprocess.run(
            [sys.executable, "-c", _PRODUCER, f"kafka://{kafka_broker.bootstrap_servers}", topic],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        sent = json.loads(produced.stdout.strip().splitlines()[-1])
        assert sent["system"] == "kafka"
        api = SyncAPI(b) if scheme == "kafka" else AsyncAPI(b)
        try:
            reader = telemetry.interceptor(backend=scheme, group="g")
            with api.consumer(
                topic, group=f"{topic}-g", offset_reset="earliest", interceptors=[reader]
            ) as consumer:
                (message,) = consume(consumer, 1)
        finally:
            api.close()
    assert message.value == b"across"
    (process,) = telemetry.named(f"process {topic}")
    assert process.context.trace_id == sent["trace"]
    assert process.parent is not None and process.parent.span_id == sent["span"]
    assert process.attributes["messaging.system"] == "kafka"
    assert process.attributes["messaging.kafka.offset"] == sent["offset"]
