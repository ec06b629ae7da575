"""``bus demo``: the walk-through runs, shows each step, and its checks hold.

The walk-through itself runs on ``bus_url`` (a fresh memory broker by default, the
backend under test with ``--bus-url``); exact counts are asserted on memory://,
where nothing is timing-dependent.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import bus
from bus._cli import main
from bus._demo import run_demo

CONSUMED = re.compile(r"^Partition:\d+, Offset:\d+, key:.*, value:.*$")
PRODUCED = re.compile(r"^Partition:\d+, Offset:\d+$")
SECTIONS = (
    "== 1. A blocking send with acks=all (sarama SyncProducer) ==",
    "== 2. Fire-and-forget sends with delivery reports (sarama AsyncProducer) ==",
    "== 3. Every partition from the newest offset (ConsumePartition + OffsetNewest) ==",
    "== 4. A consumer group: CommitInterval 1s and Notifications (sarama-cluster) ==",
    "== 5. A member cancelled mid-stream; the group loses nothing ==",
)


def sections(text: str) -> dict[int, list[str]]:
    """The lines under each numbered header (0: before the first)."""
    parts: dict[int, list[str]] = {0: []}
    current = 0
    for line in text.splitlines():
        match = re.match(r"^== (\d)\. ", line)
        if match:
            current = int(match[1])
            parts[current] = []
        else:
            parts[current].append(line)
    return parts


@pytest.fixture(scope="module")
def walk_through() -> Iterator[tuple[bool, str]]:
    """One run of the demo on a fresh memory broker, shared by the memory tests."""
    out = io.StringIO()
    started = time.monotonic()
    ok = run_demo(f"memory://demo-test-{uuid.uuid4().hex[:8]}", out)
    assert time.monotonic() - started < 10, "the demo must take seconds on memory://"
    yield ok, out.getvalue()


def test_demo_passes_every_check_on_the_backend_under_test(bus_url: str) -> None:
    out = io.StringIO()
    assert run_demo(bus_url, out, timeout=60) is True, out.getvalue()
    text = out.getvalue()
    for header in SECTIONS:
        assert header in text
    assert "NOT VERIFIED" not in text
    assert text.rstrip().endswith("Demo finished: every check verified.")
    summary = re.search(
        r"^Member 1 processed (\d+), member 2 read (\d+): \1 \+ \2 = (\d+) of the (\d+) "
        r"messages written\.$",
        text,
        re.MULTILINE,
    )
    assert summary is not None
    first, second, total, written = map(int, summary.groups())
    assert first + second == total == written
    assert f"Verified: nothing lost: all {written} messages were read, none twice" in text
    assert len([ln for ln in sections(text)[5] if CONSUMED.match(ln)]) == written


def test_demo_prints_each_step(walk_through: tuple[bool, str]) -> None:
    ok, text = walk_through
    assert ok is True, text
    first = text.splitlines()[0]
    assert first.startswith("polybus demo on memory://demo-test-")
    assert "backend 'memory'" in first
    topic = re.search(r"^Created topic (demo-[0-9a-f]{8}) with 3 partitions\.$", text, re.M)
    assert topic is not None
    assert f"Created topic {topic[1]}-group with 3 partitions." in text
    assert f"Deleted the demo topics: {topic[1]}, {topic[1]}-group." in text
    assert [line for line in text.splitlines() if line.startswith("== ")] == list(SECTIONS)


def test_demo_step_1_blocking_send(walk_through: tuple[bool, str]) -> None:
    lines = sections(walk_through[1])[1]
    assert "send() returns once the broker has acknowledged the message under acks=all" in lines
    assert [line for line in lines if PRODUCED.match(line)] == [
        line for line in lines if line.startswith("Partition:")
    ]
    assert len([line for line in lines if PRODUCED.match(line)]) == 1


def test_demo_step_2_delivery_reports(walk_through: tuple[bool, str]) -> None:
    lines = sections(walk_through[1])[2]
    assert lines[3:6] == ["async: 7272", "async: 7616", "async: 998"]
    reports = [line for line in lines if line.startswith("  success: ")]
    assert sorted(r.split(" -> ")[0] for r in reports) == [
        "  success: 'async: 7272'",
        "  success: 'async: 7616'",
        "  success: 'async: 998'",
    ]
    assert all(PRODUCED.match(r.split(" -> ")[1]) for r in reports)
    assert "Verified: 3 reports, 3 successes, 0 errors" in lines


def test_demo_step_3_newest_offset_reads_only_new_messages(walk_through: tuple[bool, str]) -> None:
    lines = sections(walk_through[1])[3]
    consumed = [line for line in lines if CONSUMED.match(line)]
    assert [re.sub(r"^Partition:\d+, Offset:\d+, ", "", line) for line in consumed] == [
        f"key:key-{i}, value:newest-{i}" for i in range(6)
    ]
    assert {line.split(",")[0] for line in consumed} == {
        "Partition:0",
        "Partition:1",
        "Partition:2",
    }
    assert "Reading partitions 0, 1, 2; now producing keyed messages key-0, key-1, ...:" in lines
    assert (
        "6 of the 6 messages sent after the consumer started arrived, from partitions 0, 1, 2."
        in lines
    )
    assert "Verified: only new messages, from 3 partitions; none of the 4 older ones" in lines


def test_demo_step_4_group_rebalances_and_splits_partitions(
    walk_through: tuple[bool, str],
) -> None:
    lines = sections(walk_through[1])[4]
    assert "auto_commit_interval=1.0 commits processed positions every second (and at" in lines
    assert "  member A: assigned partitions 0, 1, 2" in lines
    assert any(line.startswith("  member A: revoked partitions ") for line in lines)
    assert any(line.startswith("  member B: assigned partitions ") for line in lines)
    now = next(line for line in lines if line.startswith("Now A reads partitions "))
    split = re.fullmatch(r"Now A reads partitions (.+) and B reads partitions (.+)\.", now)
    assert split is not None
    a, b = ({int(p) for p in part.split(", ")} for part in split.groups())
    assert a and b and not a & b and a | b == {0, 1, 2}
    a_lines = lines[lines.index("Member A read:") + 1 : lines.index("Member B read:")]
    b_lines = lines[lines.index("Member B read:") + 1 :]
    b_lines = b_lines[: next(i for i, ln in enumerate(b_lines) if not CONSUMED.match(ln))]
    assert all(CONSUMED.match(ln) for ln in a_lines)
    assert {int(ln.split(",")[0].split(":")[1]) for ln in a_lines} <= a
    assert {int(ln.split(",")[0].split(":")[1]) for ln in b_lines} <= b
    assert len(a_lines) + len(b_lines) == 6
    assert (
        f"Verified: the members split the 6 messages by partition: A read {len(a_lines)}, "
        f"B read {len(b_lines)}"
    ) in lines
    tail = lines[lines.index("Member B leaves (close); its partitions go back to A:") + 1 :]
    while tail and not tail[-1]:
        tail.pop()
    assert tail[-1] == "Member A reads partitions 0, 1, 2."
    assert tail[:-1] and all(ln.startswith("  member ") for ln in tail[:-1])
    assert any(ln.startswith("  member A: assigned partitions ") for ln in tail)


def test_demo_step_5_cancelled_member_loses_nothing(walk_through: tuple[bool, str]) -> None:
    lines = sections(walk_through[1])[5]
    member_1 = lines[lines.index("Member 1:") + 1 : lines.index("Member 1:") + 5]
    assert all(CONSUMED.match(line) for line in member_1)
    cancelled = next(line for line in lines if line.startswith("Cancelled with "))
    held = re.fullmatch(
        r"Cancelled with (Partition:\d+, Offset:\d+) in hand \(not processed\); "
        r"member 1 closed\.",
        cancelled,
    )
    assert held is not None
    start = lines.index("Member 2, same group:") + 1
    member_2 = lines[start : start + 6]
    assert all(CONSUMED.match(line) for line in member_2)
    assert not CONSUMED.match(lines[start + 6])
    # The message member 1 held unprocessed is read by member 2, and nothing twice.
    assert any(line.startswith(held[1] + ",") for line in member_2)
    assert not {ln.split(", key:")[0] for ln in member_1} & {
        ln.split(", key:")[0] for ln in member_2
    }
    assert "Member 1 processed 4, member 2 read 6: 4 + 6 = 10 of the 10 messages written." in lines
    assert "Verified: nothing lost: all 10 messages were read, none twice" in lines
    assert (
        "Verified: member 2 went on from exactly the first unprocessed message of every "
        f"partition, {held[1]} included"
    ) in lines


def test_demo_detects_lost_or_repeated_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    """With commits switched off, member 2 re-reads what member 1 processed: the demo
    must say so and fail, not print a success it did not check."""
    original = bus.Bus.consumer

    def no_commits(self: bus.Bus, *topics: str, **options: Any) -> bus.Consumer:
        return original(self, *topics, **{**options, "auto_commit": False})

    monkeypatch.setattr(bus.Bus, "consumer", no_commits)
    out = io.StringIO()
    assert run_demo(f"memory://demo-test-{uuid.uuid4().hex[:8]}", out) is False
    text = out.getvalue()
    failed = re.search(r"^NOT VERIFIED: (\d+) message\(s\) lost and (\d+) read twice$", text, re.M)
    assert failed is not None and int(failed[1]) > 0 and int(failed[2]) > 0
    assert "NOT VERIFIED: member 2 did not continue from the first unprocessed messages" in text
    assert "Verified: nothing lost" not in text
    assert text.rstrip().endswith("Demo finished: 2 check(s) NOT verified.")


def test_bus_demo_command_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--url", f"memory://demo-test-{uuid.uuid4().hex[:8]}"]) == 0
    out = capsys.readouterr().out
    assert "Verified: nothing lost: all 10 messages were read, none twice" in out
    assert len([line for line in out.splitlines() if CONSUMED.match(line)]) == 6 + 6 + 10


def test_bus_demo_script_runs_in_seconds() -> None:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "bus", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert time.monotonic() - started < 20
    assert result.stderr == ""
    assert result.stdout.startswith("polybus demo on memory://: backend 'memory'")
    assert "Demo finished: every check verified." in result.stdout
