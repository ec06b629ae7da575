"""The ``bus`` command line: ``backends``, ``produce``, ``consume``, ``topics``,
``groups``, ``run``, ``demo``, ``bench``.

Every command takes ``--url`` (default ``$BUS_URL``, else ``memory://``). Exit codes:
0 success, 1 a runtime error (the broker refused, a timeout, a closed pipe), 2 a usage
or configuration error (bad option, unknown URL scheme, bad topic name), 130 Ctrl-C.
Any error prints one line, ``bus: error: ...``, never a traceback; a bad number is
refused by the parser (``error: argument --partition: ...``, exit 2) before anything is
sent. Passwords in URLs are never printed: the core's messages mask them, and every
line the command writes to stderr is masked again here.

``produce``, ``consume`` and ``bench`` drive a backend through its blocking API, or
through its asyncio API (``asyncio.run``) when it has no blocking one. What the two
paths share is here once: argument parsing, the lines read from stdin, what is
printed, when a consume stops; each I/O path is written out plainly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import importlib.metadata
import json
import logging
import os
import re
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import Any, NoReturn, TextIO
from urllib.parse import unquote

import attrs

import bus
from bus._checks import INT32_MAX, RANGES, check_topic
from bus._cli_kcat import (
    Ends,
    Offset,
    Record,
    first_positions,
    format_type,
    from_json,
    offset_type,
    start_positions,
    to_json,
)
from bus._cli_run import load_handler, run_worker
from bus._demo import run_demo
from bus._errors import BusError, ConfigError
from bus._format import format_delivery, format_message
from bus._message import Delivery, Message, TopicPartition
from bus._plugins import BackendInfo, registry
from bus._url import ENV_VAR, is_secret_key, parse_url
from bus.spi import CAPABILITIES

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: Longest a consumer poll blocks before the command looks at its stop flag again.
_TICK = 0.25
#: Most bytes read from stdin at once (less when less is there: a line typed is sent).
_CHUNK = 65536

_URL_HELP = "bus URL (default: $BUS_URL, else memory://)"

_MEMORY_NOTE = """\
memory:// is an in-process broker: it lives as long as this one command, so
'bus produce' and 'bus consume' run as two commands share nothing on memory://.
Use a backend that other processes can reach to pair them: sqlite:///bus.db (a
file, no server) or kafka://host:9092.
"""

#: What ``bus produce``/``bus consume`` print once when no URL was given at all.
MEMORY_HINT = (
    "note: no --url or $BUS_URL, so this runs on memory://, a broker private to this "
    "command; to pair 'bus produce' with 'bus consume' use --url sqlite:///bus.db "
    "(a file, no server) or --url kafka://HOST:9092"
)


def _hint_if_default(url: str | None) -> None:
    """Say once, on stderr, that the default memory:// is private to the process."""
    if url is None and not os.environ.get(ENV_VAR):
        _warn(MEMORY_HINT)


# -- output ---------------------------------------------------------------------------------


#: What this command must never print: the credentials in its URL (``--url``,
#: ``$BUS_URL``, or anything on its command line that looks like a URL). Set by ``main``.
_secrets: tuple[str, ...] = ()


def _mask(text: str) -> str:
    for secret in _secrets:
        text = text.replace(secret, "***")
    return text


def _say(line: str, stream: TextIO | None = None) -> None:
    print(line, file=stream or sys.stdout, flush=True)


def _warn(line: str) -> None:
    with contextlib.suppress(OSError):
        print(f"bus: {_mask(line)}", file=sys.stderr, flush=True)


