"""What every polybus benchmark shares: timing, alternating runs, rows, output.

A benchmark module (``bench.memory``, ``bench.kafka``, ``bench.aiokafka``) defines
``Contender``s, workloads that move ``n`` messages and time only the measured part
with a ``Stopwatch``, and pairs each of its cases with a peer library doing the same
work. ``alternate`` runs the two in turns (ours, peer, ours, peer, ...) so that a
change in machine load hits both; the rate reported is the best run (the least
disturbed one; the median is recorded too). ``save`` merges the rows into the
results file, replacing only the rows of that benchmark.

Results file: a JSON list of ``{"case", "ours", "baseline_name", "baseline", "ratio",
...}`` objects, rates in messages per second. Environment facts (Python, CPUs,
load, library versions) go to a sibling ``<name>.env.json``, keyed by benchmark.

The last section serves the two benchmarks on a real Kafka broker (``bench.kafka``,
``bench.aiokafka``): the broker, fresh topics, a clock that also records the broker's
CPU time, their shared options and their partial (``--only``) runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import gc
import json
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import bus
from bench.goals import BY_CASE, GOALS

#: Default results file, relative to the repository root (``make bench`` runs there).
DEFAULT_OUTPUT = Path("bench/results/latest.json")
UNIT = "msg/s"


class BenchError(RuntimeError):
    """A run did not do the work it claims: its numbers would be meaningless."""


def payload(size: int = 100) -> bytes:
    """``size`` bytes of a fixed, non-constant pattern: the value of every message."""
    return bytes((i * 7 + 13) % 256 for i in range(size))


def expect_count(what: str, got: int, want: int) -> None:
    """Fail loudly unless exactly ``want`` messages came through."""
    if got != want:
        raise BenchError(f"{what}: read {got} messages, expected exactly {want}")


def check(what: str, condition: bool, detail: str) -> None:
    """Fail loudly unless ``condition`` holds."""
    if not condition:
        raise BenchError(f"{what}: {detail}")


def verify_read(
    what: str, read: int, n: int, offset: int | None, value: Any, more: int, sent: bytes
) -> None:
    """Fail loudly unless a consumer run read exactly ``n`` messages, the last one
    (``offset``, ``value``; None when nothing was read) at offset n-1 carrying the value
    ``sent``, and found ``more`` (what it read after the n-th) to be none."""
    expect_count(what, read, n)
    check(what, offset == n - 1, f"last offset {offset}, expected {n - 1}")
    check(what, value == sent, "the last value is not what was sent")
    check(what, more == 0, f"{more} more messages after the {n} expected")


# -- timing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One timed run: ``n`` messages in ``wall`` seconds, ``cpu`` of them on this process."""

    n: int
    wall: float
    cpu: float

    @property
    def rate(self) -> float:
        return self.n / self.wall

    @property
    def cpu_rate(self) -> float:
        return self.n / self.cpu if self.cpu > 0 else float("inf")


class Stopwatch:
    """Times the body of a ``with`` block: wall clock and this process's CPU time.

    A full garbage collection runs first (outside the timing), so garbage left by
    the set-up or the previous run is not charged to this one. The collector stays
    enabled while timing: what it costs is part of the real price.
    """

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0
        self._wall0 = 0.0
        self._cpu0 = 0.0

    def __enter__(self) -> Stopwatch:
        gc.collect()
        self._cpu0 = time.process_time()
        self._wall0 = time.perf_counter()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.wall = time.perf_counter() - self._wall0
        self.cpu = time.process_time() - self._cpu0

    def run(self, n: int) -> Run:
        return Run(n, self.wall, self.cpu)


def message_chunks(topic: str, value: bytes, n: int, chunk: int) -> list[list[bus.Message]]:
    """``n`` distinct messages (``value`` to ``topic``) in lists of ``chunk``: the inputs
    of ``send_batch`` calls, built before the clock starts."""
    return [
        [bus.Message(topic, value) for _ in range(min(chunk, n - start))]
        for start in range(0, n, chunk)
    ]


