"""Authentication and authorization on a real broker, on both Kafka backends.

``kafka_sasl_broker`` takes SASL/PLAIN only and its StandardAuthorizer allows nothing
that no ACL allows. Here alice may write, read, describe and create the topics named
``auth-ok-*`` and read (join) the groups named ``auth-ok-*``; nothing else. The topic
``auth-denied`` exists (made by the super user) and is off limits to her.

Each call that should fail is given ``TIMEOUT`` seconds and must raise the right bus
error within them (plus ``GRACE`` for a loaded machine): a wrong password is
``bus.AuthenticationError``, a denied topic or group ``bus.AuthorizationError``. The
password (alice's, and the wrong one, each with a ``/`` and a ``?``) must show in no
``repr``/``str``, no error (nor its causes), no log record (DEBUG, librdkafka's
``security``/``broker`` debug contexts on) and no CLI output. What a backend does not
do yet is a strict xfail naming what is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any
from urllib.parse import quote

import pytest

import bus
from tools.kafka_harness import REPO_ROOT, KafkaCluster, quiet_repeats

pytestmark = pytest.mark.timeout(90)  # the broker's tests are marked kafka by its fixture

BACKENDS = ("kafka", "aiokafka")
TIMEOUT = 2.0  # what each call that should fail is given
GRACE = 1.5  # what it may overrun that by
HANG = TIMEOUT + GRACE + 2.0  # an asyncio call still running then has hung
OK = "auth-ok-"
DENIED = "auth-denied"
WRONG = f"wr/ng?{secrets.token_hex(8)}"


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def url(scheme: str, cluster: KafkaCluster, user: str, password: str) -> str:
    return (
        f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@"
        f"{cluster.bootstrap_servers}?admin_timeout={TIMEOUT:g}&delivery_timeout={TIMEOUT:g}"
    )


def alice(cluster: KafkaCluster) -> str:
    assert cluster.sasl_users is not None
    return cluster.sasl_users["alice"]


@pytest.fixture(scope="module")
def broker(kafka_sasl_broker: KafkaCluster) -> KafkaCluster:
    """The SASL broker with alice's ACLs, ``auth-denied`` and ``auth-ok-data`` (one
    message) in place."""
    kafka_sasl_broker.grant(
        "alice", ["write", "read", "describe", "create"], topic=OK, prefixed=True
    )
    kafka_sasl_broker.grant("alice", ["read"], group=OK, prefixed=True)
    admin_user, admin_password = kafka_sasl_broker.admin or ("", "")
    with bus.connect(url("kafka", kafka_sasl_broker, admin_user, admin_password)) as admin:
        existing = admin.topics()
        for topic in (DENIED, f"{OK}data"):
            if topic not in existing:
                admin.create_topic(topic, partitions=1)
        with admin.producer() as producer:
            producer.send(f"{OK}data", b"v", timeout=30)
    return kafka_sasl_broker


# --------------------------------------------------------------------------- the calls


class Stopwatch:
    """Times a ``with`` block, or from its start to the first :meth:`stop`."""

    elapsed: float | None = None

    def __enter__(self) -> Stopwatch:
        self._started = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.elapsed is None:
            self.elapsed = time.monotonic() - self._started


def _quietly(close: Callable[..., Any], *args: Any) -> None:
    with contextlib.suppress(bus.BusError):
        close(*args)


async def _aquietly(closing: Awaitable[Any]) -> None:
    with contextlib.suppress(bus.BusError):
        await closing


def _send(b: bus.Bus, topic: str, group: str | None, watch: Stopwatch) -> Any:
    with watch:
        producer = b.producer()
        try:
            return producer.send(topic, b"v", timeout=TIMEOUT)
        finally:
            watch.stop()
            _quietly(producer.close, 1.0)


def _poll(b: bus.Bus, topic: str, group: str | None, watch: Stopwatch) -> Any:
    with watch:
        consumer = b.consumer(topic, group=group, offset_reset="earliest")
        try:
            return consumer.poll(TIMEOUT)
        finally:
            watch.stop()
            _quietly(consumer.close, 1.0)


async def _asend(b: bus.Bus, topic: str, group: str | None, watch: Stopwatch) -> Any:
    with watch:
        producer = b.async_producer()
        try:
            return await producer.send(topic, b"v", timeout=TIMEOUT)
        finally:
            watch.stop()
            await _aquietly(producer.close(1.0))


async def _apoll(b: bus.Bus, topic: str, group: str | None, watch: Stopwatch) -> Any:
    with watch:
        consumer = b.async_consumer(topic, group=group, offset_reset="earliest")
        try:
            return await consumer.poll(TIMEOUT)
        finally:
            watch.stop()
            await _aquietly(consumer.close(1.0))


async def _bounded(call: Coroutine[Any, Any, Any]) -> Any:
    task = asyncio.ensure_future(call)
    done, _ = await asyncio.wait({task}, timeout=HANG)
    if not done:
        task.cancel()
        raise AssertionError(f"the call had not returned after {HANG:g} s (given {TIMEOUT:g} s)")
    return task.result()


def outcome(scheme: str, b: bus.Bus, operation: str, topic: str, group: str | None = None) -> Any:
    """Run ``operation`` (send, poll, create_topic) with a fresh client; return what it
    returned or the exception it raised, with how long the call itself took."""
    watch = Stopwatch()
    try:
        if operation == "create_topic":
            with watch:
                result = b.create_topic(topic, partitions=1)
        elif scheme == "kafka":
            result = {"send": _send, "poll": _poll}[operation](b, topic, group, watch)
        else:
            call = {"send": _asend, "poll": _apoll}[operation](b, topic, group, watch)
            result = asyncio.run(_bounded(call))
    except AssertionError:
        raise
    except Exception as exc:
        result = exc
    return result, watch.elapsed


# --------------------------------------------------------------------------- secrets


class SecretWatch:
    """Every log record of the test (DEBUG, aiokafka's repeats included), and a check
    that no secret shows in them or in the objects handed to :meth:`check`."""

    def __init__(self, caplog: pytest.LogCaptureFixture, secret_texts: list[str]) -> None:
        self.caplog = caplog
        self.secrets: set[str] = set()
        for secret in secret_texts:
            self.secrets |= {secret, quote(secret, safe="")}
            # The longest run between a '/' and a '?' would show a password cut there.
            self.secrets.add(max(secret.replace("?", "/").split("/"), key=len))

    def _texts_of(self, thing: object) -> Iterator[tuple[str, str]]:
        seen: set[int] = set()
        while thing is not None and id(thing) not in seen:
            seen.add(id(thing))
            yield f"repr of {type(thing).__name__}", repr(thing)
            yield f"str of {type(thing).__name__}", str(thing)
            if not isinstance(thing, BaseException):
                return
            yield f"args of {type(thing).__name__}", repr(thing.args)
            thing = thing.__cause__ or thing.__context__

    def check(self, *things: object) -> None:
        formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
        texts = [
            (f"log record {record.name}", formatter.format(record) + repr(record.args))
            for record in self.caplog.records
        ]
        for thing in things:
            texts += self._texts_of(thing)
        for where, text in texts:
            for secret in self.secrets:
                assert secret not in text, f"a password shows in the {where}: {text[:300]}"


@pytest.fixture
def watch(broker: KafkaCluster, caplog: pytest.LogCaptureFixture) -> Iterator[SecretWatch]:
    """Everything at DEBUG but aiokafka's own loggers (WARNING, every repeat kept):
    their DEBUG records are :func:`test_no_password_shows_in_aiokafka_debug_logs`'s."""
    caplog.set_level(logging.DEBUG)
    with quiet_repeats("aiokafka").paused():
        yield SecretWatch(caplog, [alice(broker), WRONG])


# --------------------------------------------------------------------------- known gaps


def cases(kind: str, operations: tuple[str, ...], gaps: dict[tuple[str, str], str]) -> list[Any]:
    return [
        pytest.param(
            scheme,
            operation,
            id=f"{scheme}-{operation}",
            marks=[pytest.mark.xfail(strict=True, reason=gaps[(scheme, operation)])]
            if (scheme, operation) in gaps
            else [],
        )
        for scheme in BACKENDS
        for operation in operations
    ]


# What a backend does not do yet: (scheme, operation) -> what is missing. None today.
WRONG_PASSWORD_GAPS: dict[tuple[str, str], str] = {}
DENIED_GAPS: dict[tuple[str, str], str] = {}


# --------------------------------------------------------------------------- the mapping


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("SASL_AUTHENTICATION_FAILED", bus.AuthenticationError),
        ("_AUTHENTICATION", bus.AuthenticationError),
        ("UNSUPPORTED_SASL_MECHANISM", bus.AuthenticationError),
        ("ILLEGAL_SASL_STATE", bus.AuthenticationError),
        ("TOPIC_AUTHORIZATION_FAILED", bus.AuthorizationError),
        ("GROUP_AUTHORIZATION_FAILED", bus.AuthorizationError),
        ("CLUSTER_AUTHORIZATION_FAILED", bus.AuthorizationError),
        ("TRANSACTIONAL_ID_AUTHORIZATION_FAILED", bus.AuthorizationError),
        ("DELEGATION_TOKEN_AUTHORIZATION_FAILED", bus.AuthorizationError),
    ],
)
def test_kafka_maps_every_login_and_permission_error(code: str, expected: type) -> None:
    from confluent_kafka import KafkaError

    from backends.kafka._errors import DELIVERY, OTHER, mapped

    for context in (DELIVERY, OTHER):
        assert type(mapped(KafkaError(getattr(KafkaError, code)), context)) is expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("SaslAuthenticationFailed", bus.AuthenticationError),
        ("AuthenticationFailedError", bus.AuthenticationError),
        ("AuthenticationMethodNotSupported", bus.AuthenticationError),
        ("UnsupportedSaslMechanismError", bus.AuthenticationError),
        ("IllegalSaslStateError", bus.AuthenticationError),
        ("TopicAuthorizationFailedError", bus.AuthorizationError),
        ("GroupAuthorizationFailedError", bus.AuthorizationError),
        ("ClusterAuthorizationFailedError", bus.AuthorizationError),
        ("TransactionalIdAuthorizationFailed", bus.AuthorizationError),
        ("DelegationTokenAuthorizationFailed", bus.AuthorizationError),
    ],
)
def test_aiokafka_maps_every_login_and_permission_error(name: str, expected: type) -> None:
    from aiokafka import errors

    from backends.aiokafka._errors import DELIVERY, OTHER, mapped

    native = getattr(errors, name)("refused")
    for context in (DELIVERY, OTHER):
        error = mapped(native, context)
        assert type(error) is expected and error.__cause__ is native