class _OneLineLog(logging.Handler):
    """What libraries log (the ``bus`` logger, aiokafka, asyncio) as one masked
    ``bus: warning: ...`` line each, an exception as its type and message, never as a
    traceback."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a library's bad format string is still worth a line
            text = str(record.msg)
        error = record.exc_info[1] if record.exc_info else None
        if error is not None:
            text += f" ({_describe(error)})"
        _warn(f"{record.levelname.lower()}: {record.name}: {text}")


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


@contextlib.contextmanager
def _quiet_libraries() -> Iterator[None]:
    """Library log records as ``_OneLineLog`` lines while a command runs."""
    handler = _OneLineLog(logging.WARNING)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)


# -- entry point ----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``bus`` command with ``argv`` (default ``sys.argv[1:]``); return the
    exit code. Never raises for expected errors: it prints one line to stderr."""
    global _secrets
    words = list(sys.argv[1:] if argv is None else argv)
    _secrets = _secrets_of([os.environ.get(ENV_VAR, ""), *words])
    parser = build_parser()
    try:
        args = parser.parse_args(words)
    except SystemExit as exc:  # --help, --version, usage errors: argparse printed them
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        with _quiet_libraries():
            return int(args.run(args))
    except KeyboardInterrupt:
        _warn("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _drop_stdout()
        _warn("error: output closed before everything was written (broken pipe)")
        return EXIT_RUNTIME
    except (ConfigError, TypeError, ValueError) as exc:
        _warn(f"error: {exc}")
        return EXIT_USAGE
    except (BusError, OSError) as exc:
        _warn(f"error: {exc}")
        return EXIT_RUNTIME
    except Exception as exc:  # a bug or an exhausted machine: still one line
        _warn(f"error: unexpected {_describe(exc)}")
        return EXIT_RUNTIME


#: ``scheme:[//]user:PASSWORD@...``: where a password may be in text that does not
#: parse as a URL (everything between the user's ``:`` and the last ``@``).
_CREDENTIALS = re.compile(r"^[^:]*:/*[^:/@]*:(.*)@")


def _secrets_of(words: Sequence[str]) -> tuple[str, ...]:
    """The credentials in every word that may be a URL (``--url=kafka://...`` too), as
    the core parses them (the password, query values whose names say secret) and as
    written (percent-encoded), longest first."""
    found: set[str] = set()
    for word in words:
        text = word.removeprefix("--url=").strip()
        try:
            url = parse_url(text)
        except (ConfigError, TypeError):
            url = None
        raw = _CREDENTIALS.match(text)
        if raw is not None and (url is None or url.password is not None):
            found.add(raw[1])
        if url is None:
            continue
        found.add(url.password or "")
        found.update(value for key, value in url.query if is_secret_key(key))
        for item in text.partition("?")[2].split("&"):
            key, _, value = item.partition("=")
            if is_secret_key(unquote(key)):
                found.update((value, unquote(value)))
    return tuple(sorted(found - {""}, key=len, reverse=True))


def _drop_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file descriptor (tests)
        pass


_SHORT_FORMS = re.compile(r"argument (--[\w-]+)(?:/-\w)+:")


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors never show a password (a URL given where
    another argument belongs is quoted back: ``unrecognized arguments: kafka://...``)."""

    def error(self, message: str) -> NoReturn:
        # "argument --partition/-p: ..." names an option by its long form alone.
        message = _SHORT_FORMS.sub(r"argument \1:", message)
        super().error(_mask(message))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``bus`` and its subcommands."""
    parser = _Parser(
        prog="bus",
        description="polybus: one Producer/Consumer API, any transport chosen by URL.",
        epilog="Run 'bus COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"bus (polybus) {bus.__version__}")
    parser.add_argument("--url", default=None, help=_URL_HELP)
    # Each subcommand takes --url too; SUPPRESS keeps a top-level --url when it has none.
    url = _Parser(add_help=False)
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
    _add_groups(command, url)
    _add_run(command)
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


# -- argument types -------------------------------------------------------------------------
# A bad value is refused while the arguments are parsed, so argparse prints it as
# "error: argument --partition: must be 0 to 2147483647, not 2147483648" and exits 2:
# before the command connects, reads stdin or sends anything.


def _integer(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argument type: an integer from ``low`` to ``high`` (``None``: no upper bound)."""
    shown = f"{low} to {high}" if high is not None else f"at least {low}"

    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            quoted = repr(text) if len(text) <= 40 else repr(text[:37] + "...")
            raise argparse.ArgumentTypeError(f"must be an integer, {shown}, not {quoted}") from None
        if number < low or (high is not None and number > high):
            raise argparse.ArgumentTypeError(f"must be {shown}, not {number}")
        return number

    return parse


def _span(name: str) -> str:
    low, high = RANGES[name]
    return f"{low} to {high}"


def _field(name: str) -> Callable[[str], int]:
    """An argument type: an integer within the range of the message or topic field
    ``name``, the one the API checks (``bus._checks.RANGES``)."""
    return _integer(*RANGES[name])


def _seconds(text: str) -> float:
    """An argument type: a number of seconds, more than 0 and no more than a thread can
    wait for (``threading.TIMEOUT_MAX``)."""
    try:
        number = float(text)
    except ValueError:
        number = float("nan")
    if not 0 < number <= threading.TIMEOUT_MAX:
        raise argparse.ArgumentTypeError(
            f"must be a number of seconds > 0 and at most {threading.TIMEOUT_MAX:.0f}, not {text}"
        )
    return number


def _topic(text: str) -> str:
    try:
        return check_topic(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _separator(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def _header(value: str) -> tuple[str, bytes]:
    name, sep, data = value.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {value!r}")
    return name, data.encode()


def _config(value: str) -> tuple[str, str]:
    name, sep, data = value.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {value!r}")
    return name, data


_count = _integer(1)


# -- bus produce ----------------------------------------------------------------------------


def _add_produce(command: Any) -> None:
    p = command(
        "produce",
        "send each line of stdin as a message",
        "Read lines from stdin and send each as one message to TOPIC (the value is\n"
        "the line without its line ending, as bytes). Prints where each was written:\n"
        "  Partition:%d, Offset:%d\n"
        "At end of input it flushes and exits 0. As in kcat: -k/-K keys, -H headers,\n"
        "-Z empty is null, -J reads what 'bus consume -J' prints.",
        _MEMORY_NOTE,
    )
    p.add_argument("topic", type=_topic, metavar="TOPIC")
    shape = p.add_mutually_exclusive_group()
    shape.add_argument(
        "--key-separator",
        "-K",
        type=_separator,
        metavar="SEP",
        help="split each line at the first SEP into key and value ('k<SEP>v'); a line "
        "without SEP is an error",
    )
    shape.add_argument("--key", "-k", metavar="KEY", help="give every message the key KEY")
    shape.add_argument(
        "--json",
        "-J",
        action="store_true",
        help="read each line as 'bus consume -J' prints it: its key, value, headers, "
        "partition and timestamp are sent (topic and offset are ignored)",
    )
    p.add_argument(
        "--null",
        "-Z",
        action="store_true",
        help="send an empty value (and, with -K, an empty key) as None (null)",
    )
    p.add_argument(
        "--partition",
        "-p",
        type=_field("partition"),
        metavar="N",
        help=f"write to partition N ({_span('partition')})",
    )
    p.add_argument(
        "--header",
        "-H",
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


@attrs.define
class _Lines:
    """The records to send, from stdin's bytes fed chunk by chunk as they are read: one
    a line, its line ending removed (a last line without one counts too), split at the
    first ``separator`` into key and value when there is one, keyed ``key`` when that
    is given, read as ``consume -J`` JSON with ``json``; ``null``: empty is None."""

    separator: str | None = None
    key: bytes | None = None
    json: bool = False
    null: bool = False
    _partial: list[bytes] = attrs.Factory(list)
    _number: int = 0

    def feed(self, chunk: bytes) -> Iterator[Record]:
        """The records of the lines ``chunk`` completes; ``b""`` (the end of input)
        completes the last one. A line without the separator (or not JSON, with
        ``json``) raises ``ValueError`` in its turn, after the records before it."""
        *complete, rest = chunk.split(b"\n")
        if complete:
            complete[0] = b"".join([*self._partial, complete[0]])
            self._partial.clear()
        if rest:
            self._partial.append(rest)
        elif not chunk and self._partial:
            complete = [b"".join(self._partial)]
            self._partial.clear()
        return (self._record(line) for line in complete)

    def _empty_is_null(self, data: bytes) -> bytes | None:
        return None if self.null and not data else data

    def _record(self, line: bytes) -> Record:
        self._number += 1
        line = line.removesuffix(b"\r")
        if self.json:
            return from_json(line, self._number)
        if self.separator is None:
            return Record(self.key, self._empty_is_null(line))
        key, found, value = line.partition(self.separator.encode())
        if not found:
            raise ValueError(f"line {self._number} has no key separator {self.separator!r}")
        return Record(self._empty_is_null(key), self._empty_is_null(value))


def _reader(stream: TextIO) -> Callable[[int], bytes]:
    """``read(n)`` of ``stream``: up to ``n`` bytes, what is there without waiting for
    more (a line typed at a terminal is sent at once); ``b""`` at the end. A real file
    is read through its descriptor, which holds no lock a reading thread could keep
    at the interpreter's exit."""
    try:
        return functools.partial(os.read, stream.fileno())
    except (AttributeError, OSError, ValueError):  # no descriptor: a stream in memory
        pass
    source = getattr(stream, "buffer", None)
    if source is None:  # a text-only stream: its text as UTF-8
        return lambda size: stream.readline(size).encode()
    return getattr(source, "read1", source.read)  # type: ignore[no-any-return]


class _Reports:
    """The delivery reports of ``produce --async``, from whichever thread or task the
    backend calls them in: each printed as it arrives, failures counted. An error
    writing to stdout is kept for ``check`` to raise (from a callback it would only be
    logged)."""

    def __init__(self) -> None:
        self.failed = 0
        self._broken: OSError | None = None
        self._lock = threading.Lock()

    def __call__(self, delivery: Delivery | None, error: BusError | None) -> None:
        with self._lock:
            if delivery is None:
                self.failed += 1
                _warn(f"error: delivery failed: {error}")
            elif self._broken is None:
                try:
                    _say(format_delivery(delivery))
                except OSError as exc:
                    self._broken = exc

    def check(self) -> None:
        """Raise the error that stopped the printing, if one did."""
        if self._broken is not None:
            raise self._broken


@attrs.define
class _Produce:
    """One ``bus produce``, as its arguments say: what both I/O paths need."""

    topic: str
    options: dict[str, Any]
    headers: tuple[tuple[str, bytes], ...]
    partition: int | None
    enqueue: bool
    lines: _Lines
    reports: _Reports
    timestamps: bool = False

    @classmethod
    def of(cls, args: argparse.Namespace) -> _Produce:
        return cls(
            topic=args.topic,
            options={"acks": args.acks} if args.acks is not None else {},
            headers=tuple(args.header),
            partition=args.partition,
            enqueue=args.enqueue,
            lines=_Lines(
                args.key_separator,
                None if args.key is None else args.key.encode(),
                args.json,
                args.null,
            ),
            reports=_Reports(),
        )

    def sending(self, record: Record) -> dict[str, Any]:
        """The keyword arguments of ``send``/``enqueue`` for ``record``: ``-p`` wins
        over a JSON line's partition, ``-H`` headers follow the line's own, a JSON
        line's timestamp is kept (on a backend with ``timestamps``; else dropped)."""
        return {
            "key": record.key,
            "headers": [*record.headers, *self.headers],
            "partition": record.partition if self.partition is None else self.partition,
            "timestamp": record.timestamp if self.timestamps else None,
        }


def _produce(args: argparse.Namespace) -> int:
    job = _Produce.of(args)
    _hint_if_default(args.url)
    with bus.connect(args.url) as b:
        job.timestamps = "timestamps" in b.capabilities
        if "sync" in b.capabilities:
            _produce_blocking(b, job)
        else:
            asyncio.run(_produce_asyncio(b, job))
    return EXIT_RUNTIME if job.reports.failed else EXIT_OK


def _produce_blocking(b: bus.Bus, job: _Produce) -> None:
    read = _reader(sys.stdin)
    with b.producer(**job.options) as producer:
        while True:
            chunk = read(_CHUNK)
            for record in job.lines.feed(chunk):
                sending = job.sending(record)
                if job.enqueue:
                    producer.enqueue(job.topic, record.value, on_delivery=job.reports, **sending)
                    job.reports.check()
                else:
                    _say(format_delivery(producer.send(job.topic, record.value, **sending)))
            if not chunk:
                break
        producer.flush()
    job.reports.check()


async def _produce_asyncio(b: bus.Bus, job: _Produce) -> None:
    stdin = _StdinThread(_reader(sys.stdin))
    async with b.async_producer(**job.options) as producer:
        while True:
            chunk = await stdin.read()
            for record in job.lines.feed(chunk):
                sending = job.sending(record)
                if job.enqueue:
                    await producer.enqueue(
                        job.topic, record.value, on_delivery=job.reports, **sending
                    )
                    job.reports.check()
                else:
                    delivery = await producer.send(job.topic, record.value, **sending)
                    _say(format_delivery(delivery))
            if not chunk:
                break
        await producer.flush()
    job.reports.check()


class _StdinThread:
    """stdin for the asyncio path, read one chunk ahead by a daemon thread: the event
    loop never blocks on input, and a Ctrl-C never waits for input that does not come
    (a daemon thread does not hold up the interpreter's exit). Made in the loop."""

    def __init__(self, read: Callable[[int], bytes]) -> None:
        self._loop = asyncio.get_running_loop()
        self._chunks: asyncio.Queue[bytes | Exception] = asyncio.Queue()
        self._ahead = threading.Semaphore(1)
        thread = threading.Thread(target=self._run, args=(read,), name="bus-stdin", daemon=True)
        thread.start()

    def _run(self, read: Callable[[int], bytes]) -> None:
        while True:
            self._ahead.acquire()
            chunk: bytes | Exception
            try:
                chunk = read(_CHUNK)
            except Exception as exc:
                chunk = exc
            try:
                self._loop.call_soon_threadsafe(self._chunks.put_nowait, chunk)
            except RuntimeError:  # the loop is closed: the command is over
                return
            if not isinstance(chunk, bytes) or not chunk:
                return

    async def read(self) -> bytes:
        """The next chunk, ``b""`` at the end; raises what reading raised."""
        chunk = await self._chunks.get()
        self._ahead.release()
        if isinstance(chunk, Exception):
            raise chunk
        return chunk


# -- bus consume ----------------------------------------------------------------------------


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
        "Stops after --count messages, after --timeout idle seconds, with -e at the\n"
        "end of every partition, or on Ctrl-C (exit code 130; the consumer is closed\n"
        "cleanly). As in kcat: -o where to start, -p one partition, -f/-J the output.",
        _MEMORY_NOTE,
    )
    p.add_argument("topics", nargs="+", type=_topic, metavar="TOPIC")
    p.add_argument("--group", metavar="G", help="join consumer group G")
    p.add_argument(
        "--from-beginning",
        action="store_true",
        help="start where no position is committed at the earliest offset "
        "(offset_reset=earliest); default: the latest",
    )
    p.add_argument("--count", "-c", type=_count, metavar="N", help="stop after N messages")
    p.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help="stop after SECONDS without a message",
    )
    p.add_argument(
        "--partition",
        "-p",
        type=_field("partition"),
        metavar="N",
        help="read only partition N of each TOPIC (without a group)",
    )
    p.add_argument(
        "--offset",
        "-o",
        type=offset_type,
        metavar="OFFSET",
        help="where each partition starts: beginning, end, stored (the group's committed "
        "position; needs --group), N (that offset), -N (N before the end), @MS (the first "
        "message at or after MS milliseconds since the epoch); N, -N and @MS without a group",
    )
    p.add_argument(
        "--exit",
        "-e",
        action="store_true",
        help="exit once every partition read reached the end it had when the consume started",
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument(
        "--format",
        "-f",
        type=format_type,
        metavar="FORMAT",
        help="print each message as FORMAT: %%t topic, %%p partition, %%o offset, %%k key, "
        "%%s value, %%T timestamp (ms), %%h headers (name=value,...), \\n \\t escapes; "
        "no line ending is added",
    )
    out.add_argument(
        "--json",
        "-J",
        action="store_true",
        help="print one JSON object a line: topic, partition, offset, timestamp, key, value, "
        'headers ([[name, value], ...]); UTF-8 bytes as strings, others as {"base64": ...}',
    )
    p.set_defaults(run=_consume)


class _StopFlag:
    """Turns the first SIGINT/SIGTERM into a flag the consume loop reads between polls
    (so the consumer is never interrupted inside the backend); a second one raises
    ``KeyboardInterrupt`` as usual. Only in the main thread, where Python allows it.
    The same on both paths: ``asyncio.run`` leaves alone a SIGINT handler it finds."""

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


@attrs.define
class _Pace:
    """When a consume stops (after ``limit`` messages, after ``idle`` seconds without
    one, once ``stop`` caught a signal, or with ``-e`` once ``ends`` are reached) and
    what each poll asks for until then: at most ``_TICK`` seconds, so a signal is seen
    soon. ``show`` prints a message."""

    limit: int | None
    idle: float | None
    stop: _StopFlag
    show: Callable[[Message], None]
    ends: Ends | None = None
    count: int = 0
    _last: float = attrs.Factory(time.monotonic)
    _idled: bool = False

    def going(self) -> bool:
        return (
            self.stop.signum is None
            and not self._idled
            and (self.limit is None or self.count < self.limit)
            and (self.ends is None or not self.ends.done())
        )

    def wanted(self) -> int:
        return 500 if self.limit is None else min(500, self.limit - self.count)

    def wait(self) -> float:
        if self.idle is None:
            return _TICK
        return min(_TICK, max(0.0, self._last + self.idle - time.monotonic()))

    def took(self, batch: list[Message]) -> None:
        """Print what a poll returned and count it (or the idle time it took)."""
        if batch:
            for message in batch:
                self.show(message)
                if self.ends is not None:
                    self.ends.saw(message)
            sys.stdout.flush()
            self.count += len(batch)
            self._last = time.monotonic()
        elif self.idle is not None and time.monotonic() - self._last >= self.idle:
            self._idled = True


def _printer(args: argparse.Namespace) -> Callable[[Message], None]:
    """How each message is printed: ``-J``, ``-f FORMAT`` (no line ending added) or the
    default line."""
    if args.json:
        return lambda message: print(to_json(message))
    if args.format is not None:
        fmt = args.format

        def write(message: Message) -> None:
            sys.stdout.write(fmt(message))

        return write
    return lambda message: print(format_message(message))


@attrs.define
class _ConsumePlan:
    """What a ``bus consume`` reads and where it starts and ends, as its arguments say.

    Without a group and with ``-p``, a seeking ``-o`` or ``-e`` it reads given
    partitions (``partitions=``, every partition of each topic unless ``-p``); else it
    subscribes to the topics. ``positions`` says whether watermarks are needed."""

    topics: tuple[str, ...]
    group: str | None
    offset: Offset | None
    earliest: bool
    exit: bool
    partitions: list[TopicPartition] | None
    watched: list[TopicPartition]

    @classmethod
    def of(cls, args: argparse.Namespace, b: bus.Bus) -> _ConsumePlan:
        offset: Offset | None = args.offset
        if args.group is not None and args.partition is not None:
            raise ValueError("-p/--partition reads a partition without a group: drop --group")
        if args.group is not None and offset is not None and offset.seeks:
            raise ValueError(
                "with --group, -o/--offset takes beginning, end or stored "
                "(N, -N and @MS read without a group)"
            )
        if args.group is None and offset is not None and offset.kind == "stored":
            raise ValueError("-o stored starts at the group's committed position: needs --group")
        earliest = args.from_beginning
        if offset is not None and offset.kind != "stored":
            earliest = offset.kind != "end"
        watched: list[TopicPartition] = []
        if args.partition is not None:
            watched = [TopicPartition(t, args.partition) for t in args.topics]
        elif args.exit or (offset is not None and offset.seeks):
            watched = [TopicPartition(t, n) for t in args.topics for n in b.partitions(t)]
        given = args.group is None and (
            args.partition is not None or args.exit or (offset is not None and offset.seeks)
        )
        return cls(
            topics=tuple(args.topics),
            group=args.group,
            offset=offset,
            earliest=earliest,
            exit=args.exit,
            partitions=watched if given else None,
            watched=watched,
        )

    @property
    def options(self) -> dict[str, Any]:
        return {"offset_reset": "earliest" if self.earliest else "latest"}

    @property
    def topic_names(self) -> tuple[str, ...]:
        return () if self.partitions is not None else self.topics

    @property
    def seeks(self) -> bool:
        return self.offset is not None and self.offset.seeks

    @property
    def positions(self) -> bool:
        return self.exit or self.seeks

    @property
    def times(self) -> dict[TopicPartition, int]:
        if self.offset is None or self.offset.kind != "time":
            return {}
        return dict.fromkeys(self.watched, self.offset.value)

    def start(
        self,
        watermarks: dict[TopicPartition, tuple[int, int]],
        times: dict[TopicPartition, int | None],
        committed: dict[TopicPartition, int | None],
    ) -> tuple[dict[TopicPartition, int], Ends | None]:
        """The seeks to make and the ``-e`` ends, from what the broker answered."""
        seeks = start_positions(self.offset, watermarks, times) if self.offset else {}
        if not self.seeks:
            seeks = {}
        if not self.exit:
            return seeks, None
        first = first_positions(
            self.offset or Offset("stored"), self.earliest, watermarks, seeks, committed
        )
        return seeks, Ends({tp: high for tp, (_, high) in watermarks.items()}, first)


def _consume(args: argparse.Namespace) -> int:
    _hint_if_default(args.url)
    show = _printer(args)
    with _StopFlag() as stop, bus.connect(args.url) as b:
        plan = _ConsumePlan.of(args, b)
        pace = _Pace(args.count, args.timeout, stop, show)
        if "sync" in b.capabilities:
            count = _consume_blocking(b, plan, pace)
        else:
            count = asyncio.run(_consume_asyncio(b, plan, pace))
    if stop.signum is not None:
        _warn(f"interrupted after {count} message(s)")
        return 128 + stop.signum
    return EXIT_OK


def _consume_blocking(b: bus.Bus, plan: _ConsumePlan, pace: _Pace) -> int:
    with b.consumer(
        *plan.topic_names, group=plan.group, partitions=plan.partitions, **plan.options
    ) as consumer:
        if plan.positions:
            marks = {tp: consumer.watermarks(tp.topic, tp.partition) for tp in plan.watched}
            times = consumer.offsets_for_times(plan.times) if plan.times else {}
            committed = consumer.committed(plan.watched) if plan.group and plan.exit else {}
            seeks, pace.ends = plan.start(marks, times, committed)
            for tp, offset in seeks.items():
                consumer.seek(tp.topic, tp.partition, offset)
        while pace.going():
            pace.took(consumer.poll_batch(pace.wanted(), pace.wait()))
        if plan.group is not None and pace.count:
            consumer.commit()  # what was printed is processed, the last batch too
    return pace.count


async def _consume_asyncio(b: bus.Bus, plan: _ConsumePlan, pace: _Pace) -> int:
    async with b.async_consumer(
        *plan.topic_names, group=plan.group, partitions=plan.partitions, **plan.options
    ) as consumer:
        if plan.positions:
            marks = {tp: await consumer.watermarks(tp.topic, tp.partition) for tp in plan.watched}
            times = await consumer.offsets_for_times(plan.times) if plan.times else {}
            committed = await consumer.committed(plan.watched) if plan.group and plan.exit else {}
            seeks, pace.ends = plan.start(marks, times, committed)
            for tp, offset in seeks.items():
                await consumer.seek(tp.topic, tp.partition, offset)
        while pace.going():
            pace.took(await consumer.poll_batch(pace.wanted(), pace.wait()))
        if plan.group is not None and pace.count:
            await consumer.commit()  # what was printed is processed, the last batch too
    return pace.count


# -- bus run --------------------------------------------------------------------------------


def _add_run(command: Any) -> None:
    p = command(
        "run",
        "run a handler over topics as a worker of a consumer group",
        "Import HANDLER from MODULE (the current directory first, as 'python -m'\n"
        "does) and run it as a worker over TOPICs in group G: handler(message) for\n"
        "each message, returning means processed. A coroutine function runs as an\n"
        "asyncio worker. A failure is retried --retries times with exponential\n"
        "backoff, then sent to --dead-letter (a topic; {topic} is replaced by the\n"
        "message's), else the worker stops, commits what was processed and exits 1.\n"
        "SIGTERM or Ctrl-C stop it: no new message starts, handlers at work finish\n"
        "within --shutdown-timeout, processed positions are committed, the group is\n"
        "left, and it exits 0. A second signal stops it at once.",
        "example: bus run billing:handle orders --group billing --concurrency 4 "
        "--retries 3 --dead-letter '{topic}.DLT'",
    )
    p.add_argument(
        "handler", metavar="MODULE:HANDLER", help="the handler, e.g. myapp.billing:handle"
    )
    p.add_argument("topics", nargs="+", type=_topic, metavar="TOPIC")
    p.add_argument("--group", required=True, metavar="G", help="the consumer group to work in")
    p.add_argument(
        "--concurrency",
        type=_integer(1, 1024),
        default=1,
        metavar="N",
        help="handle up to N partitions at once (default: 1)",
    )
    p.add_argument(
        "--retries",
        type=_integer(0, 1000),
        default=0,
        metavar="N",
        help="retry a failed message N times (default: 0)",
    )
    p.add_argument(
        "--backoff",
        type=_seconds,
        default=0.2,
        metavar="SECONDS",
        help="wait before the first retry, doubled for each next one (default: 0.2)",
    )
    p.add_argument(
        "--max-backoff",
        type=_seconds,
        default=5.0,
        metavar="SECONDS",
        help="longest wait between retries (default: 5)",
    )
    p.add_argument(
        "--dead-letter", metavar="T", help="send messages that failed every retry to topic T"
    )
    p.add_argument(
        "--shutdown-timeout",
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="how long handlers at work may take to finish once stopped (default: 30)",
    )
    p.add_argument(
        "--from-beginning",
        action="store_true",
        help="start where the group committed nothing at the earliest offset; default: latest",
    )
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    handler = load_handler(args.handler)
    retry = None
    if args.retries:
        retry = bus.Retry(
            attempts=args.retries + 1,
            backoff=args.backoff,
            max_backoff=max(args.max_backoff, args.backoff),
        )
    with bus.connect(args.url) as b:
        _warn(
            f"running {args.handler} over {', '.join(args.topics)} in group {args.group!r} "
            f"on {b.url.redacted()}; SIGTERM or Ctrl-C stops it"
        )
        handled = run_worker(
            b,
            handler,
            args.topics,
            group=args.group,
            concurrency=args.concurrency,
            retry=retry,
            dead_letter=args.dead_letter,
            shutdown_timeout=args.shutdown_timeout,
            offset_reset="earliest" if args.from_beginning else "latest",
        )
    _warn(f"stopped after {handled} message(s)")
    return EXIT_OK


# -- bus topics -----------------------------------------------------------------------------


def _add_topics(command: Any, url: argparse.ArgumentParser) -> None:
    p = command(
        "topics",
        "list, create, delete or describe topics",
        "Administer topics (needs a backend with the 'admin' capability).",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser(
        "list", parents=[url], help="list topics and their partition counts"
    )
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(run=_topics_list)
    create = actions.add_parser("create", parents=[url], help="create a topic")
    create.add_argument("name", type=_topic, metavar="NAME")
    create.add_argument(
        "--partitions",
        type=_field("partitions"),
        default=1,
        metavar="N",
        help=f"number of partitions, {_span('partitions')} (default: 1)",
    )
    create.add_argument(
        "--replication-factor",
        type=_field("replication_factor"),
        default=1,
        metavar="N",
        help=f"copies of each partition, {_span('replication_factor')} (default: 1)",
    )
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
    delete.add_argument("name", type=_topic, metavar="NAME")
    delete.set_defaults(run=_topics_delete)
    describe = actions.add_parser(
        "describe",
        parents=[url],
        help="show a topic's partitions: leaders, replicas and watermarks",
    )
    describe.add_argument("name", type=_topic, metavar="NAME")
    describe.add_argument("--json", action="store_true", help="print JSON instead of a table")
    describe.set_defaults(run=_topics_describe)


def _table(rows: Sequence[Sequence[str]]) -> None:
    """Print ``rows`` (the first the heading) in left-aligned columns."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        _say("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _topics_describe(args: argparse.Namespace) -> int:
    with bus.connect(args.url) as b:
        try:
            described = b.describe_topic(args.name)
        except bus.UnsupportedError:  # a backend without it: the watermarks alone
            described = _described_by_watermarks(b, args.name)
    if args.json:
        parts = [
            {
                "partition": p.partition,
                "leader": p.leader,
                "replicas": list(p.replicas),
                "in_sync": list(p.in_sync),
                "low": p.low,
                "high": p.high,
                "messages": p.messages,
            }
            for p in described.partitions
        ]
        _say(json.dumps({"topic": described.topic, "partitions": parts}, indent=2))
        return EXIT_OK
    _say(f"Topic: {described.topic}  Partitions: {len(described.partitions)}")
    rows: list[tuple[str, ...]] = [
        ("PARTITION", "LEADER", "REPLICAS", "ISR", "LOW-WATERMARK", "HIGH-WATERMARK", "MESSAGES")
    ]
    rows += [
        (
            str(p.partition),
            _dash(p.leader),
            ",".join(map(str, p.replicas)) or "-",
            ",".join(map(str, p.in_sync)) or "-",
            str(p.low),
            str(p.high),
            str(p.messages),
        )
        for p in described.partitions
    ]
    _table(rows)
    return EXIT_OK


def _described_by_watermarks(b: bus.Bus, topic: str) -> bus.TopicDescription:
    """``topic`` described through a consumer's ``watermarks``, for a backend whose
    ``describe_topic`` is unsupported: no leaders or replicas."""
    wanted = [TopicPartition(topic, n) for n in b.partitions(topic)]
    if "sync" in b.capabilities:
        with b.consumer(partitions=wanted) as consumer:
            marks = [consumer.watermarks(tp.topic, tp.partition) for tp in wanted]
    else:
        marks = asyncio.run(_watermarks_asyncio(b, wanted))
    return bus.TopicDescription(
        topic,
        [
            bus.PartitionDescription(tp.partition, low, high)
            for tp, (low, high) in zip(wanted, marks, strict=True)
        ],
    )


async def _watermarks_asyncio(b: bus.Bus, wanted: list[TopicPartition]) -> list[tuple[int, int]]:
    async with b.async_consumer(partitions=wanted) as consumer:
        return [await consumer.watermarks(tp.topic, tp.partition) for tp in wanted]


# -- bus groups -----------------------------------------------------------------------------


def _add_groups(command: Any, url: argparse.ArgumentParser) -> None:
    p = command(
        "groups",
        "list or describe consumer groups",
        "Inspect consumer groups (needs a backend with the 'admin' and\n"
        "'consumer_groups' capabilities).",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", parents=[url], help="list the consumer groups")
    listing.add_argument("--json", action="store_true", help="print a JSON list")
    listing.set_defaults(run=_groups_list)
    describe = actions.add_parser(
        "describe", parents=[url], help="show a group's members, committed offsets and lag"
    )
    describe.add_argument("group", metavar="G")
    describe.add_argument("--json", action="store_true", help="print JSON instead of a table")
    describe.set_defaults(run=_groups_describe)


def _groups_list(args: argparse.Namespace) -> int:
    with bus.connect(args.url) as b:
        names = b.groups()
    if args.json:
        _say(json.dumps(names))
    for name in [] if args.json else names:
        _say(name)
    return EXIT_OK


def _dash(value: object) -> str:
    return "-" if value is None else str(value)


def _groups_describe(args: argparse.Namespace) -> int:
    with bus.connect(args.url) as b:
        group = b.describe_group(args.group)
    owner = {tp: m for m in group.members for tp in m.assignment}
    if args.json:
        data = {
            "group": group.group,
            "state": group.state,
            "total_lag": group.total_lag,
            "members": [
                {
                    "member_id": m.member_id,
                    "client_id": m.client_id,
                    "host": m.host,
                    "assignment": [[tp.topic, tp.partition] for tp in sorted(m.assignment)],
                }
                for m in group.members
            ],
            "partitions": [attrs.asdict(p) for p in group.partitions],
        }
        _say(json.dumps(data, indent=2))
        return EXIT_OK
    rows = [
        (
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG",
            "CONSUMER-ID",
            "HOST",
            "CLIENT-ID",
        )
    ]
    for p in group.partitions:
        member = owner.get(TopicPartition(p.topic, p.partition))
        rows.append(
            (
                p.topic,
                str(p.partition),
                _dash(p.committed),
                str(p.end),
                _dash(p.lag),
                _dash(member and member.member_id),
                _dash(member and member.host),
                _dash(member and member.client_id),
            )
        )
    _table(rows)
    _say("")
    _say(
        f"Group {group.group} is {group.state} with {len(group.members)} member(s); "
        f"total lag {group.total_lag}."
    )
    return EXIT_OK


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
    p.add_argument("--count", type=_count, default=10_000, metavar="N")
    # A value longer than an int32 cannot be a Kafka record on any backend.
    p.add_argument("--size", type=_integer(1, INT32_MAX), default=100, metavar="BYTES")
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
            if "sync" in b.capabilities:
                got, elapsed = _bench_blocking(b, topic, value, args)
            else:
                got, elapsed = asyncio.run(_bench_asyncio(b, topic, value, args))
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


def _bench_blocking(
    b: bus.Bus, topic: str, value: bytes, args: argparse.Namespace
) -> tuple[int, float]:
    """Produce (and print its rate), then consume: how many came back, in how long."""
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
        return got, time.perf_counter() - start


async def _bench_asyncio(
    b: bus.Bus, topic: str, value: bytes, args: argparse.Namespace
) -> tuple[int, float]:
    """``_bench_blocking`` through the asyncio API."""
    async with b.async_producer() as producer:
        start = time.perf_counter()
        for _ in range(args.count):
            await producer.enqueue(topic, value)
        await producer.flush(args.timeout)
        _say(_rate("produce", args.count, args.size, time.perf_counter() - start))
    async with b.async_consumer(topic, offset_reset="earliest") as consumer:
        start = time.perf_counter()
        deadline = time.monotonic() + args.timeout
        got = 0
        while got < args.count and time.monotonic() < deadline:
            got += len(await consumer.poll_batch(500, _TICK))
        return got, time.perf_counter() - start