def in_new_loop(work: Callable[[int], Coroutine[Any, Any, Run]]) -> Callable[[int], Run]:
    """An asyncio workload as a plain one: each run gets a fresh ``asyncio.run`` loop."""

    def run(n: int) -> Run:
        return asyncio.run(work(n))

    return run


# -- contenders and alternation --------------------------------------------------------------


@dataclass(frozen=True)
class Contender:
    """A named workload that moves ``n`` messages and returns its timed ``Run``."""

    name: str
    n: int
    work: Callable[[int], Run]
    note: str = ""


@dataclass
class Sample:
    """Every run of one contender; ``best`` is the fastest, ``median`` the middle one."""

    contender: Contender
    runs: list[Run] = field(default_factory=list)

    @property
    def rates(self) -> list[float]:
        return [r.rate for r in self.runs]

    @property
    def best(self) -> float:
        return max(self.rates)

    @property
    def median(self) -> float:
        return statistics.median(self.rates)

    @property
    def best_cpu(self) -> float:
        return max(r.cpu_rate for r in self.runs)


def log(text: str) -> None:
    """Progress goes to stderr, so stdout holds the table only."""
    print(text, file=sys.stderr, flush=True)


def _measure(contender: Contender, sample: Sample) -> None:
    run = contender.work(contender.n)
    expect_count(contender.name, run.n, contender.n)
    sample.runs.append(run)
    log(
        f"  {contender.name:<48} n={run.n:>9,}  {run.rate:>12,.0f} {UNIT}  "
        f"(wall {run.wall:6.2f} s, cpu {run.cpu:6.2f} s)"
    )


def alternate(
    ours: Contender, peer: Contender, rounds: int, warmup: int = 1000
) -> tuple[Sample, Sample]:
    """Announce the pair, then run ``ours`` and ``peer`` in turns, ``rounds`` times each,
    after a small untimed warm-up of each (imports, first-use caches); return their
    samples."""
    log(f"{ours.name} vs {peer.name}:")
    for contender in (ours, peer):
        contender.work(min(warmup, contender.n))
    mine, theirs = Sample(ours), Sample(peer)
    for _ in range(rounds):
        _measure(ours, mine)
        _measure(peer, theirs)
    return mine, theirs


# -- rows and output ---------------------------------------------------------------------------


def python_version() -> str:
    return f"{platform.python_implementation()} {platform.python_version()}"


def row(case: str, ours: Sample, peer: Sample, **extra: Any) -> dict[str, Any]:
    """One results row: ``case`` (ours) against ``peer``; rates are best-of-runs. A case
    with a goal (``bench.goals``) also gets ``goal`` and ``goal_met``, and says so."""
    out = {
        "case": case,
        "ours": round(ours.best),
        "baseline_name": peer.contender.name,
        "baseline": round(peer.best),
        "ratio": round(ours.best / peer.best, 2),
        "unit": UNIT,
        "stat": f"best of {len(ours.runs)}",
        "n": ours.contender.n,
        "baseline_n": peer.contender.n,
        "ours_median": round(ours.median),
        "baseline_median": round(peer.median),
        "ours_cpu": round(ours.best_cpu),
        "baseline_cpu": round(peer.best_cpu),
        "ours_runs": [round(r) for r in ours.rates],
        "baseline_runs": [round(r) for r in peer.rates],
        "python": python_version(),
        "cpus": os.cpu_count(),
        "loadavg_1m": _load1(),
        **extra,
    }
    goal = BY_CASE.get(case)
    if goal is not None:
        out.update(goal=goal.text, goal_met=goal.met(out))
        verdict = "met" if out["goal_met"] else "MISSED"
        log(f"  {case}: {out['ratio']:.2f}x, {out['ours']:,} {UNIT} (goal {goal.text}: {verdict})")
    return out


