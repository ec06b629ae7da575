"""Command line for a long-lived local Kafka broker (one KRaft node on 127.0.0.1).

Run from the repository root::

    .venv/bin/python -m tools.kafka_harness up [--port N]  # prints host:port
    .venv/bin/python -m tools.kafka_harness status
    .venv/bin/python -m tools.kafka_harness down
    .venv/bin/python -m tools.kafka_harness fetch          # only download jars

``up`` starts the broker detached and keeps its state in ``.cache/kafka/run/``:
``state.json``, ``bootstrap`` (the address alone, for scripts), ``node-1/kafka.log`` and
the data.  It is idempotent: with a broker already up it prints the same address.
Only the address goes to stdout, so ``export KAFKA_BOOTSTRAP_SERVERS=$(... up)`` works.
``down`` stops the broker (SIGTERM, SIGKILL after 30 s) and deletes its data.
Exit codes: 0 ok; 1 failure; ``status`` exits 1 when no broker is running.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from tools.kafka_harness import (
    RUN_DIR,
    KafkaCluster,
    KafkaHarnessError,
    _file_lock,
    _kill_group,
    _pid_alive,
    ensure_kafka_libs,
    log_tail,
    probe_brokers,
)

STATE_FILE = RUN_DIR / "state.json"
BOOTSTRAP_FILE = RUN_DIR / "bootstrap"


def _err(message: str) -> None:
    print(f"kafka_harness: {message}", file=sys.stderr)


def _read_state() -> dict[str, Any] | None:
    try:
        state = json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _is_our_broker(pid: int) -> bool:
    """Whether ``pid`` is alive and is the broker started from RUN_DIR (not a reused pid)."""
    if not _pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return sys.platform != "linux"  # no /proc: trust the pid
    return "kafka.Kafka" in cmdline and str(RUN_DIR) in cmdline


def _running_state() -> dict[str, Any] | None:
    state = _read_state()
    if state and isinstance(state.get("pid"), int) and _is_our_broker(state["pid"]):
        return state
    return None


def _clear_run_dir() -> None:
    for child in RUN_DIR.iterdir() if RUN_DIR.is_dir() else ():
        if child.name == ".lock":
            continue
        if child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def cmd_up(args: argparse.Namespace) -> int:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    with _file_lock(RUN_DIR / ".lock"):
        state = _running_state()
        if state is not None:
            _err(f"already running (pid {state['pid']}), log {state['log']}")
            print(state["bootstrap"])
            return 0
        _clear_run_dir()  # stale state of a broker that died: start afresh
        cluster = KafkaCluster(
            1, directory=RUN_DIR, port=args.port, detached=True, startup_timeout=args.timeout
        )
        started = time.monotonic()
        try:
            cluster.start()
        except KafkaHarnessError as exc:
            cluster.stop(timeout=5)
            _err(str(exc))
            return 1
        node = cluster.nodes[0]
        state = {
            "pid": node.pid,
            "bootstrap": node.bootstrap,
            "controller_port": node.controller_port,
            "version": cluster.version,
            "cluster_id": cluster.cluster_id,
            "directory": str(node.directory),
            "log": str(node.log_path),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        STATE_FILE.write_text(json.dumps(state, indent=2) + "\n")
        BOOTSTRAP_FILE.write_text(node.bootstrap + "\n")
        _err(
            f"Kafka {cluster.version} up in {time.monotonic() - started:.1f} s "
            f"(pid {node.pid}), log {node.log_path}"
        )
        print(node.bootstrap)
        return 0


def cmd_down(args: argparse.Namespace) -> int:
    if not RUN_DIR.is_dir():
        _err("not running")
        return 0
    with _file_lock(RUN_DIR / ".lock"):
        state = _running_state()
        if state is None:
            _err("not running")
            _clear_run_dir()
            return 0
        pid: int = state["pid"]
        _kill_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + args.timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _pid_alive(pid):
            _err(f"broker pid {pid} ignored SIGTERM for {args.timeout:.0f} s; sending SIGKILL")
            _kill_group(pid, signal.SIGKILL)
            while _pid_alive(pid):
                time.sleep(0.05)
        _clear_run_dir()
        _err(f"stopped (pid {pid})")
        return 0


def cmd_status(args: argparse.Namespace) -> int:
    state = _running_state()
    if state is None:
        print("not running")
        return 1
    try:
        brokers = probe_brokers(state["bootstrap"], timeout=3.0)
        health = f"brokers {sorted(brokers)}"
    except (OSError, ValueError) as exc:
        health = f"NOT ANSWERING ({exc}); log tail:\n{log_tail(Path(state['log']), 20)}"
    print(f"running {state['bootstrap']} pid {state['pid']} kafka {state['version']} {health}")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    started = time.monotonic()
    try:
        libs = ensure_kafka_libs()
    except KafkaHarnessError as exc:
        _err(str(exc))
        return 1
    _err(f"jars ready in {time.monotonic() - started:.1f} s")
    print(libs)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.kafka_harness", description="Local Apache Kafka broker for tests."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start one detached broker (idempotent); print host:port")
    up.add_argument("--port", type=int, default=0, help="client port (default: a free one)")
    up.add_argument("--timeout", type=float, default=90.0, help="readiness timeout, seconds")
    up.set_defaults(func=cmd_up)
    down = sub.add_parser("down", help="stop the broker and delete its data")
    down.add_argument("--timeout", type=float, default=30.0, help="SIGTERM grace, seconds")
    down.set_defaults(func=cmd_down)
    sub.add_parser("status", help="print the broker's address and health").set_defaults(
        func=cmd_status
    )
    sub.add_parser("fetch", help="download the Kafka jars (once)").set_defaults(func=cmd_fetch)
    args = parser.parse_args(argv)
    with contextlib.suppress(BrokenPipeError):
        code: int = args.func(args)
        return code
    return 1


if __name__ == "__main__":
    sys.exit(main())
