"""``bus run MODULE:HANDLER TOPIC... --group G``: the worker as a command, run as a
separate process against a real broker and stopped with SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from test_cli import bus_script

import bus
from bus._cli import main

HANDLERS = textwrap.dedent(
    """
    import os

    LOG = os.environ["HANDLED_LOG"]

    def record(message):
        if message.value == b"poison":
            raise ValueError("cannot handle poison")
        with open(LOG, "a") as f:
            f.write(message.value.decode() + "\\n")

    async def arecord(message):
        record(message)
    """
)


@pytest.fixture
def handlers(tmp_path: Path) -> Path:
    (tmp_path / "handlers.py").write_text(HANDLERS)
    return tmp_path


def _handled(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def _until(condition: Any, what: str, process: subprocess.Popen[str], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(
                f"bus run exited with {process.returncode}: {process.stderr.read()}"
            )  # type: ignore[union-attr]
        assert time.monotonic() < deadline, f"not within {timeout:g} s: {what}"
        time.sleep(0.02)


def _start(directory: Path, *argv: str) -> subprocess.Popen[str]:
    env = {**os.environ, "HANDLED_LOG": str(directory / "handled.log")}
    return subprocess.Popen(
        [bus_script(), "run", *argv],
        cwd=directory,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(params=["kafka", "aiokafka"])
def kafka_url(request: pytest.FixtureRequest, kafka_broker: Any) -> str:
    return f"{request.param}://{kafka_broker.bootstrap_servers}"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize(
    ("scheme", "handler"),
    [
        ("kafka", "handlers:record"),
        ("aiokafka", "handlers:record"),
        ("aiokafka", "handlers:arecord"),
    ],
)
def test_bus_run_handles_until_sigterm_then_exits_0_having_committed(
    kafka_broker: Any, scheme: str, handler: str, handlers: Path
) -> None:
    kafka_url = f"{scheme}://{kafka_broker.bootstrap_servers}"
    topic = f"run-{uuid.uuid4().hex[:10]}"
    group = f"g-{topic}"
    sent = [f"m{i}" for i in range(40)]
    with bus.connect(kafka_url) as b:
        b.create_topic(topic, partitions=4)
        b.create_topic(f"{topic}.DLT", partitions=1)
        _produce(b, topic, [*sent[:20], "poison", *sent[20:]])
    log = handlers / "handled.log"
    process = _start(
        handlers, handler, topic, "--url", kafka_url, "--group", group, "--concurrency", "4",
        "--retries", "1", "--backoff", "0.01", "--dead-letter", "{topic}.DLT", "--from-beginning",
    )  # fmt: skip
    try:
        _until(lambda: len(_handled(log)) >= len(sent), "every message handled", process)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        err = process.stderr.read()  # type: ignore[union-attr]
        assert "Traceback" not in err
        assert f"bus: running {handler} over {topic} in group {group!r}" in err
        assert err.endswith(f"bus: stopped after {len(sent)} message(s)\n")
    finally:
        process.kill()
        process.communicate()
    assert sorted(_handled(log)) == sorted(sent)
    with bus.connect(kafka_url) as b:
        dead = _read(b, f"{topic}.DLT", None, 1)
        assert [m.value for m in dead] == [b"poison"]
        assert dict(dead[0].headers)["bus.dlt.error.type"] == b"ValueError"
        _produce(b, topic, ["after"])
        # the group goes on after what the worker handled: only the new message
        assert [m.value for m in _read(b, topic, group, 1)] == [b"after"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_bus_run_stops_with_exit_1_when_the_handler_fails_without_dead_letter(
    kafka_url: str, handlers: Path
) -> None:
    topic = f"run-{uuid.uuid4().hex[:10]}"
    group = f"g-{topic}"
    with bus.connect(kafka_url) as b:
        b.create_topic(topic, partitions=1)
        _produce(b, topic, ["a", "b", "poison", "c"])
    process = _start(
        handlers, "handlers:record", topic, "--url", kafka_url, "--group", group,
        "--from-beginning",
    )  # fmt: skip
    try:
        assert process.wait(timeout=90) == 1
        err = process.stderr.read()  # type: ignore[union-attr]
    finally:
        process.kill()
        process.communicate()
    assert "Traceback" not in err
    assert f"error: the handler failed on {topic}[0]@2: ValueError: cannot handle poison" in err
    assert _handled(handlers / "handled.log") == ["a", "b"]
    with bus.connect(kafka_url) as b:  # what was processed is committed, the rest is not
        assert [m.value for m in _read(b, topic, group, 2)] == [b"poison", b"c"]


def test_bus_run_refuses_a_coroutine_handler_on_a_backend_without_asyncio(
    handlers: Path,
    kafka_broker: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(handlers)
    monkeypatch.setenv("HANDLED_LOG", str(handlers / "handled.log"))
    url = f"kafka://{kafka_broker.bootstrap_servers}"
    code = main(["run", "handlers:arecord", "t", "--url", url, "--group", "g"])
    assert code == 1
    assert "has no asyncio API" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("spec", "said"),
    [
        ("handlers", "is not MODULE:HANDLER"),
        ("no_such_module:handle", "cannot import module 'no_such_module'"),
        ("handlers:missing", "module 'handlers' has no 'missing'"),
        ("handlers:LOG", "is a str, not a callable handler"),
    ],
)
def test_bus_run_names_a_handler_it_cannot_load(
    spec: str,
    said: str,
    handlers: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(handlers)
    monkeypatch.setenv("HANDLED_LOG", str(handlers / "handled.log"))
    monkeypatch.syspath_prepend(str(handlers))
    assert main(["run", spec, "orders", "--group", "g", "--url", "memory://"]) == 2
    err = capsys.readouterr().err
    assert said in err
    assert "Traceback" not in err


def test_bus_run_needs_a_group(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "handlers:record", "orders", "--url", "memory://"]) == 2
    assert "--group" in capsys.readouterr().err


def _produce(b: bus.Bus, topic: str, values: list[str]) -> None:
    with b.producer() if "sync" in b.capabilities else _AsyncProducer(b) as producer:
        for value in values:
            producer.send(topic, value.encode(), key=value.encode())


def _read(b: bus.Bus, topic: str, group: str | None, count: int) -> list[bus.Message]:
    from bus.testing.apis import AsyncAPI, SyncAPI
    from bus.testing.helpers import consume

    api = SyncAPI(b) if "sync" in b.capabilities else AsyncAPI(b)
    try:
        with api.consumer(topic, group=group, offset_reset="earliest") as consumer:
            return consume(consumer, count, timeout=60)
    finally:
        api.close()


class _AsyncProducer:
    """A blocking face of an asyncio producer, for aiokafka://."""

    def __init__(self, b: bus.Bus):
        from bus.testing.apis import AsyncAPI

        self._api = AsyncAPI(b)
        self._producer = self._api.producer()

    def send(self, *args: Any, **kwargs: Any) -> Any:
        return self._producer.send(*args, **kwargs)

    def __enter__(self) -> _AsyncProducer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._api.close()