def _load1() -> float | None:
    """The 1-minute load average now (after the runs of a row): how busy the box was."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def _grid(head: Sequence[str], body: Sequence[Sequence[str]], right: set[int]) -> str:
    """``head`` and ``body`` as a plain-text table, columns ``right`` aligned right."""
    widths = [max(len(line[i]) for line in (head, *body)) for i in range(len(head))]

    def fmt(line: Sequence[str]) -> str:
        cells = (
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        )
        return " | ".join(cells).rstrip()

    rule = "-+-".join("-" * w for w in widths)
    return "\n".join([fmt(head), rule, *(fmt(line) for line in body)])


def table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a plain-text table."""
    head = ("case", "ours msg/s", "baseline", "baseline msg/s", "ratio", "n / baseline n")
    body = [
        (
            r["case"],
            f"{r['ours']:,}",
            r["baseline_name"],
            f"{r['baseline']:,}",
            f"{r['ratio']:.2f}x",
            f"{r.get('n', '?'):,} / {r.get('baseline_n', '?'):,}",
        )
        for r in rows
    ]
    return _grid(head, body, {1, 3, 4, 5})


def goal_table(rows: Sequence[dict[str, Any]]) -> str:
    """Every goal of ``bench.goals``, in order, with its row among ``rows`` (a results
    file) and whether it is met; "not run" where the file has no such row."""
    by_case = {r.get("case"): r for r in rows}
    head = ("goal case", "ours msg/s", "baseline", "baseline msg/s", "ratio", "goal", "met")
    body = []
    for goal in GOALS:
        r = by_case.get(goal.case)
        if r is None:
            body.append((goal.case, "", "not run", "", "", goal.text, ""))
            continue
        body.append(
            (
                goal.case,
                f"{r['ours']:,}",
                r["baseline_name"],
                f"{r['baseline']:,}",
                f"{r['ratio']:.2f}x",
                goal.text,
                "yes" if goal.met(r) else "NO",
            )
        )
    return _grid(head, body, {1, 3, 4})


