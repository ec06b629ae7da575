"""The ``bus`` command line: every command, its output formats and exit codes.

Most tests call ``bus._cli.main(argv)`` in-process on a named memory broker that the
test keeps open, so what the command writes is visible to the test (memory:// is
shared within one process only). A few run the installed console script. Tests of
``produce``, ``consume`` and ``bench`` run twice (``cli_url``): through the blocking
API, and through the asyncio API of a backend that has no blocking one (the same
memory broker, served by a copy of the memory backend without ``sync``). The last
tests run both paths against a real Kafka broker (kafka://, aiokafka://).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bus
from bus import _cli
from bus._checks import RANGES, check_optional_int
from bus._cli import MEMORY_HINT, main
from bus._plugins import Registry, registry, reset_registry
from bus.spi import CAPABILITIES, Backend, BackendDescriptor

CONSUMED = re.compile(r"^Partition:\d+, Offset:\d+, key:.*, value:.*$")
COMMANDS = ("backends", "produce", "consume", "topics", "groups", "demo", "bench")


@pytest.fixture
def url() -> Iterator[str]:
    """A fresh named memory broker, kept alive (connected) for the whole test."""
    name = f"memory://cli-{uuid.uuid4().hex[:8]}"
    with bus.connect(name):
        yield name


@pytest.fixture
def broker(url: str) -> Iterator[bus.Bus]:
    with bus.connect(url) as b:
        yield b


class _AsyncOnly:
    """The memory backend as ``asyncmemory://``, without its blocking API: the same
    brokers (``asyncmemory://name`` is ``memory://name``), reachable only through asyncio."""

    @staticmethod
    @bus.hookimpl
    def bus_register_backends() -> list[BackendDescriptor]:
        memory = registry().backends["memory"].descriptor
        return [
            attrs.evolve(
                memory,
                name="asyncmemory",
                schemes=("asyncmemory",),
                capabilities=memory.capabilities - {"sync"},
                fresh_url=None,
            )
        ]


@pytest.fixture(params=["blocking", "asyncio"])
def cli_url(request: pytest.FixtureRequest, url: str) -> Iterator[str]:
    """The URL a command gets for the broker ``url``: ``url`` itself (the CLI uses the
    blocking API), or the same broker through a backend with only the asyncio API."""
    if request.param == "blocking":
        yield url
        return
    reset_registry(Registry.load(plugins=[_AsyncOnly]))
    try:
        assert "sync" not in registry().backends["asyncmemory"].descriptor.capabilities
        yield url.replace("memory://", "asyncmemory://")
    finally:
        reset_registry()


#: Runs ``bus`` in a child process with ``asyncmemory://`` registered (argv: bus's).
ASYNCMEMORY_BUS = f"""
import sys
from bus._plugins import Registry, reset_registry
from bus._cli import main
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_cli import _AsyncOnly
reset_registry(Registry.load(plugins=[_AsyncOnly]))
raise SystemExit(main())
"""


def feed(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


def lines(text: str) -> list[str]:
    return text.splitlines()


def read_all(b: bus.Bus, topic: str, count: int) -> list[bus.Message]:
    with b.consumer(topic, offset_reset="earliest") as consumer:
        got: list[bus.Message] = []
        deadline = time.monotonic() + 10
        while len(got) < count and time.monotonic() < deadline:
            got += consumer.poll_batch(timeout=0.1)
        return got


def bus_script() -> str:
    script = shutil.which("bus", path=os.path.dirname(sys.executable))
    if script is None:
        pytest.skip("the bus console script is not installed (pip install -e .)")
    return script


# -- help, version, usage errors ------------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"bus (polybus) {bus.__version__}\n"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_url(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: bus {command}")
    assert "--url URL" in out
    assert "$BUS_URL, else memory://" in out


@pytest.mark.parametrize(
    "command", [["topics", a] for a in ("list", "create", "delete", "describe")]
    + [["groups", "list"], ["groups", "describe"]], ids=" ".join,
)  # fmt: skip
def test_topics_actions_have_help_with_url(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*command, "--help"]) == 0
    assert "--url URL" in capsys.readouterr().out


def test_produce_and_consume_help_say_memory_is_in_process(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for command in ("produce", "consume"):
        assert main([command, "--help"]) == 0
        out = capsys.readouterr().out
        assert "memory:// is an in-process broker" in out
    assert main(["consume", "--help"]) == 0
    assert "Partition:%d, Offset:%d, key:%s, value:%s" in capsys.readouterr().out


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "required: COMMAND" in capsys.readouterr().err


def test_bad_option_value_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["consume", "t", "--count", "0"]) == 2
    assert "must be at least 1" in capsys.readouterr().err


# -- errors: one line, right exit code, no password -----------------------------------------


def test_unknown_scheme_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topics", "list", "--url", "nope://somewhere"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("bus: error: no backend serves nope://")
    assert captured.err.count("\n") == 1


def test_unknown_option_exits_2_naming_it(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topics", "list", "--url", f"{url}?acsk=all"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bus: error: ") and "acsk" in err


@pytest.mark.parametrize(
    "bad_url",
    [
        "memory://user:hunter2@cli-secret?bogus=1",
        "kafka://user:hunter2@127.0.0.1:1?admin_timeout=1",
        "nope://user:hunter2@host",
        "::user:hunter2@",
        "kafka:/user:hunter2@host:9092",  # one slash: not a URL, still a password
        "memory://user:hunter%32@x?bogus=1",
    ],
)
def test_password_is_never_printed(bad_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topics", "list", "--url", bad_url]) in (1, 2)
    captured = capsys.readouterr()
    assert "hunter2" not in captured.out + captured.err
    assert captured.err.startswith("bus: error: ")


@pytest.mark.parametrize(
    "argv",
    [
        ["topics", "list", "kafka://u:hunter2@127.0.0.1:1"],  # the URL without --url
        ["kafka://u:hunter2@127.0.0.1:1"],  # the URL as the command
        ["topics", "list", "--urls=kafka://u:hunter2@h:1"],  # a misspelt option
        ["consume", "t", "--url", "kafka://u:hunter%32@h:1", "--count", "kafka://u:hunter%32@h"],
        ["produce", "t", "--acks", "memory://x?sasl_password=hunter2"],
    ],
)
def test_password_on_the_command_line_is_never_quoted_back(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "hunter" not in captured.out + captured.err
    assert "***" in captured.err


class _Failing(Backend):
    """A backend whose client library fails the way they do: a raw exception, and log
    records with tracebacks that quote the connection's URL."""

    def __init__(self, url: str) -> None:
        self.url = url

    def topics(self) -> dict[str, int]:
        try:
            raise ConnectionResetError(f"lost {self.url}")
        except ConnectionResetError:
            logging.getLogger("someclient").exception("retrying %s", self.url)
        raise OverflowError(f"int too big to convert (talking to {self.url})")


@pytest.fixture
def failing_backend() -> Iterator[None]:
    class Plugin:
        @staticmethod
        @bus.hookimpl
        def bus_register_backends() -> list[BackendDescriptor]:
            return [
                BackendDescriptor(
                    name="failing",
                    schemes=("failing",),
                    capabilities=frozenset({"sync", "admin"}),
                    factory=lambda config: _Failing(
                        f"failing://{config.url.username}:{config.url.password}@h"
                    ),
                )
            ]

    reset_registry(Registry.load(plugins=[Plugin]))
    yield
    reset_registry()


@pytest.mark.usefixtures("failing_backend")
def test_an_unexpected_exception_and_library_logs_are_one_masked_line_each(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BUS_URL", "failing://alice:hunter2@h")
    assert main(["topics", "list"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "bus: error: someclient: retrying failing://alice:***@h "
        "(ConnectionResetError: lost failing://alice:***@h)",
        "bus: error: unexpected OverflowError: int too big to convert "
        "(talking to failing://alice:***@h)",
    ]
    assert main(["topics", "list"]) == 1
    assert len(capsys.readouterr().err.splitlines()) == 2  # the log handler was taken off


def test_invalid_topic_name_exits_2(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topics", "create", "bad topic!", "--url", url]) == 2
    assert "invalid topic name 'bad topic!'" in capsys.readouterr().err


def test_runtime_error_exits_1(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topics", "delete", "never-made", "--url", url]) == 1
    err = capsys.readouterr().err
    assert err.startswith("bus: error: ") and "never-made" in err
    assert err.count("\n") == 1


def test_script_error_has_no_traceback() -> None:
    result = subprocess.run(
        [bus_script(), "consume", "t", "--url", "nope://user:hunter2@h"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("bus: error: no backend serves nope://")
    assert "Traceback" not in result.stderr and "hunter2" not in result.stderr


def test_script_help_and_python_dash_m() -> None:
    result = subprocess.run(
        [bus_script(), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0
    for command in COMMANDS:
        assert re.search(rf"^    {command}\s+\S", result.stdout, re.MULTILINE), command
    version = subprocess.run(
        [sys.executable, "-m", "bus", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (version.returncode, version.stdout) == (0, f"bus (polybus) {bus.__version__}\n")


# -- numbers: refused while parsing, naming the option and its range ------------------------

#: Every integer option: the command line before it, the option, its range (None: none).
INTEGER_OPTIONS = [
    (["produce", "t"], "--partition", *RANGES["partition"]),
    (["topics", "create", "t"], "--partitions", *RANGES["partitions"]),
    (["topics", "create", "t"], "--replication-factor", *RANGES["replication_factor"]),
    (["consume", "t"], "--count", 1, None),
    (["bench"], "--count", 1, None),
    (["bench"], "--size", 1, 2**31 - 1),
]
#: The API's name of the field an option sets, where the API checks it too.
FIELDS = {"--partition": "partition", "--partitions": "partitions"}
FIELDS["--replication-factor"] = "replication_factor"


def _run(argv: list[str]) -> tuple[int, str, str]:
    """``main(argv)`` with what it writes (for Hypothesis, which cannot take capsys)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("number", [2**31, 2**63, -1, 10**30])
def test_a_partition_out_of_range_is_refused_before_anything_is_read_or_sent(
    number: int, url: str, broker: bus.Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(b"never sent\n"))
    monkeypatch.setattr(sys, "stdin", stdin)
    code, out, err = _run(["produce", "t", "--url", url, "--partition", str(number)])
    assert (code, out) == (2, "")
    low, high = RANGES["partition"]
    assert err.startswith("usage: bus produce ")
    assert err.splitlines()[-1] == (
        f"bus produce: error: argument --partition: must be {low} to {high}, not {number}"
    )
    assert "Traceback" not in err
    assert stdin.buffer.tell() == 0  # stdin not even read
    assert "t" not in broker.topics()


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_property_an_integer_option_takes_its_range_or_exits_2_naming_it(
    data: st.DataObject,
) -> None:
    command, option, low, high = data.draw(st.sampled_from(INTEGER_OPTIONS))
    edges = [low - 1, low, low + 1] + ([high - 1, high, high + 1] if high is not None else [])
    number = data.draw(st.one_of(st.sampled_from(edges), st.integers()))
    argv = [*command, option, str(number)]
    if low <= number and (high is None or number <= high):
        assert getattr(_cli.build_parser().parse_args(argv), option[2:].replace("-", "_")) == number
        if option in FIELDS:  # and the API takes it too: one range, not two
            assert check_optional_int(number, FIELDS[option]) == number
        return
    code, out, err = _run(argv)
    shown = f"{low} to {high}" if high is not None else f"at least {low}"
    assert (code, out) == (2, "")
    assert err.splitlines()[-1].endswith(
        f": error: argument {option}: must be {shown}, not {number}"
    )
    assert "Traceback" not in err


@pytest.mark.parametrize("command, option, low, high", INTEGER_OPTIONS)
@pytest.mark.parametrize("text", ["x", "1.5", "1e3", ""])
def test_an_integer_option_refuses_what_is_not_an_integer(
    command: list[str], option: str, low: int, high: int | None, text: str
) -> None:
    code, out, err = _run([*command, f"{option}={text}"])
    assert (code, out) == (2, "")
    assert f": error: argument {option}: must be an integer, " in err.splitlines()[-1]


@pytest.mark.parametrize("command", [["consume", "t"], ["demo"], ["bench"]])
@pytest.mark.parametrize("text", ["0", "-1", "nan", "inf", "1e300", "soon"])
def test_a_timeout_must_be_seconds_a_thread_can_wait(command: list[str], text: str) -> None:
    code, out, err = _run([*command, f"--timeout={text}"])
    assert (code, out) == (2, "")
    assert err.splitlines()[-1].endswith(
        f": error: argument --timeout: must be a number of seconds > 0 and at most "
        f"{threading.TIMEOUT_MAX:.0f}, not {text}"
    )


def test_an_empty_key_separator_is_refused_while_parsing() -> None:
    code, _, err = _run(["produce", "t", "--key-separator="])
    assert code == 2
    assert err.splitlines()[-1] == "bus produce: error: argument --key-separator: must not be empty"


def test_docs_cli_md_gives_the_ranges_the_api_checks() -> None:
    text = (Path(__file__).parents[1] / "docs" / "cli.md").read_text()
    for field in ("partition", "partitions", "replication_factor"):
        low, high = RANGES[field]
        assert f"{low} to {high}" in text, field


@pytest.mark.parametrize(
    "argv",
    [["produce", "bad topic!"], ["consume", "ok", "bad topic!"], ["topics", "delete", "a/b"]],
)
def test_a_bad_topic_name_is_refused_while_parsing(argv: list[str]) -> None:
    code, _, err = _run(argv)
    assert code == 2
    assert re.search(r": error: argument (TOPIC|NAME): invalid topic name '", err)


# -- bus backends ---------------------------------------------------------------------------


def test_backends_lists_memory_with_its_capabilities(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backends"]) == 0
    out = lines(capsys.readouterr().out)
    assert out[0].split() == ["NAME", "SCHEMES", "DISTRIBUTION", "CAPABILITIES"]
    row = next(line for line in out if line.startswith("memory "))
    words = bus.connect("memory://").capabilities
    expected = ", ".join(c for c in CAPABILITIES if c in words)
    assert row.split(None, 4) == ["memory", "memory://", "polybus", bus.__version__, expected]


def test_backends_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backends", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    memory = next(b for b in data["backends"] if b["name"] == "memory")
    assert memory["schemes"] == ["memory"]
    assert set(memory["capabilities"]) == set(bus.connect("memory://").capabilities)
    assert {"sync", "consumer_groups", "admin"} <= set(memory["capabilities"])
    assert memory["distribution"] == "polybus"
    assert memory["installed"] is True and memory["install"] is None
    assert isinstance(data["problems"], list)


class _Plugins:
    """A backend whose client library is missing, and a plugin whose hook raises."""

    class Missing:
        @staticmethod
        @bus.hookimpl
        def bus_register_backends() -> list[BackendDescriptor]:
            return [
                BackendDescriptor(
                    name="fakekafka",
                    schemes=("fakekafka",),
                    capabilities=frozenset({"sync", "partitions"}),
                    factory=lambda config: Backend(),
                    requires=("no_such_module_for_cli_test",),
                    extra="polybus[kafka]",
                )
            ]

    class Broken:
        @staticmethod
        @bus.hookimpl
        def bus_register_backends() -> list[BackendDescriptor]:
            raise RuntimeError("boom from a broken plugin")


@pytest.fixture
def odd_plugins() -> Iterator[None]:
    reset_registry(Registry.load(plugins=[_Plugins.Missing, _Plugins.Broken]))
    yield
    reset_registry()


@pytest.mark.usefixtures("odd_plugins")
def test_backends_shows_missing_module_and_plugin_problems(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["backends"]) == 0
    captured = capsys.readouterr()
    out = lines(captured.out)
    row = out.index(next(line for line in out if line.startswith("fakekafka ")))
    assert out[row].split()[:2] == ["fakekafka", "fakekafka://"]
    assert out[row + 1].strip() == "not installed: pip install 'polybus[kafka]'"
    assert any(line.startswith("memory ") for line in out)
    assert "bus: warning: plugin" in captured.err
    assert "boom from a broken plugin" in captured.err


@pytest.mark.usefixtures("odd_plugins")
def test_backends_json_shows_missing_module(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backends", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    fake = next(b for b in data["backends"] if b["name"] == "fakekafka")
    assert fake["installed"] is False
    assert fake["missing"] == ["no_such_module_for_cli_test"]
    assert fake["install"] == "pip install 'polybus[kafka]'"
    assert any("boom" in p["problem"] for p in data["problems"])


def test_script_backends_lists_memory() -> None:
    result = subprocess.run(
        [bus_script(), "backends"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("memory "))
    assert "memory://" in row and "consumer_groups" in row and "admin" in row


# -- bus produce ----------------------------------------------------------------------------


def test_produce_prints_partition_and_offset(
    cli_url: str,
    broker: bus.Bus,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    broker.create_topic("lines", partitions=1)
    feed(monkeypatch, b"Hello World!\n\nlast line without newline")
    assert main(["produce", "lines", "--url", cli_url]) == 0
    assert lines(capsys.readouterr().out) == [
        "Partition:0, Offset:0",
        "Partition:0, Offset:1",
        "Partition:0, Offset:2",
    ]
    values = [m.value for m in read_all(broker, "lines", 3)]
    assert values == [b"Hello World!", b"", b"last line without newline"]


def test_produce_with_keys_headers_and_partition(
    cli_url: str,
    broker: bus.Bus,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    broker.create_topic("keyed", partitions=3)
    feed(monkeypatch, b"k1:v1\r\nk2:v:2\n")
    argv = ["produce", "keyed", "--url", cli_url, "--key-separator", ":", "--partition", "2"]
    argv += ["--header", "h=1", "--header", "h=2", "--acks", "1"]
    assert main(argv) == 0
    assert lines(capsys.readouterr().out) == ["Partition:2, Offset:0", "Partition:2, Offset:1"]
    got = read_all(broker, "keyed", 2)
    assert [(m.key, m.value, m.partition) for m in got] == [
        (b"k1", b"v1", 2),
        (b"k2", b"v:2", 2),
    ]
    assert got[0].headers == (("h", b"1"), ("h", b"2"))


def test_produce_async_prints_every_delivery(
    cli_url: str,
    broker: bus.Bus,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    broker.create_topic("fast", partitions=1)
    feed(monkeypatch, b"".join(b"line %d\n" % i for i in range(5)))
    assert main(["produce", "fast", "--url", cli_url, "--async"]) == 0
    out = lines(capsys.readouterr().out)
    assert sorted(out) == [f"Partition:0, Offset:{i}" for i in range(5)]
    assert [m.value for m in read_all(broker, "fast", 5)] == [b"line %d" % i for i in range(5)]


def test_produce_line_without_separator_exits_2(
    cli_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    feed(monkeypatch, b"k:v\nno separator here\n")
    assert main(["produce", "t", "--url", cli_url, "--key-separator", ":"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "Partition:0, Offset:0\n"
    assert captured.err == "bus: error: line 2 has no key separator ':'\n"


def test_produce_takes_bus_url_from_environment(
    url: str, broker: bus.Bus, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BUS_URL", url)
    feed(monkeypatch, b"from env\n")
    assert main(["produce", "env-topic"]) == 0
    assert [m.value for m in read_all(broker, "env-topic", 1)] == [b"from env"]


def test_script_produce_output_format(tmp_path: Path) -> None:
    result = subprocess.run(
        [bus_script(), "produce", "t", "--url", "memory://", "--key-separator", "="],
        input="a=1\nb=2\nc=3\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"Partition:0, Offset:{i}" for i in range(3)]


def test_script_broken_pipe_is_one_line(tmp_path: Path) -> None:
    data = tmp_path / "many.txt"
    data.write_bytes(b"x\n" * 200_000)
    with data.open("rb") as stdin:
        process = subprocess.Popen(
            [bus_script(), "produce", "t"],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert process.stdout is not None and process.stderr is not None
        assert process.stdout.readline() == b"Partition:0, Offset:0\n"
        process.stdout.close()
        err = process.stderr.read().decode()
        assert process.wait(timeout=60) == 1
    assert err == (
        f"bus: {MEMORY_HINT}\n"  # no --url, no $BUS_URL: said once
        "bus: error: output closed before everything was written (broken pipe)\n"
    )


@pytest.mark.parametrize(
    "command", [["produce", "cli-hint"], ["consume", "cli-hint", "--timeout", "0.1"]]
)
def test_produce_and_consume_on_the_default_url_say_once_that_it_is_private(
    command: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BUS_URL", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO("one\n"))
    assert main(command) == 0
    err = capsys.readouterr().err
    assert err.count("memory://") == 1 and "sqlite:///bus.db" in err and "kafka://" in err
    monkeypatch.setenv("BUS_URL", "memory://")  # named: the user chose it
    monkeypatch.setattr("sys.stdin", io.StringIO("one\n"))
    assert main(command) == 0
    assert "sqlite:///bus.db" not in capsys.readouterr().err


def test_produce_sends_each_line_as_it_is_read(
    cli_url: str,
    broker: bus.Bus,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A line typed at a terminal (or written by a slow program) goes out at once, not
    when more input comes."""
    broker.create_topic("typed", partitions=1)
    read_end, write_end = os.pipe()
    monkeypatch.setattr(sys, "stdin", os.fdopen(read_end))
    sent_before_the_next_line: list[int] = []

    def type_lines() -> None:
        with os.fdopen(write_end, "wb", buffering=0) as terminal:
            terminal.write(b"first\n")
            sent_before_the_next_line.append(len(read_all(broker, "typed", 1)))
            terminal.write(b"second\n")

    typist = threading.Thread(target=type_lines)
    typist.start()
    try:
        assert main(["produce", "typed", "--url", cli_url]) == 0
    finally:
        typist.join()
    assert sent_before_the_next_line == [1]
    assert lines(capsys.readouterr().out) == ["Partition:0, Offset:0", "Partition:0, Offset:1"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("api", ["blocking", "asyncio"])
def test_script_produce_ctrl_c_while_waiting_for_input_exits_130(api: str) -> None:
    command = [bus_script(), "produce", "t", "--url", "memory://"]
    if api == "asyncio":
        command = [sys.executable, "-c", ASYNCMEMORY_BUS, "produce", "t"]
        command += ["--url", "asyncmemory://"]
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdin is not None and process.stdout is not None
    assert process.stderr is not None
    try:
        process.stdin.write(b"one\n")
        process.stdin.flush()
        assert process.stdout.readline() == b"Partition:0, Offset:0\n"  # now waiting for more
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 130
        assert process.stderr.read() == b"bus: interrupted\n"
    finally:
        process.kill()
        process.communicate()


@pytest.mark.parametrize("api", ["blocking", "asyncio"])
def test_script_broken_pipe_with_async_delivery_reports_is_one_line(
    api: str, tmp_path: Path
) -> None:
    data = tmp_path / "many.txt"
    data.write_bytes(b"x\n" * 200_000)
    command = [bus_script(), "produce", "t", "--async"]
    if api == "asyncio":
        command = [sys.executable, "-c", ASYNCMEMORY_BUS, "produce", "t", "--async"]
        command += ["--url", "asyncmemory://"]
    with data.open("rb") as stdin:
        process = subprocess.Popen(
            command, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert process.stdout is not None and process.stderr is not None
        assert process.stdout.readline().startswith(b"Partition:0, Offset:")
        process.stdout.close()
        err = process.stderr.read().decode()
        assert process.wait(timeout=60) == 1
    hint = "" if api == "asyncio" else f"bus: {MEMORY_HINT}\n"  # no --url, no $BUS_URL
    assert err == hint + "bus: error: output closed before everything was written (broken pipe)\n"


# -- bus consume ----------------------------------------------------------------------------


def test_consume_prints_the_seed_format(
    cli_url: str, broker: bus.Bus, capsys: pytest.CaptureFixture[str]
) -> None:
    broker.create_topic("seed", partitions=1)
    with broker.producer() as producer:
        producer.send("seed", b"Hello World!")
        producer.send("seed", b"v\xff", key=b"k\xfe")
        producer.send("seed", None, key=b"tombstone")
        producer.send("seed", b"not read: --count 3")
    assert main(["consume", "seed", "--url", cli_url, "--from-beginning", "--count", "3"]) == 0
    out = lines(capsys.readouterr().out)
    assert out == [
        "Partition:0, Offset:0, key:, value:Hello World!",
        "Partition:0, Offset:1, key:k\ufffd, value:v\ufffd",
        "Partition:0, Offset:2, key:tombstone, value:",
    ]
    assert all(CONSUMED.match(line) for line in out)


def test_consume_stops_after_idle_timeout(
    cli_url: str, broker: bus.Bus, capsys: pytest.CaptureFixture[str]
) -> None:
    broker.create_topic("quiet", partitions=2)
    start = time.monotonic()
    assert main(["consume", "quiet", "--url", cli_url, "--timeout", "0.3"]) == 0
    assert 0.3 <= time.monotonic() - start < 10
    assert capsys.readouterr().out == ""


def test_consume_several_topics(
    cli_url: str, broker: bus.Bus, capsys: pytest.CaptureFixture[str]
) -> None:
    for topic in ("one", "two"):
        broker.create_topic(topic)
        with broker.producer() as producer:
            producer.send(topic, topic.encode())
    argv = ["consume", "one", "two", "--url", cli_url, "--from-beginning", "--count", "2"]
    assert main(argv) == 0
    assert sorted(lines(capsys.readouterr().out)) == [
        "Partition:0, Offset:0, key:, value:one",
        "Partition:0, Offset:0, key:, value:two",
    ]


def test_consume_with_group_commits_what_it_printed(
    cli_url: str, broker: bus.Bus, capsys: pytest.CaptureFixture[str]
) -> None:
    broker.create_topic("orders", partitions=1)
    with broker.producer() as producer:
        for i in range(3):
            producer.send("orders", b"order-%d" % i)
    argv = ["consume", "orders", "--url", cli_url, "--group", "billing", "--from-beginning"]
    assert main([*argv, "--count", "2"]) == 0
    assert lines(capsys.readouterr().out) == [
        "Partition:0, Offset:0, key:, value:order-0",
        "Partition:0, Offset:1, key:, value:order-1",
    ]
    # The group goes on after the last printed message: nothing again, nothing skipped.
    assert main([*argv, "--timeout", "0.5"]) == 0
    assert lines(capsys.readouterr().out) == ["Partition:0, Offset:2, key:, value:order-2"]


def test_consume_reads_messages_sent_while_it_runs(
    cli_url: str, broker: bus.Bus, capsys: pytest.CaptureFixture[str]
) -> None:
    broker.create_topic("live", partitions=3)
    stop = threading.Event()

    def produce() -> None:
        with broker.producer() as producer:
            i = 0
            while not stop.wait(0.02):
                producer.send("live", b"live-%d" % i, key=b"key-%d" % i)
                i += 1

    thread = threading.Thread(target=produce)
    thread.start()
    try:
        assert main(["consume", "live", "--url", cli_url, "--count", "5", "--timeout", "20"]) == 0
    finally:
        stop.set()
        thread.join()
    out = lines(capsys.readouterr().out)
    assert len(out) == 5
    assert all(CONSUMED.match(line) and "value:live-" in line for line in out)


def _sigint_when_handled(handled: Callable[[], bool]) -> threading.Thread:
    """Send SIGINT to this process once the consume command has installed its handler."""

    def run() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if handled():
                time.sleep(0.1)  # let the consumer block in a poll
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.01)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_consume_ctrl_c_closes_cleanly_and_exits_130(
    cli_url: str, broker: bus.Bus, capsys: pytest.CaptureFixture[str]
) -> None:
    broker.create_topic("waiting", partitions=1)
    with broker.producer() as producer:
        producer.send("waiting", b"before Ctrl-C")

    def handled() -> bool:
        return isinstance(
            getattr(signal.getsignal(signal.SIGINT), "__self__", None), _cli._StopFlag
        )

    before = signal.getsignal(signal.SIGINT)
    thread = _sigint_when_handled(handled)
    argv = ["consume", "waiting", "--url", cli_url, "--group", "g", "--from-beginning"]
    assert main(argv) == 130
    thread.join()
    captured = capsys.readouterr()
    assert captured.out == "Partition:0, Offset:0, key:, value:before Ctrl-C\n"
    assert captured.err == "bus: interrupted after 1 message(s)\n"
    assert signal.getsignal(signal.SIGINT) is before  # the handler is put back
    # Closed cleanly: the group committed the printed message and left.
    assert main([*argv, "--timeout", "0.3"]) == 0
    assert capsys.readouterr().out == ""


def _wait_for_sigterm_handler(pid: int) -> None:
    """Wait until ``bus consume`` catches SIGTERM: its stop handler is installed (Linux:
    /proc shows caught signals; elsewhere wait a while)."""
    status = Path(f"/proc/{pid}/status")
    if not status.exists():
        time.sleep(3)
        return
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        caught = next(
            (ln for ln in status.read_text().splitlines() if ln.startswith("SigCgt:")), ""
        )
        if caught and int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)):
            time.sleep(0.2)  # into the poll loop
            return
        time.sleep(0.02)
    pytest.fail("bus consume did not install its signal handler")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_script_consume_ctrl_c_exits_130_without_traceback() -> None:
    process = subprocess.Popen(
        [bus_script(), "consume", "t", "--url", "memory://"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_sigterm_handler(process.pid)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130
    assert out == ""
    assert err == "bus: interrupted after 0 message(s)\n"


# -- bus topics -----------------------------------------------------------------------------


def test_topics_create_list_delete(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["topics", "create", "events", "--partitions", "3", "--config", "retention.ms=60000"]
    assert main([*argv, "--url", url]) == 0
    assert capsys.readouterr().out == "Created topic events with 3 partition(s).\n"
    assert main(["--url", url, "topics", "create", "audit"]) == 0  # --url before the command
    capsys.readouterr()
    assert main(["topics", "list", "--url", url]) == 0
    assert lines(capsys.readouterr().out) == [
        "TOPIC   PARTITIONS",
        "audit   1",
        "events  3",
    ]
    assert main(["topics", "list", "--url", url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"audit": 1, "events": 3}
    assert main(["topics", "create", "events", "--url", url]) == 1
    assert "events" in capsys.readouterr().err
    assert main(["topics", "delete", "events", "--url", url]) == 0
    assert capsys.readouterr().out == "Deleted topic events.\n"
    assert main(["topics", "list", "--url", url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"audit": 1}


# -- bus bench ------------------------------------------------------------------------------


def test_bench_round_trip(cli_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--url", cli_url, "--count", "2000", "--size", "10"]) == 0
    out = lines(capsys.readouterr().out)
    assert len(out) == 2
    for line, what in zip(out, ("produce", "consume"), strict=True):
        assert re.fullmatch(
            rf"{what}: 2000 messages of 10 bytes in [\d.]+ ms: [\d,]+ msg/s, [\d.]+ MB/s", line
        ), line


# -- on a real Kafka broker: both Kafka backends, blocking and asyncio ----------------------


@pytest.fixture(params=["kafka", "aiokafka"])
def kafka_url(request: pytest.FixtureRequest, kafka_broker: Any) -> str:
    return f"{request.param}://{kafka_broker.bootstrap_servers}"


def _bus(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [bus_script(), *argv], input=stdin, capture_output=True, text=True, timeout=120, check=False
    )


def _read_line(process: subprocess.Popen[str], timeout: float) -> str:
    """The next line ``process`` prints, waiting at most ``timeout`` seconds for it."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    assert ready, f"no output within {timeout} s"
    return process.stdout.readline()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_produce_and_consume_in_a_group_across_processes_on_kafka(kafka_url: str) -> None:
    """kafka:// through the blocking API, aiokafka:// through the asyncio one: the same
    lines, the same keyed partitions, and a SIGTERM that commits what was printed."""
    topic = f"cli-{uuid.uuid4().hex[:10]}"
    group = f"g-{topic}"
    with bus.connect(kafka_url) as b:
        b.create_topic(topic, partitions=3)
    produced = _bus(
        "produce",
        topic,
        "--url",
        kafka_url,
        "--key-separator",
        ":",
        stdin="k1:one\nk2:two\nk3:three\n",
    )
    assert produced.returncode == 0, produced.stderr
    assert all(re.fullmatch(r"Partition:\d, Offset:\d", ln) for ln in lines(produced.stdout))
    assert len(lines(produced.stdout)) == 3

    in_group = ["consume", topic, "--url", kafka_url, "--group", group]
    consumed = _bus(*in_group, "--from-beginning", "--count", "3", "--timeout", "60")
    assert consumed.returncode == 0, consumed.stderr
    got = lines(consumed.stdout)
    assert sorted(ln.split("value:")[1] for ln in got) == ["one", "three", "two"]
    for line in got:
        key = line.split("key:")[1].split(",")[0]
        partition = int(line.split(",")[0].removeprefix("Partition:"))
        assert partition == bus.murmur2_partition(key.encode(), 3)

    # A consume with no end, stopped by SIGTERM once it printed a message: it commits it.
    process = subprocess.Popen(
        [bus_script(), *in_group], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert _bus("produce", topic, "--url", kafka_url, stdin="four\n").returncode == 0
        assert _read_line(process, 60).endswith(", key:, value:four\n")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 128 + signal.SIGTERM
        assert process.stderr is not None
        err = process.stderr.read()
        assert err.endswith("bus: interrupted after 1 message(s)\n")
        assert "Traceback" not in err
    finally:
        process.kill()
        process.communicate()
    assert _bus("produce", topic, "--url", kafka_url, stdin="five\n").returncode == 0
    after = _bus(*in_group, "--count", "1", "--timeout", "60")
    assert after.returncode == 0, after.stderr
    assert lines(after.stdout)[0].endswith(", key:, value:five")  # not "four" again
