"""``python -m tools.faults`` (``make reliability``): every fault scenario on both Kafka
backends, bigger than the fault suite and several rounds, against brokers the harness
starts (a 3-node cluster and a single node). Writes per scenario and backend what was
sent, acknowledged, lost, duplicated, left unreported, the errors reported and the
recovery time, to ``bench/results/reliability.json``, and prints a table. Exits 1 if
any acknowledged message was lost or any message left unreported."""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import platform
import sys
import time
from pathlib import Path
from typing import Any

from tools import faults
from tools.kafka_harness import KafkaCluster

#: Sizes per scenario for a full run (the fault suite uses smaller ones).
FULL: dict[str, dict[str, Any]] = {
    "leader_kill": {"messages": 20_000},
    "member_kill": {"messages": 10_000, "window": 100},
    "close_during_join": {},
    "broker_restart": {"messages": 3_000},
    "close_under_outage": {"messages": 10_000},
    "delivery_timeout_under_outage": {"messages": 2_000},
}


def _summary(runs: list[faults.Outcome]) -> dict[str, Any]:
    recoveries = [r.recovery_s for r in runs if r.recovery_s is not None]
    return {
        "rounds": len(runs),
        "sent": sum(r.sent for r in runs),
        "acknowledged": sum(r.acknowledged for r in runs),
        "lost": sum(r.lost for r in runs),
        "duplicates": sum(r.duplicates for r in runs),
        "duplicates_allowed": sum(r.bound for r in runs),
        "unreported": sum(r.unreported for r in runs),
        "errors_reported": sum(r.errors_reported for r in runs),
        "recovery_s_max": max(recoveries, default=None),
        "runs": [r.as_dict() for r in runs],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.faults", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    parser.add_argument("--backends", default=",".join(faults.BACKENDS))
    parser.add_argument("--out", type=Path, default=Path("bench/results/reliability.json"))
    args = parser.parse_args(argv)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    chosen = [s for s in args.only.split(",") if s] or list(faults.SCENARIOS)
    unknown = set(chosen) - set(faults.SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    backends = [b for b in args.backends.split(",") if b]
    results: dict[str, dict[str, Any]] = {}
    started = time.monotonic()
    clusters: dict[int, KafkaCluster] = {}
    try:
        for name in chosen:
            scenario, size = faults.SCENARIOS[name]
            if size not in clusters:
                clusters[size] = KafkaCluster(size)
                clusters[size].start()
            for backend in backends:
                runs = []
                for round_ in range(args.rounds):
                    outcome = scenario(clusters[size], backend, **FULL[name])
                    print(f"{name:32} {backend:9} round {round_ + 1}: {outcome}", flush=True)
                    runs.append(outcome)
                results.setdefault(name, {})[backend] = _summary(runs)
    finally:
        for cluster in clusters.values():
            cluster.stop(timeout=2.0)
    report = {
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "rounds": args.rounds,
        "seconds": round(time.monotonic() - started, 1),
        "scenarios": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"\n{'scenario':32} {'backend':9} {'sent':>7} {'acked':>7} {'lost':>5} "
        f"{'dups':>5} {'allowed':>7} {'unrep':>5} {'errors':>6} {'recovery':>8}"
    )
    bad = False
    for name, per_backend in results.items():
        for backend, s in per_backend.items():
            recovery = "-" if s["recovery_s_max"] is None else f"{s['recovery_s_max']:.1f}s"
            print(
                f"{name:32} {backend:9} {s['sent']:7} {s['acknowledged']:7} {s['lost']:5} "
                f"{s['duplicates']:5} {s['duplicates_allowed']:7} {s['unreported']:5} "
                f"{s['errors_reported']:6} {recovery:>8}"
            )
            bad = bad or s["lost"] > 0 or s["unreported"] > 0
    print(f"\nwrote {args.out}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
