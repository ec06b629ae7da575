"""The ``bus`` command line: ``backends``, ``produce``, ``consume``, ``topics``, ``demo``,
``bench``.

Every command takes ``--url`` (default ``$BUS_URL``, else ``memory://``). Exit codes:
0 success, 1 a runtime error (the broker refused, a timeout, a closed pipe), 2 a usage
or configuration error (bad option, unknown URL scheme, bad topic name), 130 Ctrl-C.
An expected error prints one line, ``bus: error: ...``, never a traceback; passwords
in URLs are never printed (the core's messages mask them).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import re
import secrets
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import Any, TextIO
from urllib.parse import unquote

import bus
from bus._demo import run_demo
from bus._errors import BusError, ConfigError
from bus._format import format_delivery, format_message
from bus._message import Delivery
from bus._plugins import BackendInfo, registry
from bus.spi import CAPABILITIES

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: Longest a consumer poll blocks before the command looks at its stop flag again.
_TICK = 0.25

_URL_HELP = "bus URL (default: $BUS_URL, else memory://)"

_MEMORY_NOTE = """\
memory:// is an in-process broker: it lives as long as this one command, so
'bus produce' and 'bus consume' run as two commands share nothing on memory://.
Use a broker that other processes can reach (kafka://host:9092) to pair them.
"""

# -- output ---------------------------------------------------------------------------------


def _say(line: str, stream: TextIO | None = None) -> None:
    print(line, file=stream or sys.stdout, flush=True)


def _warn(line: str) -> None:
    with contextlib.suppress(OSError):
        print(f"bus: {line}", file=sys.stderr, flush=True)


# -- entry point ----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``bus`` command with ``argv`` (default ``sys.argv[1:]``); return the
    exit code. Never raises for expected errors: it prints one line to stderr."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors: argparse printed them
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    secrets_ = _passwords(args.url if args.url is not None else os.environ.get("BUS_URL"))
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        _warn("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _drop_stdout()
        _warn("error: output closed before everything was written (broken pipe)")
        return EXIT_RUNTIME
    except (ConfigError, TypeError, ValueError) as exc:
        _warn(f"error: {_mask(str(exc), secrets_)}")
        return EXIT_USAGE
    except (BusError, OSError) as exc:
        _warn(f"error: {_mask(str(exc), secrets_)}")
        return EXIT_RUNTIME


def _passwords(url: str | None) -> list[str]:
    """What looks like a password in ``url`` (``:secret@``), even in a malformed one,
    raw and percent-decoded: a second guard besides the core's own masking."""
    found = re.findall(r":([^:@/?#]+)@", url or "")
    return sorted({*found, *map(unquote, found)}, key=len, reverse=True)


def _mask(text: str, passwords: Sequence[str]) -> str:
    for password in passwords:
        text = text.replace(password, "***")
    return text


def _drop_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file descriptor (tests)
        pass


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``bus`` and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="bus",
        description="polybus: one Producer/Consumer API, any transport chosen by URL.",
        epilog="Run 'bus COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"bus (polybus) {bus.__version__}")
    parser.add_argument("--url", default=None, help=_URL_HELP)
    # Each subcommand takes --url too; SUPPRESS keeps a top-level --url when it has none.
    url = argparse.ArgumentParser(add_help=False)
    url.add_argument("--url", default=argparse.SUPPRESS, help=_URL_HELP)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, summary: str, description: str, epilog: str = "") -> Any:
        return commands.add_parser(
            name,
            parents=[url],
            help=summary,
            description=description,
            epilog=epilog or None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    _add_backends(command)
    _add_produce(command)
    _add_consume(command)
    _add_topics(command, url)
    _add_demo(command)
    _add_bench(command)
    return parser


# -- bus backends ---------------------------------------------------------------------------


def _add_backends(command: Any) -> None:
    legend = "\n".join(f"  {word:<16}{meaning}" for word, meaning in CAPABILITIES.items())
    p = command(
        "backends",
        "list the installed backends and their capabilities",
        "List every backend the plugin registry found: its name, URL schemes,\n"
        "capabilities and the distribution that provides it. Broken plugins are\n"
        "reported as warnings on stderr. (--url is accepted, as by every command,\n"
        "but all backends are listed whatever it says.)",
        f"capabilities:\n{legend}",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(run=_backends)


def _backend_record(info: BackendInfo) -> dict[str, Any]:
    d = info.descriptor
    missing = info.missing()
    version = None
    if info.distribution:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            version = importlib.metadata.version(info.distribution)
    install = f"pip install '{d.extra}'" if missing and d.extra else None
    return {
        "name": d.name,
        "schemes": list(d.schemes),
        "capabilities": [c for c in CAPABILITIES if c in d.capabilities],
        "distribution": info.distribution,
        "version": version,
        "plugin": info.plugin,
        "description": d.description,
        "installed": not missing,
        "missing": missing,
        "install": install,
    }


def _backends(args: argparse.Namespace) -> int:
    reg = registry()
    for problem in reg.problems:
        _warn(f"warning: plugin {problem.plugin}: {problem.problem}")
    records = [_backend_record(reg.backends[name]) for name in sorted(reg.backends)]
    if args.json:
        problems = [{"plugin": p.plugin, "problem": p.problem} for p in reg.problems]
        _say(json.dumps({"backends": records, "problems": problems}, indent=2))
        return EXIT_OK
    if not records:
        _say("no backends installed")
        return EXIT_OK
    rows = [("NAME", "SCHEMES", "DISTRIBUTION", "CAPABILITIES")]
    notes: dict[int, str] = {}
    for r in records:
        provider = " ".join(x for x in (r["distribution"], r["version"]) if x) or "?"
        rows.append(
            (
                r["name"],
                " ".join(f"{s}://" for s in r["schemes"]),
                provider,
                ", ".join(r["capabilities"]),
            )
        )
        if not r["installed"]:
            how = r["install"] or f"needs {', '.join(r['missing'])}"
            notes[len(rows) - 1] = f"not installed: {how}"
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for i, row in enumerate(rows):
        cells = [cell.ljust(w) for cell, w in zip(row, widths, strict=False)]
        _say("  ".join([*cells, row[3]]).rstrip())
        if i in notes:
            _say(f"  {notes[i]}")
    return EXIT_OK


# -- bus produce ----------------------------------------------------------------------------


def _header(value: str) -> tuple[str, bytes]:
    name, sep, data = value.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {value!r}")
    return name, data.encode()


def _add_produce(command: Any) -> None:
    p = command(
        "produce",
        "send each line of stdin as a message",
        "Read lines from stdin and send each as one message to TOPIC (the value is\n"
        "the line without its line ending, as bytes). Prints where each was written:\n"
        "  Partition:%d, Offset:%d\n"
        "At end of input it flushes and exits 0.",
        _MEMORY_NOTE,
    )
    p.add_argument("topic", metavar="TOPIC")
    p.add_argument(
        "--key-separator",
        metavar="SEP",
        help="split each line at the first SEP into key and value ('k<SEP>v'); a line "
        "without SEP is an error",
    )
    p.add_argument("--partition", type=int, metavar="N", help="write to partition N")
    p.add_argument(
        "--header",
        type=_header,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="add a header to every message (repeatable)",
    )
    p.add_argument(
        "--acks",
        choices=["all", "-1", "1", "0"],
        help="acknowledgement each send waits for (default: all)",
    )
    p.add_argument(
        "--async",
        dest="enqueue",
        action="store_true",
        help="do not wait for each acknowledgement: enqueue every line and print the "
        "delivery reports as they arrive (in any order across partitions)",
    )
    p.set_defaults(run=_produce)


def _lines(stream: TextIO) -> Iterator[bytes]:
    source = getattr(stream, "buffer", None)
    if source is None:  # a text-only stream: take its text as UTF-8
        for line in stream:
            yield line.encode()
    else:
        yield from source


def _produce(args: argparse.Namespace) -> int:
    separator = args.key_separator.encode() if args.key_separator is not None else None
    if separator == b"":
        raise ValueError("--key-separator must not be empty")
    options = {"acks": args.acks} if args.acks is not None else {}
    lock = threading.Lock()
    failures: list[BusError] = []

    def report(delivery: Delivery | None, error: BusError | None) -> None:
        with lock:
            if delivery is not None:
                _say(format_delivery(delivery))
            else:
                failures.append(error or BusError("delivery failed"))
                _warn(f"error: delivery failed: {error}")

    with bus.connect(args.url) as b, b.producer(**options) as producer:
        for number, raw in enumerate(_lines(sys.stdin), 1):
            line = raw.removesuffix(b"\n").removesuffix(b"\r")
            key = None
            if separator is not None:
                key, found, line = line.partition(separator)
                if not found:
                    raise ValueError(f"line {number} has no key separator {args.key_separator!r}")
            sending = {"key": key, "headers": args.header, "partition": args.partition}
            if args.enqueue:
                producer.enqueue(args.topic, line, on_delivery=report, **sending)
            else:
                _say(format_delivery(producer.send(args.topic, line, **sending)))
        producer.flush()
    return EXIT_RUNTIME if failures else EXIT_OK


# -- bus consume ----------------------------------------------------------------------------


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {number}")
    return number


def _seconds(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, not {value}")
    return number


def _add_consume(command: Any) -> None:
    p = command(
        "consume",
        "print the messages of topics",
        "Print each message of the TOPICs, one a line:\n"
        "  Partition:%d, Offset:%d, key:%s, value:%s\n"
        "Key and value are decoded as UTF-8 (undecodable bytes become U+FFFD); a\n"
        "missing (None) key or value prints as nothing, as in the Go/sarama consumer.\n"
        "Without --group it reads every partition and commits nothing; with --group\n"
        "it joins that consumer group and commits what it printed when it stops.\n"
        "Stops after --count messages, after --timeout idle seconds, or on Ctrl-C\n"
        "(exit code 130; the consumer is closed cleanly).",
        _MEMORY_NOTE,
    )
    p.add_argument("topics", nargs="+", metavar="TOPIC")
    p.add_argument("--group", metavar="G", help="join consumer group G")
    p.add_argument(
        "--from-beginning",
        action="store_true",
        help="start where no position is committed at the earliest offset "
        "(offset_reset=earliest); default: the latest",
    )
    p.add_argument("--count", type=_positive, metavar="N", help="stop after N messages")
    p.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help="stop after SECONDS without a message",
    )
    p.set_defaults(run=_consume)


class _StopFlag:
    """Turns the first SIGINT/SIGTERM into a flag the consume loop reads between polls
    (so the consumer is never interrupted inside the backend); a second one raises
    ``KeyboardInterrupt`` as usual. Only in the main thread, where Python allows it."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum
        self._restore()

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def __exit__(self, *exc_info: object) -> None:
        self._restore()


def _consume(args: argparse.Namespace) -> int:
    options: dict[str, Any] = {"offset_reset": "earliest" if args.from_beginning else "latest"}
    with (
        _StopFlag() as stop,
        bus.connect(args.url) as b,
        b.consumer(*args.topics, group=args.group, **options) as consumer,
    ):
        count = _pump(consumer, args.count, args.timeout, stop)
        if args.group is not None and count:
            consumer.commit()  # what was printed is processed, the last batch too
    if stop.signum is not None:
        _warn(f"interrupted after {count} message(s)")
        return 128 + stop.signum
    return EXIT_OK


def _pump(consumer: bus.Consumer, limit: int | None, idle: float | None, stop: _StopFlag) -> int:
    count = 0
    last = time.monotonic()
    while stop.signum is None and (limit is None or count < limit):
        wait = _TICK if idle is None else min(_TICK, max(0.0, last + idle - time.monotonic()))
        batch = consumer.poll_batch(500 if limit is None else min(500, limit - count), wait)
        if batch:
            for message in batch:
                print(format_message(message))
            sys.stdout.flush()
            count += len(batch)
            last = time.monotonic()
        elif idle is not None and time.monotonic() - last >= idle:
            break
    return count


# -- bus topics -----------------------------------------------------------------------------


def _config(value: str) -> tuple[str, str]:
    name, sep, data = value.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {value!r}")
    return name, data


def _add_topics(command: Any, url: argparse.ArgumentParser) -> None:
    p = command(
        "topics",
        "list, create or delete topics",
        "Administer topics (needs a backend with the 'admin' capability).",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser(
        "list", parents=[url], help="list topics and their partition counts"
    )
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(run=_topics_list)
    create = actions.add_parser("create", parents=[url], help="create a topic")
    create.add_argument("name", metavar="NAME")
    create.add_argument("--partitions", type=_positive, default=1, metavar="N")
    create.add_argument("--replication-factor", type=_positive, default=1, metavar="N")
    create.add_argument(
        "--config",
        type=_config,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="topic setting such as retention.ms=60000 (repeatable)",
    )
    create.set_defaults(run=_topics_create)
    delete = actions.add_parser("delete", parents=[url], help="delete a topic")
    delete.add_argument("name", metavar="NAME")
    delete.set_defaults(run=_topics_delete)


def _topics_list(args: argparse.Namespace) -> int:
    with bus.connect(args.url) as b:
        topics = b.topics()
    if args.json:
        _say(json.dumps(dict(sorted(topics.items())), indent=2))
        return EXIT_OK
    width = max([5, *map(len, topics)])
    _say(f"{'TOPIC':<{width}}  PARTITIONS")
    for name in sorted(topics):
        _say(f"{name:<{width}}  {topics[name]}")
    return EXIT_OK


def _topics_create(args: argparse.Namespace) -> int:
    with bus.connect(args.url) as b:
        b.create_topic(args.name, args.partitions, args.replication_factor, **dict(args.config))
    _say(f"Created topic {args.name} with {args.partitions} partition(s).")
    return EXIT_OK


def _topics_delete(args: argparse.Namespace) -> int:
    with bus.connect(args.url) as b:
        b.delete_topic(args.name)
    _say(f"Deleted topic {args.name}.")
    return EXIT_OK


# -- bus demo -------------------------------------------------------------------------------


def _add_demo(command: Any) -> None:
    p = command(
        "demo",
        "walk through the classic Kafka client programs",
        "Re-tell the classic Go/sarama Kafka client programs on this URL: a blocking\n"
        "send, fire-and-forget sends with delivery reports, a consumer of every\n"
        "partition from the newest offset, a consumer group with rebalance\n"
        "notifications, and a consumer cancelled mid-stream whose group loses\n"
        "nothing. Uses fresh demo-* topics (deleted at the end) and exits 1 if a\n"
        "check fails.",
    )
    p.add_argument(
        "--timeout",
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="longest wait for one step, such as a rebalance (default: 30)",
    )
    p.set_defaults(run=_demo)


def _demo(args: argparse.Namespace) -> int:
    return EXIT_OK if run_demo(args.url, sys.stdout, timeout=args.timeout) else EXIT_RUNTIME


# -- bus bench ------------------------------------------------------------------------------


def _add_bench(command: Any) -> None:
    p = command(
        "bench",
        "measure a quick produce/consume round trip",
        "Enqueue N messages to a fresh topic, flush, then read them back with\n"
        "poll_batch, and print messages per second for each half. A smoke test of\n"
        "throughput through the public API; the benchmark suite with its peers is\n"
        "'python -m bench.memory' in a source checkout.",
    )
    p.add_argument("--count", type=_positive, default=10_000, metavar="N")
    p.add_argument("--size", type=_positive, default=100, metavar="BYTES")
    p.add_argument("--timeout", type=_seconds, default=60.0, metavar="SECONDS")
    p.set_defaults(run=_bench)


def _rate(what: str, count: int, size: int, seconds: float) -> str:
    seconds = max(seconds, 1e-9)
    return (
        f"{what}: {count} messages of {size} bytes in {seconds * 1000:.1f} ms: "
        f"{count / seconds:,.0f} msg/s, {count * size / seconds / 1e6:.1f} MB/s"
    )


def _bench(args: argparse.Namespace) -> int:
    topic = f"bench-{secrets.token_hex(4)}"
    value = b"x" * args.size
    with bus.connect(args.url) as b:
        admin = "admin" in b.capabilities
        if admin:
            b.create_topic(topic)
        try:
            with b.producer() as producer:
                start = time.perf_counter()
                for _ in range(args.count):
                    producer.enqueue(topic, value)
                producer.flush(args.timeout)
                _say(_rate("produce", args.count, args.size, time.perf_counter() - start))
            with b.consumer(topic, offset_reset="earliest") as consumer:
                start = time.perf_counter()
                deadline = time.monotonic() + args.timeout
                got = 0
                while got < args.count and time.monotonic() < deadline:
                    got += len(consumer.poll_batch(500, _TICK))
                elapsed = time.perf_counter() - start
            if got < args.count:
                raise bus.TimeoutError(
                    f"read {got} of {args.count} messages back within {args.timeout} s"
                )
            _say(_rate("consume", got, args.size, elapsed))
        finally:
            if admin:
                with contextlib.suppress(BusError):
                    b.delete_topic(topic)
    return EXIT_OK
