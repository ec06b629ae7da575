"""The README's promises: its tour runs, and its two commands exist."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import bus

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_the_tour_runs_on_memory(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BUS_URL", "memory://readme-tour")
    tour, _worker = re.findall(r"```python\n(.*?)```", README, re.S)
    exec(compile(tour, "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "1 0"  # murmur2(b"customer-7") places it on partition 1 of 3
    consumed = sorted(line.split(" ", 2)[2] for line in printed[-2:])
    assert consumed == ["{'id': 1}", "{'id': 2}"]
    assert "1 0 {'id': 1}" in printed


def test_the_worker_snippet_runs_until_stopped() -> None:
    _tour, snippet = re.findall(r"```python\n(.*?)```", README, re.S)
    with bus.connect("memory://readme-worker") as b:
        b.create_topic("orders")
        with b.producer() as producer:
            producer.send("orders", b"one")
        namespace: dict[str, Any] = {"b": b, "bus": bus}
        errors: list[BaseException] = []

        def run() -> None:
            try:
                exec(compile(snippet, "README.md", "exec"), namespace)
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while "worker" not in namespace and time.monotonic() < deadline:
            time.sleep(0.01)
        namespace["worker"].stop()
        thread.join(30)
    assert not thread.is_alive() and errors == []
    assert isinstance(namespace["worker"], bus.Worker)


def test_the_readme_opens_with_make_demo_and_make_test() -> None:
    first_block = re.search(r"```sh\n(.*?)```", README, re.S)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert commands == ["make demo", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