def report(rows: Sequence[dict[str, Any]], rounds: int, env: dict[str, Any], output: Path) -> None:
    """Print the table of ``rows``, a summary line (rounds, load at the end, the run's
    seconds when ``env`` records them, where the rows were written), then the goal rows
    of the whole ``output`` file, this run's and the other benchmarks' last ones."""
    print(table(rows))
    seconds = f"{env['seconds']} s; " if "seconds" in env else ""
    print(f"\nbest of {rounds} run(s); load {env['loadavg_1_5_15']}; {seconds}written to {output}")
    saved = json.loads(output.read_text(encoding="utf-8"))
    print(f"\ngoals (bench/goals.py), as {output} now holds them:")
    print(goal_table(saved))


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def merge_rows(path: Path, rows: Iterable[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    """Write ``rows`` to the results list at ``path``: rows whose case starts with
    ``prefix`` are replaced, every other benchmark's rows are kept in place."""
    kept: list[dict[str, Any]] = []
    if path.exists():
        existing = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(existing, list):
            raise BenchError(f"{path} holds a {type(existing).__name__}, expected a JSON list")
        kept = [r for r in existing if not str(r.get("case", "")).startswith(prefix)]
    merged = [*kept, *rows]
    _write_json(path, merged)
    return merged


def env_path(output: Path) -> Path:
    """Where the environment of ``output``'s rows is recorded: ``<stem>.env.json``."""
    return output.with_name(output.stem + ".env.json")


def environment(packages: Iterable[str], **extra: Any) -> dict[str, Any]:
    """Facts that make numbers comparable: interpreter, machine, load, versions."""
    versions: dict[str, str | None] = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "loadavg_1_5_15": [round(x, 2) for x in load] if load else None,
        "packages": versions,
        "command": " ".join(getattr(sys, "orig_argv", sys.argv)),
        "finished_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }


def environment_after(
    packages: Iterable[str], start: dict[str, Any], **settings: Any
) -> dict[str, Any]:
    """The environment to save at the end of a run: ``environment(packages)`` now, the
    load average at ``start`` (the ``environment`` taken before the runs), the run's
    ``settings`` (counts, rounds, ...) and the statistic the rows report."""
    return environment(
        packages,
        loadavg_at_start=start["loadavg_1_5_15"],
        **settings,
        stat="best of rounds (median also recorded)",
    )


def printable(conf: dict[str, Any]) -> dict[str, Any]:
    """``conf`` (client settings) as JSON can hold it: plain values as they are, any
    other (a logger, say) as its ``repr``."""
    plain = (str, int, float, bool, list, type(None))
    return {key: (v if isinstance(v, plain) else repr(v)) for key, v in conf.items()}


def save(output: Path, bench: str, prefix: str, rows: Sequence[dict[str, Any]], env: Any) -> None:
    """Merge ``rows`` into ``output`` and record ``env`` under ``bench`` beside it."""
    merge_rows(output, rows, prefix)
    sibling = env_path(output)
    envs: dict[str, Any] = {}
    if sibling.exists():
        with contextlib.suppress(ValueError):
            loaded = json.loads(sibling.read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                envs = loaded
    envs[bench] = env
    _write_json(sibling, envs)


# -- command line ------------------------------------------------------------------------------


def parser(
    prog: str, description: str, default_count: int, quick_count: int, default_rounds: int = 3
) -> argparse.ArgumentParser:
    """The options every benchmark takes (``prog``: ``python -m bench.<name>``); a
    module adds its own."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument(
        "--count",
        type=int,
        default=None,
        help=f"messages per run of our cases (default {default_count:,}; --quick: {quick_count:,})",
    )
    p.add_argument(
        "--quick", action="store_true", help="a small smoke run: few messages, one round"
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=None,
        help=f"timed runs of each contender (default {default_rounds})",
    )
    p.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help=f"results file, merged (default {DEFAULT_OUTPUT})",
    )
    p.set_defaults(
        default_count=default_count, quick_count=quick_count, default_rounds=default_rounds
    )
    return p


def settle(args: argparse.Namespace) -> argparse.Namespace:
    """Fill in ``count`` and ``rounds`` from ``--quick`` and the defaults; check them."""
    if args.count is None:
        args.count = args.quick_count if args.quick else args.default_count
    if args.rounds is None:
        args.rounds = 1 if args.quick else args.default_rounds
    if args.count < 1 or args.rounds < 1:
        raise SystemExit("--count and --rounds must be at least 1")
    return args


# -- on a Kafka broker (bench.kafka, bench.aiokafka) -------------------------------------------

REPO = Path(__file__).resolve().parents[1]
#: A Kafka run is noisier (the broker shares the machine): more rounds by default.
KAFKA_ROUNDS = 5
#: send() waits for each acknowledgement (linger 5 ms included): a few hundred a second.
SEND_CAP = 300
#: FastStream publishes some tens of thousands a second here: fewer keep its runs short.
FASTSTREAM_CAP = 50_000


@dataclass(frozen=True)
class Broker:
    """The Kafka broker of a run: its bootstrap servers, where it came from, and its pid
    (None when it is not ours: then its CPU time is not recorded)."""

    bootstrap: str
    source: str
    pid: int | None


@contextlib.contextmanager
def kafka_broker(bootstrap: str | None, who: str) -> Iterator[Broker]:
    """Yield the broker given (``bootstrap``), else a fresh single-node one of the test
    harness (``tools/kafka_harness``), stopped at the end; ``who`` (``bench.kafka``)
    names the benchmark in messages and in ``Broker.source``."""
    if bootstrap:
        yield Broker(bootstrap, "given", None)
        return
    tests = str(REPO / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    from tools.kafka_harness import KafkaCluster, KafkaHarnessError

    cluster = KafkaCluster(1)
    started = time.perf_counter()
    try:
        cluster.start()
    except KafkaHarnessError as exc:
        raise SystemExit(
            f"{who}: could not start a Kafka broker ({exc}); "
            "give a running one with --bootstrap HOST:PORT"
        ) from exc
    try:
        servers = cluster.bootstrap_servers
        log(f"started a Kafka broker at {servers} ({time.perf_counter() - started:.1f} s)")
        yield Broker(servers, f"KafkaCluster(1) started by {who}", cluster.nodes[0].pid)
    finally:
        cluster.stop()


def process_cpu(pid: int | None) -> float | None:
    """CPU seconds used so far by process ``pid`` (Linux ``/proc``), or None."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class KafkaBench:
    """A polybus bus (``scheme``: ``kafka`` or ``aiokafka``) on the broker of a run: fresh
    topics, made before any clock starts and deleted at ``close``, and the broker's CPU
    seconds in each timed run (``Clock``), by contender. A benchmark subclasses it with
    the clients and checks of its own."""

    def __init__(self, scheme: str, broker: Broker, partitions: int):
        self.broker = broker
        self.bootstrap = broker.bootstrap
        self.partitions = partitions
        self.broker_cpu: dict[str, list[float]] = {}
        self.bus = bus.connect(f"{scheme}://{broker.bootstrap}")
        self.topics: list[str] = []

    def topic(self, what: str) -> str:
        """A fresh topic ``bench-<what>-<random>``, created (``create_topic`` returns once
        it is usable) before any clock starts; deleted at ``close``."""
        name = f"bench-{what}-{uuid.uuid4().hex[:12]}"
        self.bus.create_topic(name, partitions=self.partitions)
        self.topics.append(name)
        return name

    def broker_cpu_s(self, label: str, rounds: int) -> list[float] | None:
        """The broker's CPU seconds in each timed run of ``label`` (the last ``rounds``:
        the warm-up run is timed too), or None where they were not recorded."""
        runs = self.broker_cpu.get(label)
        return [round(x, 2) for x in runs[-rounds:]] if runs else None

    def row(
        self, ours: Sample, peer: Sample, rounds: int, size: int, **extra: Any
    ) -> dict[str, Any]:
        """``row`` of the pair, with the message ``size``, the partitions, ``rounds`` and
        the broker's CPU seconds in each timed run of either side."""
        return row(
            ours.contender.name,
            ours,
            peer,
            size=size,
            partitions=self.partitions,
            rounds=rounds,
            ours_broker_cpu_s=self.broker_cpu_s(ours.contender.name, rounds),
            baseline_broker_cpu_s=self.broker_cpu_s(peer.contender.name, rounds),
            **extra,
        )

    def close(self) -> None:
        for name in self.topics:
            with contextlib.suppress(bus.BusError):
                self.bus.delete_topic(name)
        self.bus.close()


class Clock(Stopwatch):
    """A ``Stopwatch`` that also notes the broker's CPU seconds while it ran, under
    ``label`` in ``k.broker_cpu`` (nothing when the broker is not ours)."""

    def __init__(self, k: KafkaBench, label: str):
        super().__init__()
        self._k, self._label = k, label
        self._broker0: float | None = None

    def __enter__(self) -> Clock:
        super().__enter__()
        self._broker0 = process_cpu(self._k.broker.pid)
        return self

    def __exit__(self, *exc_info: object) -> None:
        super().__exit__(*exc_info)
        end = process_cpu(self._k.broker.pid)
        if end is not None and self._broker0 is not None:
            self._k.broker_cpu.setdefault(self._label, []).append(end - self._broker0)


def kafka_parser(
    prog: str,
    description: str,
    default_count: int,
    quick_count: int,
    sizes: Sequence[tuple[str, int, str]],
) -> argparse.ArgumentParser:
    """``parser`` (5 rounds by default) plus the options both Kafka benchmarks take:
    ``--consume-count``, ``--send-count``, ``--faststream-count``, then ``sizes``, the
    module's messages-per-call options as ``(flag, default, help)``, then
    ``--bootstrap`` and ``--only`` (see ``selected``). ``settle_kafka`` fills them in."""
    p = parser(prog, description, default_count, quick_count, default_rounds=KAFKA_ROUNDS)
    p.add_argument(
        "--consume-count",
        type=int,
        default=None,
        help="messages read per consumer run (default 5 x count)",
    )
    p.add_argument(
        "--send-count",
        type=int,
        default=None,
        help=f"messages per send() / confirmed publish run (default min(count, {SEND_CAP}); "
        "--quick: 50)",
    )
    p.add_argument(
        "--faststream-count",
        type=int,
        default=None,
        help=f"messages per FastStream publish(no_confirm) run (default min(count, "
        f"{FASTSTREAM_CAP:,}))",
    )
    for flag, default, text in sizes:
        p.add_argument(flag, type=int, default=default, help=text)
    p.add_argument(
        "--bootstrap",
        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or None,
        help="use this broker (host:port) instead of starting one "
        "(default $KAFKA_BOOTSTRAP_SERVERS)",
    )
    p.add_argument(
        "--only",
        default=None,
        help="run only the cases whose name contains one of these comma-separated texts "
        "(e.g. 'poll_batch,iteration'); their rows replace only theirs in the output",
    )
    p.set_defaults(size_options=[flag for flag, _, _ in sizes])
    return p


def settle_kafka(args: argparse.Namespace) -> argparse.Namespace:
    """``settle``, then the defaults of the ``kafka_parser`` counts; check that they and
    the sizes are at least 1."""
    args = settle(args)
    if args.consume_count is None:
        args.consume_count = 5 * args.count
    if args.send_count is None:
        args.send_count = min(args.count, 50 if args.quick else SEND_CAP)
    if args.faststream_count is None:
        args.faststream_count = min(args.count, FASTSTREAM_CAP)
    flags = [*args.size_options, "--consume-count", "--send-count", "--faststream-count"]
    if min(getattr(args, flag[2:].replace("-", "_")) for flag in flags) < 1:
        raise SystemExit(f"{', '.join(flags[:-1])} and {flags[-1]} must be at least 1")
    return args


def kafka_counts(args: argparse.Namespace) -> dict[str, int]:
    """The message counts and rounds of a Kafka run (``settle_kafka``), as its
    environment records them."""
    return {
        "count": args.count,
        "consume_count": args.consume_count,
        "send_count": args.send_count,
        "faststream_count": args.faststream_count,
        "rounds": args.rounds,
    }


def kafka_plan(
    who: str,
    args: argparse.Namespace,
    size: int,
    broker: Broker,
    start: dict[str, Any],
    faststream_runs: str,
) -> str:
    """The line a Kafka run starts with: its counts (``faststream_runs`` names the
    FastStream runs that move ``--faststream-count``), rounds, broker, CPUs and load."""
    return (
        f"{who}: {args.count:,} messages of {size} bytes per producer run, "
        f"{args.consume_count:,} per consumer run, {args.send_count:,} per send run, "
        f"{args.faststream_count:,} per FastStream {faststream_runs} run; "
        f"{args.rounds} round(s); broker {broker.bootstrap} ({broker.source}); "
        f"{start['cpu_count']} CPUs shared with the broker, load {start['loadavg_1_5_15']}"
    )


def in_case_order(rows: Iterable[dict[str, Any]], cases: Sequence[str]) -> list[dict[str, Any]]:
    """``rows`` sorted by the place of their case in ``cases`` (unknown cases last)."""
    order = {c: i for i, c in enumerate(cases)}
    return sorted(rows, key=lambda r: order.get(r["case"], len(order)))


def selected(cases: Sequence[str], only: str | None) -> list[str]:
    """The cases ``--only`` picks: those whose name contains one of its comma-separated
    texts (every case without it); none matching is an error naming them all."""
    wanted = [w.strip() for w in (only or "").split(",") if w.strip()]
    picked = [c for c in cases if not wanted or any(w in c for w in wanted)]
    if not picked:
        raise SystemExit(f"--only {only!r} matches none of: {', '.join(cases)}")
    return picked


def with_other_cases(
    output: Path, rows: list[dict[str, Any]], prefix: str, cases: Sequence[str]
) -> list[dict[str, Any]]:
    """``rows`` plus the rows of this benchmark (case starting with ``prefix``) already
    in ``output`` for cases not run this time (``--only``), in the order of ``cases``:
    a partial run replaces only its own rows."""
    ran = {r["case"] for r in rows}
    old: list[dict[str, Any]] = []
    with contextlib.suppress(OSError, ValueError):
        loaded = json.loads(output.read_text(encoding="utf-8"))
        if isinstance(loaded, list):
            old = [
                r
                for r in loaded
                if isinstance(r, dict)
                and str(r.get("case", "")).startswith(prefix)
                and r.get("case") not in ran
            ]
    return in_case_order([*old, *rows], cases)
