"""What every polybus benchmark shares: timing, alternating runs, rows, output.

A benchmark module (``bench.memory``, later ``bench.kafka``, ``bench.aiokafka``) defines
``Contender``s, workloads that move ``n`` messages and time only the measured part
with a ``Stopwatch``, and pairs each of its cases with a peer library doing the same
work. ``alternate`` runs the two in turns (ours, peer, ours, peer, ...) so that a
change in machine load hits both; the rate reported is the best run (the least
disturbed one; the median is recorded too). ``save`` merges the rows into the
results file, replacing only the rows of that benchmark.

Results file: a JSON list of ``{"case", "ours", "baseline_name", "baseline", "ratio",
...}`` objects, rates in messages per second. Environment facts (Python, CPUs,
load, library versions) go to a sibling ``<name>.env.json``, keyed by benchmark.
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
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

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
    """Run ``ours`` and ``peer`` in turns, ``rounds`` times each, after a small untimed
    warm-up of each (imports, first-use caches); return their samples."""
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
    """One results row: ``case`` (ours) against ``peer``; rates are best-of-runs."""
    return {
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


def _load1() -> float | None:
    """The 1-minute load average now (after the runs of a row): how busy the box was."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


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
    widths = [max(len(str(line[i])) for line in (head, *body)) for i in range(len(head))]
    right = {1, 3, 4, 5}

    def fmt(line: Sequence[str]) -> str:
        cells = (
            str(c).rjust(w) if i in right else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        )
        return " | ".join(cells)

    rule = "-+-".join("-" * w for w in widths)
    return "\n".join([fmt(head), rule, *(fmt(line) for line in body)])


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
    prog: str, description: str, default_count: int, quick_count: int
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
        "--rounds", type=int, default=None, help="timed runs of each contender (default 3)"
    )
    p.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help=f"results file, merged (default {DEFAULT_OUTPUT})",
    )
    p.set_defaults(default_count=default_count, quick_count=quick_count)
    return p


def settle(args: argparse.Namespace) -> argparse.Namespace:
    """Fill in ``count`` and ``rounds`` from ``--quick`` and the defaults; check them."""
    if args.count is None:
        args.count = args.quick_count if args.quick else args.default_count
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.count < 1 or args.rounds < 1:
        raise SystemExit("--count and --rounds must be at least 1")
    return args