# --------------------------------------------------------------------------- on the broker


@pytest.mark.parametrize("scheme", BACKENDS)
def test_the_right_password_and_granted_acls_let_alice_work(
    broker: KafkaCluster, scheme: str, watch: SecretWatch
) -> None:
    topic, group = unique(OK), unique(OK)
    with bus.connect(url(scheme, broker, "alice", alice(broker))) as b:
        b.create_topic(topic, partitions=1)
        assert topic in b.topics()
        if scheme == "kafka":
            with b.producer() as producer:
                delivery = producer.send(topic, b"hello", timeout=30)
            with b.consumer(topic, group=group, offset_reset="earliest") as consumer:
                message = consumer.poll(30)
        else:

            async def work() -> tuple[bus.Delivery, bus.Message | None]:
                async with b.async_producer() as producer:
                    delivery = await producer.send(topic, b"hello", timeout=30)
                async with b.async_consumer(topic, group=group, offset_reset="earliest") as c:
                    return delivery, await c.poll(30)

            delivery, message = asyncio.run(work())
        assert (delivery.topic, delivery.offset) == (topic, 0)
        assert message is not None and message.value == b"hello"
        watch.check(b, delivery, message)


@pytest.mark.parametrize(
    ("scheme", "operation"),
    cases("wrong", ("send", "poll", "poll_group", "create_topic"), WRONG_PASSWORD_GAPS),
)
def test_a_wrong_password_raises_authentication_error_within_the_timeout(
    broker: KafkaCluster, scheme: str, operation: str, watch: SecretWatch
) -> None:
    with bus.connect(url(scheme, broker, "alice", WRONG)) as b:
        group = unique(OK) if operation == "poll_group" else None
        error, elapsed = outcome(
            scheme, b, operation.removesuffix("_group"), f"{OK}data", group=group
        )
        watch.check(b, error)
    assert isinstance(error, bus.AuthenticationError), repr(error)
    assert elapsed <= TIMEOUT + GRACE, f"{elapsed:.1f} s"


