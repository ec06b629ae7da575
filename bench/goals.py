"""What the benchmarks aim at: one ``Goal`` per results row that has one.

The rows of issue #10's "Goals" table, in its order, then the earlier aiokafka
producer goals, then the worker's (``bench.worker``), then the sqlite backend's
(``bench.sqlite``). A goal is a least ratio (ours / baseline, both measured in one run),
a least rate of ours (msg/s), or a most median latency of ours (ms). ``row``
(``bench._common``) records each row's goal and whether it was met; ``report`` ends
every benchmark run with the goal rows of the whole results file, so the last lines
``make bench`` prints are this table, measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Goal:
    """Row ``case`` meets this goal when its ratio is at least ``ratio`` (if given), its
    rate of ours at least ``rate`` msg/s (if given) and its median produce-to-consume
    latency of ours (``ours_latency_median_ms``) under ``latency_ms`` (if given)."""

    case: str
    ratio: float | None = None
    rate: float | None = None
    latency_ms: float | None = None

    @property
    def text(self) -> str:
        parts = []
        if self.ratio is not None:
            parts.append(f">= {self.ratio:g}x")
        if self.rate is not None:
            parts.append(f">= {self.rate:,.0f} msg/s")
        if self.latency_ms is not None:
            parts.append(f"median latency < {self.latency_ms:g} ms")
        return ", ".join(parts)

    def met(self, row: dict[str, Any]) -> bool:
        return (
            (self.ratio is None or row["ratio"] >= self.ratio)
            and (self.rate is None or row["ours"] >= self.rate)
            and (
                self.latency_ms is None
                or row.get("ours_latency_median_ms", float("inf")) < self.latency_ms
            )
        )


GOALS = (
    Goal("kafka sync poll_batch", ratio=0.7),  # vs consume(500)
    Goal("kafka sync iteration", ratio=0.6),  # vs consume(500)
    Goal("kafka sync iteration vs raw poll", ratio=1.5),
    Goal("kafka sync send_batch", ratio=1.0),  # vs the raw produce loop
    Goal("kafka sync enqueue", ratio=0.9),  # vs the raw produce loop
    Goal("aiokafka async poll_batch", ratio=0.9),  # vs getmany
    Goal("aiokafka async iteration", ratio=0.6),  # vs getmany
    Goal("aiokafka async iteration vs raw async for", ratio=1.5),
    Goal("memory sync enqueue", ratio=20),  # round trip vs kombu memory://
    Goal("memory sync send_batch", rate=1_500_000),
    Goal("aiokafka async enqueue", ratio=0.9),  # vs send() futures + gather
    Goal("aiokafka async send_batch", ratio=1.2),  # vs the same
    # The worker issue: concurrency=4 vs concurrency=1, 1 ms I/O-bound handler, 8 partitions.
    Goal("worker memory sync 1 ms handler, concurrency 4 vs 1", ratio=3.5),
    Goal("worker kafka sync 1 ms handler, concurrency 4 vs 1", ratio=3.5),
    # The sqlite issue: producer and consumer in separate processes, on one file.
    Goal("sqlite sync send_batch", rate=100_000),  # round trip
    Goal("sqlite sync poll_batch", rate=200_000),
    Goal("sqlite sync enqueue", ratio=10),  # round trip vs kombu's SQLAlchemy transport
    Goal("sqlite sync latency", latency_ms=10),  # one message every 5-10 ms
)
BY_CASE = {goal.case: goal for goal in GOALS}
