"""OpenTelemetry for polybus: spans and metrics after the messaging semantic
conventions, from one ``bus.Interceptor``. ``pip install 'polybus[otel]'``.

Enable it by name (``interceptors=["otel"]``, ``?interceptors=otel``: the global tracer
and meter providers) or give an instance (``OpenTelemetryInterceptor(tracer_provider=
..., meter_provider=...)``). What it records:

- ``send {topic}`` (PRODUCER) from ``on_send`` to the acknowledgement, error status
  and ``error.type`` on failure; the span's context travels in the message's headers
  (the global propagator, W3C ``traceparent`` by default);
- ``receive {topic}`` (CLIENT) for every fetched batch, with its message count;
- ``process {topic}`` (CONSUMER) from hand-out to processed, a child of the producer's
  context taken from the headers (so send and process share a trace) and linked to it;
  current while a worker's handler runs (``processing``), so the handler's own spans
  are its children;
- ``commit`` (CLIENT) for every commit, explicit or the consumer's own;
- the metrics ``messaging.client.operation.duration``, ``messaging.client.sent.messages``,
  ``messaging.client.consumed.messages`` and ``messaging.process.duration``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

try:
    from opentelemetry import metrics, propagate, trace
    from opentelemetry.propagators.textmap import Getter, Setter
    from opentelemetry.semconv._incubating.attributes import messaging_attributes as ma
    from opentelemetry.semconv._incubating.metrics import messaging_metrics as mm
    from opentelemetry.semconv.attributes import error_attributes
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode
except ImportError as exc:  # pragma: no cover - the extra is missing
    raise ImportError(
        "the otel interceptor needs OpenTelemetry: pip install 'polybus[otel]'"
    ) from exc

from bus._errors import BusError
from bus._interceptors import Interceptor
from bus._message import Delivery, Message, TopicPartition

__all__ = ["OpenTelemetryInterceptor"]

_SCOPE = "polybus"
#: What messaging.system says per backend: the Kafka backends are Kafka; others say
#: their own name.
_SYSTEMS = {"kafka": ma.MessagingSystemValues.KAFKA.value, "aiokafka": "kafka"}


class _HeaderSetter(Setter[list[tuple[str, bytes]]]):
    """Collects what the propagator injects, as header pairs."""

    def set(self, carrier: list[tuple[str, bytes]], key: str, value: str) -> None:
        carrier.append((key, value.encode()))


class _HeaderGetter(Getter[Mapping[str, list[str]]]):
    def get(self, carrier: Mapping[str, list[str]], key: str) -> list[str] | None:
        return carrier.get(key.lower())

    def keys(self, carrier: Mapping[str, list[str]]) -> list[str]:
        return list(carrier)


_SET, _GET = _HeaderSetter(), _HeaderGetter()


def _error_type(error: BaseException) -> str:
    cls = type(error)
    return f"{cls.__module__}.{cls.__qualname__}" if cls.__module__ != "builtins" else cls.__name__


class OpenTelemetryInterceptor(Interceptor):
    """Spans and metrics for one client. Thread-safe: a producer's acknowledgements may
    come from a backend thread. ``options`` are what the ``otel`` factory is given (the
    client's options, ``backend``, ``scope`` and ``group``)."""

    def __init__(
        self,
        options: Mapping[str, Any] | None = None,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ):
        options = options or {}
        self._tracer = trace.get_tracer(_SCOPE, tracer_provider=tracer_provider)
        meter = metrics.get_meter(_SCOPE, meter_provider=meter_provider)
        self._duration = mm.create_messaging_client_operation_duration(meter)
        self._sent = mm.create_messaging_client_sent_messages(meter)
        self._consumed = mm.create_messaging_client_consumed_messages(meter)
        self._process_duration = mm.create_messaging_process_duration(meter)
        backend = str(options.get("backend") or "")
        self._common: dict[str, Any] = {ma.MESSAGING_SYSTEM: _SYSTEMS.get(backend, backend)}
        if options.get("client_id"):
            self._common[ma.MESSAGING_CLIENT_ID] = options["client_id"]
        if options.get("group"):
            self._common[ma.MESSAGING_CONSUMER_GROUP_NAME] = options["group"]
        self._lock = threading.Lock()
        self._sending: dict[bytes, tuple[trace.Span, float]] = {}  # by traceparent
        self._processing: dict[tuple[str, int | None, int | None], tuple[trace.Span, float]] = {}

    # -- producing ---------------------------------------------------------------------------

    def on_send(self, message: Message) -> Message:
        attributes = {
            **self._common,
            ma.MESSAGING_OPERATION_TYPE: ma.MessagingOperationTypeValues.SEND.value,
            ma.MESSAGING_OPERATION_NAME: "send",
            ma.MESSAGING_DESTINATION_NAME: message.topic,
            **self._message_attributes(message),
        }
        if message.partition is not None:
            attributes[ma.MESSAGING_DESTINATION_PARTITION_ID] = str(message.partition)
        span = self._tracer.start_span(
            f"send {message.topic}", kind=SpanKind.PRODUCER, attributes=attributes
        )
        carrier: list[tuple[str, bytes]] = []
        propagate.inject(carrier, context=trace.set_span_in_context(span), setter=_SET)
        if not carrier:  # no propagator: nothing to carry, nothing to find the span by
            span.end()
            return message
        with self._lock:
            self._sending[carrier[0][1]] = (span, time.monotonic())
        # A message passed on (consumed, then sent again) carries its old context:
        # this send's replaces it.
        fields = {name.lower() for name in propagate.get_global_textmap().fields}
        kept = tuple(h for h in message.headers if h[0].lower() not in fields)
        return message.replace(headers=(*kept, *carrier))

    def on_acknowledgement(
        self, message: Message, delivery: Delivery | None, error: BusError | None
    ) -> None:
        found = None
        with self._lock:
            for _name, value in message.headers:
                if value is not None and value in self._sending:
                    found = self._sending.pop(value)
                    break
        if found is None:
            return
        span, started = found
        attributes = {
            **self._common,
            ma.MESSAGING_OPERATION_NAME: "send",
            ma.MESSAGING_DESTINATION_NAME: message.topic,
        }
        if delivery is not None:
            span.set_attribute(ma.MESSAGING_DESTINATION_PARTITION_ID, str(delivery.partition))
            span.set_attribute(ma.MESSAGING_KAFKA_OFFSET, delivery.offset)
        if error is not None:
            kind = _error_type(error)
            span.set_status(Status(StatusCode.ERROR, str(error)))
            span.set_attribute(error_attributes.ERROR_TYPE, kind)
            attributes[error_attributes.ERROR_TYPE] = kind
        span.end()
        self._duration.record(time.monotonic() - started, attributes)
        self._sent.add(1, attributes)

    # -- consuming ---------------------------------------------------------------------------

    def on_consume(self, messages: list[Message]) -> list[Message]:
        topics = {m.topic for m in messages}
        name = next(iter(topics)) if len(topics) == 1 else None
        attributes = {
            **self._common,
            ma.MESSAGING_OPERATION_TYPE: ma.MessagingOperationTypeValues.RECEIVE.value,
            ma.MESSAGING_OPERATION_NAME: "receive",
            ma.MESSAGING_BATCH_MESSAGE_COUNT: len(messages),
        }
        if name is not None:
            attributes[ma.MESSAGING_DESTINATION_NAME] = name
        with self._tracer.start_as_current_span(
            f"receive {name}" if name else "receive", kind=SpanKind.CLIENT, attributes=attributes
        ):
            pass
        now = time.monotonic()
        per_topic: dict[str, int] = {}
        for m in messages:
            per_topic[m.topic] = per_topic.get(m.topic, 0) + 1
            self._start_process(m, now)
        for topic, count in per_topic.items():  # one measurement per topic and batch
            self._consumed.add(count, {**self._common, ma.MESSAGING_DESTINATION_NAME: topic})
        return messages

    def _start_process(self, message: Message, now: float) -> None:
        carrier: dict[str, list[str]] = {}
        for name, value in message.headers:
            if value is not None:
                carrier.setdefault(name.lower(), []).append(value.decode("latin-1"))
        parent = propagate.extract(carrier, getter=_GET)
        sent = trace.get_current_span(parent).get_span_context()
        links = [Link(sent)] if sent.is_valid else []
        attributes = {
            **self._common,
            ma.MESSAGING_OPERATION_TYPE: ma.MessagingOperationTypeValues.PROCESS.value,
            ma.MESSAGING_OPERATION_NAME: "process",
            ma.MESSAGING_DESTINATION_NAME: message.topic,
            ma.MESSAGING_DESTINATION_PARTITION_ID: str(message.partition),
            ma.MESSAGING_KAFKA_OFFSET: message.offset,
            **self._message_attributes(message),
        }
        span = self._tracer.start_span(
            f"process {message.topic}",
            context=parent if sent.is_valid else None,  # else: the current context
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            links=links,
        )
        with self._lock:
            self._processing[(message.topic, message.partition, message.offset)] = (span, now)

    def on_processed(self, message: Message) -> None:
        with self._lock:
            found = self._processing.pop((message.topic, message.partition, message.offset), None)
        if found is None:
            return
        span, started = found
        span.end()
        self._process_duration.record(
            time.monotonic() - started,
            {
                **self._common,
                ma.MESSAGING_OPERATION_NAME: "process",
                ma.MESSAGING_DESTINATION_NAME: message.topic,
            },
        )

    @contextmanager
    def processing(self, message: Message) -> Iterator[None]:
        """Make ``message``'s ``process`` span the current span: what starts a span in
        here (a worker's handler, your loop's body) starts a child of it. An exception
        leaving it is recorded on the span, which it marks failed. The span still ends
        when the message counts as processed. A message this interceptor did not hand
        out changes nothing."""
        with self._lock:
            found = self._processing.get((message.topic, message.partition, message.offset))
        if found is None:
            yield
            return
        with trace.use_span(found[0], end_on_exit=False):
            yield

    def on_commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        topics = {tp.topic for tp in offsets}
        attributes = {
            **self._common,
            ma.MESSAGING_OPERATION_TYPE: ma.MessagingOperationTypeValues.SETTLE.value,
            ma.MESSAGING_OPERATION_NAME: "commit",
            ma.MESSAGING_BATCH_MESSAGE_COUNT: len(offsets),
        }
        if len(topics) == 1:
            attributes[ma.MESSAGING_DESTINATION_NAME] = next(iter(topics))
        with self._tracer.start_as_current_span(
            "commit", kind=SpanKind.CLIENT, attributes=attributes
        ):
            pass

    def close(self) -> None:
        """End what is still open: messages handed out and never processed (their
        partition was taken away, or the consumer closed), sends never acknowledged."""
        with self._lock:
            open_spans = [span for span, _ in self._processing.values()]
            open_spans += [span for span, _ in self._sending.values()]
            self._processing.clear()
            self._sending.clear()
        for span in open_spans:
            span.end()

    @staticmethod
    def _message_attributes(message: Message) -> dict[str, Any]:
        out: dict[str, Any] = {}
        key = message.key
        if isinstance(key, bytes):
            out[ma.MESSAGING_KAFKA_MESSAGE_KEY] = key.decode("utf-8", "replace")
        elif key is not None:
            out[ma.MESSAGING_KAFKA_MESSAGE_KEY] = str(key)
        if message.value is None:
            out[ma.MESSAGING_KAFKA_MESSAGE_TOMBSTONE] = True
        return out