@pytest.mark.parametrize(
    ("scheme", "operation"),
    cases(
        "denied",
        ("send", "poll", "poll_group", "poll_in_a_denied_group", "create_topic"),
        DENIED_GAPS,
    ),
)
def test_what_alice_may_not_touch_raises_authorization_error_within_the_timeout(
    broker: KafkaCluster, scheme: str, operation: str, watch: SecretWatch
) -> None:
    topic, group = DENIED, None
    if operation == "poll_group":
        operation, group = "poll", unique(OK)
    elif operation == "poll_in_a_denied_group":
        operation, topic, group = "poll", f"{OK}data", unique("auth-denied-")
    elif operation == "create_topic":
        topic = unique("auth-denied-")
    with bus.connect(url(scheme, broker, "alice", alice(broker))) as b:
        error, elapsed = outcome(scheme, b, operation, topic, group=group)
        watch.check(b, error)
    assert isinstance(error, bus.AuthorizationError), repr(error)
    assert elapsed <= TIMEOUT + GRACE, f"{elapsed:.1f} s"


def clients_and_errors(scheme: str, b: bus.Bus) -> list[object]:
    """A producer and a consumer of ``b`` (closed), and the errors of a send to
    ``auth-denied`` and of creating it."""
    shown: list[object] = []
    topic, group = f"{OK}data", unique(OK)
    try:
        if scheme == "kafka":
            with b.producer() as producer, b.consumer(topic, group=group) as consumer:
                shown += [producer, consumer]
        else:

            async def clients() -> list[object]:
                async with b.async_producer() as producer, b.async_consumer(topic) as consumer:
                    return [producer, consumer]

            shown += asyncio.run(clients())
    except Exception as exc:  # what making them raises is shown too
        shown.append(exc)
    return shown + [outcome(scheme, b, op, DENIED)[0] for op in ("send", "create_topic")]


@pytest.mark.parametrize("scheme", BACKENDS)
def test_no_password_shows_in_reprs_errors_or_logs(
    broker: KafkaCluster, scheme: str, watch: SecretWatch
) -> None:
    debug = {"config": {"debug": "security,broker"}} if scheme == "kafka" else {}
    for password in (alice(broker), WRONG):
        with bus.connect(url(scheme, broker, "alice", password), **debug) as b:
            watch.check(b, *clients_and_errors(scheme, b))
    if scheme == "kafka":
        assert any(
            r.levelno == logging.DEBUG and r.name == "bus.kafka" for r in watch.caplog.records
        ), "no librdkafka debug record: the check would see nothing"


def test_no_password_shows_in_aiokafka_debug_logs(broker: KafkaCluster, watch: SecretWatch) -> None:
    watch.caplog.set_level(logging.DEBUG, logger="aiokafka")
    for password in (alice(broker), WRONG):
        with bus.connect(url("aiokafka", broker, "alice", password)) as b:
            clients_and_errors("aiokafka", b)
    assert any(
        r.levelno == logging.DEBUG and r.name.startswith("aiokafka") for r in watch.caplog.records
    ), "no aiokafka DEBUG record: the check would see nothing"
    watch.check()


@pytest.mark.parametrize("scheme", BACKENDS)
def test_the_cli_prints_no_password(broker: KafkaCluster, scheme: str) -> None:
    env = {**os.environ, "BUS_URL": ""}
    runs = [
        (WRONG, ["produce", f"{OK}data"], "x\n"),
        (alice(broker), ["produce", DENIED], "x\n"),
        (alice(broker), ["topics", "list"], ""),
    ]
    for password, command, stdin in runs:
        cli = [sys.executable, "-m", "bus", "--url", url(scheme, broker, "alice", password)]
        done = subprocess.run(
            [*cli, *command],
            check=False,
            input=stdin,
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            env=env,
            timeout=60,
        )
        output = done.stdout + done.stderr
        for secret in (password, quote(password, safe=""), password.rpartition("?")[2]):
            assert secret not in output, f"bus {' '.join(command)} printed a password: {output}"
        if command != ["topics", "list"] or password == WRONG:
            assert done.returncode != 0, output
    assert f"{OK}data" in done.stdout, output  # the right password works, and is not shown
